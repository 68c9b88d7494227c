"""publish: a blessed export becomes a version in the model store and, if it still beats the champion, champion."""

import json
import shutil
from pathlib import Path

import pytest

from kest_tasks.core import layout, stages
from kest_tasks.registry import publish as publish_module
from kest_tasks.registry.publish import PublishError, publish

pytestmark = pytest.mark.slow


def _results(iris_run):
    run = Path(iris_run["summary"]["run_uri"])
    exported = stages.EXPORT.load(str(run))
    blessing = stages.GATE.load(str(run))
    evaluated = stages.EVALUATE.load(str(run))
    reported = stages.REPORT.load(str(run))
    return run, exported, blessing, evaluated, reported


def test_published_layout_and_champion(iris_run):
    published = Path(iris_run["summary"]["published_model"])
    assert published.parent == iris_run["root"] / "models" / "iris"
    assert (published / layout.SAVED_MODEL_FILE).exists() and (published / "variables").is_dir()
    champion = json.loads((published.parent / layout.CHAMPION_FILE).read_text())
    assert champion["model_uri"] == str(published) and champion["version"] == published.name
    assert champion["metrics"]["accuracy"] >= 0.9
    history = sorted((published.parent / layout.CHAMPION_HISTORY_FOLDER).glob("*.json"))
    assert [json.loads(entry.read_text())["version"] for entry in history] == [published.name]


def test_republish_is_idempotent(iris_run):
    run, exported, blessing, evaluated, reported = _results(iris_run)
    config = iris_run["config"]
    again = publish(config, str(run), exported, blessing, evaluated, reported)
    assert again.model_uri == iris_run["summary"]["published_model"]
    history = Path(again.model_uri).parent / layout.CHAMPION_HISTORY_FOLDER
    assert again.champion and len(list(history.glob("*.json"))) == 1


def test_a_version_is_never_overwritten_by_another_run(iris_run, monkeypatch):
    run, exported, blessing, evaluated, reported = _results(iris_run)
    config = iris_run["config"]
    version = Path(iris_run["summary"]["published_model"]).name
    # Another run whose id hashes differently but claims the same version folder.
    other = run.parent / "other-run"
    shutil.copytree(run, other, dirs_exist_ok=True)
    monkeypatch.setattr(publish_module, "version_name", lambda exported, run_uri: version)
    with pytest.raises(PublishError, match="already holds a model from another run"):
        publish(config, str(other), exported, blessing, evaluated, reported)


def test_unblessed_model_is_refused(iris_run):
    run, exported, blessing, evaluated, reported = _results(iris_run)
    refused = blessing.model_copy(update={"blessed": False, "reason": "not blessed: x"})
    with pytest.raises(PublishError, match=r"not blessed \(not blessed: x\)"):
        publish(iris_run["config"], str(run), exported, refused, evaluated, reported)
