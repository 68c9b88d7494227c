import pytest

from kest_tasks.core import layout, stages
from kest_tasks.core.config import ConfigError
from kest_tasks.core.results import InputSpec
from kest_tasks.core.tfenv import import_tensorflow
from kest_tasks.data.prepare import prepare
from kest_tasks.data.schema import FeatureSchema, LabelSchema, Schema
from kest_tasks.data.tfdata import ModelInputError, plan_model_inputs
from kest_tasks.training.build import BUILDERS, build
from tests.helpers import stage_file


@pytest.fixture
def prepared(iris_config, tmp_path):
    return prepare(iris_config, str(tmp_path / "run"))


def test_iris_builder_is_the_tutorial_model(iris_config, tmp_path, prepared):
    result = build(iris_config, str(tmp_path / "run"), prepared)
    tf = import_tensorflow()
    model = tf.keras.models.load_model(result.model_uri)
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dropout", "Dense"]
    assert model.layers[0].units == 16 and model.layers[0].activation.__name__ == "relu"
    assert model.layers[1].rate == 0.2
    assert model.layers[2].units == 3
    assert model.loss.get_config()["from_logits"] is True
    assert model.optimizer is not None
    assert result.parameters == 4 * 16 + 16 + 16 * 3 + 3
    # The tutorial's Sequential model takes `dense_input`; the plan stacks the four features into it.
    assert result.input_plan.mode == "stacked"
    assert result.input_plan.inputs[0].name == "dense_input"
    assert stage_file(tmp_path / "run", stages.BUILD, layout.MODEL_SUMMARY_FILE).read_text().count("dense") >= 2


def test_same_seed_same_initial_weights(iris_config, tmp_path, prepared):
    tf = import_tensorflow()
    first = build(iris_config, str(tmp_path / "a"), prepared)
    second = build(iris_config, str(tmp_path / "b"), prepared)
    a = tf.keras.models.load_model(first.model_uri).get_weights()
    b = tf.keras.models.load_model(second.model_uri).get_weights()
    assert all((x == y).all() for x, y in zip(a, b))


def test_unknown_builder_lists_the_known_ones(iris_config, tmp_path, prepared):
    iris_config.model.builder = "resnet9000"
    with pytest.raises(ConfigError, match=r"model.builder 'resnet9000' is not registered \(known: .*iris"):
        build(iris_config, str(tmp_path / "run"), prepared)
    assert "iris" in BUILDERS


def _schema(*names, types=None):
    types = types or {}
    return Schema(
        features=[FeatureSchema(name=n, type=types.get(n, "float")) for n in names],
        label=LabelSchema(name="y", kind="classification", classes=["a", "b"]),
        rows=10,
    )


def test_inputs_named_after_features_are_fed_by_name():
    plan = plan_model_inputs(
        [InputSpec(name="b", shape=[None, 1]), InputSpec(name="a", shape=[None, 1])], _schema("a", "b")
    )
    assert plan.mode == "by_name" and plan.features == ["b", "a"]


def test_inputs_that_match_nothing_get_a_clear_error():
    with pytest.raises(ModelInputError, match=r"cannot be fed from dataset features \['a', 'b'\].*width 2"):
        plan_model_inputs([InputSpec(name="pixels", shape=[None, 784])], _schema("a", "b"))


def test_string_features_cannot_be_stacked():
    with pytest.raises(ModelInputError):
        plan_model_inputs([InputSpec(name="x", shape=[None, 1])], _schema("a", "c", types={"c": "string"}))
