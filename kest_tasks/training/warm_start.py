"""Warm start: begin training from the trainable weights of the published champion.

The champion's SavedModel carries its variables as a checkpoint (`variables/variables`). A premade or model_fn
Estimator export names them as the graph did (`dnn/hiddenlayer_0/kernel`); a Keras Estimator export stores TF2
object paths from the Keras model, a native export the same under the module's `model` attribute. All are
read here, and every trainable weight of the new model must be found with the same shape: a champion of another
architecture is a config error, not a silent partial start.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kest_tasks.core.config import ConfigError, PipelineConfig
from kest_tasks.core.tfenv import import_tensorflow
from kest_tasks.registry.champion import champion_model_dir, current_champion

log = logging.getLogger("kest.train")


def champion_checkpoint(config: PipelineConfig, scratch: Path) -> tuple[str, str] | None:
    """(checkpoint prefix of the champion's variables, champion version) when trainer.warm_start asks for it
    and a champion exists; None otherwise (logged, so a first run's cold start is visible). A champion in object
    storage is downloaded into `scratch`."""
    if config.trainer.warm_start != "champion":
        return None
    champion = current_champion(config)
    if champion is None:
        log.info(
            "train: warm start asked for, but %s has no champion yet; starting from initial weights", config.model_name
        )
        return None
    prefix = champion_model_dir(config, champion, scratch) / "variables" / "variables"
    if not prefix.with_suffix(".index").exists():
        raise ConfigError(f"trainer.warm_start 'champion': champion {champion['version']} has no variables at {prefix}")
    return str(prefix), champion["version"]


def read_keras_weights(model: Any, prefix: str) -> bool:
    """Set every weight of the Keras `model` from an object-based checkpoint holding a model of its shape at the
    root (Keras Estimator checkpoints and exports) or as `model` (native ones); False if neither matches."""
    tf = import_tensorflow()
    for place in ("model", "root"):
        try:
            tf.train.Checkpoint(**{place: model}).read(prefix).expect_partial().assert_existing_objects_matched()
        except (AssertionError, ValueError):
            continue
        return True
    return False


def load_trainable_weights(model: Any, prefix: str) -> None:
    """Set every trainable weight of the Keras `model` from the checkpoint at `prefix`: by variable name (an
    Estimator export of a premade or model_fn graph), else through the object graph (Keras and native exports)."""
    tf = import_tensorflow()
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    names = [weight.name.split(":")[0] for weight in model.trainable_weights]
    if all(name in shapes for name in names):
        values = [reader.get_tensor(name) for name in names]
    else:
        twin = tf.keras.models.clone_model(model)
        if not read_keras_weights(twin, prefix):
            missing = next(name for name in names if name not in shapes)
            raise ConfigError(
                f"trainer.warm_start: champion {prefix} does not match this model: no variable "
                f"{missing!r} and no Keras model of this shape in its object graph (another "
                "architecture? set trainer.warm_start: none)"
            )
        values = [weight.numpy() for weight in twin.trainable_weights]
    for weight, value in zip(model.trainable_weights, values):
        if tuple(value.shape) != tuple(weight.shape):
            raise ConfigError(
                f"trainer.warm_start: champion variable {weight.name.split(':')[0]!r} in {prefix} has "
                f"shape {list(value.shape)}, this model needs {list(weight.shape)} (another "
                "architecture? set trainer.warm_start: none)"
            )
        weight.assign(value)
    log.info("train: warm-started %d trainable weights from %s", len(values), prefix)


def estimator_warm_start(prefix: str) -> Any:
    """WarmStartSettings for premade and model_fn Estimators (trainable variables, matched by name)."""
    tf = import_tensorflow()
    return tf.estimator.WarmStartSettings(ckpt_to_initialize_from=prefix, vars_to_warm_start=".*")
