"""evaluate: the trained model's metrics on the whole held-out test split → `<run_uri>/eval/metrics.json`."""
from __future__ import annotations

import logging
from pathlib import Path

from kest_tasks.build import BuildResult
from kest_tasks.config import PipelineConfig
from kest_tasks.estimators import make_estimator
from kest_tasks.native import restored_model
from kest_tasks.prepare import PrepareResult
from kest_tasks.schema import Schema
from kest_tasks.stage import StageResult, run_once, stage_function
from kest_tasks.storage import write_json_atomic
from kest_tasks.train import TrainResult, checkpoint_step, input_fn

log = logging.getLogger("kest.evaluate")


class EvaluateResult(StageResult):
    metrics_uri: str
    metrics: dict[str, float]
    examples: int
    checkpoint: str


@stage_function
def evaluate(
    config: PipelineConfig, run_uri: str, prepared: PrepareResult, built: BuildResult, trained: TrainResult
) -> EvaluateResult:
    """Evaluate the final training checkpoint on every test example (one pass, no step limit)."""

    def produce(tmp: Path, final: Path) -> EvaluateResult:
        test_data = input_fn(config, prepared, built, "test", training=False)
        if config.trainer.kind == "native":
            model = restored_model(built, trained.checkpoint)
            raw = model.evaluate(test_data(), return_dict=True, verbose=0)
        else:
            # The Estimator gets a model_dir of its own so evaluation never writes into training's folder.
            estimator = make_estimator(config, built, Schema.load(prepared.schema_uri), str(tmp / "estimator"))
            raw = estimator.evaluate(test_data, steps=None, checkpoint_path=trained.checkpoint, name="test")
        metrics = {key: float(value) for key, value in raw.items() if key != "global_step"}
        global_step = checkpoint_step(trained.checkpoint)
        write_json_atomic(tmp / "metrics.json", {
            "metrics": metrics, "examples": prepared.split_rows["test"],
            "checkpoint": trained.checkpoint, "global_step": global_step,
        })
        log.info("evaluate: test split (%d examples) at step %d: %s",
                 prepared.split_rows["test"], global_step, _format(metrics))
        return EvaluateResult(
            metrics_uri=str(final / "metrics.json"), metrics=metrics,
            examples=prepared.split_rows["test"], checkpoint=trained.checkpoint,
        )

    return run_once(run_uri, "eval", EvaluateResult, produce)


def _format(metrics: dict[str, float]) -> str:
    return ", ".join(f"{key}={value:.4f}" for key, value in sorted(metrics.items()))
