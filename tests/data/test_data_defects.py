"""Real files' defects in prepare: odd headers, missing and non-finite values, repeated headers, ambiguous labels.

Each bad input shows the exact one-line message a user sees; nothing is written when prepare fails.
"""

import logging

import numpy as np
import pytest

from kest_tasks.core import stages
from kest_tasks.data.feature_names import tf_names
from kest_tasks.data.prepare import DataError, prepare
from kest_tasks.data.schema import Schema
from kest_tasks.data.tfdata import read_examples
from tests.helpers import stage_file

ODD_HEADERS = [
    "sepal length (cm)",
    "1st phenols",
    "Magnesium mg/L",
    "größe",
    "od280/od315 of diluted wines",
    "a-b",
    "a_b",
    "x.y",
    "[bracketed]",
]


def _csv(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _prepare(config, tmp_path, text, label="label", **dataset):
    config.dataset.path = str(_csv(tmp_path, text))
    config.dataset.label = label
    for key, value in dataset.items():
        setattr(config.dataset, key, value)
    return prepare(config, str(tmp_path / "run"))


def _error(config, tmp_path, text, **dataset) -> str:
    with pytest.raises(DataError) as caught:
        _prepare(config, tmp_path, text, **dataset)
    assert not stage_file(str(tmp_path / "run"), stages.PREPARE).exists()  # nothing half-written
    message = str(caught.value)
    assert "\n" not in message
    return message.replace(str(tmp_path), "<tmp>")


def _rows(n=60, make=lambda i: f"{i % 7},{i * 0.5},{'ab'[i % 2]}"):
    return "".join(make(i) + "\n" for i in range(n))


def test_tf_names_are_safe_distinct_and_deterministic():
    names = tf_names(ODD_HEADERS + ["plain"])
    assert names == {
        "sepal length (cm)": "sepal_length_cm",
        "1st phenols": "f_1st_phenols",
        "Magnesium mg/L": "Magnesium_mg_L",
        "größe": "grosse",
        "od280/od315 of diluted wines": "od280_od315_of_diluted_wines",
        "a-b": "a_b_2",
        "a_b": "a_b",
        "x.y": "x_y",
        "[bracketed]": "bracketed",
        "plain": "plain",
    }
    assert tf_names(list(reversed(ODD_HEADERS))) == {k: names[k] for k in reversed(ODD_HEADERS)}
    # Names kest feeds beside the features are never taken; a name left empty by sanitising gets one.
    assert tf_names(["examples", "kest_sample_weight", "%%"]) == {
        "examples": "examples_2",
        "kest_sample_weight": "kest_sample_weight_2",
        "%%": "feature",
    }


def test_odd_headers_get_tf_names_in_the_schema_and_keep_theirs_in_the_records(iris_config, tmp_path):
    header = ",".join(f'"{name}"' for name in ODD_HEADERS) + ",label"
    rows = _rows(make=lambda i: ",".join(str((i * (k + 3)) % 11) for k in range(len(ODD_HEADERS))) + f",{'ab'[i % 2]}")
    result = _prepare(iris_config, tmp_path, header + "\n" + rows)
    schema = Schema.of(result)
    assert schema.feature_names == ODD_HEADERS
    assert schema.renamed == {name: key for name, key in tf_names(ODD_HEADERS).items() if name != key}
    import tensorflow as tf

    record = next(iter(tf.data.TFRecordDataset(result.files["train"], compression_type="GZIP")))
    stored = set(tf.train.Example.FromString(record.numpy()).features.feature)
    assert stored == set(ODD_HEADERS) | {"label"}  # the TFRecords keep the original names
    features, _ = next(iter(read_examples(result.files["train"], schema, "GZIP", 8)))
    assert sorted(features) == sorted(schema.feature_keys)  # readers hand models the TensorFlow names


@pytest.mark.parametrize(
    "header, message",
    [
        ("a,,label", "<tmp>/data.csv row 1 column 2: empty header cell; every column needs a name"),
        ("a,b,a,label", "<tmp>/data.csv row 1 column 3: the same name as column 1; column names must be unique"),
    ],
)
def test_an_empty_or_repeated_header_cell_names_its_position(iris_config, tmp_path, header, message):
    assert _error(iris_config, tmp_path, header + "\n1,2,3,x\n") == message


def test_missing_cells_of_every_spelling_are_filled_with_the_training_mean(iris_config, tmp_path, caplog):
    spellings = ["", "nan", "NaN", "NA", "null", "N/A"]
    rows = _rows(120, make=lambda i: f"{spellings[i % 6] if i % 5 == 0 else i % 9},{'ab'[i % 2]}")
    with caplog.at_level(logging.WARNING, logger="kest.prepare"):
        result = _prepare(iris_config, tmp_path, "x,label\n" + rows)
    schema = Schema.of(result)
    x = schema.feature("x")
    assert x.type == "int" and x.missing == 24 and x.fill == pytest.approx(x.mean)
    values = np.concatenate([f["x"].numpy() for f, _ in read_examples(result.files["train"], schema, "GZIP", 500)])
    assert np.isfinite(values).all() and np.sum(np.isclose(values, x.mean or 0.0)) >= 1
    warning = next(r.getMessage() for r in caplog.records if "missing values" in r.getMessage())
    assert warning.startswith("prepare: column 'x': 24 missing values (")
    assert "first at " in warning and f"the training split's mean {x.mean:g}" in warning


@pytest.mark.parametrize("policy, expected", [("median", "median"), ("zero", 0.0)])
def test_missing_policy_median_and_zero(iris_config, tmp_path, policy, expected):
    rows = _rows(100, make=lambda i: f"{'' if i % 10 == 0 else (i % 5) ** 3},{'ab'[i % 2]}")
    iris_config.dataset.missing.numeric = policy
    schema = Schema.load(_prepare(iris_config, tmp_path, "x,label\n" + rows).schema_uri)
    x = schema.feature("x")
    assert x.fill == (x.median if expected == "median" else expected)
    assert x.median != x.mean  # the cubes are skewed: the policies differ


def test_missing_policy_error_names_the_first_missing_cell(iris_config, tmp_path):
    iris_config.dataset.missing.numeric = "error"
    rows = "1,a\n2,b\nNA,a\n4,b\n,a\n6,b\n"
    assert _error(iris_config, tmp_path, "x,label\n" + rows) == (
        "<tmp>/data.csv row 4 column 'x': missing value (2 missing in all); fill them, or set "
        "dataset.missing.numeric to mean, median or zero"
    )
    iris_config.dataset.missing.string = "error"
    assert _error(iris_config, tmp_path, "s,label\nred,a\n,b\nblue,a\n") == (
        "<tmp>/data.csv row 3 column 's': missing value (1 missing in all); fill them, or set "
        "dataset.missing.string to token"
    )


@pytest.mark.parametrize("cell, shown", [("inf", "inf"), ("-inf", "-inf"), ("1e400", "inf"), ("3e39", "3e+39")])
def test_a_non_finite_number_names_file_row_and_column(iris_config, tmp_path, cell, shown):
    rows = f"1.5,a\n2.5,b\n{cell},a\n3.5,b\n"
    assert _error(iris_config, tmp_path, "x,label\n" + rows) == (
        f"<tmp>/data.csv row 4 column 'x': {shown} is not a finite float32 number; fix it, or set "
        "dataset.non_finite: clip to clip such values to the column's range"
    )


def test_non_finite_clip_keeps_the_row_and_readers_clip_it(iris_config, tmp_path):
    rows = _rows(200, make=lambda i: f"{'inf' if i == 3 else '-1e400' if i == 4 else i % 10 + 0.5},{'ab'[i % 2]}")
    result = _prepare(iris_config, tmp_path, "x,label\n" + rows, non_finite="clip")
    schema = Schema.of(result)
    assert (schema.feature("x").min, schema.feature("x").max) == (0.5, 9.5)
    values = np.concatenate(
        [
            f["x"].numpy()
            for split in ("train", "eval", "test")
            for f, _ in read_examples(result.files[split], schema, "GZIP", 500)
        ]
    )
    assert len(values) == 200 and values.min() == 0.5 and values.max() == 9.5


def test_a_repeated_header_line_is_an_error_naming_its_row(iris_config, tmp_path):
    part = "x,y,label\n" + _rows(5, make=lambda i: f"{i},{i * 0.5},{'ab'[i % 2]}")
    assert _error(iris_config, tmp_path, part + part) == (
        "<tmp>/data.csv row 7: the header line is repeated inside the data (files joined with cat?); remove it, "
        "or set dataset.skip_repeated_headers: true"
    )


def test_repeated_header_lines_can_be_skipped(iris_config, tmp_path, caplog):
    part = "x,y,label\r\n" + _rows(30, make=lambda i: f"{i},{i * 0.5},{'ab'[i % 2]}").replace("\n", "\r\n")
    with caplog.at_level(logging.WARNING, logger="kest.prepare"):
        result = _prepare(iris_config, tmp_path, part * 3, skip_repeated_headers=True)
    schema = Schema.of(result)
    assert result.rows == 90 and {f.type for f in schema.features} == {"int", "float"}
    assert any("skipped 2 repeated header line(s)" in r.getMessage() for r in caplog.records)


def test_a_mostly_whole_label_with_a_fraction_is_ambiguous(iris_config, tmp_path):
    rows = _rows(60, make=lambda i: f"{i},{'2.5' if i == 40 else i % 3}")
    assert _error(iris_config, tmp_path, "x,label\n" + rows) == (
        "<tmp>/data.csv row 42 column 'label': label 2.5 is fractional, but 98.3% of the label's values are whole "
        "numbers (3 distinct): classes with a typo, or a regression target? Fix the value, or set "
        "dataset.label_kind: classification or regression"
    )
    assert _error(iris_config, tmp_path, "x,label\n" + rows, label_kind="classification") == (
        "<tmp>/data.csv row 42 column 'label': label 2.5 is not a whole number, so it cannot be a class; fix it, or "
        "set dataset.label_kind: regression"
    )
    schema = Schema.load(_prepare(iris_config, tmp_path, "x,label\n" + rows, label_kind="regression").schema_uri)
    assert schema.label.kind == "regression" and (schema.label.std or 0) > 0


def test_label_kind_classification_takes_whole_floats_as_classes(iris_config, tmp_path):
    rows = _rows(60, make=lambda i: f"{i},{i % 3}.0")
    result = _prepare(iris_config, tmp_path, "x,label\n" + rows, label_kind="classification")
    schema = Schema.of(result)
    assert schema.label.classes == ["0", "1", "2"] and schema.label.type == "float"
    assert sum(schema.label.class_counts or []) == result.split_rows["train"]
    labels = np.concatenate([y.numpy() for _, y in read_examples(result.files["test"], schema, "GZIP", 100)])
    assert set(labels.tolist()) <= {0, 1, 2}


def test_regression_label_statistics_are_the_training_splits(iris_config, tmp_path):
    rows = _rows(300, make=lambda i: f"{i % 17},{(i * 7919) % 1000 / 10}")
    result = _prepare(iris_config, tmp_path, "x,label\n" + rows)
    schema = Schema.of(result)
    train = np.concatenate([y.numpy() for _, y in read_examples(result.files["train"], schema, "GZIP", 500)])
    assert schema.label.mean == pytest.approx(train.mean(), rel=1e-5)
    assert schema.label.std == pytest.approx(train.std(), rel=1e-4)
    standardised = np.concatenate(
        [y.numpy() for _, y in read_examples(result.files["train"], schema, "GZIP", 500, training_targets=True)]
    )
    assert abs(standardised.mean()) < 1e-4 and standardised.std() == pytest.approx(1.0, rel=1e-3)


def test_only_whole_lines_count_as_repeated_headers():
    from kest_tasks.data.sources import _repeated_headers

    data = b"x,y,label\n1,2,a\nx,y,label\r\nx,y,labelled\n3,x,y,label\nx,y,label"
    assert _repeated_headers(data, b"x,y,label") == [0, 16, len(data) - 9]
