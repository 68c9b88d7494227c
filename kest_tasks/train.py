"""train: the run's Estimator (Keras via model_to_estimator, premade, or model_fn) → train_and_evaluate.

The Estimator's model_dir (`<run_uri>/train/`) keeps its checkpoints across task retries, so a retried
task resumes from the last checkpoint instead of step 0.
"""
from __future__ import annotations

import logging
import time

from kest_tasks.build import BuildResult
from kest_tasks.config import ConfigError, PipelineConfig
from kest_tasks.estimators import cluster_task, make_estimator
from kest_tasks.prepare import PrepareResult
from kest_tasks.schema import Schema
from kest_tasks.stage import StageResult, stage_dir, stage_function
from kest_tasks.storage import read_json, write_json_atomic
from kest_tasks.tfdata import read_examples
from kest_tasks.tfenv import import_tensorflow

log = logging.getLogger("kest.train")


class TrainResult(StageResult):
    model_dir: str
    checkpoint: str
    global_step: int
    eval_metrics: dict[str, float]
    seconds: float
    stopped_early: bool = False


def input_fn(config: PipelineConfig, prepared: PrepareResult, built: BuildResult, split: str, training: bool):
    """An Estimator input_fn over one split: shuffled and repeated for training, one full pass otherwise."""
    schema = Schema.load(prepared.schema_uri)

    def make():
        return read_examples(
            prepared.files[split], schema, prepared.compression, config.trainer.batch_size,
            shuffle_buffer=config.trainer.shuffle_buffer if training else 0,
            repeat=training, seed=config.seed, plan=built.input_plan,
        )

    return make


def early_stopping_hooks(config: PipelineConfig, built: BuildResult, estimator) -> list:
    """The Estimator's stop-if-no-improvement hook for trainer.early_stopping (none when it is unset).

    It reads the evaluation summaries train_and_evaluate writes at every checkpoint.
    """
    tf = import_tensorflow()
    stopping = config.trainer.early_stopping
    if stopping is None:
        return []
    if stopping.metric not in built.metric_names:
        raise ConfigError(f"trainer.early_stopping.metric {stopping.metric!r} is not an evaluation metric "
                          f"(metrics: {', '.join(built.metric_names)})")
    make_hook = (tf.estimator.experimental.stop_if_no_decrease_hook if stopping.mode == "min"
                 else tf.estimator.experimental.stop_if_no_increase_hook)
    return [make_hook(estimator, stopping.metric, stopping.patience_steps, min_steps=stopping.min_steps,
                      run_every_secs=None, run_every_steps=config.trainer.checkpoint_steps)]


def _as_floats(metrics: dict) -> dict[str, float]:
    return {key: float(value) for key, value in (metrics or {}).items()}


@stage_function
def train(config: PipelineConfig, run_uri: str, prepared: PrepareResult, built: BuildResult) -> TrainResult:
    """Train until global_step reaches trainer.steps, resuming from any checkpoint in `<run_uri>/train/`."""
    tf = import_tensorflow()
    model_dir = stage_dir(run_uri, "train")
    done = model_dir / "result.json"
    if done.exists():
        result = TrainResult.model_validate(read_json(done))
        if result.global_step >= config.trainer.steps or result.stopped_early:
            how = "stopped early" if result.stopped_early else "trained"
            log.info("train: already %s at step %d in %s", how, result.global_step, model_dir)
            return result
    model_dir.mkdir(parents=True, exist_ok=True)
    resumed_from = tf.train.latest_checkpoint(str(model_dir))
    if resumed_from:
        log.info("train: resuming from checkpoint %s", resumed_from)
    schema = Schema.load(prepared.schema_uri)
    estimator = make_estimator(config, built, schema, str(model_dir), distributed=True)
    train_spec = tf.estimator.TrainSpec(
        input_fn=input_fn(config, prepared, built, "train", training=True), max_steps=config.trainer.steps,
        hooks=early_stopping_hooks(config, built, estimator),
    )
    eval_spec = tf.estimator.EvalSpec(
        input_fn=input_fn(config, prepared, built, "eval", training=False),
        steps=None, start_delay_secs=0, throttle_secs=config.trainer.eval_throttle_secs,
    )
    started = time.monotonic()
    outcome = tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)
    seconds = time.monotonic() - started
    eval_metrics = _as_floats(outcome[0] if outcome else {})
    checkpoint = tf.train.latest_checkpoint(str(model_dir))
    global_step = checkpoint_step(checkpoint)
    result = TrainResult(
        model_dir=str(model_dir),
        checkpoint=checkpoint,
        global_step=global_step,
        stopped_early=config.trainer.early_stopping is not None and global_step < config.trainer.steps,
        eval_metrics=eval_metrics,
        seconds=round(seconds, 3),
    )
    task = cluster_task()
    if task and not task["chief"]:
        # Only the chief saves checkpoints and speaks for the run; a worker's view may lag its last save.
        log.info("train: %s %d finished its part at step %d", task["type"], task["index"], global_step)
        return result
    write_json_atomic(done, result.model_dump(mode="json"))
    log.info("train: %s step %d in %.1f s; eval split: %s",
             "stopped early at" if result.stopped_early else "reached", result.global_step, seconds, eval_metrics)
    return result


def checkpoint_step(checkpoint: str) -> int:
    """The global step a checkpoint was saved at, from its `model.ckpt-<step>` name."""
    return int(checkpoint.rsplit("-", 1)[1])
