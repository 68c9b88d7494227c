"""Load a SavedModel and query its serving signature, in a process of its own.

Run as `python -m kest_tasks.serving_check <saved_model_dir> <request.json>`: reads `{"inputs": {feature:
[values]}}`, prints `{"outputs": {name: values}, "load_seconds": s}` as JSON on stdout. It imports only
TensorFlow, so it proves the exported model answers without any of the training code.
"""
from __future__ import annotations

import json
import sys
import time


def query(saved_model_dir: str, inputs: dict[str, list]) -> dict:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    started = time.monotonic()
    loaded = tf.saved_model.load(saved_model_dir)
    load_seconds = time.monotonic() - started
    signature = loaded.signatures["serving_default"]
    tensors = {}
    for name, spec in signature.structured_input_signature[1].items():
        if name not in inputs:
            raise KeyError(f"request has no value for signature input {name!r}")
        tensors[name] = tf.constant(inputs[name], dtype=spec.dtype)
    outputs = signature(**tensors)
    return {
        "outputs": {name: to_plain_list(value.numpy()) for name, value in outputs.items()},
        "load_seconds": load_seconds,
    }


def to_plain_list(array) -> list:
    """A numpy array as JSON-ready lists (bytes decoded to str)."""
    if array.dtype.kind in "SO":
        return [item.decode() if isinstance(item, bytes) else item for item in array.tolist()]
    return array.tolist()


def main(argv: list[str]) -> int:
    saved_model_dir, request_path = argv
    with open(request_path) as handle:
        request = json.load(handle)
    json.dump(query(saved_model_dir, request["inputs"]), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
