from pathlib import Path

import pytest

from kest_tasks.core import layout, stages
from kest_tasks.serving.infra_validation import ExportError, FreshProcess, query_in_fresh_process

pytestmark = pytest.mark.slow


def test_serving_signature_takes_raw_named_features(iris_run):
    published = Path(iris_run["summary"]["published_model"])
    rows = {
        "sepal_length": [5.1, 6.7],
        "sepal_width": [3.5, 3.0],
        "petal_length": [1.4, 5.2],
        "petal_width": [0.2, 2.3],
    }
    answer = query_in_fresh_process(published, rows)
    outputs = answer["outputs"]["serving_default"]
    assert outputs["classes"] == ["setosa", "virginica"]
    assert outputs["class_ids"] == [0, 2]
    assert all(abs(sum(p) - 1) < 1e-5 for p in outputs["probabilities"])


def test_a_broken_saved_model_is_caught_in_the_fresh_process(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / layout.SAVED_MODEL_FILE).write_bytes(b"not a protobuf")
    with pytest.raises(ExportError, match="failed to load or answer in a fresh process"):
        query_in_fresh_process(broken, {"x": [1.0]})


def test_a_validator_started_early_is_stopped_when_the_export_fails_first():
    # Export starts the fresh process before the model exists; an export that fails must not leave it behind.
    with pytest.raises(RuntimeError), FreshProcess() as validator:
        raise RuntimeError("the export failed")
    assert validator.process.returncode is not None


def test_both_signatures_answer_like_the_trained_model(iris_run):
    """predict_examples takes the stored tf.Examples; its answers equal serving_default's on the same rows."""
    from kest_tasks.data.schema import Schema
    from kest_tasks.serving.export import _test_examples

    run = Path(iris_run["summary"]["run_uri"])
    exported = stages.EXPORT.load(str(run))
    assert exported.signatures == ["predict_examples", "serving_default"]
    assert 0 < exported.latency_ms_p50 <= exported.latency_ms_p99
    prepared = stages.PREPARE.load(str(run))
    examples, rows = _test_examples(prepared, Schema.of(prepared), 5)
    answer = query_in_fresh_process(Path(iris_run["summary"]["published_model"]), rows, examples)
    assert answer["outputs"]["predict_examples"] == answer["outputs"]["serving_default"]
    assert len(answer["outputs"]["predict_examples"]["classes"]) == 5


def test_infra_validation_catches_a_broken_signature(tmp_path):
    """A SavedModel whose predict_examples answers differently from the trained model is refused."""
    from kest_tasks.core.tfenv import import_tensorflow
    from kest_tasks.serving.infra_validation import infra_validate

    tf = import_tensorflow()
    module = tf.Module()

    @tf.function(input_signature=[{"x": tf.TensorSpec([None], tf.float32, name="x")}])
    def serve(features):
        return {"predictions": features["x"] * 2.0}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def predict_examples(examples):
        parsed = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([], tf.float32)})
        return {"predictions": parsed["x"] * 3.0}  # the bug: not what the model computes

    module.serve, module.predict_examples = serve, predict_examples
    saved = tmp_path / layout.SAVED_MODEL_FOLDER
    tf.saved_model.save(
        module,
        str(saved),
        signatures={
            "serving_default": serve.get_concrete_function(),
            "predict_examples": predict_examples.get_concrete_function(),
        },
    )
    examples = [
        tf.train.Example(
            features=tf.train.Features(feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[value]))})
        ).SerializeToString()
        for value in (1.0, 2.0)
    ]
    with pytest.raises(
        ExportError,
        match=r"signature 'predict_examples': output 'predictions' differs from the "
        r"trained model: 3.0 != 2.0",
    ):
        infra_validate(saved, {"x": [1.0, 2.0]}, examples, {"predictions": [2.0, 4.0]})
