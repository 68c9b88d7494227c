"""Warm start from the published champion: every kind, both export formats, and the refusals."""

import json
import logging
from pathlib import Path

import pytest

from kest_tasks.core import layout, stages
from kest_tasks.core.config import ConfigError
from kest_tasks.orchestration.runner import configure, run_pipeline, run_stage
from tests.helpers import IRIS_CONFIG, iris_overrides, stage_file

pytestmark = pytest.mark.slow


def _train(tmp_path, export_root: str, run_id: str, **trainer) -> dict:
    """Prepare, build and train on Iris with the champion under `export_root`; return the stage results."""
    overrides = iris_overrides(tmp_path, export={"root": export_root}, trainer={"warm_start": "champion", **trainer})
    run_uri = configure(IRIS_CONFIG, overrides, run_id).run_uri
    run_stage("prepare", run_uri)
    run_stage("build", run_uri)
    trained = run_stage("train", run_uri)
    return {"train": trained, "eval": run_stage("evaluate", run_uri), "run_uri": run_uri}


def _champion(iris_run) -> dict:
    root = Path(iris_run["config"].export.root) / "iris"
    return {
        "export_root": iris_run["config"].export.root,
        "version": json.loads((root / layout.CHAMPION_FILE).read_text())["version"],
    }


@pytest.mark.parametrize("kind", ["keras", "native"])
def test_one_step_from_the_champion_keeps_its_accuracy(tmp_path, iris_run, kind):
    champion = _champion(iris_run)
    warm = _train(tmp_path / "warm", champion["export_root"], "warm", kind=kind, steps=1)
    cold = _train(tmp_path / "cold", champion["export_root"], "cold", kind=kind, steps=1, warm_start="none")
    assert warm["train"]["warm_started_from"] == champion["version"]
    assert cold["train"]["warm_started_from"] is None
    # One Adam step from the champion (test accuracy >= 0.9) stays there; one step from random weights does not.
    assert warm["eval"]["metrics"]["accuracy"] >= 0.9 > cold["eval"]["metrics"]["accuracy"]


def test_native_champion_warm_starts_the_keras_kind(tmp_path):
    models = str(tmp_path / "models")
    first = run_pipeline(
        IRIS_CONFIG, iris_overrides(tmp_path / "first", export={"root": models}, trainer={"kind": "native"}), "first"
    )
    assert first["blessed"]
    warm = _train(tmp_path / "second", models, "second", kind="keras", steps=1)
    assert warm["train"]["warm_started_from"] == Path(first["published_model"]).name
    assert warm["eval"]["metrics"]["accuracy"] >= 0.9


def test_a_retry_keeps_the_champion_it_started_from(tmp_path, iris_run, caplog):
    champion = _champion(iris_run)
    first = _train(tmp_path, champion["export_root"], "retry", steps=20, checkpoint_steps=10)
    stage_file(Path(first["run_uri"]), stages.TRAIN, layout.RESULT_FILE).unlink()
    frozen_file = Path(first["run_uri"]) / layout.CONFIG_FILE
    frozen = json.loads(frozen_file.read_text())
    frozen["trainer"]["steps"] = 30
    frozen_file.write_text(json.dumps(frozen))
    caplog.set_level(logging.INFO)
    resumed = run_stage("train", first["run_uri"])
    assert "resuming from checkpoint" in caplog.text
    assert resumed["global_step"] == 30 and resumed["warm_started_from"] == champion["version"]


def test_no_champion_yet_starts_cold_and_says_so(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    trained = _train(tmp_path, str(tmp_path / "empty-models"), "first-ever", steps=5)["train"]
    assert trained["warm_started_from"] is None
    assert "has no champion yet; starting from initial weights" in caplog.text


@pytest.mark.parametrize(
    "trainer, model",
    [
        ({"kind": "premade", "premade": {"type": "dnn"}}, {}),
        ({"kind": "keras"}, {"builder": "tabular"}),
    ],
)
def test_a_champion_of_another_architecture_is_a_config_error(tmp_path, iris_run, trainer, model):
    champion = _champion(iris_run)
    overrides = iris_overrides(
        tmp_path,
        export={"root": champion["export_root"]},
        model=model,
        trainer={"warm_start": "champion", "steps": 5, **trainer},
    )
    run_uri = configure(IRIS_CONFIG, overrides, "other").run_uri
    run_stage("prepare", run_uri)
    run_stage("build", run_uri)
    with pytest.raises(ConfigError, match=r"^trainer.warm_start: champion .* does not match this model"):
        run_stage("train", run_uri)
