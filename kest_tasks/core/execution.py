"""How a stage runs once: upstream results validated into their types, and an output folder that is trusted only
once its completion marker (`result.json`, written last) is there — locally and on object storage alike."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import ConfigDict, validate_call

from kest_tasks.core import files
from kest_tasks.core.config import PipelineConfig
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
    return PipelineConfig.model_validate(files.read_json(RunLayout(run_uri).config_file))


def run_once(run_uri: str, stage: str, result_type: type[R], produce: Callable[[Path, str], R]) -> R:
    """Run `produce(work, folder)` unless the stage already finished; mark its output complete last.

    `folder` is the stage's folder `<run_uri>/<stage>/` (a local path or gs:// URI); `produce` writes there
    directly (large outputs, streamed) or into `work`, a local scratch folder whose files are moved into `folder`
    when `produce` returns. Then the completion marker `result.json` is written with a generation precondition
    (only if absent). A retry after success returns the marked result without redoing the work; a retry after a
    failure (or after a kill) removes the unmarked leftovers and starts clean. No rename: object stores work too.
    """
    folder = RunLayout(run_uri).stage_dir(stage)
    marker = files.join(folder, RESULT_FILE)
    if files.exists(marker):
        log.info("%s: already done in %s, reusing its result", stage, folder)
        return result_type.model_validate(files.read_json(marker))
    leftovers = files.list_files(folder)
    if leftovers:
        log.info("%s: removing %d file(s) an unfinished attempt left in %s", stage, len(leftovers), folder)
        files.remove_tree(folder)
    # Scratch beside a local run folder, so its files are renamed into place rather than copied.
    near = None if files.is_gcs(folder) else files.local_path(folder).parent
    if near is not None:
        near.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{stage}-work-", dir=near) as scratch:
        try:
            result = produce(Path(scratch), folder)
            files.move_tree(Path(scratch), folder)
        except BaseException:
            with contextlib.suppress(Exception):  # best effort (storage may be down): a retry cleans up anyway
                files.remove_tree(folder)
            raise
    if not files.write_json(marker, result.model_dump(mode="json"), if_absent=True):
        log.warning("%s: another attempt finished first in %s; using its result", stage, folder)
        return result_type.model_validate(files.read_json(marker))
    return result


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """A subprocess's preexec_fn: Linux sends it SIGTERM when the process that started it dies (kill -9 included).
    A stage process dies with its task; a local Ray head with its driver."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
