"""The stage registry is the one stage contract: each stage's code takes exactly the inputs the registry names,
typed with the upstream stages' results, and returns its registered result."""

import inspect
import typing

import pytest

from kest_tasks.core import stages
from kest_tasks.core.config import ConfigError, PipelineConfig
from kest_tasks.core.results import StageResult


@pytest.mark.parametrize("spec", stages.STAGES, ids=lambda spec: spec.name)
def test_each_stage_function_matches_its_registry_entry(spec):
    function = inspect.unwrap(spec.function())
    hints = typing.get_type_hints(function)
    parameters = list(inspect.signature(function).parameters)
    assert parameters[:2] == ["config", "run_uri"] and hints["config"] is PipelineConfig
    assert parameters[2:] == list(spec.inputs), "the registry's inputs are the function's, in order"
    for argument, upstream in spec.inputs.items():
        expected = stages.stage(upstream).result
        optional = argument in stages.optional_inputs(spec)
        assert hints[argument] == (expected | None if optional else expected), argument
    assert hints["return"] is spec.result and issubclass(spec.result, StageResult)
    assert spec.folder == spec.name and spec.summary


def test_every_input_comes_from_an_earlier_stage():
    seen: set[str] = set()
    for spec in stages.STAGES:
        assert set(spec.inputs.values()) <= seen, spec.name
        seen.add(spec.name)


def test_the_blessing_rule():
    needing = {spec.name for spec in stages.STAGES if spec.needs_blessing}
    assert needing == {"export", "publish"}
    assert stages.optional_inputs(stages.REPORT) == {"exported"}  # the report is written for unblessed models too
    assert stages.optional_inputs(stages.PUBLISH) == set()
    assert stages.blessing_decision({"blessed": False, "blessing_uri": "b", "checks": [], "reason": "why"}) == (
        False,
        "why",
    )


def test_unknown_stage_and_missing_input_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^unknown stage 'deploy' \(stages: prepare, build, train, evaluate, gate, "):
        stages.stage("deploy")
    with pytest.raises(ConfigError, match=r"^build: no result of prepare for run .*: run the upstream stages"):
        stages.invoke(stages.BUILD, str(tmp_path), {"prepared": None})
    with pytest.raises(ConfigError, match=r"^stage 'train' has not finished in "):
        stages.TRAIN.load(str(tmp_path))
