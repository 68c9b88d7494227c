"""P8: batch scoring rows/s (`kest_tasks.serving.batch_score`: the model found and loaded, a CSV read, checked,
scored by the published SavedModel's serving_default, written as Parquet with keys and rejects) vs a bare script
over the same rows: load the SavedModel, read the CSV with pyarrow's multi-threaded reader, call the signature in
blocks of the same size the fast way kest calls it (a tf.function over NumPy columns) — no checks, no output
written. Same process, after one untimed run of each, best of 5, alternating.

P8-in-memory: the same kest run against the bare loop alone, its rows parsed beforehand (untimed): the ceiling when
reading is free.

P8-memory: peak RSS of a fresh process scoring MEMORY_LARGE rows vs one scoring 100k rows (memory must not grow with
the input; each process reports its own VmHWM, so imports and the model count the same in both).

The model is P2's MLP (20 floats → 256 → 256 → 3), trained briefly (scoring speed does not depend on its quality)
and published; the scored file is bench.p1_prepare's synthetic CSV.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import entry, probe
from bench.p1_prepare import FEATURES, write_csv
from kest_tasks.core.config import PipelineConfig
from kest_tasks.orchestration.assets import bundled_config

TRAIN_ROWS = 20_000
SCORE_ROWS = int(os.environ.get("KEST_BENCH_P8_ROWS", "1000000"))
REPEATS = 5
MEMORY_SMALL = 100_000
MEMORY_LARGE = int(os.environ.get("KEST_BENCH_P8_MEMORY_ROWS", "3000000"))

_PROBE = """
import json, sys
from kest_tasks.core.config import load_config
from kest_tasks.serving.batch_score import batch_score
config = load_config(sys.argv[1], {"export": {"root": sys.argv[2]}, "model_name": "mlp",
                                   "dataset": {"path": sys.argv[3], "label": "label"}})
rows = batch_score(config, sys.argv[3], sys.argv[4]).rows
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"rows": rows, "max_rss_mb": peak_kb / 1024}))
"""


def _published_mlp(work: Path) -> PipelineConfig:
    from kest_tasks.core.config import load_config
    from kest_tasks.orchestration.runner import run_pipeline

    write_csv(work / "train.csv", TRAIN_ROWS)
    overrides = {
        "artifact_root": str(work / "artifacts"),
        "export": {"root": str(work / "models")},
        "model_name": "mlp",
        "dataset": {"path": str(work / "train.csv"), "label": "label", "compression": "NONE"},
        "model": {"builder": "tabular", "params": {"hidden_units": [256, 256], "dropout": 0.0}},
        "trainer": {"steps": 100},
        "gate": {"mode": "always_bless"},
    }
    run_pipeline(bundled_config(), overrides, "p8")
    return load_config(bundled_config(), overrides)


def _read_columns(csv_path: Path, schema: object) -> dict[str, np.ndarray]:
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(csv_path)
    return {f.key: table.column(f.name).to_numpy().astype(np.float32) for f in schema.features}  # type: ignore[attr-defined]


def _bare_loop(model_dir: str, columns: dict[str, np.ndarray] | None, block: int, read: tuple = ()) -> float:
    """Rows/s of loading the model, reading the CSV (`read`: path and schema, when `columns` is None), and calling
    its signature over the rows in blocks."""
    from kest_tasks.core.tfenv import import_tensorflow
    from kest_tasks.serving.batch_score import _predictor

    tf = import_tensorflow()
    started = time.perf_counter()
    serving = tf.saved_model.load(model_dir).signatures["serving_default"]
    columns = columns if columns is not None else _read_columns(*read)
    rows = len(next(iter(columns.values())))
    predict = _predictor(tf, serving)
    for start in range(0, rows, block):
        answer = predict({name: values[start : start + block] for name, values in columns.items()})
        answer["probabilities"].numpy()
    return rows / (time.perf_counter() - started)


def measure() -> dict[str, dict]:
    from kest_tasks.core import files, layout
    from kest_tasks.data.schema import Schema
    from kest_tasks.serving.batch_score import BLOCK_ROWS, batch_score

    with tempfile.TemporaryDirectory(prefix="kest-bench-p8-") as work_dir:
        work = Path(work_dir)
        config = _published_mlp(work)
        write_csv(work / "score.csv", SCORE_ROWS, seed=1)
        champion = files.read_json(files.join(str(work / "models"), layout.champion_key("mlp")))
        model_dir = champion["model_uri"]
        schema = Schema.model_validate(files.read_json(files.join(model_dir, layout.SCHEMA_FILE)))
        columns = _read_columns(work / "score.csv", schema)
        assert len(columns) == FEATURES
        # Warm up first (the process's first SavedModel load and tf.function trace cost seconds, once).
        batch_score(config, str(work / "score.csv"), str(work / "warm.parquet"))
        _bare_loop(model_dir, columns, BLOCK_ROWS)
        kest_rates, bare_rates, memory_rates = [], [], []
        for repeat in range(REPEATS):
            started = time.perf_counter()
            result = batch_score(config, str(work / "score.csv"), str(work / f"out-{repeat}.parquet"))
            kest_rates.append(result.rows / (time.perf_counter() - started))
            assert result.scored == SCORE_ROWS
            bare_rates.append(_bare_loop(model_dir, None, BLOCK_ROWS, read=(work / "score.csv", schema)))
            memory_rates.append(_bare_loop(model_dir, columns, BLOCK_ROWS))
        peaks = {}
        for rows in (MEMORY_SMALL, MEMORY_LARGE):
            write_csv(work / f"memory-{rows}.csv", rows, seed=2)
            inputs = [str(work / f"memory-{rows}.csv"), str(work / f"memory-{rows}.parquet")]
            measured = probe(_PROBE, str(bundled_config()), str(work / "models"), *inputs)
            assert measured["rows"] == rows
            peaks[rows] = measured["max_rss_mb"]
    kest, bare = max(kest_rates), max(bare_rates)
    return {
        "P8-memory": entry(
            f"peak RSS of batch scoring {MEMORY_LARGE} vs {MEMORY_SMALL} CSV rows",
            peaks[MEMORY_LARGE],
            peaks[MEMORY_SMALL],
            "MB",
        ),
        "P8": entry(
            f"batch scoring {SCORE_ROWS} CSV rows → Parquet vs a bare read + signature loop", kest, bare, "rows/s"
        ),
        "P8-in-memory": entry(
            "the same vs the bare loop over rows parsed beforehand", kest, max(memory_rates), "rows/s"
        ),
    }
