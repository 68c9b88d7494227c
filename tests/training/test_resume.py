"""Fault recovery: training killed with SIGKILL mid-run resumes from its last checkpoint on retry."""

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kest_tasks.core import layout, stages
from kest_tasks.orchestration.runner import configure, run_stage
from tests.helpers import IRIS_CONFIG, iris_overrides, stage_file

pytestmark = pytest.mark.slow


def _recorded_step(model_dir: Path) -> int:
    """The step of the checkpoint the state file names: what a restart resumes from. (A checkpoint's files appear
    before the state file names it; a kill in between leaves the previous one recorded.)"""
    state = model_dir / "checkpoint"
    found = re.search(r'^model_checkpoint_path: ".*-(\d+)"', state.read_text() if state.exists() else "", re.M)
    return int(found.group(1)) if found else -1


@pytest.mark.parametrize("kind", ["keras", "native"])
def test_kill_9_then_retry_resumes_at_the_checkpoint_and_stops_at_the_configured_step(tmp_path, caplog, kind):
    overrides = iris_overrides(tmp_path, trainer={"kind": kind, "steps": 3000, "checkpoint_steps": 100})
    run_uri = configure(IRIS_CONFIG, overrides, "kill-test").run_uri
    run_stage("prepare", run_uri)
    run_stage("build", run_uri)
    model_dir = stage_file(run_uri, stages.TRAIN)
    training = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kest_tasks",
            "stage",
            "train",
            "--run-id",
            "kill-test",
            "--config",
            str(IRIS_CONFIG),
            "--set",
            f"artifact_root={tmp_path / 'artifacts'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if _recorded_step(model_dir) >= 300:
                break
            assert training.poll() is None, "training ended before it could be killed"
            time.sleep(0.1)
        else:
            pytest.fail("no checkpoint at step >= 300 within 240 s")
    finally:
        training.send_signal(signal.SIGKILL)
        training.wait()
    assert training.returncode == -signal.SIGKILL
    from kest_tasks.core.tfenv import import_tensorflow

    # What a restart will see: the checkpoint the state file names (a save cut short by the kill is not it).
    killed_at = int(import_tensorflow().train.latest_checkpoint(str(model_dir)).rsplit("-", 1)[1])
    assert 300 <= killed_at < 3000
    assert not (model_dir / layout.RESULT_FILE).exists()

    caplog.set_level(logging.INFO)
    result = run_stage("train", run_uri)
    assert result["global_step"] == 3000 and result["checkpoint"].endswith("model.ckpt-3000")
    resumed = [r.getMessage() for r in caplog.records if "resuming from checkpoint" in r.getMessage()]
    assert resumed and resumed[0].endswith(f"model.ckpt-{killed_at}")
