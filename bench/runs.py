"""The kest run P2 and P3 measure: a synthetic CSV (20 float features + 3-class label, bench.p1_prepare's
generator) and the `tabular` builder with two hidden layers of 256 and no dropout."""

from __future__ import annotations

from pathlib import Path

from bench.p1_prepare import write_csv
from kest_tasks.orchestration.assets import bundled_config


def mlp_run(work: Path, rows: int, run_id: str, trainer: dict) -> str:
    """Configure run `run_id` under `work` (writing `work/data.csv` with `rows` rows once); return its run URI."""
    from kest_tasks.orchestration.runner import configure

    data = work / "data.csv"
    if not data.exists():
        write_csv(data, rows)
    overrides = {
        "artifact_root": str(work / "artifacts"),
        "dataset": {"path": str(data), "label": "label", "compression": "NONE"},
        "model": {"builder": "tabular", "params": {"hidden_units": [256, 256], "dropout": 0.0}},
        "trainer": trainer,
    }
    return configure(bundled_config(), overrides, run_id).run_uri
