from pathlib import Path

import pytest

from kest_tasks.cli import parse_override
from kest_tasks.core.config import ConfigError, load_config
from kest_tasks.core.layout import safe_run_id
from tests.helpers import IRIS_CONFIG, IRIS_CSV, REPO


def test_iris_config_resolves_paths_against_its_folder():
    config = load_config(IRIS_CONFIG)
    assert config.dataset.path == str(IRIS_CSV)
    assert config.artifact_root == str(REPO / "artifacts")
    assert config.trainer.steps == 500 and config.trainer.batch_size == 32
    assert config.gate.thresholds["accuracy"].lower == 0.9


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"trainer\.stepz: unknown key"):
        load_config(IRIS_CONFIG, {"trainer": {"stepz": 3}})


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"trainer\.steps: Input should be a valid integer"):
        load_config(IRIS_CONFIG, {"trainer": {"steps": "many"}})


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "a..b", ""])
def test_unsafe_model_name_is_refused(name):
    with pytest.raises(ConfigError, match="model_name"):
        load_config(IRIS_CONFIG, {"model_name": name})


def test_overrides_merge_into_nested_sections():
    config = load_config(IRIS_CONFIG, {"trainer": {"steps": 7}})
    assert config.trainer.steps == 7 and config.trainer.batch_size == 32


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name: [unclosed\n")
    with pytest.raises(ConfigError, match=f"config {bad} is not valid YAML"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(listed)


def test_split_weights_must_be_positive():
    with pytest.raises(ConfigError, match="split weight 'eval' must be greater than 0"):
        load_config(IRIS_CONFIG, {"dataset": {"split": {"eval": 0}}})


def test_airflow_run_ids_become_safe_folder_names():
    assert safe_run_id("manual__2026-11-21T22:47:19.314469+00:00") == "manual__2026-11-21T22_47_19.314469_00_00"
    assert "/" not in safe_run_id("../../etc")
    assert Path(safe_run_id("../../etc")).name == safe_run_id("../../etc")


def test_cli_overrides_parse_as_yaml():
    assert parse_override("trainer.steps=200") == {"trainer": {"steps": 200}}
    assert parse_override("gate.thresholds={accuracy: {lower: 2}}") == {
        "gate": {"thresholds": {"accuracy": {"lower": 2}}}
    }
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("trainer.steps")


def test_the_stored_trigger_form_matches_the_config_schema():
    """The DAG reads its form from kest_tasks/form_fields.json; after changing the config model, regenerate it with
    `python -m kest_tasks.orchestration.trigger_form > kest_tasks/form_fields.json`."""
    from kest_tasks.orchestration.trigger_form import form_fields, overrides_from_form, stored_form_fields

    assert stored_form_fields() == form_fields()
    assert overrides_from_form({"trainer__steps": 7, "model_name": "m", "gate__mode": None, "unknown": 1}) == {
        "trainer": {"steps": 7},
        "model_name": "m",
    }


@pytest.mark.parametrize(
    "value, message",
    [
        (
            "balance",
            "trainer.class_weight: Value error, 'balance': expected none, balanced, or a mapping class name → weight",
        ),
        ({"a": "x"}, "trainer.class_weight: Value error, class 'a': weight 'x' is not a number greater than 0"),
    ],
)
def test_class_weight_values_are_checked_in_one_line(value, message):
    with pytest.raises(ConfigError) as caught:
        load_config(IRIS_CONFIG, {"trainer": {"class_weight": value}})
    assert str(caught.value) == f"invalid config {IRIS_CONFIG}: {message}"


@pytest.mark.parametrize(
    ("dataset", "source"),
    [
        ({"path": "data/loans.csv"}, "csv"),
        ({"path": "gs://bucket/loans/*.parquet"}, "parquet"),
        ({"path": "data/part-{SPAN}.PQ"}, "parquet"),
        ({"path": "data/train-00000-of-00004.tfrecord.gz"}, "tfrecord"),
        ({"path": "data/*.tfrecords"}, "tfrecord"),
        ({"path": "arrays.npz"}, "npz"),
        ({"path": "export.txt"}, "csv"),  # no known ending: CSV, as before
        ({"path": "data/*"}, "csv"),
        ({"path": None, "splits": {s: f"{s}.parquet" for s in ("train", "eval", "test")}}, "parquet"),
        ({"path": None, "tfds": {"name": "iris", "data_dir": "/srv/tfds"}}, "tfds"),
        ({"path": "loans.parquet", "source": "csv"}, "csv"),  # a source given is kept
    ],
)
def test_source_auto_is_read_from_the_file_names(dataset, source):
    assert load_config(IRIS_CONFIG, {"dataset": dataset}).dataset.source == source


def test_source_auto_refuses_splits_of_different_kinds():
    splits = {"train": "train.parquet", "eval": "eval.csv", "test": "test.parquet"}
    with pytest.raises(ConfigError, match=r"source 'auto': the splits' files are of different kinds \(csv, parquet\)"):
        load_config(IRIS_CONFIG, {"dataset": {"path": None, "splits": splits}})
