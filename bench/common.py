"""Shared pieces of the benchmarks: timing a command and recording an entry in bench/results.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results.json"


def timed_command(command: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> float:
    """Wall seconds of one run of `command`; raises if it fails (a failed run measures nothing)."""
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")
    return seconds


def probe(code: str, *args: str) -> dict:
    """Run `code` in a fresh Python (`python -c code *args`) and return the JSON object it prints last: how the
    memory benchmarks measure one process's peak RSS."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def entry(what: str, kest: float, baseline: float, unit: str) -> dict:
    """One results.json entry; ratio is always kest / baseline in `unit`."""
    return {
        "what": what,
        "kest": round(kest, 4),
        "baseline": round(baseline, 4),
        "ratio": round(kest / baseline, 4),
        "unit": unit,
    }


def record(results: dict[str, dict]) -> None:
    """Merge `results` into bench/results.json, keeping other benchmarks' entries."""
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    existing.update(results)
    RESULTS.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")
