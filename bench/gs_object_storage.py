"""P1-gs, P2-gs, P2-input-gs, P6-gs: runs in object storage (the GCS emulator over real HTTP, TensorFlow's own
gs:// through the loopback TLS proxy, served from another process) against the same work on local disk, in the
same run.

An emulator written in Python on the same two cores is far slower than GCS: these ratios bound what the gs://
code paths cost from below; they show that nothing is copied whole and that memory stays flat.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import REPO, entry
from bench.p1_prepare import write_csv
from bench.p6_memory import peak_rss
from bench.p6_memory import write_csv as write_narrow_csv
from kest_tasks.orchestration.assets import bundled_config

P1_ROWS = int(os.environ.get("KEST_BENCH_P1_GS_ROWS", "300000"))
P2_ROWS, P2_STEPS, BATCH = int(os.environ.get("KEST_BENCH_P2_GS_ROWS", "100000")), 900, 512
LOG_STEPS = P2_STEPS // 3
P6_SMALL, P6_MEDIUM, P6_LARGE = 100_000, 2_000_000, int(os.environ.get("KEST_BENCH_P6_GS_ROWS", "4000000"))


@contextmanager
def emulator(folder: Path) -> Iterator[None]:
    """The emulator and proxy in a child process; this process (and its children) reach them through os.environ."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.gcs_tls", str(folder)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdin is not None
    settings = json.loads(server.stdout.readline())
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _prepare_seconds(csv_uri: str, artifact_root: str, run_id: str) -> float:
    from kest_tasks.core.config import load_config
    from kest_tasks.data.prepare import prepare

    config = load_config(
        bundled_config(),
        {"artifact_root": artifact_root, "dataset": {"path": csv_uri, "label": "label", "compression": "NONE"}},
    )
    started = time.perf_counter()
    rows = prepare(config, f"{artifact_root}/runs/{run_id}").rows
    assert rows == P1_ROWS
    return time.perf_counter() - started


def _train(artifact_root: str, csv_uri: str, run_id: str) -> tuple[float, float]:
    """(the Estimator's steady training examples/s, the input pipeline's examples/s) of a run under the root."""
    from kest_tasks.core import files
    from kest_tasks.core.results import BuildResult, PrepareResult
    from kest_tasks.core.tfenv import import_tensorflow
    from kest_tasks.data.schema import Schema
    from kest_tasks.data.tfdata import read_examples
    from kest_tasks.orchestration.runner import configure, run_stage

    tf = import_tensorflow()
    trainer = {
        "steps": P2_STEPS,
        "batch_size": BATCH,
        "checkpoint_steps": P2_STEPS,
        "log_steps": LOG_STEPS,
        "shuffle_buffer": 10_000,
    }
    overrides = {
        "artifact_root": artifact_root,
        "dataset": {"path": csv_uri, "label": "label", "compression": "NONE"},
        "model": {"builder": "tabular", "params": {"hidden_units": [256, 256], "dropout": 0.0}},
        "trainer": trainer,
    }
    run_uri = configure(bundled_config(), overrides, run_id).run_uri
    prepared = PrepareResult.model_validate(run_stage("prepare", run_uri))
    built = BuildResult.model_validate(run_stage("build", run_uri))
    dataset = read_examples(
        prepared.files["train"],
        Schema.of(prepared),
        "NONE",
        BATCH,
        shuffle_buffer=10_000,
        repeat=True,
        seed=0,
        plan=built.input_plan,
    )
    started = time.perf_counter()
    int(dataset.take(P2_STEPS).reduce(0, lambda count, _: count + 1))
    input_rate = P2_STEPS * BATCH / (time.perf_counter() - started)
    model_dir = run_stage("train", run_uri)["model_dir"]
    rates = {}
    for events in tf.io.gfile.glob(files.join(model_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(events):
            for value in event.summary.value:
                if value.tag == "global_step/sec":
                    rates[event.step] = value.simple_value
    return rates[2 * LOG_STEPS + 1] * BATCH, input_rate


def measure() -> dict[str, dict]:
    from kest_tasks.core import files

    with tempfile.TemporaryDirectory(prefix="kest-bench-gs-") as work:
        work_path = Path(work)
        csv_path = work_path / "data.csv"
        write_csv(csv_path, P1_ROWS)
        train_csv = work_path / "train.csv"
        write_csv(train_csv, P2_ROWS, seed=1)
        narrow = {rows: work_path / f"narrow-{rows}.csv" for rows in (P6_SMALL, P6_MEDIUM, P6_LARGE)}
        for rows, path in narrow.items():
            write_narrow_csv(path, rows)
        with emulator(work_path / "tls"):
            csv_uri = "gs://kest-runs/input/data.csv"
            files.put_file(csv_path, csv_uri)
            files.put_file(train_csv, "gs://kest-runs/input/train.csv")
            for rows, path in narrow.items():
                files.put_file(path, f"gs://kest-runs/input/narrow-{rows}.csv")
            _prepare_seconds(str(csv_path), str(work_path / "local"), "warm-up")
            local_seconds = _prepare_seconds(str(csv_path), str(work_path / "local"), "p1-local")
            gs_seconds = _prepare_seconds(csv_uri, "gs://kest-runs/bench", "p1-gs")

            local_rate, local_input = _train(str(work_path / "local"), str(train_csv), "p2-local")
            gs_rate, gs_input = _train("gs://kest-runs/bench", "gs://kest-runs/input/train.csv", "p2-gs")

            peaks = {}
            for rows in narrow:
                got, peaks[rows] = peak_rss(f"gs://kest-runs/input/narrow-{rows}.csv", f"gs://kest-runs/p6-{rows}")
                assert got == rows
    return {
        "P1-gs": entry(
            f"prepare, {P1_ROWS} rows × 20 floats + label, uncompressed: from a gs:// CSV to a gs:// run folder vs "
            "local to local (rows/s)",
            P1_ROWS / gs_seconds,
            P1_ROWS / local_seconds,
            "rows/s",
        ),
        "P2-gs": entry(
            f"steady-state training examples/s (Estimator, MLP 20-256-256-3, batch {BATCH}) reading TFRecords from "
            "gs:// (TensorFlow's GCS filesystem, model_dir in gs://) vs from local disk",
            gs_rate,
            local_rate,
            "examples/s",
        ),
        "P2-input-gs": entry(
            "input pipeline alone over gs:// TFRecords (read + parse + batch) vs the Estimator's steady training "
            "rate on them: above 1, the bucket is not the bottleneck",
            gs_input,
            gs_rate,
            "examples/s",
        ),
        "P6-gs": entry(
            f"peak RSS of prepare from a gs:// CSV to a gs:// run folder, {P6_LARGE} rows vs {P6_SMALL} rows",
            peaks[P6_LARGE],
            peaks[P6_SMALL],
            "MB",
        ),
        # The 8 MiB read range and one 8 MiB upload chunk per shard (eval and test too) fill up within the first
        # ~2M rows of this table (a 100k-row input never fills them): this entry shows memory flat beyond that.
        "P6-gs-2M": entry(
            f"the same, {P6_LARGE} rows vs {P6_MEDIUM} rows",
            peaks[P6_LARGE],
            peaks[P6_MEDIUM],
            "MB",
        ),
    }
