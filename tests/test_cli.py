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


def test_a_file_with_secrets_is_described_not_echoed(tmp_path):
    """The issue's tries, through the CLI: a file whose first line is no header, /etc/passwd-like content read with
    delimiter ':', a long bad cell. Each is one line; none quotes more than a cell's first 24 characters."""
    (tmp_path / "token.csv").write_text("secret_token_abc123,b\n1,2\n")
    (tmp_path / "passwd.csv").write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/bin/sh\n")
    numbers = "".join(f"{i},{i % 2}\n" for i in range(40))
    (tmp_path / "cell.csv").write_text("x,label\n" + numbers + "SECRET_" + "Z" * 100 + ",1\n")
    tries = {
        "token.csv": (["dataset.label=x"], "token.csv: no label column 'x': the first line has 2 fields and none is"),
        "passwd.csv": (['dataset.delimiter=":"', "dataset.label=x"], "passwd.csv row 1 column 4: the same name as"),
        "cell.csv": (["dataset.label=label"], "row 42 column 'x': 'SECRET_ZZZZZZZZZZZZZZZZZ'… (107 characters)"),
    }
    for name, (settings, expected) in tries.items():
        sets = [
            arg
            for setting in [f"artifact_root={tmp_path}", f"dataset.path={tmp_path / name}", *settings]
            for arg in ("--set", setting)
        ]
        done = _kest("stage", "prepare", "--run-id", name.replace(".", "-"), *sets, cwd=tmp_path)
        assert done.returncode == 2, done.stderr[-2000:]
        (line,) = [line for line in done.stderr.splitlines() if line.startswith("kest: error: ")]
        assert expected in line, line
        assert "Traceback" not in done.stderr
        for secret in ("abc123", "/bin/bash", "root:x", "Z" * 18):
            assert secret not in done.stderr, (name, secret)
