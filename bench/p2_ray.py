"""P2-ray: steady-state training examples/s of 2 Ray workers (trainer.cluster, one MultiWorkerMirrored job) vs 1
plain process, same MLP 20-256-256-3 and data as P2, batch 512 per worker; plus what starting the local Ray costs.

Both rates come from the chief's `global_step/sec` summaries over the same step window (as P2). With two workers a
step is 2 × 512 examples. This machine has 2 cores: the two workers share them with each other (and Ray), so
the ratio is not a scaling figure; the per-worker rate against the plain process shows what the second worker
and the collectives cost here.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.common import entry
from bench.p2_training import BATCH, LOG_STEPS, ROWS, STEPS, TRAINER, _estimator_window_rate
from bench.runs import mlp_run

WORKERS = 2


def measure() -> dict[str, dict]:
    from kest_tasks.core.config import ClusterConfig
    from kest_tasks.orchestration.runner import run_stage, run_stage_in_fresh_process
    from kest_tasks.training.ray_cluster import local_ray

    os.environ.pop("RAY_ADDRESS", None)
    with tempfile.TemporaryDirectory(prefix="kest-bench-p2-ray-") as work:
        work_path = Path(work)
        trainer = TRAINER
        plain_uri = mlp_run(work_path, ROWS, "p2-plain", trainer)
        ray_uri = mlp_run(work_path, ROWS, "p2-ray", {**trainer, "cluster": {"workers": WORKERS}})
        for run_uri in (plain_uri, ray_uri):
            run_stage("prepare", run_uri)
            run_stage("build", run_uri)
        # Each train stage in a process of its own, as the DAG runs the Ray one (the driver).
        started = time.perf_counter()
        plain = run_stage_in_fresh_process("train", plain_uri)
        plain_seconds = time.perf_counter() - started
        started = time.perf_counter()
        clustered = run_stage_in_fresh_process("train", ray_uri)
        ray_seconds = time.perf_counter() - started
        plain_rate = _estimator_window_rate(Path(plain["model_dir"])) * BATCH
        ray_rate = _estimator_window_rate(Path(clustered["model_dir"])) * BATCH * WORKERS

        started = time.perf_counter()
        with local_ray(ClusterConfig(workers=WORKERS)):
            up = time.perf_counter() - started
        start_stop = time.perf_counter() - started
    model_what = f"MLP 20-256-256-3, batch {BATCH} per worker, steps {LOG_STEPS}-{2 * LOG_STEPS} of {STEPS}"
    return {
        "P2-ray": entry(
            f"steady-state training examples/s, {model_what}: {WORKERS} Ray workers (trainer.cluster, keras via "
            f"model_to_estimator, MultiWorkerMirrored) vs 1 plain process, on this machine's {os.cpu_count()} cores",
            ray_rate,
            plain_rate,
            "examples/s",
        ),
        "P2-ray-per-worker": entry(
            f"the same, per Ray worker ({WORKERS} sharing the cores, collectives each step) vs the plain process",
            ray_rate / WORKERS,
            plain_rate,
            "examples/s",
        ),
        "P2-ray-stage": entry(
            f"wall seconds of the whole train stage ({STEPS} steps, in its own process): with {WORKERS} Ray workers "
            "(start a local Ray, start the workers, train, stop) vs the plain process",
            ray_seconds,
            plain_seconds,
            "s",
        ),
        "P2-ray-start": entry(
            f"wall seconds to start a local Ray on loopback until it answers ({up:.2f} s) and stop it again, vs the "
            "plain process's whole train stage",
            start_stop,
            plain_seconds,
            "s",
        ),
    }
