"""Reading the prepared TFRecords with tf.data and feeding them to a model's inputs.

Shared by train, evaluate and export, so that training, evaluation and serving parse features the same way.
"""

from __future__ import annotations

import os
from typing import Any

from kest_tasks.core.errors import ConfigError, KestError
from kest_tasks.core.results import InputPlan, InputSpec
from kest_tasks.core.tfenv import import_tensorflow
from kest_tasks.data.schema import LabelSchema, Schema

PREFETCH_BATCHES = 4


class ModelInputError(KestError, ValueError):
    """The model's inputs cannot be fed from the dataset's features."""


WEIGHT_KEY = "kest_sample_weight"  # the per-example class weight among a model_fn's or premade head's features
# The parse default of an absent int feature: read as "missing" and replaced by the feature's fill value.
MISSING_INT = -(2**63)


def raw_plan(schema: Schema) -> InputPlan:
    return InputPlan(mode="raw", inputs=[], features=schema.feature_keys)


def plan_model_inputs(inputs: list[InputSpec], schema: Schema) -> InputPlan:
    """Decide how to feed `inputs` from the schema's features; raise ModelInputError if no way fits.

    An input named after a feature — by its TensorFlow-safe name or its original one — takes that feature.
    """
    names = [spec.name for spec in inputs]
    if all(schema.has_feature(name) for name in names):
        keys = [schema.feature(name).key for name in names]
        vocabularies = {
            name: schema.feature(name).vocabulary or [] for name in names if schema.feature(name).type == "string"
        }
        return InputPlan(mode="by_name", inputs=inputs, features=keys, vocabularies=vocabularies)
    numeric = [f.key for f in schema.features if f.type != "string"]
    if len(inputs) == 1 and inputs[0].shape[-1:] == [len(numeric)] and len(numeric) == len(schema.features):
        return InputPlan(mode="stacked", inputs=inputs, features=numeric)
    raise ModelInputError(
        f"model inputs {[(s.name, s.shape) for s in inputs]} cannot be fed from dataset features "
        f"{schema.feature_keys}: name each keras.Input after a feature, or give the model a single input "
        f"of width {len(numeric)} taking the numeric features in schema order"
    )


def vocabulary_tables(plan: InputPlan) -> dict[str, Any]:
    """One lookup table per string input: value → its index in the schema's vocabulary (unknown: len)."""
    tf = import_tensorflow()
    return {
        name: tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(vocabulary), tf.range(len(vocabulary), dtype=tf.int64)),
            default_value=len(vocabulary),
        )
        for name, vocabulary in plan.vocabularies.items()
    }


def to_model_inputs(features: dict[str, Any], plan: InputPlan, tables: dict[str, Any]) -> dict[str, Any]:
    """Map a batch of model features (`model_features`: TensorFlow-safe name → [batch] tensor) to the model's
    named inputs. String features become their vocabulary index through `tables` (from `vocabulary_tables(plan)`).
    """
    tf = import_tensorflow()
    if plan.mode == "stacked":
        columns = [tf.cast(features[key], tf.float32) for key in plan.features]
        return {plan.inputs[0].name: tf.stack(columns, axis=1)}
    if plan.mode == "raw":
        return {key: features[key] for key in plan.features}
    adapted = {}
    for spec, key in zip(plan.inputs, plan.features):
        value = features[key]
        if spec.name in tables:
            value = tables[spec.name].lookup(value)
        elif value.dtype in (tf.int64, tf.float64):
            value = tf.cast(value, tf.float32)
        adapted[spec.name] = tf.reshape(value, [-1, 1]) if len(spec.shape) == 2 and spec.shape[1] == 1 else value
    return adapted


def serving_dtypes(schema: Schema) -> dict[str, Any]:
    """The `serving_default` inputs: TensorFlow-safe name → float32 for numbers (NaN: missing), string for text."""
    tf = import_tensorflow()
    return {f.key: tf.string if f.type == "string" else tf.float32 for f in schema.features}


def parse_spec(schema: Schema, with_label: bool = True) -> dict[str, Any]:
    """tf.io parse spec over the tf.Examples' original keys. An absent number parses as NaN (floats) or
    MISSING_INT (ints), an absent string as the feature's fill token: `serving_features` and `model_features`
    turn them into the fill value."""
    tf = import_tensorflow()
    spec = {}
    for feature in schema.features:
        if feature.type == "string":
            spec[feature.name] = tf.io.FixedLenFeature(
                [], tf.string, default_value=feature.fill if isinstance(feature.fill, str) else ""
            )
        elif feature.type == "int":
            spec[feature.name] = tf.io.FixedLenFeature([], tf.int64, default_value=MISSING_INT)
        else:
            spec[feature.name] = tf.io.FixedLenFeature([], tf.float32, default_value=float("nan"))
    if with_label:
        label_dtype = {"int": tf.int64, "float": tf.float32, "string": tf.string}[schema.label.type]
        spec[schema.label.name] = tf.io.FixedLenFeature([], label_dtype)
    return spec


def serving_features(parsed: dict[str, Any], schema: Schema, checked: bool = False) -> dict[str, Any]:
    """Parsed features (original names) → the `serving_default` inputs (TensorFlow-safe names; numbers as float32
    with NaN where the value is missing). `checked`: see `model_features`."""
    tf = import_tensorflow()
    features = {}
    for feature in schema.features:
        value = parsed[feature.name]
        if feature.type == "int":
            value = tf.cast(value, tf.float32)
            if feature.missing or not checked:
                value = tf.where(tf.equal(parsed[feature.name], MISSING_INT), float("nan"), value)
        features[feature.key] = value
    return features


def model_features(features: dict[str, Any], schema: Schema, checked: bool = False) -> dict[str, Any]:
    """The `serving_default` inputs → what models take, the same in training, evaluation and serving: a missing
    number (NaN) becomes the feature's fill value (the training split's statistic, dataset.missing), an infinite one
    the column's min or max; strings pass as they are.

    `checked`: the features come from this run's TFRecords, whose missing and infinite values the schema counts;
    a column with none skips the ops that would find nothing (the input pipeline's speed on clean data). Serving
    requests are never checked.
    """
    tf = import_tensorflow()
    ready = {}
    for feature in schema.features:
        value = features[feature.key]
        if feature.type != "string":
            value = tf.cast(value, tf.float32)
            fill = float(feature.fill) if isinstance(feature.fill, (int, float)) else float(feature.mean or 0.0)
            if feature.missing or not checked:
                value = tf.where(tf.math.is_nan(value), fill, value)
            if feature.infinite or not checked:
                low = feature.min if feature.min is not None else fill
                high = feature.max if feature.max is not None else fill
                value = tf.where(tf.math.is_inf(value), tf.clip_by_value(value, low, high), value)
        ready[feature.key] = value
    return ready


def parse_features(serialized: Any, schema: Schema, with_label: bool = False, checked: bool = False) -> Any:
    """Serialized tf.Examples → model features (and the stored label, with `with_label`); `checked` as in
    `model_features`."""
    tf = import_tensorflow()
    parsed = tf.io.parse_example(serialized, parse_spec(schema, with_label))
    label = parsed.pop(schema.label.name) if with_label else None
    features = model_features(serving_features(parsed, schema, checked), schema, checked)
    return (features, label) if with_label else features


def label_encoder(schema: Schema, standardize: bool = False) -> Any:
    """stored label → class index (a lookup on the class names), or → float (regression; with `standardize`,
    scaled by the training split's mean and std — the training target)."""
    tf = import_tensorflow()
    label = schema.label
    if label.kind == "regression":
        mean, std = (label.mean or 0.0, label.std or 1.0) if standardize else (0.0, 1.0)
        return lambda value: (tf.cast(value, tf.float32) - mean) / std
    classes = label.classes or []
    if label.type == "int" and classes == [str(i) for i in range(len(classes))]:
        return lambda value: value  # classes 0..k-1 are already their own indices
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(classes), tf.range(len(classes), dtype=tf.int64)),
        default_value=-1,
    )

    def encode(value: Any) -> Any:
        if value.dtype == tf.float32:  # a float column forced to classification holds whole numbers
            value = tf.cast(value, tf.int64)
        return table.lookup(value if value.dtype == tf.string else tf.strings.as_string(value))

    return encode


def to_label_units(outputs: Any, label: LabelSchema) -> Any:
    """A regression model's outputs (standardised targets) → predictions in the label's units; classifier outputs
    unchanged. Works on NumPy arrays and tensors."""
    if label.kind != "regression":
        return outputs
    return outputs * (label.std or 1.0) + (label.mean or 0.0)


def class_weights(config: Any, schema: Schema) -> list[float] | None:
    """Each class's loss weight (by class index) from trainer.class_weight, or None when unweighted.

    `balanced` weighs class c by train rows / (classes × train rows of c), as scikit-learn does; a mapping names
    classes (others weigh 1). Raises ConfigError for a regression label or a class the data does not have.
    """
    setting = config.trainer.class_weight
    if setting == "none":
        return None
    label = schema.label
    if label.kind != "classification":
        raise ConfigError(
            f"trainer.class_weight needs a classification label; the dataset's label {label.name!r} is regression"
        )
    classes = label.classes or []
    if setting == "balanced":
        counts = label.class_counts or []
        total = sum(counts)
        return [total / (len(classes) * count) if count else 1.0 for count in counts]
    unknown = sorted(set(setting) - set(classes))
    if unknown:
        raise ConfigError(f"trainer.class_weight: no class {unknown[0]!r} in the label (classes: {', '.join(classes)})")
    return [float(setting.get(name, 1.0)) for name in classes]


def record_dataset(files: list[str], compression: str) -> Any:
    """The serialized tf.Examples of TFRecord shards, in a deterministic order."""
    tf = import_tensorflow()
    # num_parallel_reads=1 still builds a parallel interleave, which here reads 13x slower than a plain reader.
    return tf.data.TFRecordDataset(
        files,
        compression_type="GZIP" if compression == "GZIP" else "",
        num_parallel_reads=min(len(files), 4) if len(files) > 1 else None,
    )


def read_examples(
    files: list[str],
    schema: Schema,
    compression: str,
    batch_size: int,
    *,
    shuffle_buffer: int = 0,
    repeat: bool = False,
    seed: int | None = None,
    plan: InputPlan | None = None,
    training_targets: bool = False,
    class_weights: list[float] | None = None,
) -> Any:
    """A tf.data.Dataset of (features, label) batches from TFRecord shards, features by TensorFlow-safe name.

    Batches before parsing (vectorised `parse_example`), then prefetches. With `plan`, features are already
    mapped to the model's input names. `training_targets`: regression labels standardised (what models train on).
    `class_weights`: (features, label, weight) batches, each example weighted by its class.
    """
    tf = import_tensorflow()
    dataset = record_dataset(files, compression)
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()

    encode_label = label_encoder(schema, standardize=training_targets)
    tables = vocabulary_tables(plan) if plan else {}
    weights = tf.constant(class_weights, tf.float32) if class_weights else None

    def parse(serialized: Any) -> Any:
        features, label = parse_features(serialized, schema, with_label=True, checked=True)
        target = encode_label(label)
        inputs = to_model_inputs(features, plan, tables) if plan else features
        if weights is None:
            return inputs, target
        return inputs, target, tf.gather(weights, target)

    # tf.data's autotuning thread made closing the training session take up to 8 s (measured in P2): fixed
    # parallelism and a small prefetch keep the input pipeline well ahead of training without it.
    options = tf.data.Options()
    options.autotune.enabled = False
    # Under multi-worker training each worker reads its share by example: a split often has fewer shard files
    # than there are workers, and sharding by file would leave a worker nothing to read.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return (
        dataset.batch(batch_size)
        .map(parse, num_parallel_calls=os.cpu_count() or 1)
        .prefetch(PREFETCH_BATCHES)
        .with_options(options)
    )
