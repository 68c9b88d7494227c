"""How a stage runs once: upstream results validated into their types, and an output folder that appears whole
or not at all."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import ConfigDict, validate_call

from kest_tasks.core.config import PipelineConfig
from kest_tasks.core.files import read_json, staged_dir, write_json_atomic
from kest_tasks.core.layout import RESULT_FILE, RunLayout
from kest_tasks.core.results import StageResult

log = logging.getLogger("kest")

R = TypeVar("R", bound=StageResult)
F = TypeVar("F", bound=Callable)


def stage_function(function: F) -> F:
    """Let a stage take its upstream results as the plain dicts XCom hands over, validated into their types."""
    return validate_call(config=ConfigDict(arbitrary_types_allowed=False))(function)


def load_run_config(run_uri: str) -> PipelineConfig:
    """The resolved config frozen in the run folder by the configure step."""
    return PipelineConfig.model_validate(read_json(RunLayout(run_uri).config_file))


def run_once(run_uri: str, stage: str, result_type: type[R], produce: Callable[[Path, Path], R]) -> R:
    """Run `produce(tmp_dir, final_dir)` unless the stage already finished; publish its folder atomically.

    `produce` writes into `tmp_dir`, a temporary folder that becomes `<run_uri>/<stage>/` only when it returns, with
    the result stored beside its output. A retry after success returns the stored result without redoing
    the work; a retry after a failure starts from a clean folder.
    """
    final = RunLayout(run_uri).stage_dir(stage)
    done = final / RESULT_FILE
    if done.exists():
        log.info("%s: already done in %s, reusing its result", stage, final)
        return result_type.model_validate(read_json(done))
    with staged_dir(final) as tmp:
        result = produce(tmp, final)
        write_json_atomic(tmp / RESULT_FILE, result.model_dump(mode="json"))
    return result
