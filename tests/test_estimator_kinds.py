"""Every trainer kind end to end (prepare → train → evaluate → gate → export), classification and regression."""
import json
import random
from pathlib import Path

import pytest
import yaml

from kest_tasks.config import ConfigError
from kest_tasks.pipeline import configure, run_pipeline, run_stage
from tests.conftest import IRIS_CONFIG, REPO, iris_overrides

pytestmark = pytest.mark.slow


def _regression_csv(path: Path) -> Path:
    rng = random.Random(3)
    lines = ["size,rooms,area,price"]
    for _ in range(300):
        size, rooms, area = rng.uniform(30, 200), rng.randint(1, 6), rng.choice(["north", "south", "centre"])
        price = 2.0 * size + 10 * rooms + {"north": 0, "south": 20, "centre": 60}[area] + rng.gauss(0, 5)
        lines.append(f"{size:.1f},{rooms},{area},{price:.2f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(tmp_path, thresholds=None, **sections):
    """Run the whole pipeline on iris.yaml with overrides; `thresholds` replaces the gate's (not merged)."""
    config_file = IRIS_CONFIG
    if thresholds is not None:
        data = yaml.safe_load(IRIS_CONFIG.read_text())
        data["gate"]["thresholds"] = thresholds
        data["dataset"]["path"] = str(REPO / "data" / "iris.csv")
        config_file = tmp_path / "config.yaml"
        tmp_path.mkdir(parents=True, exist_ok=True)
        config_file.write_text(yaml.safe_dump(data))
    return run_pipeline(config_file, iris_overrides(tmp_path, **sections), "kinds")


@pytest.mark.parametrize("premade", ["linear", "dnn", "dnn_linear"])
def test_premade_classifiers_on_iris(tmp_path, premade):
    summary = _run(tmp_path, trainer={"kind": "premade", "premade": {"type": premade}, "steps": 300},
                   gate={"thresholds": {"accuracy": {"lower": 0.7}}})
    assert summary["blessed"] and summary["test_metrics"]["accuracy"] >= 0.7
    assert Path(summary["published_model"], "saved_model.pb").exists()


def test_premade_dnn_regression_with_string_features(tmp_path):
    data = _regression_csv(tmp_path / "prices.csv")
    summary = _run(tmp_path, dataset={"path": str(data), "label": "price"},
                   trainer={"kind": "premade", "premade": {"type": "dnn", "hidden_units": [32]}, "steps": 1500},
                   model={"learning_rate": 0.05}, thresholds={"rmse": {"upper": 20}})
    schema = json.loads(Path(summary["run_uri"], "data", "schema.json").read_text())
    assert schema["label"]["kind"] == "regression"
    assert summary["blessed"], summary["gate"]


def test_keras_tabular_regression(tmp_path):
    data = _regression_csv(tmp_path / "prices.csv")
    summary = _run(tmp_path, dataset={"path": str(data), "label": "price"}, model={"builder": "tabular",
                   "learning_rate": 0.05}, trainer={"steps": 1500}, thresholds={"mae": {"upper": 40}})
    assert summary["blessed"], summary["gate"]


def test_custom_model_fn_from_the_examples_folder(tmp_path):
    summary = _run(tmp_path, trainer={"kind": "model_fn", "model_fn": "custom_model_fn:model_fn", "steps": 300},
                   model={"code_dir": str(REPO / "examples")})
    assert summary["blessed"] and summary["test_metrics"]["accuracy"] >= 0.9


def test_custom_model_fn_regression(tmp_path):
    data = _regression_csv(tmp_path / "prices.csv")
    summary = _run(tmp_path, dataset={"path": str(data), "label": "price"},
                   trainer={"kind": "model_fn", "model_fn": "custom_model_fn:model_fn", "steps": 1500},
                   model={"code_dir": str(REPO / "examples"), "learning_rate": 0.05}, thresholds={"mae": {"upper": 40}})
    assert summary["blessed"], summary["gate"]


def test_boosted_trees_is_refused_with_the_reason(tmp_path):
    run_uri = configure(IRIS_CONFIG, iris_overrides(tmp_path, trainer={"kind": "premade",
                        "premade": {"type": "boosted_trees"}}), "bt").run_uri
    run_stage("prepare", run_uri)
    run_stage("build", run_uri)
    with pytest.raises(ConfigError, match=r"'boosted_trees': BoostedTreesClassifier/Regressor are not in "
                                          r"tensorflow-estimator 2.15"):
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
    summary = _run(tmp_path / "ok", model={**model, "builder": "my_models:compiled"}, trainer={"steps": 500},
                   gate={"thresholds": {"accuracy": {"lower": 0.6}}})
    assert summary["blessed"], summary["gate"]
    for builder, message in [("my_models:uncompiled", "returned an uncompiled model: call model.compile"),
                             ("nope:build", "module 'nope' not found"),
                             ("my_models:absent", "my_models has no function 'absent'")]:
        with pytest.raises(ConfigError, match=message):
            _run(tmp_path / builder.replace(":", "-"), model={**model, "builder": builder})


def test_missing_model_fn_fails_at_build(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer.model_fn 'custom_model_fn:nothing': custom_model_fn has no "
                                          r"function 'nothing'"):
        _run(tmp_path, trainer={"kind": "model_fn", "model_fn": "custom_model_fn:nothing"},
             model={"code_dir": str(REPO / "examples")})
