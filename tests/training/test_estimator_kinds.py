"""Every trainer kind end to end (prepare → train → evaluate → gate → export), classification and regression."""

import json
from pathlib import Path

import pytest

from kest_tasks.core import layout, stages
from kest_tasks.core.config import ConfigError
from kest_tasks.orchestration.runner import configure, run_stage
from tests.helpers import IRIS_CONFIG, REPO, iris_overrides, regression_csv, run_iris, stage_file

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("premade", ["linear", "dnn", "dnn_linear"])
def test_premade_classifiers_on_iris(tmp_path, premade):
    summary = run_iris(
        tmp_path,
        trainer={"kind": "premade", "premade": {"type": premade}, "steps": 300},
        gate={"thresholds": {"accuracy": {"lower": 0.7}}},
    )
    assert summary["blessed"] and summary["test_metrics"]["accuracy"] >= 0.7
    assert Path(summary["published_model"], "saved_model.pb").exists()


def test_premade_dnn_regression_with_string_features(tmp_path):
    data = regression_csv(tmp_path / "prices.csv")
    summary = run_iris(
        tmp_path,
        dataset={"path": str(data), "label": "price"},
        trainer={"kind": "premade", "premade": {"type": "dnn", "hidden_units": [32]}, "steps": 1500},
        model={"learning_rate": 0.05},
        thresholds={"rmse": {"upper": 20}},
    )
    schema = json.loads(stage_file(summary["run_uri"], stages.PREPARE, layout.SCHEMA_FILE).read_text())
    assert schema["label"]["kind"] == "regression"
    assert summary["blessed"], summary["gate"]


def test_keras_tabular_regression(tmp_path):
    data = regression_csv(tmp_path / "prices.csv")
    summary = run_iris(
        tmp_path,
        dataset={"path": str(data), "label": "price"},
        model={"builder": "tabular", "learning_rate": 0.05},
        trainer={"steps": 1500},
        thresholds={"mae": {"upper": 40}},
    )
    assert summary["blessed"], summary["gate"]


def test_custom_model_fn_from_the_examples_folder(tmp_path):
    summary = run_iris(
        tmp_path,
        trainer={"kind": "model_fn", "model_fn": "custom_model_fn:model_fn", "steps": 300},
        model={"code_dir": str(REPO / "examples")},
    )
    assert summary["blessed"] and summary["test_metrics"]["accuracy"] >= 0.9


def test_custom_model_fn_regression(tmp_path):
    data = regression_csv(tmp_path / "prices.csv")
    summary = run_iris(
        tmp_path,
        dataset={"path": str(data), "label": "price"},
        trainer={"kind": "model_fn", "model_fn": "custom_model_fn:model_fn", "steps": 1500},
        model={"code_dir": str(REPO / "examples"), "learning_rate": 0.05},
        thresholds={"mae": {"upper": 40}},
    )
    assert summary["blessed"], summary["gate"]


def test_boosted_trees_is_refused_with_the_reason(tmp_path):
    run_uri = configure(
        IRIS_CONFIG, iris_overrides(tmp_path, trainer={"kind": "premade", "premade": {"type": "boosted_trees"}}), "bt"
    ).run_uri
    run_stage("prepare", run_uri)
    run_stage("build", run_uri)
    with pytest.raises(
        ConfigError,
        match=r"'boosted_trees': BoostedTreesClassifier/Regressor are not in "
        r"tensorflow-estimator 2.15",
    ):
        run_stage("train", run_uri)


def test_user_builder_and_its_errors(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "my_models.py").write_text(
        "import tensorflow as tf\n"
        "def compiled(schema, config):\n"
        "    inputs = tf.keras.Input(shape=(len(schema.features),), name='x')\n"
        "    model = tf.keras.Model(inputs, tf.keras.layers.Dense(schema.num_classes)(inputs))\n"
        "    model.compile(tf.keras.optimizers.legacy.Adam(0.05),\n"
        "                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=['accuracy'])\n"
        "    return model\n"
        "def uncompiled(schema, config):\n"
        "    inputs = tf.keras.Input(shape=(len(schema.features),), name='x')\n"
        "    return tf.keras.Model(inputs, tf.keras.layers.Dense(schema.num_classes)(inputs))\n"
    )
    model = {"code_dir": str(code)}
    summary = run_iris(
        tmp_path / "ok",
        model={**model, "builder": "my_models:compiled"},
        trainer={"steps": 500},
        gate={"thresholds": {"accuracy": {"lower": 0.6}}},
    )
    assert summary["blessed"], summary["gate"]
    for builder, message in [
        ("my_models:uncompiled", "returned an uncompiled model: call model.compile"),
        ("nope:build", "module 'nope' not found"),
        ("my_models:absent", "my_models has no function 'absent'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            run_iris(tmp_path / builder.replace(":", "-"), model={**model, "builder": builder})


def test_missing_model_fn_fails_at_build(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"trainer.model_fn 'custom_model_fn:nothing': custom_model_fn has no "
        r"function 'nothing'",
    ):
        run_iris(
            tmp_path,
            trainer={"kind": "model_fn", "model_fn": "custom_model_fn:nothing"},
            model={"code_dir": str(REPO / "examples")},
        )
