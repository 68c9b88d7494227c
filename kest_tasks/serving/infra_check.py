"""Load a SavedModel and query every signature, in a process of its own (kest's infra validation).

Run as `python -m kest_tasks.serving.infra_check`: it imports TensorFlow first, then reads one request from stdin,
`{"saved_model_dir": path, "inputs": {feature: [values]}, "examples": [base64 tf.Example, ...]}`, and prints JSON
on stdout: `{"outputs": {signature: {name: values}}, "load_seconds": s, "latency_ms": {"p50": …, "p99": …}}`.
Export starts it before the model is written, so TensorFlow's import overlaps the export. `serving_default` gets
the raw features, `predict_examples` the serialized examples (when the request has some). Latency is of
single-row requests to `serving_default`. Besides TensorFlow it imports only kest's quiet importer (tfenv), never
the code that built or trained the model, so it proves the exported model answers on its own.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from typing import Any

LATENCY_QUERIES = 100


def _call(signature: Any, tf: Any, values: dict[str, list]) -> Any:
    tensors = {}
    for name, spec in signature.structured_input_signature[1].items():
        if name not in values:
            raise KeyError(f"request has no value for signature input {name!r}")
        tensors[name] = tf.constant(values[name], dtype=spec.dtype)
    return signature(**tensors)


def query(saved_model_dir: str, inputs: dict[str, list], examples: list[str] | None = None) -> dict:
    import numpy as np

    from kest_tasks.core.tfenv import import_tensorflow

    tf = import_tensorflow()

    started = time.monotonic()
    loaded = tf.saved_model.load(saved_model_dir)
    load_seconds = time.monotonic() - started
    serving = loaded.signatures["serving_default"]
    answers = {"serving_default": _call(serving, tf, inputs)}
    if "predict_examples" in loaded.signatures and examples:
        serialized = [base64.b64decode(example) for example in examples or []]
        answers["predict_examples"] = _call(loaded.signatures["predict_examples"], tf, {"examples": serialized})
    rows = len(next(iter(inputs.values())))
    timings = []
    for query_index in range(LATENCY_QUERIES):
        row = query_index % rows
        one = {name: values[row : row + 1] for name, values in inputs.items()}
        began = time.perf_counter()
        _call(serving, tf, one)
        timings.append((time.perf_counter() - began) * 1000)
    return {
        "outputs": {
            signature: {name: to_plain_list(value.numpy()) for name, value in outputs.items()}
            for signature, outputs in answers.items()
        },
        "signatures": sorted(loaded.signatures.keys()),
        "load_seconds": load_seconds,
        "latency_ms": {"p50": float(np.percentile(timings, 50)), "p99": float(np.percentile(timings, 99))},
    }


def to_plain_list(array: Any) -> list:
    """A numpy array as JSON-ready lists (bytes decoded to str)."""
    if array.dtype.kind in "SO":
        return [item.decode() if isinstance(item, bytes) else item for item in array.tolist()]
    return array.tolist()


def main() -> int:
    from kest_tasks.core.tfenv import import_tensorflow

    import_tensorflow()  # while the caller is still writing the model
    request = json.loads(sys.stdin.read())
    json.dump(query(request["saved_model_dir"], request["inputs"], request.get("examples")), sys.stdout)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
