"""`python -m kest_tasks`: bad input gives one line on stderr and exit code 2, with nothing written."""

import subprocess
import sys

from kest_tasks.core import layout, stages
from tests.helpers import IRIS_CONFIG, stage_file


def _kest(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "kest_tasks", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_bad_config_value(tmp_path):
    done = _kest("run", "--set", f"artifact_root={tmp_path}", "--set", "trainer.steps=lots", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"kest: error: invalid config {IRIS_CONFIG}: trainer.steps: Input should be a valid integer, "
        "unable to parse string as an integer"
    )
    assert not (tmp_path / layout.RUNS_FOLDER).exists()


def test_missing_data_file(tmp_path):
    done = _kest(
        "run",
        "--set",
        f"artifact_root={tmp_path}",
        "--set",
        f"dataset.path={tmp_path}/none.csv",
        "--run-id",
        "r1",
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"kest: error: {tmp_path}/none.csv: file not found"
    assert "Traceback" not in done.stderr
    assert not stage_file(tmp_path / layout.RUNS_FOLDER / "r1", stages.PREPARE).exists()


def test_summary_before_any_run(tmp_path):
    done = _kest("summary", "--set", f"artifact_root={tmp_path}", cwd=tmp_path)
    assert done.returncode == 1 and "no finished run yet" in done.stderr
