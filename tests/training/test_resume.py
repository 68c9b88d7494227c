"""Fault recovery: training killed with SIGKILL mid-run resumes from its last checkpoint on retry."""

import re
import signal
import subprocess
import sys
import time

import pytest

from kest_tasks.core import files, layout, stages
from kest_tasks.core.layout import RunLayout
from kest_tasks.orchestration.runner import configure, run_stage
from tests.helpers import IRIS_CONFIG, stage_process

pytestmark = pytest.mark.slow


def _recorded_step(model_dir: str) -> int:
    """The step of the checkpoint the state file names: what a restart resumes from. (A checkpoint's files appear
    before the state file names it; a kill in between leaves the previous one recorded.)"""
    state = files.join(model_dir, "checkpoint")
    text = files.read_bytes(state).decode() if files.exists(state) else ""
    found = re.search(r'^model_checkpoint_path: ".*-(\d+)"', text, re.M)
    return int(found.group(1)) if found else -1


@pytest.mark.parametrize(
    ("kind", "where"), [("keras", "local"), ("native", "local"), ("keras", "gs")], ids=["keras", "native", "keras-gs"]
)
def test_kill_9_then_retry_resumes_at_the_checkpoint_and_stops_at_the_configured_step(
    request, tmp_path, monkeypatch, kind, where
):
    """A checkpoint in the model_dir (local, or gs:// through TensorFlow's own GCS filesystem) survives SIGKILL; the
    retry (another process, as on another worker) resumes from it."""
    if where == "gs":
        request.getfixturevalue("tf_gcs")
    root = "gs://kest-runs/kill" if where == "gs" else str(tmp_path / "artifacts")
    # Through the emulator each checkpoint costs ~2 s of requests: fewer of them on gs://.
    steps, every = (600, 100) if where == "gs" else (3000, 100)
    overrides = {"artifact_root": root, "trainer": {"kind": kind, "steps": steps, "checkpoint_steps": every}}
    run_uri = configure(IRIS_CONFIG, overrides, "kill-test").run_uri
    run_stage("prepare", run_uri)
    run_stage("build", run_uri)
    model_dir = RunLayout(run_uri).stage_dir(stages.TRAIN.folder)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    training = subprocess.Popen(
        [sys.executable, "-m", "kest_tasks", "stage", "train", "--run", run_uri],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if _recorded_step(model_dir) >= 2 * every:
                break
            assert training.poll() is None, "training ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail(f"no checkpoint at step >= {2 * every} within 240 s")
    finally:
        training.send_signal(signal.SIGKILL)
        training.wait()
    assert training.returncode == -signal.SIGKILL
    # What a restart will see: the checkpoint the state file names (a save cut short by the kill is not it).
    killed_at = _recorded_step(model_dir)
    assert 2 * every <= killed_at < steps
    assert not files.exists(files.join(model_dir, layout.RESULT_FILE))

    result, log = stage_process("train", run_uri)  # the retry, as on another worker
    assert result["global_step"] == steps and result["checkpoint"] == f"{model_dir}/model.ckpt-{steps}"
    resumed = [line for line in log.splitlines() if "resuming from checkpoint" in line]
    assert resumed and resumed[0].endswith(f"{model_dir}/model.ckpt-{killed_at}")
