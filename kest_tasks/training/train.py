"""train: the run's Estimator (Keras via model_to_estimator, premade, or model_fn) → train_and_evaluate, or the
native trainer (model.fit, kest_tasks.training.native).

The model_dir (`<run_uri>/train/`) keeps its checkpoints across task retries, so a retried task resumes from
the last checkpoint instead of step 0.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from kest_tasks.core import files
from kest_tasks.core.cluster import in_ray_worker
from kest_tasks.core.config import ConfigError, EarlyStoppingConfig, PipelineConfig
from kest_tasks.core.errors import KestError
from kest_tasks.core.execution import stage_function
from kest_tasks.core.layout import CHAMPION_COPY_FOLDER, WARM_START_RECORD, RunLayout, checkpoint_step
from kest_tasks.core.results import BuildResult, PrepareResult, TrainResult
from kest_tasks.core.stages import TRAIN
from kest_tasks.core.tfenv import import_tensorflow, tensorflow_storage_errors
from kest_tasks.data.schema import Schema
from kest_tasks.data.tfdata import WEIGHT_KEY, class_weights, read_examples
from kest_tasks.training import native, ray_cluster
from kest_tasks.training.estimators import cluster_task, make_estimator
from kest_tasks.training.warm_start import champion_checkpoint

log = logging.getLogger("kest.train")


def input_fn(config: PipelineConfig, prepared: PrepareResult, built: BuildResult, split: str, training: bool) -> Any:
    """An Estimator input_fn over one split: shuffled and repeated for training, one full pass otherwise.

    Targets are the training targets (regression labels standardised); with trainer.class_weight each example
    carries its class weight, as model_to_estimator expects it ({"features", "sample_weights"}) or as the feature
    WEIGHT_KEY (premade heads' weight_column, model_fns).
    """
    schema = Schema.of(prepared)
    weights = class_weights(config, schema)

    def make() -> Any:
        dataset = read_examples(
            prepared.files[split],
            schema,
            prepared.compression,
            config.trainer.batch_size,
            shuffle_buffer=config.trainer.shuffle_buffer if training else 0,
            repeat=training,
            seed=config.seed,
            plan=built.input_plan,
            training_targets=True,
            class_weights=weights,
        )
        if weights is None:
            return dataset
        if config.trainer.kind == "keras":
            return dataset.map(lambda x, y, w: ({"features": x, "sample_weights": w}, y))
        return dataset.map(lambda x, y, w: ({**x, WEIGHT_KEY: w}, y))

    return make


def checked_early_stopping(config: PipelineConfig, built: BuildResult) -> EarlyStoppingConfig | None:
    """trainer.early_stopping, once its metric is known to be among the evaluation metrics."""
    stopping = config.trainer.early_stopping
    if stopping is not None and stopping.metric not in built.metric_names:
        raise ConfigError(
            f"trainer.early_stopping.metric {stopping.metric!r} is not an evaluation metric "
            f"(metrics: {', '.join(built.metric_names)})"
        )
    return stopping


def early_stopping_hooks(config: PipelineConfig, built: BuildResult, estimator: Any) -> list:
    """The Estimator's stop-if-no-improvement hook for trainer.early_stopping (none when it is unset).

    It reads the evaluation summaries train_and_evaluate writes at every checkpoint.
    """
    tf = import_tensorflow()
    stopping = checked_early_stopping(config, built)
    if stopping is None:
        return []
    make_hook = (
        tf.estimator.experimental.stop_if_no_decrease_hook
        if stopping.mode == "min"
        else tf.estimator.experimental.stop_if_no_increase_hook
    )
    secs = config.trainer.checkpoint_secs
    return [
        make_hook(
            estimator,
            stopping.metric,
            stopping.patience_steps,
            min_steps=stopping.min_steps,
            run_every_secs=secs,
            run_every_steps=None if secs else config.trainer.checkpoint_steps,
        )
    ]


def with_steps_from_epochs(config: PipelineConfig, prepared: PrepareResult) -> PipelineConfig:
    """The config with trainer.steps computed from trainer.epochs and the train split's size, when epochs is set."""
    trainer = config.trainer
    if trainer.epochs is None:
        return config
    rows = prepared.split_rows["train"]
    steps = max(1, math.ceil(trainer.epochs * rows / trainer.batch_size))
    log.info(
        "train: trainer.epochs %g over %d train rows at batch %d = %d steps",
        trainer.epochs,
        rows,
        trainer.batch_size,
        steps,
    )
    return config.model_copy(update={"trainer": trainer.model_copy(update={"steps": steps})})


def _as_floats(metrics: dict) -> dict[str, float]:
    return {key: float(value) for key, value in (metrics or {}).items()}


def _train_estimator(
    config: PipelineConfig, prepared: PrepareResult, built: BuildResult, model_dir: str, warm_start: str | None
) -> dict[str, float]:
    tf = import_tensorflow()
    schema = Schema.of(prepared)
    estimator = make_estimator(config, built, schema, model_dir, distributed=True, warm_start=warm_start)
    train_spec = tf.estimator.TrainSpec(
        input_fn=input_fn(config, prepared, built, "train", training=True),
        max_steps=config.trainer.steps,
        hooks=early_stopping_hooks(config, built, estimator),
    )
    eval_spec = tf.estimator.EvalSpec(
        input_fn=input_fn(config, prepared, built, "eval", training=False),
        steps=None,
        start_delay_secs=0,
        throttle_secs=config.trainer.eval_throttle_secs,
    )
    try:
        outcome = tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)
    except ValueError as error:
        if warm_start and "warm-start" in str(error):  # the Estimator checks the champion's variables only here
            raise ConfigError(
                f"trainer.warm_start: champion {warm_start} does not match this model (another "
                f"architecture? set trainer.warm_start: none): {str(error).splitlines()[0]}"
            ) from None
        raise
    return _as_floats(outcome[0] if outcome else {})


def _fit(
    config: PipelineConfig, prepared: PrepareResult, built: BuildResult, model_dir: str, warm_start: str | None
) -> dict[str, float]:
    """Train with the configured trainer kind; the eval split's metrics at the last checkpoint."""
    if config.trainer.kind == "native":
        return native.fit(config, prepared, built, model_dir, checked_early_stopping(config, built), warm_start)
    return _train_estimator(config, prepared, built, model_dir, warm_start)


@stage_function
def train(config: PipelineConfig, run_uri: str, prepared: PrepareResult, built: BuildResult) -> TrainResult:
    """Train until global_step reaches trainer.steps (or trainer.epochs), resuming from any checkpoint in
    `<run_uri>/train/`."""
    config = with_steps_from_epochs(config, prepared)
    layout = RunLayout(run_uri)
    model_dir, done = layout.stage_dir(TRAIN.folder), layout.result_file(TRAIN.folder)
    if files.exists(done):
        result = TrainResult.model_validate(files.read_json(done))
        if result.global_step >= config.trainer.steps or result.stopped_early:
            how = "stopped early" if result.stopped_early else "trained"
            log.info("train: already %s at step %d in %s", how, result.global_step, model_dir)
            return result
    if config.trainer.cluster is not None:
        if not in_ray_worker():  # the driver: Ray's workers train, worker 0 writes the result
            ray_cluster.train_on_ray(config, run_uri)
            if not files.exists(done):
                raise KestError(f"train on Ray: the workers finished but worker 0 wrote no result in {model_dir}")
            return TrainResult.model_validate(files.read_json(done))
        config = config.model_copy(
            update={"trainer": config.trainer.model_copy(update={"distribution": "multi_worker"})}
        )
    tf = import_tensorflow()
    if not files.is_gcs(model_dir):
        files.local_path(model_dir).mkdir(parents=True, exist_ok=True)
    resumed_from = tf.train.latest_checkpoint(model_dir)
    warm_record = files.join(model_dir, WARM_START_RECORD)
    started = time.monotonic()
    # A champion in object storage is downloaded here for a warm start; a retry resumes from checkpoints instead.
    with tempfile.TemporaryDirectory(prefix="kest-champion-") as scratch:
        warm_start = None
        if resumed_from:
            log.info("train: resuming from checkpoint %s", resumed_from)
        else:
            warm_start = champion_checkpoint(config, Path(scratch) / CHAMPION_COPY_FOLDER)
            files.write_json(warm_record, {"version": warm_start[1] if warm_start else None})
        with tensorflow_storage_errors():
            eval_metrics = _fit(config, prepared, built, model_dir, warm_start[0] if warm_start else None)
    seconds = time.monotonic() - started
    checkpoint = tf.train.latest_checkpoint(model_dir)
    global_step = checkpoint_step(checkpoint)
    result = TrainResult(
        model_dir=model_dir,
        checkpoint=checkpoint,
        global_step=global_step,
        stopped_early=config.trainer.early_stopping is not None and global_step < config.trainer.steps,
        eval_metrics=eval_metrics,
        seconds=round(seconds, 3),
        warm_started_from=files.read_json(warm_record)["version"] if files.exists(warm_record) else None,
    )
    task = cluster_task()
    if task and not task["chief"]:
        # Only the chief saves checkpoints and speaks for the run; a worker's view may lag its last save.
        log.info("train: %s %d finished its part at step %d", task["type"], task["index"], global_step)
        return result
    files.write_json(done, result.model_dump(mode="json"))
    log.info(
        "train: %s step %d in %.1f s; eval split: %s",
        "stopped early at" if result.stopped_early else "reached",
        result.global_step,
        seconds,
        eval_metrics,
    )
    return result
