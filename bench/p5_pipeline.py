"""P5: wall time of the default Iris pipeline via `airflow dags test` vs the bare seed tutorial script.

Both run as fresh processes (imports included), one after the other in this run, best of N each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, entry, timed_command

REPEATS = int(os.environ.get("KEST_BENCH_REPEATS", "2"))


def measure() -> dict[str, dict]:
    python = Path(sys.executable)
    airflow = python.with_name("airflow")
    with tempfile.TemporaryDirectory(prefix="kest-bench-p5-") as work:
        work_path = Path(work)
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(work_path / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
        subprocess.run([str(airflow), "db", "migrate"], env=env, check=True, capture_output=True)
        kest_times, baseline_times = [], []
        for attempt in range(REPEATS):
            overrides = {
                "artifact_root": str(work_path / f"artifacts-{attempt}"),
                "export": {"root": str(work_path / f"models-{attempt}")},
            }
            conf = json.dumps({"overrides": overrides})
            kest_times.append(timed_command([str(airflow), "dags", "test", "kest_pipeline", "--conf", conf], env=env))
            seed_script = [str(python), str(REPO / "bench" / "seed_tutorial.py"), str(work_path / f"seed-{attempt}")]
            baseline_times.append(timed_command(seed_script, env=env))
    return {
        "P5": entry(
            "default Iris pipeline via `airflow dags test` (all 11 tasks: export with infra validation, report, "
            "publish) vs the bare seed tutorial script (import, convert, train 500 steps, evaluate); "
            f"wall time, best of {REPEATS}",
            min(kest_times),
            min(baseline_times),
            "s",
        )
    }
