"""report: one self-contained `report.html` per run — data summary, training curves from the event files,
confusion matrix or residual plot, the gate's table (candidate vs champion vs thresholds), where the model
went. Plots are matplotlib PNGs embedded as data URIs, so the file stands alone; publish puts it beside the model.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kest_tasks.core import files
from kest_tasks.core.config import PipelineConfig
from kest_tasks.core.execution import run_once, stage_function
from kest_tasks.core.layout import (
    EVAL_EVENTS_FOLDER,
    NATIVE_TRAIN_EVENTS_FOLDER,
    NATIVE_VALIDATION_EVENTS_FOLDER,
    PREDICTIONS_FILE,
    REPORT_FILE,
    version_key,
    version_name,
)
from kest_tasks.core.results import (
    Check,
    EvaluateResult,
    ExportResult,
    GateResult,
    PrepareResult,
    ReportResult,
    TrainResult,
)
from kest_tasks.core.stages import REPORT
from kest_tasks.core.tfenv import import_tensorflow
from kest_tasks.evaluation.metrics import headline
from kest_tasks.registry.champion import store_for

log = logging.getLogger("kest.report")


def read_scalars(folder: str) -> dict[str, list[tuple[int, float]]]:
    """Scalar summaries of the event files directly in `folder` (local or gs://, read by TensorFlow): tag →
    [(step, value)] in step order."""
    tf = import_tensorflow()
    series: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(tf.io.gfile.glob(files.join(folder, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(events):
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    number = value.simple_value
                elif value.HasField("tensor") and not value.tensor.tensor_shape.dim:
                    scalar = tf.make_ndarray(value.tensor)
                    if scalar.dtype.kind not in "fiu":  # e.g. the Estimator's checkpoint_path text summary
                        continue
                    number = float(scalar)
                else:
                    continue
                series.setdefault(value.tag, []).append((int(event.step), float(number)))
    return {tag: sorted(points) for tag, points in series.items()}


def training_curves(model_dir: str, checkpoint_steps: int) -> tuple[dict, dict]:
    """(training series, evaluation series) by global step, for Estimator and native model_dirs alike."""
    train = read_scalars(model_dir) or {}
    evaluation = read_scalars(files.join(model_dir, EVAL_EVENTS_FOLDER))
    native_train = read_scalars(files.join(model_dir, NATIVE_TRAIN_EVENTS_FOLDER))
    native_eval = read_scalars(files.join(model_dir, NATIVE_VALIDATION_EVENTS_FOLDER))
    if native_train or native_eval:  # Keras writes epoch summaries by epoch: one epoch is checkpoint_steps long
        train = {tag[len("batch_") :]: points for tag, points in native_train.items() if tag.startswith("batch_")}
        evaluation = {
            tag[len("epoch_") :]: [((epoch + 1) * checkpoint_steps, value) for epoch, value in points]
            for tag, points in native_eval.items()
            if tag.startswith("epoch_")
        }
    # model_to_estimator's training loss is written as `loss_1` (its graph already has a `loss`)
    loss = train.get("loss") or train.get("loss_1")
    return ({"loss": loss} if loss else {}), evaluation


def _png(figure: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _curves_plot(train: dict, evaluation: dict) -> str | None:
    import matplotlib.pyplot as plt

    if not train and not evaluation:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for tag, points in train.items():
        left.plot(*zip(*points), label=f"train {tag}")
    for tag, points in evaluation.items():
        (right if tag != "loss" else left).plot(*zip(*points), marker="o", label=f"eval {tag}")
    for axis, title in ((left, "loss"), (right, "evaluation metrics")):
        axis.set_xlabel("step")
        axis.set_title(title)
        if axis.lines:
            axis.legend(fontsize=8)
    return _png(figure)


def _confusion_plot(confusion: list[list[int]], classes: list[str]) -> str:
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion)
    figure, axis = plt.subplots(figsize=(1.2 + 0.6 * len(classes), 1 + 0.6 * len(classes)))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(
            column, row, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black"
        )
    axis.set_title("confusion matrix (test split)")
    return _png(figure)


def _residual_plot(labels: np.ndarray, predictions: np.ndarray) -> str:
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.6))
    axis.scatter(predictions, labels - predictions, s=8, alpha=0.6)
    axis.axhline(0, color="grey", linewidth=1)
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual − predicted")
    axis.set_title("residuals (test split)")
    return _png(figure)


def _table(header: list[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _drift_section(drift: dict[str, Any]) -> str:
    """The data against the champion's training data (prepare's comparison in stats.json)."""
    if not drift.get("baseline"):
        return "<p class='drift'>No champion yet: nothing to compare this data with.</p>"
    features = drift.get("features", [])
    moved = [f["feature"] for f in features if f["drifted"]]
    summary = f"Compared with the training data of champion {drift['baseline']}: " + (
        f"drifted beyond the threshold: {', '.join(moved)}." if moved else "no feature beyond its threshold."
    )
    rows = [
        [f["feature"], f["statistic"], f["distance"], f["threshold"], "drift" if f["drifted"] else "ok"]
        for f in features
    ]
    return f"<p class='drift'>{html.escape(summary)}</p>" + _table(
        ["feature", "statistic", "distance", "threshold", "result"], rows
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _gate_rows(checks: list[Check]) -> list[list]:
    rows = []
    for check in checks:
        rows.append(
            [
                check.metric,
                check.kind,
                check.value,
                check.champion,
                check.needs("≥", "≤"),
                "pass" if check.passed else "FAIL",
            ]
        )
    return rows


def _destination(config: PipelineConfig, run_uri: str, blessing: GateResult, exported: ExportResult | None) -> str:
    if not blessing.blessed:
        return "not published: the gate did not bless this model"
    if exported is None:
        return "not published: no export"
    version = version_name(exported.exported_at, run_uri)
    return f"published as {store_for(config).uri(version_key(config.model_name, version))}"


@stage_function
def report(
    config: PipelineConfig,
    run_uri: str,
    prepared: PrepareResult,
    trained: TrainResult,
    evaluated: EvaluateResult,
    blessing: GateResult,
    exported: ExportResult | None = None,
) -> ReportResult:
    """Write `<run_uri>/report/report.html` (for blessed and unblessed runs; `exported` is None when the gate did
    not bless the model)."""
    import matplotlib

    matplotlib.use("Agg")

    def produce(work: Path, folder: str) -> ReportResult:
        schema = files.read_json(prepared.schema_uri)
        all_stats = files.read_json(prepared.stats_uri)
        stats = all_stats["columns"]
        metrics = files.read_json(evaluated.metrics_uri)
        plots = []
        curves = _curves_plot(*training_curves(trained.model_dir, config.trainer.checkpoint_steps))
        if curves:
            plots.append(("Training", curves))
        predictions = np.load(io.BytesIO(files.read_bytes(files.sibling(evaluated.metrics_uri, PREDICTIONS_FILE))))
        if metrics.get("confusion_matrix"):
            plots.append(("Confusion matrix", _confusion_plot(metrics["confusion_matrix"], metrics["classes"])))
        else:
            plots.append(
                ("Residuals", _residual_plot(predictions["labels"], np.asarray(predictions["outputs"]).reshape(-1)))
            )
        feature_rows = []
        for feature in schema["features"]:
            column = stats.get(feature["name"], {})
            fill = feature.get("fill")
            feature_rows.append(
                [
                    feature["name"],
                    feature.get("tf_name") or feature["name"],
                    feature["type"],
                    column.get("missing"),
                    '"" (token)' if fill == "" else fill,
                    feature.get("mean"),
                    feature.get("std"),
                    len(feature.get("vocabulary") or []) or None,
                ]
            )
        export_line = ""
        if exported is not None:
            export_line = (
                f"<p>Infra validation: signatures {', '.join(exported.signatures)}; loaded in "
                f"{exported.load_seconds:.2f} s in a fresh process; single-row latency p50 "
                f"{exported.latency_ms_p50:.2f} ms, p99 {exported.latency_ms_p99:.2f} ms.</p>"
            )
        sections = [
            f"<h1>kest run report: {html.escape(config.model_name)}</h1>",
            f"<p>Run folder {html.escape(run_uri)}; trainer {config.trainer.kind}, {trained.global_step} steps.</p>",
            "<h2>Data</h2>",
            _table(["split", "rows"], sorted(prepared.split_rows.items())),
            _table(
                [
                    "feature",
                    "TensorFlow name",
                    "type",
                    "missing",
                    "missing → (all signatures)",
                    "train mean",
                    "train std",
                    "vocabulary",
                ],
                feature_rows,
            ),
            "<h2>Drift</h2>",
            _drift_section(all_stats.get("drift") or {}),
            "<p>Models and the <code>serving_default</code> signature take features by their TensorFlow name "
            "(numbers as float32; NaN is a missing value); <code>predict_examples</code> takes tf.Examples keyed by "
            "the feature names.</p>",
            f"<p>Label {html.escape(schema['label']['name'])} ({schema['label']['kind']}"
            + (
                f"; classes {html.escape(', '.join(schema['label']['classes']))}"
                if schema["label"].get("classes")
                else ""
            )
            + (
                f"; trained on (label − {schema['label']['mean']:.4g}) / {schema['label']['std']:.4g}, the training "
                "split's mean and std; predictions are in the label's units"
                if schema["label"]["kind"] == "regression" and schema["label"].get("std")
                else ""
            )
            + ").</p>",
            "<h2>Test metrics</h2>",
            _table(["metric", "value"], sorted(headline(metrics["metrics"]).items())),
            "<h2>Gate</h2>",
            f"<p class='decision'>{html.escape(blessing.reason)}</p>",
            f"<p>Champion: {html.escape(blessing.champion_version or 'none (first model)')}</p>",
            _table(["metric", "check", "candidate", "champion", "needs", "result"], _gate_rows(blessing.checks)),
            "<h2>Where the model went</h2>",
            f"<p class='destination'>{html.escape(_destination(config, run_uri, blessing, exported))}</p>",
            export_line,
        ]
        for title, image in plots:
            sections.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='{image}'>")
        style = (
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:"
            "collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
            "img{max-width:100%}"
        )
        document = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>kest report {html.escape(run_uri)}"
            f"</title><style>{style}</style></head><body>{''.join(sections)}</body></html>"
        )
        report_uri = files.join(folder, REPORT_FILE)
        files.write_text(report_uri, document)
        log.info("report: %s (%d plots)", report_uri, len(plots))
        return ReportResult(report_uri=report_uri, plots=len(plots))

    return run_once(run_uri, REPORT.folder, ReportResult, produce)
