"""P4: import time of the DAG file over a bare `import airflow.sdk` (target: at most 0.1 s more, no TensorFlow).

Each measurement is a fresh interpreter timing its own imports with perf_counter, best of N; the DAG file is
loaded the way the DAG processor loads it (by path), after `import airflow.sdk`.
"""
from __future__ import annotations

import os
import subprocess
import sys

from bench.common import REPO, entry

REPEATS = int(os.environ.get("KEST_BENCH_P4_REPEATS", "7"))

PROBE = """
import time, importlib.util, sys
started = time.perf_counter()
import airflow.sdk
sdk = time.perf_counter() - started
if {load_dag}:
    spec = importlib.util.spec_from_file_location("kest_pipeline_dag", {dag_file!r})
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
assert "tensorflow" not in sys.modules
print(time.perf_counter() - started, sdk)
"""


def _seconds(load_dag: bool) -> float:
    probe = PROBE.format(load_dag=load_dag, dag_file=str(REPO / "dags" / "kest_pipeline.py"))
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env).stdout
    return float(out.split()[-2])


def measure() -> dict[str, dict]:
    bare = min(_seconds(False) for _ in range(REPEATS))
    with_dag = min(_seconds(True) for _ in range(REPEATS))
    return {"P4": entry(
        f"import of dags/kest_pipeline.py after `import airflow.sdk` vs the bare `import airflow.sdk` (fresh "
        f"interpreters, best of {REPEATS}); the target is at most 0.1 s more ({with_dag - bare:.3f} s more here), "
        "TensorFlow never imported", with_dag, bare, "s")}
