"""train: the compiled Keras model → Estimator (model_to_estimator) → tf.estimator.train_and_evaluate.

The Estimator's model_dir (`<run_uri>/train/`) keeps its checkpoints across task retries, so a retried
task resumes from the last checkpoint instead of step 0.
"""
from __future__ import annotations

import json
import logging
import os
import time

from kest_tasks.build import BuildResult
from kest_tasks.config import ConfigError, PipelineConfig
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


def cluster_task() -> dict | None:
    """This process's task in TF_CONFIG ({type, index, chief}), or None outside a cluster.

    The chief is the `chief` (or legacy `master`) task, or worker 0 in a cluster without one. (Under the
    multi-worker strategy the Estimator's own RunConfig reports every task as chief.)
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    spec = json.loads(raw)
    task = spec.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    has_chief = any(name in spec.get("cluster", {}) for name in ("chief", "master"))
    chief = kind in ("chief", "master") or (kind == "worker" and index == 0 and not has_chief)
    return {"type": kind, "index": index, "chief": chief}


def distribution_strategy(config: PipelineConfig):
    """The tf.distribute strategy for trainer.distribution, or None.

    multi_worker must be created before TensorFlow runs any other op in the process ("Collective ops must be
    configured at program startup"): run it as its own process per worker (`python -m kest_tasks stage train`
    with TF_CONFIG set), which is how a worker task runs it.
    """
    tf = import_tensorflow()
    kind = config.trainer.distribution
    if kind == "none":
        return None
    if kind in ("multi_worker", "parameter_server") and not os.environ.get("TF_CONFIG"):
        raise ConfigError(f"trainer.distribution {kind!r} needs the cluster in the TF_CONFIG environment variable")
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":
        try:
            return tf.distribute.experimental.MultiWorkerMirroredStrategy()
        except RuntimeError as error:
            raise ConfigError(f"trainer.distribution 'multi_worker': {error}; start training in a fresh process "
                              "(python -m kest_tasks stage train) so the strategy is created first") from None
    return tf.compat.v1.distribute.experimental.ParameterServerStrategy()


def run_config(config: PipelineConfig, model_dir: str, distributed: bool = False):
    """RunConfig for the run; with `distributed`, training uses trainer.distribution's strategy."""
    tf = import_tensorflow()
    trainer = config.trainer
    return tf.estimator.RunConfig(
        train_distribute=distribution_strategy(config) if distributed else None,
        model_dir=model_dir,
        tf_random_seed=config.seed,
        save_checkpoints_steps=trainer.checkpoint_steps,
        keep_checkpoint_max=trainer.keep_checkpoint_max,
        save_summary_steps=trainer.log_steps,
        log_step_count_steps=trainer.log_steps,
    )


def keras_estimator(config: PipelineConfig, built: BuildResult, model_dir: str, distributed: bool = False):
    """An Estimator for the built Keras model whose checkpoints live in `model_dir`."""
    tf = import_tensorflow()
    estimator_config = run_config(config, model_dir, distributed)  # first: a strategy must precede other ops
    tf.keras.backend.clear_session()
    model = tf.keras.models.load_model(built.model_uri)
    return tf.keras.estimator.model_to_estimator(keras_model=model, config=estimator_config)


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
    estimator = keras_estimator(config, built, str(model_dir), distributed=True)
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
        stopped_early=global_step < config.trainer.steps,
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
