import json
from pathlib import Path

import pytest

from kest_tasks.core import layout, stages
from tests.helpers import IRIS_CONFIG, binary_csv, iris_overrides, stage_file

pytestmark = pytest.mark.slow


def test_metrics_cover_the_whole_test_split(iris_run):
    run = Path(iris_run["summary"]["run_uri"])
    written = json.loads(stage_file(run, stages.EVALUATE, layout.METRICS_FILE).read_text())
    prepared = stages.PREPARE.load(str(run)).model_dump()
    assert written["examples"] == prepared["split_rows"]["test"]
    assert written["global_step"] == 500
    headline = {key for key in written["metrics"] if "/" not in key}
    assert headline == {"accuracy", "loss", "auc", "precision_macro", "recall_macro", "f1_macro"}
    assert {f"recall/{name}" for name in written["classes"]} <= set(written["metrics"])
    assert sum(map(sum, written["confusion_matrix"])) == written["examples"]
    assert written["metrics"]["accuracy"] >= 0.9
    # Evaluation writes only its own folder, never into training's model_dir.
    assert not stage_file(run, stages.TRAIN, "eval_test").exists()


def test_accuracy_is_over_every_example(iris_run):
    """Accuracy times the example count is a whole number only if every test example was counted."""
    run = Path(iris_run["summary"]["run_uri"])
    written = json.loads(stage_file(run, stages.EVALUATE, layout.METRICS_FILE).read_text())
    correct = written["metrics"]["accuracy"] * written["examples"]
    assert abs(correct - round(correct)) < 1e-4


def test_keras_evaluation_matches_model_evaluate(iris_run):
    """The loss and accuracy kest computes from the model's outputs are Keras' own on the same rows."""
    from kest_tasks.data.schema import Schema
    from kest_tasks.data.tfdata import read_examples
    from kest_tasks.training.native import restored_model

    run = Path(iris_run["summary"]["run_uri"])
    written = json.loads(stage_file(run, stages.EVALUATE, layout.METRICS_FILE).read_text())
    prepared = stages.PREPARE.load(str(run))
    built = stages.BUILD.load(str(run))
    model = restored_model(built, written["checkpoint"])
    data = read_examples(prepared.files["test"], Schema.of(prepared), prepared.compression, 64, plan=built.input_plan)
    keras = model.evaluate(data, return_dict=True, verbose=0)
    assert written["metrics"]["loss"] == pytest.approx(keras["loss"], rel=1e-4)
    assert written["metrics"]["accuracy"] == pytest.approx(keras["accuracy"], abs=1e-6)


def test_slices_by_a_string_feature(tmp_path):
    from kest_tasks.orchestration.runner import run_pipeline

    data = binary_csv(tmp_path / "loans.csv")
    summary = run_pipeline(
        IRIS_CONFIG,
        iris_overrides(
            tmp_path,
            dataset={"path": str(data), "label": "approved"},
            model={"builder": "tabular"},
            trainer={"kind": "native", "steps": 50},
            evaluate={"slice_by": ["region", "income"]},
            gate={"mode": "always_bless"},
        ),
        "sliced",
    )
    written = json.loads(stage_file(summary["run_uri"], stages.EVALUATE, layout.METRICS_FILE).read_text())
    assert set(written["slices"]) == {"region=east", "region=west"}  # income has too many values to slice by
    assert sum(s["examples"] for s in written["slices"].values()) == written["examples"]


def test_slicing_by_an_unknown_feature_is_a_config_error(iris_run):
    from kest_tasks.core.config import ConfigError
    from kest_tasks.evaluation.evaluate import evaluate

    run = Path(iris_run["summary"]["run_uri"])
    config = iris_run["config"].model_copy(deep=True)
    config.evaluate.slice_by = ["colour"]
    upstream = {
        argument: stages.stage(upstream).load(str(run)) for argument, upstream in stages.EVALUATE.inputs.items()
    }
    with pytest.raises(
        ConfigError,
        match=r"^evaluate.slice_by: no feature 'colour' \(features: sepal_length, "
        r"sepal_width, petal_length, petal_width\)$",
    ):
        evaluate(config, str(run), **upstream)
