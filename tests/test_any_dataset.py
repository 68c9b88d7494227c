"""Datasets as users bring them, end to end for every trainer kind: odd column names, missing values, Parquet and
TFRecord inputs, standardised regression targets, class weights. Every exported model is queried with a missing
value and must answer as if the training statistic had been sent."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from kest_tasks.core import layout, stages
from kest_tasks.core.config import ConfigError
from kest_tasks.orchestration.runner import configure, run_pipeline, run_stage
from tests.helpers import IRIS_CONFIG, IRIS_CSV, REPO, iris_overrides, stage_file

pytestmark = pytest.mark.slow

ODD = ["sepal length (cm)", "1st phenols", "Magnesium mg/L", "größe", "a-b", "a_b", "n° rooms"]
MODEL_FN = {"kind": "model_fn", "model_fn": "custom_model_fn:model_fn"}


def _odd_rows(n=400, seed=1):
    """Rows over the ODD columns (+ a text column, + label): separable by the first, fifth and sixth columns,
    with missing cells of several spellings in the second and third."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        x = [rng.gauss(0, 1) for _ in ODD]
        colour = rng.choice(["red", "blue", ""])
        label = "pos" if x[0] + x[4] - x[5] + (0.5 if colour == "red" else 0) > 0 else "neg"
        cells = [f"{v:.4f}" for v in x]
        if i % 37 == 0:
            cells[1] = "nan"
        if i % 41 == 0:
            cells[2] = "NA"
        cells[6] = "" if i % 13 == 0 else str(i % 5)  # an int column with missing cells
        rows.append(cells + [colour, label])
    return rows


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.write_text("\n".join([",".join(header)] + [",".join(row) for row in rows]) + "\n")
    return path


def _config(tmp_path, gate=None) -> Path:
    """iris.yaml with its gate replaced by `gate`, in `tmp_path`."""
    config = yaml.safe_load(IRIS_CONFIG.read_text())
    config["gate"] = gate or {"thresholds": {"accuracy": {"lower": 0.8}}}
    config["dataset"]["path"] = str(IRIS_CSV)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "config.yaml"


def _run(tmp_path, gate=None, **sections):
    """The pipeline on iris.yaml with `sections` merged in and its gate replaced by `gate`."""
    return run_pipeline(_config(tmp_path, gate), iris_overrides(tmp_path, **sections), "any")


def _evaluated(tmp_path, **sections) -> dict:
    """The stages up to evaluate (no export, report or publish): the test metrics."""
    run_uri = configure(_config(tmp_path), iris_overrides(tmp_path, **sections), "any").run_uri
    for spec in stages.STAGES[: stages.STAGES.index(stages.EVALUATE) + 1]:
        run_stage(spec.name, run_uri)
    return json.loads(Path(stages.EVALUATE.load(run_uri).metrics_uri).read_text())["metrics"]


def _saved_model(summary):
    import tensorflow as tf

    return tf.saved_model.load(str(stage_file(summary["run_uri"], stages.EXPORT, layout.SAVED_MODEL_FOLDER)))


def _example(values: dict):
    import tensorflow as tf

    feature = {}
    for key, value in values.items():
        if isinstance(value, str):
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif isinstance(value, int):
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _check_serving_fills_missing_values(summary, text_column=True):
    """serving_default takes the TensorFlow names (original ones where they are identifiers); a NaN there, or a key
    absent from a predict_examples tf.Example, answers exactly as the training split's mean does."""
    import tensorflow as tf

    schema = json.loads(stage_file(summary["run_uri"], stages.PREPARE, layout.SCHEMA_FILE).read_text())
    keys = {f["name"]: f["tf_name"] for f in schema["features"]}
    assert keys["sepal length (cm)"] == "sepal_length_cm" and keys["a-b"] == "a_b_2" and keys["a_b"] == "a_b"
    assert keys["n° rooms"] == "n_rooms" and {f["name"]: f["type"] for f in schema["features"]}["n° rooms"] == "int"
    loaded = _saved_model(summary)
    serving = loaded.signatures["serving_default"]
    assert sorted(serving.structured_input_signature[1]) == sorted(keys.values())
    row: dict[str, object] = {
        f["name"]: 0.3 if f["type"] == "float" else 2 for f in schema["features"] if f["type"] != "string"
    }
    if text_column:
        row["colour name"] = "red"
    fill = {f["name"]: f["fill"] for f in schema["features"]}

    def serve(values):
        tensors = {
            keys[name]: tf.constant([value], tf.string if isinstance(value, str) else tf.float32)  # ints too
            for name, value in values.items()
        }
        return {name: value.numpy() for name, value in serving(**tensors).items()}

    with_fill = serve({**row, "1st phenols": fill["1st phenols"]})
    with_nan = serve({**row, "1st phenols": float("nan")})
    np.testing.assert_allclose(with_nan["probabilities"], with_fill["probabilities"], rtol=1e-6)
    examples = loaded.signatures["predict_examples"]
    absent = {name: value for name, value in row.items() if name != "1st phenols"}
    from_examples = examples(examples=tf.constant([_example(absent)]))
    np.testing.assert_allclose(from_examples["probabilities"].numpy(), with_fill["probabilities"], rtol=1e-6)
    assert abs(float(fill["1st phenols"]) - 0.0) < 0.2 and fill["1st phenols"] != 0.3


@pytest.mark.parametrize(
    "trainer, model",
    [
        ({"kind": "keras"}, {"builder": "tabular"}),
        ({"kind": "premade", "premade": {"type": "dnn"}}, {}),
        ({"kind": "premade", "premade": {"type": "linear"}}, {}),
        (MODEL_FN, {"code_dir": str(REPO / "examples")}),
        ({"kind": "native"}, {"builder": "tabular"}),
    ],
    ids=["keras-tabular", "premade-dnn", "premade-linear", "model_fn", "native-tabular"],
)
def test_odd_headers_and_missing_values_for_every_kind(tmp_path, trainer, model):
    data = _write_csv(
        tmp_path / "odd.csv",
        [f'"{name}"' if "," in name else name for name in ODD] + ["colour name", "label"],
        _odd_rows(),
    )
    summary = _run(
        tmp_path,
        dataset={"path": str(data), "label": "label"},
        trainer={**trainer, "steps": 600},
        model={"learning_rate": 0.01, **model},
    )
    assert summary["blessed"], summary["gate"]
    assert summary["test_metrics"]["accuracy"] >= 0.8
    _check_serving_fills_missing_values(summary)
    schema = json.loads(stage_file(summary["run_uri"], stages.PREPARE, layout.SCHEMA_FILE).read_text())
    assert {f["name"]: f["tf_name"] for f in schema["features"]}["colour name"] == "colour_name"
    report = stage_file(summary["run_uri"], stages.REPORT, layout.REPORT_FILE).read_text()
    assert "sepal_length_cm" in report and "TensorFlow name" in report


def test_the_iris_builder_stacks_odd_numeric_columns(tmp_path):
    rows = [row[: len(ODD)] + [row[-1]] for row in _odd_rows()]
    data = _write_csv(tmp_path / "odd.csv", ODD + ["label"], rows)
    summary = _run(tmp_path, dataset={"path": str(data), "label": "label"}, trainer={"steps": 600})
    assert summary["blessed"], summary["gate"]
    _check_serving_fills_missing_values(summary, text_column=False)


def _imbalanced_csv(path: Path) -> Path:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=1500, n_features=6, n_informative=4, weights=[0.9], flip_y=0.02, class_sep=0.6, random_state=4
    )
    labels = np.where(y == 1, "rare", "common")
    rows = [[f"{v:.5f}" for v in row] + [label] for row, label in zip(x, labels)]
    return _write_csv(path, [f"f{i}" for i in range(6)] + ["label"], rows)


@pytest.mark.parametrize(
    "trainer, model",
    [
        ({"kind": "keras"}, {"builder": "tabular"}),
        ({"kind": "premade", "premade": {"type": "dnn"}}, {}),
        (MODEL_FN, {"code_dir": str(REPO / "examples")}),
        ({"kind": "native"}, {"builder": "tabular"}),
    ],
    ids=["keras", "premade", "model_fn", "native"],
)
def test_balanced_class_weight_raises_minority_recall_for_every_kind(tmp_path, trainer, model):
    data = _imbalanced_csv(tmp_path / "skewed.csv")
    recall = {}
    for weighting in ("none", "balanced"):
        metrics = _evaluated(
            tmp_path / weighting,
            dataset={"path": str(data), "label": "label"},
            trainer={**trainer, "steps": 400, "class_weight": weighting},
            model={"learning_rate": 0.01, **model},
        )
        recall[weighting] = metrics["recall/rare"]
    run_uri = str(tmp_path / "balanced" / "artifacts" / layout.RUNS_FOLDER / "any")
    schema = json.loads(stage_file(run_uri, stages.PREPARE, layout.SCHEMA_FILE).read_text())
    counts = dict(zip(schema["label"]["classes"], schema["label"]["class_counts"]))
    assert counts["rare"] * 5 < counts["common"]
    assert recall["balanced"] >= recall["none"] + 0.1, recall


def test_class_weight_errors_are_one_line(tmp_path):
    data = _imbalanced_csv(tmp_path / "skewed.csv")
    for weighting, message in [
        ({"rare": 5.0, "unknown": 2.0}, "trainer.class_weight: no class 'unknown' in the label (classes: common, rare)")
    ]:
        run_uri = configure(
            IRIS_CONFIG,
            iris_overrides(
                tmp_path, dataset={"path": str(data), "label": "label"}, trainer={"class_weight": weighting}
            ),
            "cw",
        ).run_uri
        run_stage("prepare", run_uri)
        with pytest.raises(ConfigError) as caught:
            run_stage("build", run_uri)
        assert str(caught.value) == message
    prices = _write_csv(tmp_path / "prices.csv", ["x", "price"], [[str(i), f"{i * 1.5 + 0.25}"] for i in range(50)])
    run_uri = configure(
        IRIS_CONFIG,
        iris_overrides(
            tmp_path / "r", dataset={"path": str(prices), "label": "price"}, trainer={"class_weight": "balanced"}
        ),
        "cw",
    ).run_uri
    run_stage("prepare", run_uri)
    with pytest.raises(
        ConfigError,
        match=r"^trainer.class_weight needs a classification label; the dataset's label "
        r"'price' is regression$",
    ):
        run_stage("build", run_uri)


def _diabetes_like(seed=7, n=440):
    """Ten numeric features, ~440 rows, a label in the hundreds with noise (the shape of scikit-learn's diabetes)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10)) * 0.05
    coefficients = np.array([10, -240, 520, 320, -790, 480, 100, 180, 750, 70])
    y = 152 + x @ coefficients + rng.normal(scale=55, size=n)
    return x, y


def test_regression_targets_are_standardised_and_predictions_in_label_units(tmp_path):
    import tensorflow as tf

    x, y = _diabetes_like()
    names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    data = _write_csv(
        tmp_path / "diabetes.csv",
        names + ["target"],
        [[f"{v:.6f}" for v in row] + [f"{t:.1f}"] for row, t in zip(x, y)],
    )
    summary = _run(
        tmp_path,
        dataset={"path": str(data), "label": "target"},
        model={"builder": "tabular"},
        gate={"mode": "always_bless"},
    )
    run = Path(summary["run_uri"])
    schema = json.loads(stage_file(run, stages.PREPARE, layout.SCHEMA_FILE).read_text())
    assert 120 < schema["label"]["mean"] < 185 and schema["label"]["std"] > 50
    report = stage_file(run, stages.REPORT, layout.REPORT_FILE).read_text()
    assert f"trained on (label − {schema['label']['mean']:.4g}) / {schema['label']['std']:.4g}" in report
    # Ordinary least squares on the very same split, as the reference a tabular model must reach.
    from kest_tasks.data.schema import Schema
    from kest_tasks.data.tfdata import read_examples

    prepared = stages.PREPARE.load(str(run)).model_dump()
    loaded_schema = Schema.load(prepared["schema_uri"])

    def split(name):
        batches = list(read_examples(prepared["files"][name], loaded_schema, "GZIP", 1000))
        return (
            np.concatenate([np.stack([f[k].numpy() for k in names], 1) for f, _ in batches]),
            np.concatenate([label.numpy() for _, label in batches]),
        )

    train_x, train_y = split("train")
    test_x, test_y = split("test")
    design = np.column_stack([train_x, np.ones(len(train_x))])
    solution = np.linalg.lstsq(design, train_y, rcond=None)[0]
    ols = np.column_stack([test_x, np.ones(len(test_x))]) @ solution
    ols_r2 = 1 - ((ols - test_y) ** 2).sum() / ((test_y - test_y.mean()) ** 2).sum()
    assert summary["test_metrics"]["r2"] >= ols_r2 - 0.05, (summary["test_metrics"], ols_r2)
    # The exported model answers in the label's units.
    serving = _saved_model(summary).signatures["serving_default"]
    answer = serving(**{k: tf.constant(test_x[:, i], tf.float32) for i, k in enumerate(names)})["predictions"]
    assert abs(float(np.mean(answer.numpy())) - float(np.mean(test_y))) < 25


def test_parquet_and_tfrecord_inputs_train_end_to_end(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf

    rows = _odd_rows(400, seed=5)
    columns = {
        name: [float(r[i]) if r[i] not in ("nan", "NA", "") else None for r in rows] for i, name in enumerate(ODD)
    }
    columns["n° rooms"] = [None if value is None else int(value) for value in columns["n° rooms"]]
    table = pa.table({**columns, "colour name": [r[len(ODD)] or None for r in rows], "label": [r[-1] for r in rows]})
    pq.write_table(table, tmp_path / "odd.parquet")
    summary = _run(
        tmp_path / "parquet",
        dataset={"source": "parquet", "path": str(tmp_path / "odd.parquet"), "label": "label"},
        model={"builder": "tabular"},
        trainer={"steps": 600},
    )
    assert summary["blessed"], summary["gate"]
    _check_serving_fills_missing_values(summary)
    with tf.io.TFRecordWriter(str(tmp_path / "odd.tfrecord.gz"), options="GZIP") as writer:
        for row in table.to_pylist():
            writer.write(_example({key: value for key, value in row.items() if value is not None}))
    summary = _run(
        tmp_path / "tfrecord",
        dataset={"source": "tfrecord", "path": str(tmp_path / "odd.tfrecord.gz"), "label": "label"},
        trainer={"kind": "premade", "steps": 600},
    )
    assert summary["blessed"], summary["gate"]
    _check_serving_fills_missing_values(summary)
