"""evaluate: the trained model's quality on the whole held-out test split → `<run_uri>/eval/metrics.json`.

Predictions come from the trained model itself (Keras kinds: the built Keras model with the checkpoint's
weights; premade and model_fn: Estimator.predict). Metrics come from kest_tasks.metrics, the code the gate also
scores the champion with, so candidate and champion are measured alike.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kest_tasks.build import KERAS_KINDS, BuildResult
from kest_tasks.config import ConfigError, PipelineConfig
from kest_tasks.estimators import make_estimator, model_output
from kest_tasks.metrics import headline, score, sliced_scores
from kest_tasks.native import trained_forward_pass
from kest_tasks.prepare import PrepareResult
from kest_tasks.schema import Schema
from kest_tasks.stage import StageResult, run_once, stage_function
from kest_tasks.storage import read_json, write_json_atomic
from kest_tasks.tfdata import read_examples, to_label_units, to_model_inputs, vocabulary_tables
from kest_tasks.tfenv import import_tensorflow
from kest_tasks.train import TrainResult, checkpoint_step

log = logging.getLogger("kest.evaluate")

PREDICTIONS_FILE = "predictions.npz"  # labels and raw outputs, for the report's plots


class EvaluateResult(StageResult):
    metrics_uri: str
    metrics: dict[str, float]  # the headline metrics; per-class and sliced ones are in metrics.json
    examples: int
    checkpoint: str
    seconds: float = 0.0


class ScoredSplit:
    """A split's labels (class indices or floats), the model's raw outputs, and the raw features kept."""

    def __init__(self, labels: np.ndarray, outputs: np.ndarray, features: dict[str, np.ndarray]) -> None:
        self.labels, self.outputs, self.features = labels, outputs, features


def split_batches(config: PipelineConfig, prepared: PrepareResult, schema: Schema, split: str = "test"):
    """(raw features, label) batches of a split in file order, one pass."""
    return read_examples(prepared.files[split], schema, prepared.compression, config.evaluate.batch_size)


def run_over_split(batches, keep: list[str], predict: Callable | None) -> ScoredSplit:
    """Collect labels, `predict(features)` outputs (unless None) and the `keep` features over every batch."""
    labels, outputs, kept = [], [], {name: [] for name in keep}
    for features, label in batches:
        labels.append(label.numpy())
        if predict is not None:
            outputs.append(np.asarray(predict(features)))
        for name in keep:
            kept[name].append(features[name].numpy())
    return ScoredSplit(np.concatenate(labels), np.concatenate(outputs) if outputs else np.zeros(0),
                       {name: np.concatenate(values) for name, values in kept.items()})


def _estimator_outputs(config: PipelineConfig, prepared: PrepareResult, built: BuildResult, schema: Schema,
                       checkpoint: str, model_dir: str) -> np.ndarray:
    estimator = make_estimator(config, built, schema, model_dir)

    def input_fn():
        tables = vocabulary_tables(built.input_plan)
        return split_batches(config, prepared, schema).map(
            lambda features, label: to_model_inputs(features, built.input_plan, tables))

    batches = estimator.predict(input_fn, checkpoint_path=checkpoint, yield_single_examples=False)
    return np.concatenate([np.asarray(model_output(batch, built)) for batch in batches])


def _slice_keys(config: PipelineConfig, schema: Schema) -> dict[str, str]:
    """evaluate.slice_by's features (as the data names them) → their keys among the model features."""
    return {name: schema.feature(name).key for name in config.evaluate.slice_by}


def score_trained_model(config: PipelineConfig, prepared: PrepareResult, built: BuildResult, checkpoint: str,
                        work: Path) -> ScoredSplit:
    """The test split scored by the run's trained model at `checkpoint`: outputs in the label's units, and the
    slice_by features kept under their names in the data."""
    schema = Schema.load(prepared.schema_uri)
    keep = _slice_keys(config, schema)
    if config.trainer.kind in KERAS_KINDS:
        predict = import_tensorflow().function(trained_forward_pass(built, checkpoint).forward)
        scored = run_over_split(split_batches(config, prepared, schema), list(keep.values()), predict)
    else:
        outputs = _estimator_outputs(config, prepared, built, schema, checkpoint, str(work / "estimator"))
        scored = run_over_split(split_batches(config, prepared, schema), list(keep.values()), None)
        scored.outputs = outputs
    scored.outputs = to_label_units(scored.outputs, schema.label)
    scored.features = {name: scored.features[key] for name, key in keep.items()}
    return scored


@stage_function
def evaluate(
    config: PipelineConfig, run_uri: str, prepared: PrepareResult, built: BuildResult, trained: TrainResult
) -> EvaluateResult:
    """Score the final training checkpoint on every test example; write metrics.json (metrics, confusion
    matrix for classifiers, slices) and predictions.npz."""
    schema = Schema.load(prepared.schema_uri)
    unknown = [name for name in config.evaluate.slice_by if not schema.has_feature(name)]
    if unknown:
        raise ConfigError(f"evaluate.slice_by: no feature {unknown[0]!r} (features: {', '.join(schema.feature_names)})")

    def produce(tmp: Path, final: Path) -> EvaluateResult:
        started = time.monotonic()
        scored = score_trained_model(config, prepared, built, trained.checkpoint, tmp)
        classes = schema.label.classes if schema.label.kind == "classification" else None
        overall = score(scored.labels, scored.outputs, classes)
        slices = sliced_scores(scored.labels, scored.outputs, classes, scored.features, config.evaluate.slice_by)
        for name in config.evaluate.slice_by:
            if not any(key.startswith(f"{name}=") for key in slices):
                log.info("evaluate: not sliced by %s: more than 50 distinct values in the test split", name)
        seconds = time.monotonic() - started
        global_step = checkpoint_step(trained.checkpoint)
        np.savez_compressed(tmp / PREDICTIONS_FILE, labels=scored.labels, outputs=scored.outputs)
        write_json_atomic(tmp / "metrics.json", {
            **overall, "classes": classes, "slices": slices, "checkpoint": trained.checkpoint,
            "global_step": global_step, "seconds": round(seconds, 3),
        })
        log.info("evaluate: test split (%d examples) at step %d in %.2f s: %s",
                 overall["examples"], global_step, seconds, _format(overall["metrics"]))
        if "confusion_matrix" in overall:
            log.info("evaluate: confusion matrix (rows: true %s; columns: predicted): %s", classes,
                     overall["confusion_matrix"])
        return EvaluateResult(
            metrics_uri=str(final / "metrics.json"), metrics=headline(overall["metrics"]),
            examples=overall["examples"],
            checkpoint=trained.checkpoint, seconds=round(seconds, 3),
        )

    return run_once(run_uri, "eval", EvaluateResult, produce)


def all_metrics(evaluated: EvaluateResult) -> dict[str, float]:
    return read_json(Path(evaluated.metrics_uri))["metrics"]


def _format(metrics: dict[str, float]) -> str:
    return ", ".join(f"{key}={value:.4f}" for key, value in sorted(headline(metrics).items()))
