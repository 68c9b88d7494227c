"""What every stage shares: its result type, the run folder layout and "done once" output folders."""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, validate_call

from kest_tasks.config import PipelineConfig, check_safe_name
from kest_tasks.storage import local_path, read_json, staged_dir, write_json_atomic

log = logging.getLogger("kest")

RESULT_FILE = "result.json"


class StageResult(BaseModel):
    """A stage's small, JSON-serialisable outcome: exactly what the DAG passes through XCom."""

    model_config = ConfigDict(extra="forbid")


R = TypeVar("R", bound=StageResult)
F = TypeVar("F", bound=Callable)


def stage_function(function: F) -> F:
    """Let a stage take its upstream results as the plain dicts XCom hands over, validated into their types."""
    return validate_call(config=ConfigDict(arbitrary_types_allowed=False))(function)


def safe_run_id(run_id: str) -> str:
    """Turn an Airflow run id (which may hold ':' and '+') into a safe folder name, reversibly enough."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", run_id)
    return check_safe_name(cleaned.lstrip("._-") or "run", "run id")


def run_uri_for(config: PipelineConfig, run_id: str) -> str:
    return str(local_path(config.artifact_root) / "runs" / safe_run_id(run_id))


def stage_dir(run_uri: str, stage: str) -> Path:
    return local_path(run_uri) / stage


def load_run_config(run_uri: str) -> PipelineConfig:
    """The resolved config frozen in the run folder by the configure step."""
    return PipelineConfig.model_validate(read_json(local_path(run_uri) / "config.json"))


def run_once(
    run_uri: str, stage: str, result_type: type[R], produce: Callable[[Path, Path], R]
) -> R:
    """Run `produce(tmp_dir, final_dir)` unless the stage already finished; publish its folder atomically.

    `produce` writes into `tmp_dir`, a temporary folder that becomes `<run_uri>/<stage>/` only when it returns, with
    the result stored beside its output. A retry after success returns the stored result without redoing
    the work; a retry after a failure starts from a clean folder.
    """
    final = stage_dir(run_uri, stage)
    done = final / RESULT_FILE
    if done.exists():
        log.info("%s: already done in %s, reusing its result", stage, final)
        return result_type.model_validate(read_json(done))
    with staged_dir(final) as tmp:
        result = produce(tmp, final)
        write_json_atomic(tmp / RESULT_FILE, result.model_dump(mode="json"))
    return result
