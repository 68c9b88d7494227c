"""Validating new data against a pinned schema: every anomaly kind, severities, and nothing written on error."""

import json

import pytest

from kest_tasks.core import stages
from kest_tasks.data.prepare import DataError, prepare
from tests.helpers import stage_file

BASE = "size,colour,label\n" + "".join(
    f"{i * 0.5},{'red' if i % 2 else 'blue'},{'a' if i % 3 else 'b'}\n" for i in range(90)
)


@pytest.fixture
def pinned(iris_config, tmp_path):
    """A schema inferred from good data, then pinned for the next run."""
    (tmp_path / "base.csv").write_text(BASE)
    iris_config.dataset.path = str(tmp_path / "base.csv")
    iris_config.dataset.label = "label"
    result = prepare(iris_config, str(tmp_path / "base-run"))
    iris_config.dataset.schema_file = result.schema_uri
    return iris_config


def _run(config, tmp_path, text, name="new.csv"):
    (tmp_path / name).write_text(text)
    config.dataset.path = str(tmp_path / name)
    return prepare(config, str(tmp_path / f"run-{name}"))


def _error(config, tmp_path, text):
    with pytest.raises(DataError) as raised:
        _run(config, tmp_path, text)
    assert not stage_file(tmp_path / "run-new.csv", stages.PREPARE).exists()
    return str(raised.value)


def test_good_data_passes_with_no_anomalies(pinned, tmp_path):
    result = _run(pinned, tmp_path, BASE)
    assert result.anomalies == 0 and result.rows == 90


def test_missing_column_is_an_error(pinned, tmp_path):
    message = _error(pinned, tmp_path, "size,label\n1,a\n2,b\n")
    assert "error missing_column: " in message and "column 'colour'" in message


def test_type_change_names_file_row_column_and_value(pinned, tmp_path):
    message = _error(pinned, tmp_path, "size,colour,label\n1,red,a\nbig,blue,b\n3,red,a\n")
    assert message.splitlines()[1] == (
        f"error type_change: {tmp_path}/new.csv row 3 column 'size': value 'big' "
        "(pinned type float, data has string; 1 rows)"
    )


def test_inf_and_unknown_label_are_errors_one_line_each(pinned, tmp_path):
    pinned.dataset.non_finite = "clip"  # else prepare refuses inf before validating (tests/test_data_defects.py)
    message = _error(pinned, tmp_path, "size,colour,label\n1,red,a\ninf,blue,b\n3,red,zebra\n")
    lines = message.splitlines()
    assert lines[0] == "data does not match the pinned schema (2 error anomalies):"
    assert f"error nan_or_inf: {tmp_path}/new.csv row 3 column 'size'" in message
    assert f"error unknown_label: {tmp_path}/new.csv row 4 column 'label': value 'zebra'" in message
    assert len(lines) == 3


def test_anomalies_quote_a_long_value_by_its_start(pinned, tmp_path, monkeypatch):
    long = "green_" + "G" * 60
    text = BASE + f"1,{long},a\n"
    result = _run(pinned, tmp_path, text, name="long.csv")
    anomalies = {a["kind"]: a for a in json.loads(open(f"{result.data_uri}/anomalies.json").read())}
    assert anomalies["unseen_category"]["first"] == {
        "origin": f"{tmp_path}/long.csv",
        "row": 92,
        "value": "green_GGGGGGGGGGGGGGGGGG…",
    }
    message = _error(pinned, tmp_path, f"size,colour,label\n1,red,a\n3,red,{long}\n")
    assert message.splitlines()[1] == (
        f"error unknown_label: {tmp_path}/new.csv row 3 column 'label': value 'green_GGGGGGGGGGGGGGGGGG'… "
        "(66 characters) (not one of the classes ['a', 'b']; 1 rows)"
    )
    monkeypatch.setenv("KEST_HIDE_VALUES_IN_ERRORS", "1")
    message = _error(pinned, tmp_path, f"size,colour,label\n1,red,a\n3,red,{long}\n")
    assert message.splitlines()[1] == (
        f"error unknown_label: {tmp_path}/new.csv row 3 column 'label': a value of 66 characters "
        "(not one of the classes ['a', 'b']; 1 rows)"
    )


def test_warnings_are_recorded_and_data_written(pinned, tmp_path):
    text = (
        "size,colour,extra,label\n"
        + "".join(f"{i},red,x,{'ab'[i % 2]}\n" for i in range(40))
        + "420,green,x,b\n"
        + "".join(f"{i},,x,a\n" for i in range(40, 60))
    )
    result = _run(pinned, tmp_path, text)
    anomalies = {a["kind"]: a for a in json.loads(open(f"{result.data_uri}/anomalies.json").read())}
    assert set(anomalies) == {"new_column", "out_of_range", "unseen_category", "too_many_missing"}
    assert all(a["severity"] == "warning" for a in anomalies.values())
    assert anomalies["out_of_range"]["first"]["row"] == 42 and anomalies["out_of_range"]["first"]["value"] == 420
    assert anomalies["unseen_category"]["first"]["value"] == "green"
    assert anomalies["too_many_missing"]["count"] == 20
    # The new column is not written: the Examples keep the pinned schema.
    schema = json.loads(open(result.schema_uri).read())
    assert [f["name"] for f in schema["features"]] == ["size", "colour"]


def test_severity_can_be_raised_or_silenced(pinned, tmp_path):
    pinned.dataset.validation.severity = {"unseen_category": "error", "new_column": "ignore"}
    message = _error(pinned, tmp_path, "size,colour,extra,label\n1,green,x,a\n2,red,x,b\n")
    assert "error unseen_category" in message and "new_column" not in message
