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


@pytest.fixture(scope="module")
def published_store(tmp_path_factory):
    """An export root with two (untrained) published versions, v1 champion: form fuzzing reaches the version,
    promotion and output checks."""
    from kest_tasks.core.config import load_config
    from tests.helpers import publish_version

    scratch = tmp_path_factory.mktemp("scoring")
    config = load_config(IRIS_CONFIG, iris_overrides(scratch))
    publish_version(config, scratch / "staged", "v1", {"accuracy": 0.9}, None)
    publish_version(config, scratch / "staged", "v2", {"accuracy": 0.8}, "v1")
    return scratch


def fuzzed_forms(valid: dict, extra_text: list[str]):
    """`valid` with one to three of its fields replaced by anything a triggerer could type (text, path tricks,
    names that exist) — `overrides` by nested override objects."""
    from hypothesis import strategies as st

    from kest_tasks.core.config import PipelineConfig
    from tests.core.test_config_fuzz import TRICKS, overrides_for

    text = st.text(max_size=30) | st.sampled_from([*TRICKS, *extra_text])
    fuzzed = {key: text for key in valid} | {"overrides": overrides_for(PipelineConfig)}
    return st.lists(st.sampled_from(sorted(valid)), min_size=1, max_size=3, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({key: fuzzed[key] for key in keys}).map(lambda change: {**valid, **change})
    )


def _one_line(error: Exception, outcomes: set[str]) -> None:
    assert str(error) and "\n" not in str(error), repr(str(error))
    outcomes.add(str(error).split(":")[0])


def test_any_scoring_form_is_scored_or_one_line(published_store):
    from hypothesis import given

    from kest_tasks.core.errors import KestError
    from kest_tasks.orchestration.runner import scoring_request
    from kest_tasks.serving.batch_score import batch_score
    from tests.core.test_config_fuzz import FUZZ

    (published_store / "input.csv").write_text("sepal_length,sepal_width\n5.1,3.5\n")
    valid = {
        "model": "iris",
        "version": "v1",
        "input": str(published_store / "input.csv"),
        "output": str(published_store / "scores" / "{run_id}-{version}.parquet"),
        "keys": "",
        "config_path": str(IRIS_CONFIG),
        "overrides": iris_overrides(published_store),
    }
    names = ["v1", "v2", "iris", "sepal_length", "a,,b", str(published_store / "nothing.csv"), "/etc/out.parquet"]
    outcomes: set[str] = set()

    @FUZZ
    @given(fuzzed_forms(valid, names))
    def scored_or_one_line(form):
        try:
            batch_score(**scoring_request(form, "manual__fuzz"))  # as the DAG does
        except KestError as error:
            _one_line(error, outcomes)

    scored_or_one_line()
    assert len(outcomes) > 8, outcomes  # the fuzzing reached many different checks, not just the first
    assert not list((published_store / "scores").glob("*"))  # the versions are no SavedModels: nothing was written


def test_any_promotion_form_promotes_or_is_one_line(published_store):
    from hypothesis import given

    from kest_tasks.core.errors import KestError
    from kest_tasks.orchestration.runner import model_config_from_form
    from kest_tasks.registry.promotion import set_champion
    from tests.core.test_config_fuzz import FUZZ

    valid = {
        "model": "iris",
        "version": "v2",
        "reason": "fuzzing",
        "config_path": str(IRIS_CONFIG),
        "overrides": iris_overrides(published_store),
    }
    outcomes: set[str] = set()
    promoted: set[str] = set()

    @FUZZ
    @given(fuzzed_forms(valid, ["v1", "v2", "v3", "iris", " "]))
    def promoted_or_one_line(form):
        try:
            change = set_champion(model_config_from_form(form), form["version"], form["reason"], "fuzz")  # as the DAG
            promoted.add(change["version"])
        except KestError as error:
            _one_line(error, outcomes)

    promoted_or_one_line()
    assert len(outcomes) > 5 and "v2" in promoted and promoted <= {"v1", "v2"}, (outcomes, promoted)
