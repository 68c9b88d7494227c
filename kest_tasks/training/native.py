"""The `native` trainer: the built Keras model trained with `model.fit` under a tf.distribute strategy.

It reads the same TFRecords (tfdata.read_examples), writes checkpoints under the same names in the same folder
(`<run_uri>/train/model.ckpt-<step>`), reports the same evaluation metrics and is exported with the same serving
signature as the Estimator kinds, so a run switches between `keras` and `native` by trainer.kind alone.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from kest_tasks.core import files
from kest_tasks.core.config import ConfigError, EarlyStoppingConfig, PipelineConfig
from kest_tasks.core.layout import CHECKPOINT_NAME
from kest_tasks.core.results import BuildResult, PrepareResult
from kest_tasks.core.tfenv import import_tensorflow
from kest_tasks.data.schema import Schema
from kest_tasks.data.tfdata import class_weights, read_examples, to_model_inputs, vocabulary_tables
from kest_tasks.training.estimators import cluster_task, distribution_strategy, model_output
from kest_tasks.training.model_file import load_built_model
from kest_tasks.training.warm_start import load_trainable_weights, read_keras_weights

log = logging.getLogger("kest.train")


def restored_model(built: BuildResult, checkpoint: str) -> Any:
    """The built Keras model with the weights of a training checkpoint (native or Keras Estimator)."""
    tf = import_tensorflow()
    tf.keras.backend.clear_session()
    model = load_built_model(built)
    if not read_keras_weights(model, checkpoint):
        raise ConfigError(f"checkpoint {checkpoint} does not hold the weights of the model in {built.model_uri}")
    return model


def trained_forward_pass(built: BuildResult, checkpoint: str) -> Any:
    """The trained Keras model as a function of raw named features (vocabulary lookups included) to the head's
    output, on a tf.Module that holds the model and lookup tables so a SavedModel can track them: call
    `module.forward(features)` inside a tf.function (evaluation batches, serving signatures)."""
    tf = import_tensorflow()
    module = tf.Module()
    module.model = restored_model(built, checkpoint)
    module.tables = vocabulary_tables(built.input_plan)

    def forward(features: Any) -> Any:
        inputs = to_model_inputs(features, built.input_plan, module.tables)
        return model_output(module.model(inputs, training=False), built)

    module.forward = forward
    return module


def _control_callback(manager: Any, initial_step: int, steps: int, log_steps: int) -> Any:
    """Stop at `steps`, save a checkpoint at every epoch end (an epoch is checkpoint_steps long), log progress."""
    tf = import_tensorflow()

    class TrainingControl(tf.keras.callbacks.Callback):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.step = initial_step
            self.window = (initial_step, time.monotonic())

        def on_train_batch_end(self, batch: Any, logs: Any = None) -> None:
            self.step += 1  # a Python count: reading optimizer.iterations would sync with the device every step
            if self.step % log_steps == 0:
                first_step, since = self.window
                rate = (self.step - first_step) / max(time.monotonic() - since, 1e-9)
                log.info("step %d: loss = %.6f (%.1f steps/s)", self.step, float(logs["loss"]), rate)
                self.window = (self.step, time.monotonic())
            if self.step >= steps:
                self.model.stop_training = True

        def on_epoch_end(self, epoch: Any, logs: Any = None) -> None:
            manager.save(checkpoint_number=self.step)
            evaluated = {
                key[4:]: round(float(value), 6) for key, value in (logs or {}).items() if key.startswith("val_")
            }
            log.info("step %d: checkpoint saved; eval split: %s", self.step, evaluated)

    return TrainingControl()


def _early_stopping_callback(stopping: EarlyStoppingConfig, checkpoint_steps: int) -> Any:
    """Keras EarlyStopping with the Estimator hook's semantics, counted in evaluations (one per checkpoint)."""
    tf = import_tensorflow()
    return tf.keras.callbacks.EarlyStopping(
        monitor=f"val_{stopping.metric}",
        mode=stopping.mode,
        patience=max(1, math.ceil(stopping.patience_steps / checkpoint_steps)),
        start_from_epoch=math.ceil(stopping.min_steps / checkpoint_steps),
    )


def fit(
    config: PipelineConfig,
    prepared: PrepareResult,
    built: BuildResult,
    model_dir: str,
    early_stopping: EarlyStoppingConfig | None = None,
    warm_start: str | None = None,
) -> dict[str, float]:
    """Train until the optimizer's step count reaches trainer.steps, resuming from the last checkpoint in
    `model_dir`; return the eval split's metrics at the last checkpoint (with `global_step`)."""
    tf = import_tensorflow()
    trainer = config.trainer
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(config.seed)
    strategy = distribution_strategy(config) or tf.distribute.get_strategy()
    task = cluster_task()
    # Under multi_worker every worker saves (the save is collective); only the chief's copy is kept.
    save_dir = model_dir if task is None or task["chief"] else files.join(model_dir, f".worker-{task['index']}")
    with strategy.scope():
        model = load_built_model(built)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    latest = tf.train.latest_checkpoint(model_dir)
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
    elif warm_start:
        load_trainable_weights(model, warm_start)
    initial_step = int(model.optimizer.iterations.numpy())
    manager = tf.train.CheckpointManager(
        checkpoint, save_dir, max_to_keep=trainer.keep_checkpoint_max, checkpoint_name=CHECKPOINT_NAME
    )
    schema = Schema.of(prepared)
    weights = class_weights(config, schema)

    def split(name: str, training: bool) -> Any:
        return read_examples(
            prepared.files[name],
            schema,
            prepared.compression,
            trainer.batch_size,
            shuffle_buffer=trainer.shuffle_buffer if training else 0,
            repeat=training,
            seed=config.seed,
            plan=built.input_plan,
            training_targets=True,
            class_weights=weights,
        )

    if initial_step >= trainer.steps:
        metrics = model.evaluate(split("eval", False), return_dict=True, verbose=0)
    else:
        callbacks = [
            _control_callback(manager, initial_step, trainer.steps, trainer.log_steps),
            tf.keras.callbacks.TensorBoard(
                log_dir=save_dir, update_freq=trainer.log_steps, write_graph=False, profile_batch=0
            ),
        ]
        if early_stopping is not None:
            callbacks.append(_early_stopping_callback(early_stopping, trainer.checkpoint_steps))
        history = model.fit(
            split("train", True),
            steps_per_epoch=trainer.checkpoint_steps,
            epochs=math.ceil(trainer.steps / trainer.checkpoint_steps),
            initial_epoch=initial_step // trainer.checkpoint_steps,
            validation_data=split("eval", False),
            callbacks=callbacks,
            verbose=0,
        )
        metrics = {key[4:]: values[-1] for key, values in history.history.items() if key.startswith("val_")}
    if save_dir != model_dir:
        files.remove_tree(save_dir)
    return {
        **{key: float(value) for key, value in metrics.items()},
        "global_step": float(model.optimizer.iterations.numpy()),
    }
