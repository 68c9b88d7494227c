"""P6: peak RSS of prepare on 10M rows vs 100k rows (prepare streams: memory must not grow with the input).

Each size runs in a fresh process that reports its own peak RSS (VmHWM), so imports count the same in both.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from bench.common import entry, probe
from kest_tasks.orchestration.assets import bundled_config

LARGE = int(os.environ.get("KEST_BENCH_P6_ROWS", "10000000"))
SMALL = 100_000
MEDIUM = 1_000_000
FEATURES = 5

_PROBE = """
import json, sys
from kest_tasks.core.config import load_config
from kest_tasks.data.prepare import prepare
config = load_config(sys.argv[1], {"artifact_root": sys.argv[3], "dataset": {
    "path": sys.argv[2], "label": "label", "compression": "NONE", "source": sys.argv[4]}})
rows = prepare(config, sys.argv[3] + "/runs/p6").rows
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over execve from the forking parent (the bench process,
# large after writing the CSV), while VmHWM belongs to this process's own address space.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"rows": rows, "max_rss_mb": peak_kb / 1024}))
"""


def write_csv(path: Path, rows: int) -> None:
    rng = np.random.default_rng(6)
    with open(path, "w") as handle:
        handle.write(",".join([f"f{i}" for i in range(FEATURES)] + ["label"]) + "\n")
        for start in range(0, rows, 500_000):
            n = min(500_000, rows - start)
            values = np.char.mod("%.3f", rng.normal(size=(n, FEATURES)))
            labels = rng.integers(0, 3, size=(n, 1)).astype(str)
            handle.write("\n".join(",".join(row) for row in np.hstack([values, labels])) + "\n")


def write_parquet(path: Path, rows: int) -> None:
    """The same kind of table as write_csv, as Parquet in row groups of 128k rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(6)
    writer = None
    for start in range(0, rows, 500_000):
        n = min(500_000, rows - start)
        columns = {f"f{i}": rng.normal(size=n).round(3) for i in range(FEATURES)}
        table = pa.table({**columns, "label": rng.integers(0, 3, size=n).astype(str)})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=128_000)
    if writer is not None:
        writer.close()


def peak_rss(csv_path: Path | str, work: Path | str, source: str = "csv") -> tuple[int, float]:
    result = probe(_PROBE, str(bundled_config()), str(csv_path), str(work), source)
    return result["rows"], result["max_rss_mb"]


def measure() -> dict[str, dict]:
    with tempfile.TemporaryDirectory(prefix="kest-bench-p6-") as work:
        work_path = Path(work)
        measured = {}
        for rows in (SMALL, MEDIUM, LARGE):
            csv_path = work_path / f"rows-{rows}.csv"
            write_csv(csv_path, rows)
            got, rss = peak_rss(csv_path, work_path / f"work-{rows}")
            assert got == rows
            measured[rows] = rss
            csv_path.unlink()
        parquet = {}
        for rows in (SMALL, LARGE):
            path = work_path / f"rows-{rows}.parquet"
            write_parquet(path, rows)
            got, parquet[rows] = peak_rss(path, work_path / f"parquet-{rows}", "parquet")
            assert got == rows
            path.unlink()
    what = f"peak RSS of prepare on {LARGE} rows vs {{}} rows ({FEATURES} floats + label)"
    return {
        "P6": entry(what.format(SMALL), measured[LARGE], measured[SMALL], "MB"),
        # Memory reaches its steady state (read range, chunk, one pending write per shard) within the first
        # ~1M rows and stays there: this entry shows the flatness beyond that point.
        "P6-1M": entry(what.format(MEDIUM), measured[LARGE], measured[MEDIUM], "MB"),
        "P6-parquet": entry("source: parquet, " + what.format(SMALL), parquet[LARGE], parquet[SMALL], "MB"),
    }
