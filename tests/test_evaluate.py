import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_metrics_cover_the_whole_test_split(iris_run):
    run = Path(iris_run["summary"]["run_uri"])
    written = json.loads((run / "eval" / "metrics.json").read_text())
    prepared = json.loads((run / "data" / "result.json").read_text())
    assert written["examples"] == prepared["split_rows"]["test"]
    assert written["global_step"] == 500
    assert set(written["metrics"]) == {"accuracy", "loss"}
    assert written["metrics"]["accuracy"] >= 0.9
    # Evaluation writes only its own folder, never into training's model_dir.
    assert not (run / "train" / "eval_test").exists()


def test_accuracy_is_over_every_example(iris_run):
    """Accuracy times the example count is a whole number only if every test example was counted."""
    run = Path(iris_run["summary"]["run_uri"])
    written = json.loads((run / "eval" / "metrics.json").read_text())
    correct = written["metrics"]["accuracy"] * written["examples"]
    assert abs(correct - round(correct)) < 1e-4
