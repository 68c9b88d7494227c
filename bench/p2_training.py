"""P2: training throughput (examples/s) of kest's train stage vs a bare `model.fit` on the same TFRecords, same
Keras model and batch, in the same run; plus the whole stage's wall time, the native trainer, and the input
pipeline alone (parse + batch rate).

Data: 200k rows × 20 float features + 3-class label through kest's prepare; model: the `tabular` builder with
two hidden layers of 256 (dropout 0), batch 512.

Steady-state rates are taken over the same step window for both (from step LOG_STEPS to 2 × LOG_STEPS, after
warm-up): the Estimator's from the `global_step/sec` summaries the stage writes to its model_dir, model.fit's
from a callback timing the same batches.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.common import entry
from bench.runs import mlp_run

ROWS = int(os.environ.get("KEST_BENCH_P2_ROWS", "200000"))
STEPS = int(os.environ.get("KEST_BENCH_P2_STEPS", "1500"))
LOG_STEPS = STEPS // 3
BATCH = 512
# The trainer settings of every P2 run: one checkpoint at the end, summaries every LOG_STEPS.
TRAINER = {
    "steps": STEPS,
    "batch_size": BATCH,
    "checkpoint_steps": STEPS,
    "log_steps": LOG_STEPS,
    "shuffle_buffer": 10_000,
}


def _estimator_window_rate(model_dir: Path) -> float:
    """steps/s over the StepCounterHook's second window, steps (LOG_STEPS + 1, 2 × LOG_STEPS + 1], from the
    summaries in the stage's event file."""
    from kest_tasks.core.tfenv import import_tensorflow

    tf = import_tensorflow()
    rates = {}
    for events in model_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                if value.tag == "global_step/sec":
                    rates[event.step] = value.simple_value
    return rates[2 * LOG_STEPS + 1]


def _fit_window_rate(model, dataset) -> float:
    """steps/s of a bare model.fit over the same window of batches."""
    from kest_tasks.core.tfenv import import_tensorflow

    tf = import_tensorflow()
    marks: dict[int, float] = {}

    class Window(tf.keras.callbacks.Callback):  # type: ignore[name-defined]
        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 in (LOG_STEPS, 2 * LOG_STEPS):
                float(logs["loss"])  # wait for the step to finish, as the hook's session.run does
                marks[batch + 1] = time.perf_counter()

    model.fit(dataset, steps_per_epoch=STEPS, epochs=1, verbose=0, callbacks=[Window()])
    return LOG_STEPS / (marks[2 * LOG_STEPS] - marks[LOG_STEPS])


def measure() -> dict[str, dict]:
    from kest_tasks.core.results import BuildResult, PrepareResult
    from kest_tasks.core.tfenv import import_tensorflow
    from kest_tasks.data.schema import Schema
    from kest_tasks.data.tfdata import read_examples
    from kest_tasks.orchestration.runner import run_stage

    tf = import_tensorflow()
    with tempfile.TemporaryDirectory(prefix="kest-bench-p2-") as work:
        work_path = Path(work)
        trainer = TRAINER
        run_uri = mlp_run(work_path, ROWS, "p2", trainer)
        prepared = PrepareResult.model_validate(run_stage("prepare", run_uri))
        built = BuildResult.model_validate(run_stage("build", run_uri))
        schema = Schema.load(prepared.schema_uri)

        def dataset(split: str = "train"):
            training = split == "train"
            return read_examples(
                prepared.files[split],
                schema,
                "NONE",
                BATCH,
                shuffle_buffer=10_000 if training else 0,
                repeat=training,
                seed=0,
                plan=built.input_plan,
            )

        # Consumed inside TensorFlow (reduce), as the Estimator's graph consumes it: a Python for-loop would
        # measure eager per-batch overhead, not the input pipeline.
        started = time.perf_counter()
        int(dataset().take(STEPS).reduce(0, lambda count, _: count + 1))
        input_rate = STEPS * BATCH / (time.perf_counter() - started)

        trained = run_stage("train", run_uri)
        estimator_rate = _estimator_window_rate(Path(trained["model_dir"])) * BATCH
        estimator_stage_seconds = trained["seconds"]

        native_uri = mlp_run(work_path, ROWS, "p2-native", {**trainer, "kind": "native"})
        run_stage("prepare", native_uri)
        run_stage("build", native_uri)
        native_stage_seconds = run_stage("train", native_uri)["seconds"]

        tf.keras.backend.clear_session()
        model = tf.keras.models.load_model(built.model_uri)
        fit_rate = _fit_window_rate(model, dataset()) * BATCH

        tf.keras.backend.clear_session()
        model = tf.keras.models.load_model(built.model_uri)
        started = time.perf_counter()
        model.fit(dataset(), steps_per_epoch=STEPS, epochs=1, verbose=0)
        model.evaluate(dataset("eval"), verbose=0)
        fit_seconds = time.perf_counter() - started
    model_what = f"MLP 20-256-256-3, batch {BATCH}, {STEPS} steps on the same TFRecords"
    return {
        "P2": entry(
            f"steady-state training examples/s (steps {LOG_STEPS}-{2 * LOG_STEPS}), {model_what}: kest "
            "train stage (model_to_estimator + train_and_evaluate) vs bare model.fit",
            estimator_rate,
            fit_rate,
            "examples/s",
        ),
        "P2-stage": entry(
            f"whole train stage incl. Estimator set-up, checkpoints and the eval-split pass, {model_what}"
            ": examples/s of kest's Estimator stage vs bare model.fit + model.evaluate",
            STEPS * BATCH / estimator_stage_seconds,
            STEPS * BATCH / fit_seconds,
            "examples/s",
        ),
        "P2-native": entry(
            f"whole train stage, {model_what}: trainer.kind native (model.fit with checkpoints, "
            "TensorBoard, eval split) vs the Estimator stage",
            STEPS * BATCH / native_stage_seconds,
            STEPS * BATCH / estimator_stage_seconds,
            "examples/s",
        ),
        "P2-input": entry(
            f"input pipeline alone (TFRecord read + parse_example + batch {BATCH}) vs the Estimator's "
            "steady training rate: how far the input is from being the bottleneck",
            input_rate,
            estimator_rate,
            "examples/s",
        ),
    }
