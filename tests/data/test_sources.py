"""Parquet and TFRecord inputs go through the same schema, statistics, missing-value policy and split as CSV."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kest_tasks.core import stages
from kest_tasks.data.prepare import DataError, prepare
from kest_tasks.data.schema import Schema
from kest_tasks.data.tfdata import read_examples
from tests.helpers import stage_file


def _use(config, source, path, label="label", **dataset):
    config.dataset.source = source
    config.dataset.path = str(path)
    config.dataset.label = label
    for key, value in dataset.items():
        setattr(config.dataset, key, value)


def _error(config, tmp_path) -> str:
    with pytest.raises(DataError) as caught:
        prepare(config, str(tmp_path / "run"))
    assert not stage_file(str(tmp_path / "run"), stages.PREPARE).exists()
    assert "\n" not in str(caught.value)
    return str(caught.value).replace(str(tmp_path), "<tmp>")


def _table(n: int, offset: int = 0) -> pa.Table:
    i = np.arange(offset, offset + n)
    ratio = (i % 10) / 4
    return pa.table(
        {
            "sepal length (cm)": pa.array(ratio.astype(np.float32)),
            "count": pa.array((i % 7).astype(np.int32)),
            "flag": pa.array(i % 3 == 0),
            "colour": pa.array(np.where(i % 2 == 0, "red", "blue")).dictionary_encode(),
            "when": pa.array(i.astype("datetime64[s]")),
            "gap": pa.array(np.where(i % 5 == 0, np.nan, ratio)),
            "label": pa.array(np.where(ratio > 1, "big", "small")),
        }
    )


def test_parquet_columns_of_every_plain_type(iris_config, tmp_path):
    pq.write_table(_table(3000), tmp_path / "part.parquet", row_group_size=700)
    _use(iris_config, "parquet", tmp_path / "part.parquet")
    result = prepare(iris_config, str(tmp_path / "run"))
    schema = Schema.of(result)
    types = {f.name: f.type for f in schema.features}
    assert types == {
        "sepal length (cm)": "float",
        "count": "int",
        "flag": "int",
        "colour": "string",
        "when": "string",
        "gap": "float",
    }
    assert schema.feature("sepal length (cm)").key == "sepal_length_cm"
    assert schema.feature("gap").missing == 600  # NaN in a Parquet float column is a missing value
    assert result.rows == 3000 and schema.label.classes == ["big", "small"]
    features, labels = next(iter(read_examples(result.files["test"], schema, "GZIP", 4000)))
    assert np.isfinite(features["gap"].numpy()).all() and len(labels) == result.split_rows["test"]


def test_parquet_glob_with_a_wider_type_in_a_later_file_and_spans(iris_config, tmp_path):
    first = _table(500)
    later = _table(500, 500).set_column(1, "count", pa.array(np.arange(500) / 3))  # floats where ints were
    for span, table in ((1, first), (2, later)):
        (tmp_path / f"span-{span}").mkdir()
        pq.write_table(table, tmp_path / f"span-{span}" / "a.parquet")
        pq.write_table(first, tmp_path / f"span-{span}" / "b.parquet")
    _use(iris_config, "parquet", tmp_path / "span-{SPAN}" / "*.parquet")
    result = prepare(iris_config, str(tmp_path / "run"))
    schema = Schema.of(result)
    assert result.span == 2 and result.rows == 1000 and schema.feature("count").type == "float"


def test_parquet_pre_split_inputs(iris_config, tmp_path):
    for split, offset in (("train", 0), ("eval", 1000), ("test", 2000)):
        pq.write_table(_table(300, offset), tmp_path / f"{split}.parquet")
    from kest_tasks.core.config import DatasetConfig

    iris_config.dataset = DatasetConfig(
        source="parquet", label="label", splits={s: str(tmp_path / f"{s}.parquet") for s in ("train", "eval", "test")}
    )
    result = prepare(iris_config, str(tmp_path / "run"))
    assert result.split_rows == {"train": 300, "eval": 300, "test": 300}


def test_parquet_errors_are_one_line(iris_config, tmp_path):
    pq.write_table(pa.table({"x": pa.array([[1.0, 2.0], [3.0]]), "label": ["a", "b"]}), tmp_path / "lists.parquet")
    _use(iris_config, "parquet", tmp_path / "lists.parquet")
    assert _error(iris_config, tmp_path) == (
        "<tmp>/lists.parquet column 'x': type list<element: double> holds no "
        "single number or text per row; kest takes one scalar per row and column"
    )
    (tmp_path / "text.parquet").write_text("x,label\n1,a\n")
    _use(iris_config, "parquet", tmp_path / "text.parquet")
    assert _error(iris_config, tmp_path).startswith("<tmp>/text.parquet: not a readable Parquet file (")


def _examples(path, rows, compression="GZIP"):
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path), options=compression) as writer:
        for row in rows:
            feature = {}
            for key, value in row.items():
                values = value if isinstance(value, list) else [value]
                if isinstance(values[0], str):
                    feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in values]))
                elif isinstance(values[0], float):
                    feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
                else:
                    feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def _row(i):
    row = {
        "petal width (cm)": (i % 10) / 4,
        "rooms": i % 5,
        "area": ["north", "south"][i % 2],
        "label": "big" if i % 10 > 4 else "small",
    }
    if i % 6 == 0:
        del row["rooms"]  # a key a record lacks is a missing value
    return row


@pytest.mark.parametrize("compression", ["GZIP", ""])
def test_tfrecord_examples_are_resplit_and_validated(iris_config, tmp_path, compression):
    _examples(tmp_path / "in.tfrecord", [_row(i) for i in range(1200)], compression)
    _use(iris_config, "tfrecord", tmp_path / "in.tfrecord")
    result = prepare(iris_config, str(tmp_path / "run"))
    schema = Schema.of(result)
    assert {f.name: f.type for f in schema.features} == {"petal width (cm)": "float", "rooms": "int", "area": "string"}
    assert schema.feature("rooms").missing == 200 and result.rows == 1200
    assert schema.feature("petal width (cm)").key == "petal_width_cm" and schema.label.classes == ["big", "small"]
    assert sum(result.split_rows.values()) == 1200 and min(result.split_rows.values()) > 100


def test_tfrecord_errors_name_the_record_and_key(iris_config, tmp_path):
    rows = [_row(i) for i in range(1500)]
    rows[7]["area"] = ["north", "south"]
    _examples(tmp_path / "multi.tfrecord", rows)
    _use(iris_config, "tfrecord", tmp_path / "multi.tfrecord")
    assert _error(iris_config, tmp_path) == (
        "<tmp>/multi.tfrecord record 8 key 'area': several values; kest takes one value per feature and record"
    )
    rows = [_row(i) for i in range(1500)]
    rows[1300]["rooms"] = 2.5  # beyond the records read to find the keys' types
    _examples(tmp_path / "types.tfrecord", rows)
    _use(iris_config, "tfrecord", tmp_path / "types.tfrecord")
    message = _error(iris_config, tmp_path)
    assert message.startswith("<tmp>/types.tfrecord record 1301 key 'rooms': ") and "float" in message
    data = (tmp_path / "types.tfrecord").read_bytes()
    (tmp_path / "cut.tfrecord").write_bytes(data[: len(data) // 2])
    _use(iris_config, "tfrecord", tmp_path / "cut.tfrecord")
    assert _error(iris_config, tmp_path).startswith("<tmp>/cut.tfrecord: corrupt TFRecord data after record ")


def test_read_ahead_yields_in_order_raises_in_place_and_stops_its_reader():
    import threading

    from kest_tasks.data.sources import read_ahead

    closed_on = []

    def chunks(fail_at=None):
        try:
            for i in range(10):
                if i == fail_at:
                    raise DataError(f"bad row in chunk {i}")
                yield i
        finally:
            closed_on.append(threading.current_thread().name)

    with read_ahead(chunks()) as ahead:
        assert list(ahead) == list(range(10))
    got = []
    with pytest.raises(DataError, match="bad row in chunk 4"), read_ahead(chunks(fail_at=4)) as ahead:
        for chunk in ahead:
            got.append(chunk)
    assert got == [0, 1, 2, 3]
    with read_ahead(chunks()) as ahead:  # the consumer stops early: the reader stops and closes the source
        assert next(ahead) == 0
    assert closed_on == ["prepare-read-ahead"] * 3
    assert not [t for t in threading.enumerate() if t.name == "prepare-read-ahead"]


def test_an_unexplained_csv_error_keeps_pyarrows_reason_not_the_rows_bytes(iris_config, tmp_path):
    from kest_tasks.data.sources import _explain_csv_error

    data = tmp_path / "ok.csv"
    data.write_text("a,b\n1,2\n")
    message = "CSV parse error: Expected 2 columns, got 1: root:x:0:0:root:/root:/bin/bash"
    error = _explain_csv_error(str(data), iris_config.dataset, ["a", "b"], message, {})
    assert str(error) == f"{data}: unreadable CSV: Expected 2 columns, got 1"


def test_a_bad_value_is_named_by_row_and_quoted_by_its_start_only(iris_config, tmp_path, monkeypatch):
    secret = "SECRET_" + "Q" * 100
    rows = 3000
    pq.write_table(
        pa.table(
            {
                "x": [float(i % 7) for i in range(rows)],
                "f": [secret if i == 2100 else str(i % 5) for i in range(rows)],
                "label": ["a", "b", "c"] * (rows // 3),
            }
        ),
        tmp_path / "typed.parquet",
    )
    _use(iris_config, "parquet", tmp_path / "typed.parquet", column_types={"f": "float"})
    assert _error(iris_config, tmp_path) == (
        "<tmp>/typed.parquet row 2101 column 'f': 'SECRET_QQQQQQQQQQQQQQQQQ'… (107 characters) is not a valid number"
    )
    monkeypatch.setenv("KEST_HIDE_VALUES_IN_ERRORS", "1")  # a deployment whose logs carry no data at all
    assert _error(iris_config, tmp_path) == (
        "<tmp>/typed.parquet row 2101 column 'f': a value of 107 characters is not a valid number"
    )


def test_a_binary_file_read_as_csv_says_which_source_it_looks_like(iris_config, tmp_path):
    pq.write_table(_table(20), tmp_path / "data.parquet")
    _use(iris_config, "csv", tmp_path / "data.parquet")
    assert _error(iris_config, tmp_path).startswith(
        "<tmp>/data.parquet: not a UTF-8 text CSV (bad byte at offset "
    ) and _error(iris_config, tmp_path).endswith("; it starts like a parquet file: set dataset.source: parquet")
    _examples(tmp_path / "data.tfrecord.gz", [_row(i) for i in range(5)])
    _use(iris_config, "csv", tmp_path / "data.tfrecord.gz")
    assert _error(iris_config, tmp_path).endswith(
        "; it starts like gzip data (a GZIP TFRecord file?): set dataset.source: tfrecord"
    )
    (tmp_path / "latin1.csv").write_bytes("a,label\ncafé,x\n".encode("latin-1"))
    _use(iris_config, "csv", tmp_path / "latin1.csv")
    assert _error(iris_config, tmp_path) == "<tmp>/latin1.csv: not a UTF-8 text CSV (bad byte at offset 11)"


def test_a_parquet_path_with_the_default_source_is_read_as_parquet(tmp_path):
    from kest_tasks.core.config import load_config
    from tests.helpers import IRIS_CONFIG, iris_overrides

    pq.write_table(_table(200), tmp_path / "loans.parquet")
    config = load_config(IRIS_CONFIG, iris_overrides(tmp_path, dataset={"path": str(tmp_path / "loans.parquet")}))
    config.dataset.label = "label"
    result = prepare(config, str(tmp_path / "run"))
    assert config.dataset.source == "parquet" and result.rows == 200
