"""Scoring a split with a model: the code evaluate scores the candidate with and the gate scores the champion
with, so both are measured alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kest_tasks.core.config import KERAS_KINDS, PipelineConfig
from kest_tasks.core.files import read_json
from kest_tasks.core.layout import ESTIMATOR_SCRATCH_FOLDER
from kest_tasks.core.results import BuildResult, EvaluateResult, PrepareResult
from kest_tasks.core.tfenv import import_tensorflow
from kest_tasks.data.schema import Schema
from kest_tasks.data.tfdata import read_examples, to_label_units, to_model_inputs, vocabulary_tables
from kest_tasks.training.estimators import make_estimator, model_output
from kest_tasks.training.native import trained_forward_pass


class ScoredSplit:
    """A split's labels (class indices or floats), the model's raw outputs, and the raw features kept."""

    def __init__(self, labels: np.ndarray, outputs: np.ndarray, features: dict[str, np.ndarray]) -> None:
        self.labels, self.outputs, self.features = labels, outputs, features


def split_batches(config: PipelineConfig, prepared: PrepareResult, schema: Schema, split: str = "test") -> Any:
    """(raw features, label) batches of a split in file order, one pass."""
    return read_examples(prepared.files[split], schema, prepared.compression, config.evaluate.batch_size)


def run_over_split(batches: Any, keep: list[str], predict: Callable | None) -> ScoredSplit:
    """Collect labels, `predict(features)` outputs (unless None) and the `keep` features over every batch."""
    labels: list[np.ndarray] = []
    outputs: list[np.ndarray] = []
    kept: dict[str, list[np.ndarray]] = {name: [] for name in keep}
    for features, label in batches:
        labels.append(label.numpy())
        if predict is not None:
            outputs.append(np.asarray(predict(features)))
        for name in keep:
            kept[name].append(features[name].numpy())
    return ScoredSplit(
        np.concatenate(labels),
        np.concatenate(outputs) if outputs else np.zeros(0),
        {name: np.concatenate(values) for name, values in kept.items()},
    )


def _estimator_outputs(
    config: PipelineConfig, prepared: PrepareResult, built: BuildResult, schema: Schema, checkpoint: str, model_dir: str
) -> np.ndarray:
    estimator = make_estimator(config, built, schema, model_dir)

    def input_fn() -> Any:
        tables = vocabulary_tables(built.input_plan)
        return split_batches(config, prepared, schema).map(
            lambda features, label: to_model_inputs(features, built.input_plan, tables)
        )

    batches = estimator.predict(input_fn, checkpoint_path=checkpoint, yield_single_examples=False)
    return np.concatenate([np.asarray(model_output(batch, built)) for batch in batches])


def _slice_keys(config: PipelineConfig, schema: Schema) -> dict[str, str]:
    """evaluate.slice_by's features (as the data names them) → their keys among the model features."""
    return {name: schema.feature(name).key for name in config.evaluate.slice_by}


def score_trained_model(
    config: PipelineConfig, prepared: PrepareResult, built: BuildResult, checkpoint: str, work: Path
) -> ScoredSplit:
    """The test split scored by the run's trained model at `checkpoint`: outputs in the label's units, and the
    slice_by features kept under their names in the data."""
    schema = Schema.of(prepared)
    keep = _slice_keys(config, schema)
    if config.trainer.kind in KERAS_KINDS:
        predict = import_tensorflow().function(trained_forward_pass(built, checkpoint).forward)
        scored = run_over_split(split_batches(config, prepared, schema), list(keep.values()), predict)
    else:
        outputs = _estimator_outputs(config, prepared, built, schema, checkpoint, str(work / ESTIMATOR_SCRATCH_FOLDER))
        scored = run_over_split(split_batches(config, prepared, schema), list(keep.values()), None)
        scored.outputs = outputs
    scored.outputs = to_label_units(scored.outputs, schema.label)
    scored.features = {name: scored.features[key] for name, key in keep.items()}
    return scored


def all_metrics(evaluated: EvaluateResult) -> dict[str, float]:
    """Every test metric evaluate wrote (its result holds the headline ones)."""
    return read_json(evaluated.metrics_uri)["metrics"]
