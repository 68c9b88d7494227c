"""Reading the prepared TFRecords with tf.data and feeding them to a model's inputs.

Shared by train, evaluate and export, so that training, evaluation and serving parse features the same way.
"""
from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel

from kest_tasks.errors import KestError
from kest_tasks.schema import Schema
from kest_tasks.tfenv import import_tensorflow

PREFETCH_BATCHES = 4


class ModelInputError(KestError, ValueError):
    """The model's inputs cannot be fed from the dataset's features."""


class InputSpec(BaseModel):
    """One Keras model input: its name and shape (None for the batch dimension)."""

    name: str
    shape: list[int | None]


class InputPlan(BaseModel):
    """How dataset features become model inputs.

    `by_name`: each model input is the feature of the same name. `stacked`: the model has one input as wide
    as the numeric features, which are stacked in schema order (the Iris tutorial's `dense_input`). `raw`:
    every feature under its own name, numbers as float32 (premade Estimators' feature columns, model_fns).
    """

    mode: Literal["by_name", "stacked", "raw"]
    inputs: list[InputSpec]
    features: list[str]
    vocabularies: dict[str, list[str]] = {}


def raw_plan(schema: Schema) -> InputPlan:
    return InputPlan(mode="raw", inputs=[], features=schema.feature_names)


def plan_model_inputs(inputs: list[InputSpec], schema: Schema) -> InputPlan:
    """Decide how to feed `inputs` from the schema's features; raise ModelInputError if no way fits."""
    names = [spec.name for spec in inputs]
    if all(name in schema.feature_names for name in names):
        vocabularies = {n: schema.feature(n).vocabulary or [] for n in names if schema.feature(n).type == "string"}
        return InputPlan(mode="by_name", inputs=inputs, features=names, vocabularies=vocabularies)
    numeric = schema.numeric_feature_names
    if len(inputs) == 1 and inputs[0].shape[-1:] == [len(numeric)] and len(numeric) == len(schema.features):
        return InputPlan(mode="stacked", inputs=inputs, features=numeric)
    raise ModelInputError(
        f"model inputs {[(s.name, s.shape) for s in inputs]} cannot be fed from dataset features "
        f"{schema.feature_names}: name each keras.Input after a feature, or give the model a single input "
        f"of width {len(numeric)} taking the numeric features in schema order"
    )


def vocabulary_tables(plan: InputPlan) -> dict[str, Any]:
    """One lookup table per string feature: value → its index in the schema's vocabulary (unknown: len)."""
    tf = import_tensorflow()
    return {
        name: tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(vocabulary), tf.range(len(vocabulary), dtype=tf.int64)),
            default_value=len(vocabulary),
        )
        for name, vocabulary in plan.vocabularies.items()
    }


def to_model_inputs(features: dict[str, Any], plan: InputPlan, tables: dict[str, Any]) -> dict[str, Any]:
    """Map a batch of parsed features (name → [batch] tensor) to the model's named inputs.

    String features become their vocabulary index through `tables` (from `vocabulary_tables(plan)`).
    """
    tf = import_tensorflow()
    if plan.mode == "stacked":
        columns = [tf.cast(features[name], tf.float32) for name in plan.features]
        return {plan.inputs[0].name: tf.stack(columns, axis=1)}
    if plan.mode == "raw":
        return {name: value if value.dtype == tf.string else tf.cast(value, tf.float32)
                for name, value in features.items()}
    adapted = {}
    for spec in plan.inputs:
        value = features[spec.name]
        if spec.name in tables:
            value = tables[spec.name].lookup(value)
        elif value.dtype in (tf.int64, tf.float64):
            value = tf.cast(value, tf.float32)
        adapted[spec.name] = tf.reshape(value, [-1, 1]) if len(spec.shape) == 2 and spec.shape[1] == 1 else value
    return adapted


def feature_dtypes(schema: Schema) -> dict[str, Any]:
    tf = import_tensorflow()
    return {f.name: {"int": tf.int64, "float": tf.float32, "string": tf.string}[f.type] for f in schema.features}


def parse_spec(schema: Schema, with_label: bool = True) -> dict[str, Any]:
    """tf.io parse spec: missing numeric values are imputed with the training data's mean."""
    tf = import_tensorflow()
    spec = {}
    for feature, dtype in zip(schema.features, feature_dtypes(schema).values()):
        if feature.type == "string":
            default: Any = ""
        elif feature.type == "int":
            default = int(round(feature.mean or 0))
        else:
            default = float(feature.mean or 0.0)
        spec[feature.name] = tf.io.FixedLenFeature([], dtype, default_value=default)
    if with_label:
        label_dtype = {"int": tf.int64, "float": tf.float32, "string": tf.string}[schema.label.type]
        if schema.label.kind == "regression":
            label_dtype = tf.float32 if schema.label.type != "int" else tf.int64
        spec[schema.label.name] = tf.io.FixedLenFeature([], label_dtype)
    return spec


def label_encoder(schema: Schema):
    """stored label → training target: a class index (via a lookup on the class names) or a float."""
    tf = import_tensorflow()
    if schema.label.kind == "regression":
        return lambda label: tf.cast(label, tf.float32)
    if schema.label.type == "int" and schema.label.classes == [str(i) for i in range(len(schema.label.classes))]:
        return lambda label: label  # classes 0..k-1 are already their own indices
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(schema.label.classes), tf.range(len(schema.label.classes), dtype=tf.int64)
        ),
        default_value=-1,
    )

    def encode(label):
        return table.lookup(label if label.dtype == tf.string else tf.strings.as_string(label))

    return encode


def record_dataset(files: list[str], compression: str):
    """The serialized tf.Examples of TFRecord shards, in a deterministic order."""
    tf = import_tensorflow()
    # num_parallel_reads=1 still builds a parallel interleave, which here reads 13x slower than a plain reader.
    return tf.data.TFRecordDataset(
        files, compression_type="GZIP" if compression == "GZIP" else "",
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
):
    """A tf.data.Dataset of (features, label) batches from TFRecord shards.

    Batches before parsing (vectorised `parse_example`), then prefetches. With `plan`, features are already
    mapped to the model's input names.
    """
    tf = import_tensorflow()
    spec = parse_spec(schema)
    label = schema.label.name
    dataset = record_dataset(files, compression)
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()

    encode_label = label_encoder(schema)
    tables = vocabulary_tables(plan) if plan else {}

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        target = encode_label(parsed.pop(label))
        return (to_model_inputs(parsed, plan, tables) if plan else parsed), target

    # tf.data's autotuning thread made closing the training session take up to 8 s (measured in P2): fixed
    # parallelism and a small prefetch keep the input pipeline well ahead of training without it.
    options = tf.data.Options()
    options.autotune.enabled = False
    # Under multi-worker training each worker reads its share by example: a split often has fewer shard files
    # than there are workers, and sharding by file would leave a worker nothing to read.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return (dataset.batch(batch_size).map(parse, num_parallel_calls=os.cpu_count() or 1).prefetch(PREFETCH_BATCHES)
            .with_options(options))
