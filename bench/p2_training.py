"""P2: Estimator training throughput (examples/s) of kest's train stage vs a bare `model.fit` on the same
TFRecords, same Keras model and batch, in the same run; plus the input pipeline alone (parse + batch rate).

Data: 200k rows × 20 float features + 3-class label through kest's prepare; model: the `tabular` builder with
two hidden layers of 256 (dropout 0), batch 512.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.common import entry
from bench.p1_prepare import write_csv

ROWS = int(os.environ.get("KEST_BENCH_P2_ROWS", "200000"))
STEPS = int(os.environ.get("KEST_BENCH_P2_STEPS", "1500"))
BATCH = 512


def measure() -> dict[str, dict]:
    from kest_tasks.build import BuildResult
    from kest_tasks.pipeline import configure, run_stage
    from kest_tasks.prepare import PrepareResult
    from kest_tasks.schema import Schema
    from kest_tasks.tfdata import read_examples
    from kest_tasks.tfenv import import_tensorflow

    tf = import_tensorflow()
    with tempfile.TemporaryDirectory(prefix="kest-bench-p2-") as work:
        work_path = Path(work)
        write_csv(work_path / "data.csv", ROWS)
        overrides = {
            "artifact_root": str(work_path / "artifacts"),
            "dataset": {"path": str(work_path / "data.csv"), "label": "label", "compression": "NONE"},
            "model": {"builder": "tabular", "params": {"hidden_units": [256, 256], "dropout": 0.0}},
            "trainer": {"steps": STEPS, "batch_size": BATCH, "checkpoint_steps": STEPS, "log_steps": 500,
                        "shuffle_buffer": 10_000},
        }
        run_uri = configure(Path(__file__).resolve().parent.parent / "configs" / "iris.yaml", overrides,
                            "p2").run_uri
        prepared = PrepareResult.model_validate(run_stage("prepare", run_uri))
        built = BuildResult.model_validate(run_stage("build", run_uri))
        schema = Schema.load(prepared.schema_uri)

        def dataset():
            return read_examples(prepared.files["train"], schema, "NONE", BATCH, shuffle_buffer=10_000,
                                 repeat=True, seed=0, plan=built.input_plan)

        # Consumed inside TensorFlow (reduce), as the Estimator's graph consumes it: a Python for-loop would
        # measure eager per-batch overhead, not the input pipeline.
        started = time.perf_counter()
        int(dataset().take(STEPS).reduce(0, lambda count, _: count + 1))
        input_rate = STEPS * BATCH / (time.perf_counter() - started)

        trained = run_stage("train", run_uri)
        estimator_rate = STEPS * BATCH / trained["seconds"]

        tf.keras.backend.clear_session()
        model = tf.keras.models.load_model(built.model_uri)
        started = time.perf_counter()
        model.fit(dataset(), steps_per_epoch=STEPS, epochs=1, verbose=0)
        fit_rate = STEPS * BATCH / (time.perf_counter() - started)
    what = (f"training examples/s, MLP 20-256-256-3, batch {BATCH}, {STEPS} steps on the same TFRecords: "
            "kest train stage (model_to_estimator + train_and_evaluate, incl. checkpoint and final evaluation)")
    return {
        "P2": entry(what + " vs bare model.fit", estimator_rate, fit_rate, "examples/s"),
        "P2-input": entry(f"input pipeline alone (TFRecord read + parse_example + batch {BATCH}) vs the Estimator's "
                          "training rate: how far the input is from being the bottleneck",
                          input_rate, estimator_rate, "examples/s"),
    }
