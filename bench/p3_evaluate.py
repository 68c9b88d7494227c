"""P3: kest's evaluate stage (the whole test split: loss, accuracy, per-class precision/recall/F1, AUC, confusion
matrix, written to metrics.json) vs a bare `model.evaluate` (loss and accuracy only) on the same test TFRecords,
same model and batch, in the same run. Both times include loading the model and its trained weights.

Data: 100k rows × 20 float features + 3-class label through kest's prepare (≈15k test rows); model: the
`tabular` builder (two hidden layers of 256), briefly trained with the default Keras Estimator kind.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.common import entry
from bench.runs import mlp_run

ROWS = int(os.environ.get("KEST_BENCH_P3_ROWS", "100000"))
REPEATS = 3


def measure() -> dict[str, dict]:
    from kest_tasks.core import files
    from kest_tasks.core.layout import RunLayout
    from kest_tasks.core.results import BuildResult, PrepareResult
    from kest_tasks.core.stages import EVALUATE
    from kest_tasks.data.schema import Schema
    from kest_tasks.data.tfdata import read_examples
    from kest_tasks.orchestration.runner import run_stage
    from kest_tasks.training.native import restored_model

    with tempfile.TemporaryDirectory(prefix="kest-bench-p3-") as work:
        run_uri = mlp_run(Path(work), ROWS, "p3", {"steps": 100, "batch_size": 512, "checkpoint_steps": 100})
        prepared = PrepareResult.model_validate(run_stage("prepare", run_uri))
        built = BuildResult.model_validate(run_stage("build", run_uri))
        trained = run_stage("train", run_uri)
        schema = Schema.load(prepared.schema_uri)
        batch = 1024  # kest's evaluate.batch_size default, given to model.evaluate too

        kest_times, keras_times = [], []
        for _ in range(REPEATS):
            # evaluate reuses a finished result; each repeat must do the work
            files.remove_tree(RunLayout(run_uri).stage_dir(EVALUATE.folder))
            started = time.perf_counter()
            evaluated = run_stage("evaluate", run_uri)
            kest_times.append(time.perf_counter() - started)

            started = time.perf_counter()
            model = restored_model(built, trained["checkpoint"])
            data = read_examples(prepared.files["test"], schema, "NONE", batch, plan=built.input_plan)
            model.evaluate(data, verbose=0)
            keras_times.append(time.perf_counter() - started)
    examples = evaluated["examples"]
    return {
        "P3": entry(
            f"evaluation of {examples} test examples (MLP 20-256-256-3, batch {batch}), best of {REPEATS}: kest "
            "evaluate stage (all metrics, confusion matrix, metrics.json) vs bare model.evaluate (loss, accuracy); "
            "examples/s",
            examples / min(kest_times),
            examples / min(keras_times),
            "examples/s",
        )
    }
