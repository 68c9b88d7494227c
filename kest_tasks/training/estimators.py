"""Making the Estimator a run trains, evaluates and exports: Keras (model_to_estimator), premade, or model_fn.

Train, evaluate and export all call `make_estimator`, so the three stages always agree on the model.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from kest_tasks.core import files
from kest_tasks.core.config import ConfigError, PipelineConfig
from kest_tasks.core.tfenv import import_tensorflow
from kest_tasks.data.schema import Schema
from kest_tasks.data.tfdata import WEIGHT_KEY, class_weights
from kest_tasks.training.model_file import load_built_model
from kest_tasks.training.user_code import import_function
from kest_tasks.training.warm_start import estimator_warm_start, load_trainable_weights


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


CHIEF_CHECKPOINT_WAIT_SECONDS = 600.0


def _wait_for_the_chiefs_keras_checkpoint(model_dir: str) -> None:
    """On a non-chief worker of a cluster, wait for the chief's first checkpoint of the Keras model.

    model_to_estimator writes `<model_dir>/keras/keras_model.ckpt` (the Estimator warm-starts from it) on every
    task, since each reports itself chief under the multi-worker strategy; on one local disk the copies overwrite
    each other harmlessly, but on gs:// one task's commit removes the other's temporary files and that task dies,
    leaving its peers in collectives. So only the chief writes it; the others find it there and skip the write.
    """
    task = cluster_task()
    if task is None or task["chief"]:
        return
    tf = import_tensorflow()
    keras_dir = files.join(model_dir, "keras")
    deadline = time.monotonic() + CHIEF_CHECKPOINT_WAIT_SECONDS
    while not tf.train.latest_checkpoint(keras_dir):
        if time.monotonic() > deadline:
            raise ConfigError(
                f"{task['type']} {task['index']}: the chief wrote no Keras checkpoint in {keras_dir} within "
                f"{CHIEF_CHECKPOINT_WAIT_SECONDS:.0f} s; is the chief running with the same model_dir?"
            )
        time.sleep(0.5)


def distribution_strategy(config: PipelineConfig) -> Any:
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
            raise ConfigError(
                f"trainer.distribution 'multi_worker': {error}; start training in a fresh process "
                "(python -m kest_tasks stage train) so the strategy is created first"
            ) from None
    return tf.compat.v1.distribute.experimental.ParameterServerStrategy()


def run_config(config: PipelineConfig, model_dir: str, distributed: bool = False) -> Any:
    """RunConfig for the run; with `distributed`, training uses trainer.distribution's strategy."""
    tf = import_tensorflow()
    trainer = config.trainer
    return tf.estimator.RunConfig(
        train_distribute=distribution_strategy(config) if distributed else None,
        model_dir=model_dir,
        tf_random_seed=config.seed,
        save_checkpoints_steps=None if trainer.checkpoint_secs else trainer.checkpoint_steps,
        save_checkpoints_secs=trainer.checkpoint_secs,
        keep_checkpoint_max=trainer.keep_checkpoint_max,
        save_summary_steps=trainer.log_steps,
        log_step_count_steps=trainer.log_steps,
    )


def _normalizer(mean: float, std: float) -> Any:
    scale = std or 1.0
    return lambda x: (x - mean) / scale


def feature_columns(schema: Schema, style: str, embedding_dim: int = 8) -> list[Any]:
    """Feature columns from the schema: numeric normalised with the training statistics; strings through
    their vocabulary (one out-of-vocabulary bucket) as embeddings (dnn) or sparse columns (linear)."""
    tf = import_tensorflow()
    fc = tf.feature_column
    columns = []
    for feature in schema.features:
        if feature.type == "string":
            categorical = fc.categorical_column_with_vocabulary_list(
                feature.key, feature.vocabulary or [""], num_oov_buckets=1
            )
            columns.append(fc.embedding_column(categorical, embedding_dim) if style == "dnn" else categorical)
        else:
            columns.append(
                fc.numeric_column(feature.key, normalizer_fn=_normalizer(feature.mean or 0.0, feature.std or 1.0))
            )
    return columns


def premade_estimator(
    config: PipelineConfig, schema: Schema, estimator_config: Any, warm_start_from: Any = None
) -> Any:
    tf = import_tensorflow()
    premade = config.trainer.premade
    classify = schema.label.kind == "classification"
    head = {"n_classes": schema.num_classes} if classify else {}
    learning_rate = config.model.learning_rate

    def adam() -> Any:
        return tf.keras.optimizers.legacy.Adam(learning_rate=learning_rate)

    weighted = {"weight_column": WEIGHT_KEY} if class_weights(config, schema) else {}
    common = {"config": estimator_config, "warm_start_from": warm_start_from, **head, **weighted}
    if premade.type == "linear":
        kind = tf.estimator.LinearClassifier if classify else tf.estimator.LinearRegressor
        return kind(feature_columns=feature_columns(schema, "linear"), optimizer=adam, **common)
    if premade.type == "dnn":
        kind = tf.estimator.DNNClassifier if classify else tf.estimator.DNNRegressor
        return kind(
            hidden_units=premade.hidden_units,
            optimizer=adam,
            feature_columns=feature_columns(schema, "dnn", premade.embedding_dim),
            **common,
        )
    if premade.type == "dnn_linear":
        kind = tf.estimator.DNNLinearCombinedClassifier if classify else tf.estimator.DNNLinearCombinedRegressor
        return kind(
            linear_feature_columns=feature_columns(schema, "linear"),
            dnn_optimizer=adam,
            dnn_feature_columns=feature_columns(schema, "dnn", premade.embedding_dim),
            dnn_hidden_units=premade.hidden_units,
            **common,
        )
    # tensorflow-estimator 2.15, the last release with the Estimator API, no longer ships BoostedTrees.
    raise ConfigError(
        "trainer.premade.type 'boosted_trees': BoostedTreesClassifier/Regressor are not in "
        "tensorflow-estimator 2.15 (the last Estimator release); use linear, dnn or dnn_linear"
    )


def model_output(raw: Any, built: Any) -> Any:
    """The model's raw output tensor (logits or predicted values) among a model's or Estimator's outputs."""
    if isinstance(raw, (list, tuple)):
        return raw[0]
    if not isinstance(raw, dict):
        return raw
    for key in ("logits", "predictions", *built.output_names):
        if key in raw:
            return raw[key]
    raise ConfigError(f"the model's predictions {sorted(raw)} have no 'logits' or 'predictions' output")


def make_estimator(
    config: PipelineConfig,
    built: Any,
    schema: Schema,
    model_dir: str,
    distributed: bool = False,
    warm_start: str | None = None,
) -> Any:
    """The run's Estimator with checkpoints in `model_dir`, for trainer.kind (an Estimator kind, not native).

    `warm_start`: a checkpoint prefix whose trainable variables initialise a model_dir without checkpoints.
    """
    tf = import_tensorflow()
    estimator_config = run_config(config, model_dir, distributed)  # first: a strategy must precede other ops
    kind = config.trainer.kind
    if kind == "keras":
        tf.keras.backend.clear_session()
        model = load_built_model(built)
        _wait_for_the_chiefs_keras_checkpoint(model_dir)
        if warm_start:  # model_to_estimator starts training from the Keras model's own weights
            load_trainable_weights(model, warm_start)
        return tf.keras.estimator.model_to_estimator(keras_model=model, config=estimator_config)
    warm_start_from = estimator_warm_start(warm_start) if warm_start else None
    if kind == "premade":
        return premade_estimator(config, schema, estimator_config, warm_start_from)
    if kind != "model_fn":
        raise ConfigError(f"trainer.kind {kind!r} is not an Estimator")
    assert config.trainer.model_fn is not None  # the config requires it for trainer.kind model_fn
    model_fn = import_function(config.trainer.model_fn, config.model.code_dir, "trainer.model_fn")
    params = {
        "schema": schema.model_dump(mode="json"),
        "learning_rate": config.model.learning_rate,
        "weight_feature": WEIGHT_KEY if class_weights(config, schema) else None,
        **config.model.params,
    }
    return tf.estimator.Estimator(
        model_fn=model_fn, config=estimator_config, params=params, warm_start_from=warm_start_from
    )
