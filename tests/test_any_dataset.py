"""Datasets as users bring them, end to end for every trainer kind: odd column names, missing values, Parquet and
TFRecord inputs, standardised regression targets, class weights. Every exported model is queried with a missing
value and must answer as if the training statistic had been sent."""
import json
import random
from pathlib import Path

import numpy as np
import pytest

from kest_tasks.config import ConfigError
from kest_tasks.pipeline import configure, run_pipeline, run_stage
from tests.conftest import IRIS_CONFIG, REPO, iris_overrides

pytestmark = pytest.mark.slow

ODD = ["sepal length (cm)", "1st phenols", "Magnesium mg/L", "größe", "a-b", "a_b"]
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
        rows.append(cells + [colour, label])
    return rows


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.write_text("\n".join([",".join(header)] + [",".join(row) for row in rows]) + "\n")
    return path


def _run(tmp_path, **sections):
    sections.setdefault("gate", {"thresholds": {"accuracy": {"lower": 0.8}}})
    return run_pipeline(IRIS_CONFIG, iris_overrides(tmp_path, **sections), "any")


def _saved_model(summary):
    import tensorflow as tf

    return tf.saved_model.load(str(Path(summary["run_uri"], "export", "saved_model")))


def _example(values: dict):
    import tensorflow as tf

    feature = {}
    for key, value in values.items():
        if isinstance(value, str):
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        else:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _check_serving_fills_missing_values(summary, text_column=True):
    """serving_default takes the TensorFlow names (original ones where they are identifiers); a NaN there, or a key
    absent from a predict_examples tf.Example, answers exactly as the training split's mean does."""
    import tensorflow as tf

    schema = json.loads(Path(summary["run_uri"], "data", "schema.json").read_text())
    keys = {f["name"]: f["tf_name"] for f in schema["features"]}
    assert keys["sepal length (cm)"] == "sepal_length_cm" and keys["a-b"] == "a_b_2" and keys["a_b"] == "a_b"
    loaded = _saved_model(summary)
    serving = loaded.signatures["serving_default"]
    assert sorted(serving.structured_input_signature[1]) == sorted(keys.values())
    row = {f["name"]: 0.3 for f in schema["features"] if f["type"] != "string"}
    if text_column:
        row["colour name"] = "red"
    fill = {f["name"]: f["fill"] for f in schema["features"]}

    def serve(values):
        tensors = {keys[name]: tf.constant([value], tf.string if isinstance(value, str) else tf.float32)
                   for name, value in values.items()}
        return {name: value.numpy() for name, value in serving(**tensors).items()}

    with_fill = serve({**row, "1st phenols": fill["1st phenols"]})
    with_nan = serve({**row, "1st phenols": float("nan")})
    np.testing.assert_allclose(with_nan["probabilities"], with_fill["probabilities"], rtol=1e-6)
    examples = loaded.signatures["predict_examples"]
    absent = {name: value for name, value in row.items() if name != "1st phenols"}
    from_examples = examples(examples=tf.constant([_example(absent)]))
    np.testing.assert_allclose(from_examples["probabilities"].numpy(), with_fill["probabilities"], rtol=1e-6)
    assert abs(float(fill["1st phenols"]) - 0.0) < 0.2 and fill["1st phenols"] != 0.3


@pytest.mark.parametrize("trainer, model", [
    ({"kind": "keras"}, {"builder": "tabular"}),
    ({"kind": "premade", "premade": {"type": "dnn"}}, {}),
    ({"kind": "premade", "premade": {"type": "linear"}}, {}),
    (MODEL_FN, {"code_dir": str(REPO / "examples")}),
    ({"kind": "native"}, {"builder": "tabular"}),
], ids=["keras-tabular", "premade-dnn", "premade-linear", "model_fn", "native-tabular"])
def test_odd_headers_and_missing_values_for_every_kind(tmp_path, trainer, model):
    data = _write_csv(tmp_path / "odd.csv", [f'"{name}"' if "," in name else name for name in ODD]
                      + ["colour name", "label"], _odd_rows())
    summary = _run(tmp_path, dataset={"path": str(data), "label": "label"},
                   trainer={**trainer, "steps": 600}, model={"learning_rate": 0.01, **model})
    assert summary["blessed"], summary["gate"]
    assert summary["test_metrics"]["accuracy"] >= 0.8
    _check_serving_fills_missing_values(summary)
    schema = json.loads(Path(summary["run_uri"], "data", "schema.json").read_text())
    assert {f["name"]: f["tf_name"] for f in schema["features"]}["colour name"] == "colour_name"
    report = Path(summary["run_uri"], "report", "report.html").read_text()
    assert "sepal_length_cm" in report and "TensorFlow name" in report


def test_the_iris_builder_stacks_odd_numeric_columns(tmp_path):
    rows = [row[:len(ODD)] + [row[-1]] for row in _odd_rows()]
    data = _write_csv(tmp_path / "odd.csv", ODD + ["label"], rows)
    summary = _run(tmp_path, dataset={"path": str(data), "label": "label"}, trainer={"steps": 600})
    assert summary["blessed"], summary["gate"]
    _check_serving_fills_missing_values(summary, text_column=False)
