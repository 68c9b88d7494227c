"""export: a SavedModel with two signatures — `serving_default` on the raw named features (what a client sends
as JSON) and `predict_examples` on serialized tf.Examples (what batch scoring sends) — infra-validated in a
fresh process before anything is published.

The Keras Estimator's own predictions are the raw model outputs (logits); the export wraps its model_fn so
clients also get probabilities, class ids and class names.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from kest_tasks.core import files
from kest_tasks.core.config import PipelineConfig
from kest_tasks.core.execution import run_once, stage_function
from kest_tasks.core.layout import (
    ESTIMATOR_SCRATCH_FOLDER,
    EXPORT_SCRATCH_FOLDER,
    SAVED_MODEL_FILE,
    SAVED_MODEL_FOLDER,
)
from kest_tasks.core.results import BuildResult, ExportResult, PrepareResult, TrainResult
from kest_tasks.core.stages import EXPORT
from kest_tasks.core.tfenv import import_tensorflow, tensorflow_storage_errors
from kest_tasks.data.schema import LabelSchema, Schema
from kest_tasks.data.tfdata import (
    model_features,
    parse_spec,
    record_dataset,
    serving_dtypes,
    serving_features,
    to_label_units,
    to_model_inputs,
    vocabulary_tables,
)
from kest_tasks.serving.infra_check import to_plain_list
from kest_tasks.serving.infra_validation import EXAMPLES_SIGNATURE, SIGNATURES, FreshProcess, infra_validate
from kest_tasks.training.estimators import make_estimator, model_output, run_config
from kest_tasks.training.native import trained_forward_pass

log = logging.getLogger("kest.export")


def prediction_outputs(output: Any, label: LabelSchema) -> dict:
    """What a client gets for the model's raw output: for classifiers logits, probabilities, class ids and class
    names (a binary head's single logit is the positive class's); for regressors the predicted values in the
    label's units (models train on standardised targets)."""
    tf = import_tensorflow()
    classes = label.classes if label.kind == "classification" else None
    if not classes:
        return {"predictions": tf.reshape(to_label_units(output, label), [-1])}
    if output.shape[-1] == 1 and len(classes) == 2:
        positive = tf.sigmoid(output)
        probabilities = tf.concat([1.0 - positive, positive], axis=-1)
    else:
        probabilities = tf.nn.softmax(output)
    class_ids = tf.argmax(probabilities, axis=-1)
    return {
        "logits": output,
        "probabilities": probabilities,
        "class_ids": class_ids,
        "classes": tf.gather(tf.constant(classes), class_ids),
    }


def _serving_estimator(config: PipelineConfig, built: BuildResult, schema: Schema, model_dir: str) -> Any:
    """An Estimator over the run's model_fn whose predictions add probabilities and class names."""
    tf = import_tensorflow()
    inner_model_fn = make_estimator(config, built, schema, model_dir).model_fn

    def model_fn(features: Any, labels: Any, mode: Any, config: Any) -> Any:
        spec = inner_model_fn(features, labels, mode, config)
        if mode != tf.estimator.ModeKeys.PREDICT:
            return spec
        predictions = prediction_outputs(model_output(spec.predictions, built), schema.label)
        return tf.estimator.EstimatorSpec(
            mode=mode,
            predictions=predictions,
            scaffold=spec.scaffold,
            export_outputs={"serving_default": tf.estimator.export.PredictOutput(predictions)},
        )

    return tf.estimator.Estimator(model_fn=model_fn, config=run_config(config, model_dir))


def _serving_input_fn(schema: Schema, built: BuildResult) -> Any:
    """Receiver: the features by TensorFlow-safe name for `serving_default` (numbers as float32, NaN where missing);
    serialized tf.Examples, parsed into those same tensors, for the `predict_examples` alternative."""
    tf = import_tensorflow()

    def receiver() -> Any:
        examples = tf.compat.v1.placeholder(tf.string, [None], name="examples")
        parsed = serving_features(tf.io.parse_example(examples, parse_spec(schema, with_label=False)), schema)
        # serving_default feeds these placeholders; predict_examples leaves them to their default, the parsed value.
        raw = {key: tf.compat.v1.placeholder_with_default(value, [None], name=key) for key, value in parsed.items()}
        tables = vocabulary_tables(built.input_plan)
        return tf.estimator.export.ServingInputReceiver(
            to_model_inputs(model_features(raw, schema), built.input_plan, tables),
            raw,
            receiver_tensors_alternatives={EXAMPLES_SIGNATURE: {"examples": examples}},
        )

    return receiver


def _rename_alternative_signature(saved_model_dir: Path) -> None:
    """The Estimator names an alternative receiver's signature `<receiver>:<output>`; clients call it by the
    receiver's name alone, so rename `predict_examples:serving_default` to `predict_examples` in saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = saved_model_dir / SAVED_MODEL_FILE
    saved_model = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        signatures = meta_graph.signature_def
        generated = f"{EXAMPLES_SIGNATURE}:serving_default"
        if generated in signatures:
            signatures[EXAMPLES_SIGNATURE].CopyFrom(signatures[generated])
            del signatures[generated]
    path.write_bytes(saved_model.SerializeToString())


def _test_examples(prepared: PrepareResult, schema: Schema, count: int) -> tuple[list[bytes], dict[str, list]]:
    """The first `count` test examples, serialized as stored, and parsed as the serving signature takes them."""
    tf = import_tensorflow()
    records = next(iter(record_dataset(prepared.files["test"], prepared.compression).batch(count)))
    parsed = serving_features(tf.io.parse_example(records, parse_spec(schema, with_label=False)), schema)
    return list(records.numpy()), {name: to_plain_list(values.numpy()) for name, values in parsed.items()}


# Seconds for the fresh process to import TensorFlow, load the model and answer.
def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _export_estimator(
    config: PipelineConfig,
    built: BuildResult,
    schema: Schema,
    trained: TrainResult,
    rows: dict[str, list],
    saved_model_dir: Path,
) -> tuple[str, dict[str, list]]:
    """Export the Estimator's checkpoint to `saved_model_dir`; return its export timestamp and the in-process
    predictions for `rows`."""
    tf = import_tensorflow()
    work = saved_model_dir.parent
    estimator = _serving_estimator(config, built, schema, str(work / ESTIMATOR_SCRATCH_FOLDER))
    exported = Path(
        estimator.export_saved_model(
            str(work / EXPORT_SCRATCH_FOLDER), _serving_input_fn(schema, built), checkpoint_path=trained.checkpoint
        ).decode()
    )
    exported.rename(saved_model_dir)
    _rename_alternative_signature(saved_model_dir)

    def query_input_fn() -> Any:
        tables = vocabulary_tables(built.input_plan)
        return (
            tf.data.Dataset.from_tensor_slices(rows)
            .batch(len(next(iter(rows.values()))))
            .map(lambda features: to_model_inputs(model_features(features, schema), built.input_plan, tables))
        )

    in_process = estimator.predict(query_input_fn, checkpoint_path=trained.checkpoint, yield_single_examples=False)
    (batch,) = list(in_process)  # consumed whole, so the prediction session closes here
    return exported.name, {name: to_plain_list(values) for name, values in batch.items()}


def _export_native(
    config: PipelineConfig,
    built: BuildResult,
    schema: Schema,
    trained: TrainResult,
    rows: dict[str, list],
    saved_model_dir: Path,
) -> tuple[str, dict[str, list]]:
    """Save the natively trained model as a SavedModel with the Estimator export's serving signature."""
    tf = import_tensorflow()
    module = trained_forward_pass(built, trained.checkpoint)
    specs = {name: tf.TensorSpec([None], dtype, name=name) for name, dtype in serving_dtypes(schema).items()}

    @tf.function(input_signature=[specs])
    def serve(features: Any) -> Any:
        return prediction_outputs(module.forward(model_features(features, schema)), schema.label)

    example_spec = parse_spec(schema, with_label=False)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def predict_examples(examples: Any) -> Any:
        return serve(serving_features(tf.io.parse_example(examples, example_spec), schema))

    module.serve, module.predict_examples = serve, predict_examples
    tf.saved_model.save(
        module,
        str(saved_model_dir),
        signatures={
            "serving_default": serve.get_concrete_function(),
            EXAMPLES_SIGNATURE: predict_examples.get_concrete_function(),
        },
    )
    answered = serve({name: tf.constant(values, dtype=specs[name].dtype) for name, values in rows.items()})
    return str(int(time.time())), {name: to_plain_list(value.numpy()) for name, value in answered.items()}


@stage_function
def export(
    config: PipelineConfig, run_uri: str, prepared: PrepareResult, built: BuildResult, trained: TrainResult
) -> ExportResult:
    """Export the trained checkpoint to `<run_uri>/export/saved_model/` and prove it answers like the
    in-process model on test rows. Raises ExportError (nothing is kept) when it does not."""
    schema = Schema.of(prepared)

    def produce(tmp: Path, folder: str) -> ExportResult:
        with tensorflow_storage_errors(), FreshProcess() as validator:  # the fresh one imports TF meanwhile
            examples, rows = _test_examples(prepared, schema, config.export.query_rows)
            export_kind = _export_native if config.trainer.kind == "native" else _export_estimator
            saved_model_dir = tmp / SAVED_MODEL_FOLDER
            exported_at, expected = export_kind(config, built, schema, trained, rows, saved_model_dir)
            answer = infra_validate(saved_model_dir, rows, examples, expected, validator)
        checked = len(examples)
        for scratch in (ESTIMATOR_SCRATCH_FOLDER, EXPORT_SCRATCH_FOLDER):
            _remove(tmp / scratch)
        latency = answer["latency_ms"]
        log.info(
            "export: infra validation passed: a fresh process loaded the SavedModel in %.2f s; signatures %s "
            "answer %d test rows like the trained model; single-row latency p50 %.2f ms, p99 %.2f ms",
            answer["load_seconds"],
            ", ".join(SIGNATURES),
            checked,
            latency["p50"],
            latency["p99"],
        )
        return ExportResult(
            saved_model_uri=files.join(folder, SAVED_MODEL_FOLDER),
            exported_at=exported_at,
            inputs=sorted(rows),
            outputs=sorted(expected),
            checked_rows=checked,
            load_seconds=round(answer["load_seconds"], 3),
            signatures=answer["signatures"],
            latency_ms_p50=round(latency["p50"], 3),
            latency_ms_p99=round(latency["p99"], 3),
        )

    return run_once(run_uri, EXPORT.folder, ExportResult, produce)
