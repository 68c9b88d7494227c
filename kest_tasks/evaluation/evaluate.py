"""evaluate: the trained model's quality on the whole held-out test split → `<run_uri>/evaluate/metrics.json`.

Predictions come from the trained model itself (Keras kinds: the built Keras model with the checkpoint's
weights; premade and model_fn: Estimator.predict). Metrics come from evaluation.metrics, through the scoring code
the gate also scores the champion with, so candidate and champion are measured alike.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from kest_tasks.core import files
from kest_tasks.core.config import ConfigError, PipelineConfig
from kest_tasks.core.execution import run_once, stage_function
from kest_tasks.core.files import write_json
from kest_tasks.core.layout import METRICS_FILE, PREDICTIONS_FILE, checkpoint_step
from kest_tasks.core.results import BuildResult, EvaluateResult, PrepareResult, TrainResult
from kest_tasks.core.stages import EVALUATE
from kest_tasks.core.tfenv import tensorflow_storage_errors
from kest_tasks.data.schema import Schema
from kest_tasks.evaluation.metrics import headline, score, sliced_scores
from kest_tasks.evaluation.scoring import score_trained_model

log = logging.getLogger("kest.evaluate")


@stage_function
def evaluate(
    config: PipelineConfig, run_uri: str, prepared: PrepareResult, built: BuildResult, trained: TrainResult
) -> EvaluateResult:
    """Score the final training checkpoint on every test example; write metrics.json (metrics, confusion
    matrix for classifiers, slices) and predictions.npz."""
    schema = Schema.of(prepared)
    unknown = [name for name in config.evaluate.slice_by if not schema.has_feature(name)]
    if unknown:
        raise ConfigError(f"evaluate.slice_by: no feature {unknown[0]!r} (features: {', '.join(schema.feature_names)})")

    def produce(tmp: Path, folder: str) -> EvaluateResult:
        started = time.monotonic()
        with tensorflow_storage_errors():
            scored = score_trained_model(config, prepared, built, trained.checkpoint, tmp)
        classes = schema.label.classes if schema.label.kind == "classification" else None
        overall = score(scored.labels, scored.outputs, classes)
        slices = sliced_scores(scored.labels, scored.outputs, classes, scored.features, config.evaluate.slice_by)
        for name in config.evaluate.slice_by:
            if not any(key.startswith(f"{name}=") for key in slices):
                log.info("evaluate: not sliced by %s: more than 50 distinct values in the test split", name)
        seconds = time.monotonic() - started
        global_step = checkpoint_step(trained.checkpoint)
        np.savez_compressed(tmp / PREDICTIONS_FILE, labels=scored.labels, outputs=scored.outputs)
        write_json(
            tmp / METRICS_FILE,
            {
                **overall,
                "classes": classes,
                "slices": slices,
                "checkpoint": trained.checkpoint,
                "global_step": global_step,
                "seconds": round(seconds, 3),
            },
        )
        log.info(
            "evaluate: test split (%d examples) at step %d in %.2f s: %s",
            overall["examples"],
            global_step,
            seconds,
            _format(overall["metrics"]),
        )
        if "confusion_matrix" in overall:
            log.info(
                "evaluate: confusion matrix (rows: true %s; columns: predicted): %s",
                classes,
                overall["confusion_matrix"],
            )
        return EvaluateResult(
            metrics_uri=files.join(folder, METRICS_FILE),
            metrics=headline(overall["metrics"]),
            examples=overall["examples"],
            checkpoint=trained.checkpoint,
            seconds=round(seconds, 3),
        )

    return run_once(run_uri, EVALUATE.folder, EvaluateResult, produce)


def _format(metrics: dict[str, float]) -> str:
    return ", ".join(f"{key}={value:.4f}" for key, value in sorted(headline(metrics).items()))
