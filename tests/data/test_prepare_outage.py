"""A storage outage in the middle of a stage: the stage fails with one line, nothing is marked complete or read
half-written, and the retry once storage is back removes the leftovers and completes."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from kest_tasks.core import files, stages
from kest_tasks.core.config import ConfigError
from kest_tasks.orchestration.runner import configure, run_stage
from tests.helpers import IRIS_CONFIG

pytestmark = pytest.mark.slow

ROWS = 400_000


def _wide_csv(path) -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(size=(ROWS, 8)).round(5)
    label = np.where(values[:, 0] + values[:, 1] > 0, "yes", "no")
    with open(path, "w") as out:
        out.write(",".join([f"x{i}" for i in range(8)] + ["label"]) + "\n")
        for row, answer in zip(values, label):
            out.write(",".join(map(str, row)) + f",{answer}\n")


def test_storage_stopped_mid_prepare_fails_in_one_line_and_the_retry_completes(tf_gcs, tmp_path, monkeypatch):
    csv = tmp_path / "wide.csv"
    _wide_csv(csv)
    overrides = {
        "artifact_root": "gs://kest-runs/outage",
        "dataset": {"path": str(csv), "label": "label", "compression": "NONE"},
    }
    run_uri = configure(IRIS_CONFIG, overrides, "outage").run_uri
    folder = f"{run_uri}/prepare"
    monkeypatch.setenv(files.RETRY_SECONDS_ENV, "2")
    storage = tf_gcs.emulator.server._storage
    prepare = subprocess.Popen(
        [sys.executable, "-m", "kest_tasks", "stage", "prepare", "--run", run_uri],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        # Stop storage once a shard's upload is under way (its first 8 MiB chunk has reached the emulator).
        while not any(".part" in upload["name"] for upload in list(storage.resumable.values())):
            assert prepare.poll() is None, "prepare finished before storage could be stopped"
            assert time.monotonic() < deadline, "no shard upload started within 120 s"
            time.sleep(0.05)
        tf_gcs.emulator.pause()
        out, err = prepare.communicate(timeout=120)
    finally:
        if prepare.poll() is None:
            prepare.kill()
        tf_gcs.emulator.resume()
    assert prepare.returncode == 2, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"kest: error: {folder}/.") and ": storage unavailable for 2 s of retries (" in last
    assert "Traceback" not in err

    # Nothing is trusted: no completion marker, and the next stage refuses to read the half-written folder.
    assert stages.PREPARE.stored(run_uri) is None
    with pytest.raises(ConfigError, match=r"^stage 'prepare' has not finished in gs://kest-runs/outage/runs/outage"):
        run_stage("build", run_uri)

    # The retry, with storage back, removes what the first attempt left and completes.
    result = run_stage("prepare", run_uri)
    assert result["rows"] == ROWS and sum(result["split_rows"].values()) == ROWS
    names = files.list_files(folder)
    assert not [name for name in names if name.startswith(".")], names
    assert sorted(name for name in names if name.endswith(".tfrecord")) == [
        f"{split}-00000-of-00001.tfrecord" for split in ("eval", "test", "train")
    ]
