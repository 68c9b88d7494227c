"""P1: CSV → TFRecords throughput of kest's prepare, on 1M rows × 20 floats + label.

- P1: uncompressed, vs a naive loop — what most pipelines hand-write: csv.reader, one tf.train.Example per row,
  TFRecordWriter.write (gzip costs the same zlib time in either and would hide the difference). kest's prepare
  also infers statistics and the schema and hash-splits, which the baseline does not.
- P1-parse: the same prepare vs pyarrow's CSV parse of the file alone (no statistics, no records): the limit.
- P1-gzip: prepare with its default compression on every core vs the same pinned to one core.
- P1-default: prepare with its default settings (GZIP, its default level) vs prepare uncompressed.

Timings are the best of REPEATS (5) runs, alternating the compared settings, so a noisy neighbour on a shared
machine slows both sides alike.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from bench.common import entry
from kest_tasks.core.config import DatasetConfig
from kest_tasks.orchestration.assets import bundled_config

ROWS = int(os.environ.get("KEST_BENCH_P1_ROWS", "1000000"))
# The naive loop runs ~20k rows/s here: its rate is measured on the file's first NAIVE_ROWS rows.
NAIVE_ROWS = min(ROWS, int(os.environ.get("KEST_BENCH_P1_NAIVE_ROWS", "200000")))
FEATURES = 20
DEFAULT_LEVEL = DatasetConfig.model_fields["compression_level"].default


def write_csv(path: Path, rows: int, seed: int = 0) -> None:
    """rows × 20 float features (4 decimals, like real measurements) + a 3-class integer label."""
    rng = np.random.default_rng(seed)
    header = ",".join([f"f{i:02d}" for i in range(FEATURES)] + ["label"])
    with open(path, "w") as handle:
        handle.write(header + "\n")
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            values = rng.normal(size=(n, FEATURES)).round(4)
            labels = rng.integers(0, 3, size=n)
            lines = np.column_stack([values.astype(str), labels.astype(str)])
            handle.write("\n".join(",".join(row) for row in lines) + "\n")


def naive(csv_path: Path, out: Path, limit: int) -> int:
    """The usual hand-written loop, in its fastest form here (appending into the Example's map is ~3x faster
    than building Feature objects under protobuf's upb backend)."""
    from kest_tasks.core.tfenv import import_tensorflow

    tf = import_tensorflow()
    count = 0
    with open(csv_path, newline="") as handle, tf.io.TFRecordWriter(str(out)) as writer:
        reader = csv.reader(handle)
        header = next(reader)
        for row in reader:
            example = tf.train.Example()
            features = example.features.feature
            for name, value in zip(header[:-1], row[:-1]):
                features[name].float_list.value.append(float(value))
            features["label"].int64_list.value.append(int(row[-1]))
            writer.write(example.SerializeToString())
            count += 1
            if count == limit:
                break
    return count


def kest_prepare(csv_path: Path, work: Path, compression: str | None = "NONE") -> int:
    """Rows prepared; `compression=None` keeps the default setting."""
    from kest_tasks.core.config import load_config
    from kest_tasks.core.layout import safe_run_id
    from kest_tasks.data.prepare import prepare

    config = load_config(
        bundled_config(),
        {
            "artifact_root": str(work),
            "dataset": {
                "path": str(csv_path),
                "label": "label",
                **({"compression": compression} if compression else {}),
            },
        },
    )
    return prepare(config, str(work / "runs" / safe_run_id(f"p1-{time.time_ns()}"))).rows


REPEATS = int(os.environ.get("KEST_BENCH_P1_REPEATS", "5"))


def parse_only(csv_path: Path) -> int:
    """pyarrow's multi-threaded CSV parse of the whole file into a table (types inferred): nothing else."""
    import pyarrow.csv as pacsv

    return pacsv.read_csv(csv_path).num_rows


@contextlib.contextmanager
def pinned_to_one_core() -> Iterator[None]:
    """Every thread of this process (and any it starts) on one CPU, then back where they were."""
    before = os.sched_getaffinity(0)
    tasks = [int(tid) for tid in os.listdir("/proc/self/task")]
    for tid in tasks:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, {min(before)})
    try:
        yield
    finally:
        for tid in [int(tid) for tid in os.listdir("/proc/self/task")]:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, before)


def best_rate(rows: int, runs: dict[str, Callable[[], int]]) -> dict[str, float]:
    """rows/s of each run: the best of REPEATS, the runs alternating."""
    best = dict.fromkeys(runs, math.inf)
    for _ in range(REPEATS):
        for name, run in runs.items():
            started = time.perf_counter()
            assert run() == rows
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: rows / seconds for name, seconds in best.items()}


def measure() -> dict[str, dict]:
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="kest-bench-p1-") as work:
        work_path = Path(work)
        csv_path = work_path / "data.csv"
        write_csv(csv_path, ROWS)
        kest_prepare(csv_path, work_path)  # warm-up: imports, page cache

        def default_on_one_core() -> int:
            with pinned_to_one_core():
                return kest_prepare(csv_path, work_path, None)

        rates = best_rate(
            ROWS,
            {
                "none": lambda: kest_prepare(csv_path, work_path),
                "default": lambda: kest_prepare(csv_path, work_path, None),
                "default-one-core": default_on_one_core,
                "parse": lambda: parse_only(csv_path),
            },
        )
        started = time.perf_counter()
        naive_rows = naive(csv_path, work_path / "naive.tfrecord", NAIVE_ROWS)
        naive_seconds = time.perf_counter() - started
    assert naive_rows == NAIVE_ROWS
    data = f"{ROWS} rows × {FEATURES} float features + label"
    return {
        "P1": entry(
            f"CSV → TFRecords, {data}, uncompressed: kest prepare (schema, stats, hash split, shards) vs a naive "
            f"csv.reader + tf.train.Example + TFRecordWriter loop (rate over the first {NAIVE_ROWS} rows)",
            rates["none"],
            naive_rows / naive_seconds,
            "rows/s",
        ),
        "P1-parse": entry(
            f"CSV → TFRecords, {data}, uncompressed: kest prepare vs pyarrow's CSV parse of the file alone (the "
            f"limit: no statistics, split or records), {cores} cores",
            rates["none"],
            rates["parse"],
            "rows/s",
        ),
        "P1-gzip": entry(
            f"prepare, {data}, default compression (GZIP level {DEFAULT_LEVEL}): all {cores} cores vs the same "
            "process pinned to one core",
            rates["default"],
            rates["default-one-core"],
            "rows/s",
        ),
        "P1-default": entry(
            f"prepare, {data}: default settings (GZIP level {DEFAULT_LEVEL}) vs uncompressed, {cores} cores",
            rates["default"],
            rates["none"],
            "rows/s",
        ),
    }
