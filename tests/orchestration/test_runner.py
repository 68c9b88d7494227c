import json

import pytest

from kest_tasks.core import layout
from kest_tasks.core.execution import load_run_config
from kest_tasks.orchestration.runner import configure, format_summary
from tests.helpers import IRIS_CONFIG, iris_overrides


def test_configure_freezes_the_config_for_the_whole_run(tmp_path):
    first = configure(IRIS_CONFIG, iris_overrides(tmp_path, trainer={"steps": 7}), "manual__2026-01-01T00:00:00+00:00")
    assert first.run_uri == str(tmp_path / "artifacts" / layout.RUNS_FOLDER / "manual__2026-01-01T00_00_00_00_00")
    assert load_run_config(first.run_uri).trainer.steps == 7
    # A retry of the same run keeps what the run started with.
    again = configure(IRIS_CONFIG, iris_overrides(tmp_path, trainer={"steps": 9}), "manual__2026-01-01T00:00:00+00:00")
    assert again == first and load_run_config(first.run_uri).trainer.steps == 7
    assert json.loads(open(first.config_uri).read())["model_name"] == "iris"


@pytest.mark.slow
def test_summary_of_the_session_run(iris_run):
    summary = iris_run["summary"]
    text = format_summary(summary)
    assert "accuracy=" in text and "gate: blessed" in text and summary["published_model"] in text
