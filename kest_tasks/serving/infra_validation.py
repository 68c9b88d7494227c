"""Infra validation: the exported SavedModel must load in a fresh Python process and answer test rows through every
signature exactly as the trained model did in process (the child program is serving.infra_check)."""

from __future__ import annotations

import base64
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kest_tasks.core.errors import KestError

EXAMPLES_SIGNATURE = "predict_examples"  # serialized tf.Example in, what batch scoring sends
SIGNATURES = ("serving_default", EXAMPLES_SIGNATURE)


class ExportError(KestError, RuntimeError):
    """The exported model did not load or did not answer as the trained model does."""


QUERY_TIMEOUT = 300


class FreshProcess:
    """A new Python process for infra validation (kest_tasks.serving.infra_check), started early: it imports TensorFlow
    while the model is still being exported, then loads and queries the SavedModel it is sent, once."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kest_tasks.serving.infra_check"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )

    def query(self, saved_model_dir: Path, inputs: dict[str, list], examples: list[bytes] | None = None) -> dict:
        request = json.dumps(
            {
                "saved_model_dir": str(saved_model_dir),
                "inputs": inputs,
                "examples": [base64.b64encode(e).decode() for e in examples or []],
            }
        )
        try:
            out, err = self.process.communicate(request, timeout=QUERY_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.close()
            raise ExportError(
                f"exported model {saved_model_dir}: the fresh process did not answer within {QUERY_TIMEOUT} s"
            ) from None
        if self.process.returncode != 0:
            last = (err.strip().splitlines() or ["no output"])[-1]
            raise ExportError(f"exported model {saved_model_dir} failed to load or answer in a fresh process: {last}")
        return json.loads(out)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> FreshProcess:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def query_in_fresh_process(saved_model_dir: Path, inputs: dict[str, list], examples: list[bytes] | None = None) -> dict:
    """Query every signature of the SavedModel in a new Python process."""
    with FreshProcess() as process:
        return process.query(saved_model_dir, inputs, examples)


def infra_validate(
    saved_model_dir: Path,
    rows: dict[str, list],
    examples: list[bytes],
    expected: dict[str, list],
    process: FreshProcess | None = None,
) -> dict:
    """Load the SavedModel in a fresh process (`process`, if started already), query both signatures with the same
    test rows and require the in-process predictions from each; return the fresh process's answer (load time,
    latency)."""
    with process or FreshProcess() as fresh:
        answer = fresh.query(saved_model_dir, rows, examples)
    missing = sorted(set(SIGNATURES) - set(answer["signatures"]))
    if missing:
        raise ExportError(f"exported model {saved_model_dir} has no signature {missing[0]!r}")
    for signature in SIGNATURES:
        _compare(expected, answer["outputs"][signature], saved_model_dir, signature)
    return answer


def _compare(expected: dict[str, list], answered: dict[str, list], saved_model_dir: Path, signature: str) -> None:
    where = f"exported model {saved_model_dir}, signature {signature!r}"
    for name, values in expected.items():
        got = answered.get(name)
        if got is None or len(got) != len(values):
            raise ExportError(f"{where}: output {name!r} missing or of the wrong length")
        for want, have in zip(values, got):
            if isinstance(want, (float, list)) and not _close(want, have):
                raise ExportError(f"{where}: output {name!r} differs from the trained model: {have} != {want}")
            if isinstance(want, (int, str)) and want != have:
                raise ExportError(f"{where}: output {name!r} differs from the trained model: {have} != {want}")


def _close(want: Any, have: Any) -> bool:
    if isinstance(want, list):
        return len(want) == len(have) and all(_close(w, h) for w, h in zip(want, have))
    return math.isclose(want, have, rel_tol=1e-4, abs_tol=1e-5)
