import pytest

from kest_tasks.prepare import DataError, prepare, shard_name, split_of
from kest_tasks.schema import Schema
from kest_tasks.stage import stage_dir
from kest_tasks.tfdata import read_examples


def _write_csv(path, text):
    path.write_text(text)
    return str(path)


def test_iris_schema_and_split(iris_config, tmp_path):
    result = prepare(iris_config, str(tmp_path / "run"))
    schema = Schema.load(result.schema_uri)
    assert schema.feature_names == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert {f.type for f in schema.features} == {"float"}
    assert schema.label.kind == "classification"
    assert schema.label.classes == ["setosa", "versicolor", "virginica"]
    petal_length = schema.features[2]
    assert petal_length.min == 1.0 and petal_length.max == 6.9
    assert result.rows == 150 and sum(result.split_rows.values()) == 150
    # Hash split near the configured 70/15/15.
    assert 85 <= result.split_rows["train"] <= 120
    assert all(result.split_rows[s] >= 10 for s in ("eval", "test"))


def test_split_is_the_same_on_every_run(iris_config, tmp_path):
    first = prepare(iris_config, str(tmp_path / "a"))
    second = prepare(iris_config, str(tmp_path / "b"))
    assert first.split_rows == second.split_rows
    for split in ("train", "eval", "test"):
        a = [open(f, "rb").read() for f in first.files[split]]
        b = [open(f, "rb").read() for f in second.files[split]]
        assert a == b


def test_split_of_is_a_stable_hash():
    fractions = {"train": 0.7, "eval": 0.15, "test": 0.15}
    # Fixed expectations: a change of hash function would silently re-split users' data.
    assert [split_of(str(i), fractions) for i in range(12)] == [
        "eval", "eval", "eval", "test", "train", "test", "train", "train", "eval", "train", "eval", "train",
    ]
    counts = {"train": 0, "eval": 0, "test": 0}
    for i in range(20_000):
        counts[split_of(f"row-{i}", fractions)] += 1
    assert abs(counts["train"] / 20_000 - 0.7) < 0.02
    assert abs(counts["test"] / 20_000 - 0.15) < 0.02


def test_records_round_trip_through_the_train_reader(iris_config, tmp_path):
    result = prepare(iris_config, str(tmp_path / "run"))
    schema = Schema.load(result.schema_uri)
    total = 0
    for features, labels in read_examples(result.files["test"], schema, "GZIP", 8):
        assert set(features) == set(schema.feature_names)
        assert set(labels.numpy().tolist()) <= {0, 1, 2}
        total += int(labels.shape[0])
    assert total == result.split_rows["test"]


def test_shards_and_names(iris_config, tmp_path):
    iris_config.dataset.shards = 3
    result = prepare(iris_config, str(tmp_path / "run"))
    assert [p.rsplit("/", 1)[1] for p in result.files["train"]] == [
        "train-00000-of-00003.tfrecord.gz", "train-00001-of-00003.tfrecord.gz", "train-00002-of-00003.tfrecord.gz",
    ]
    assert shard_name("eval", 1, 2, "NONE") == "eval-00001-of-00002.tfrecord"


def test_retry_reuses_finished_output(iris_config, tmp_path):
    run = str(tmp_path / "run")
    first = prepare(iris_config, run)
    mtime = (stage_dir(run, "data") / "schema.json").stat().st_mtime_ns
    assert prepare(iris_config, run) == first
    assert (stage_dir(run, "data") / "schema.json").stat().st_mtime_ns == mtime


BAD_FILES = {
    "empty": ("", r"empty.csv: file is empty"),
    "header_only": ("a,b,label\n", r"header_only.csv: header only, no data rows"),
    "ragged": ("a,b,label\n1,2,x\n3,y\n", r"ragged.csv row 3: expected 3 fields, found 2"),
    "no_label": ("a,b,c\n1,2,3\n", r"no_label.csv: label column 'label' not found in header \(columns: a, b, c\)"),
    "missing_label": ("a,b,label\n1,2,x\n3,4,\n", r"missing_label.csv column 'label': label is missing in 1 rows"),
    "one_class": ("a,b,label\n1,2,x\n3,4,x\n", r"one_class.csv column 'label': label has a single class"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_files_give_one_clear_line_and_write_nothing(iris_config, tmp_path, kind):
    text, message = BAD_FILES[kind]
    iris_config.dataset.path = _write_csv(tmp_path / f"{kind}.csv", text)
    iris_config.dataset.label = "label"
    run = tmp_path / "run"
    with pytest.raises(DataError, match=message) as raised:
        prepare(iris_config, str(run))
    assert "\n" not in str(raised.value)
    assert not (run / "data").exists()
    assert not any(run.glob(".data.tmp-*"))


def test_binary_garbage_is_refused(iris_config, tmp_path):
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"a,b,label\n\xff\xfe\x00\x01,2,x\n")
    iris_config.dataset.path = str(garbage)
    iris_config.dataset.label = "label"
    with pytest.raises(DataError, match=r"garbage.csv: not a UTF-8 text CSV"):
        prepare(iris_config, str(tmp_path / "run"))


def test_missing_file_names_it(iris_config, tmp_path):
    iris_config.dataset.path = str(tmp_path / "absent.csv")
    with pytest.raises(DataError, match=r"absent.csv: file not found"):
        prepare(iris_config, str(tmp_path / "run"))


def test_mixed_types_and_missing_values(iris_config, tmp_path):
    iris_config.dataset.path = _write_csv(
        tmp_path / "mixed.csv",
        "count,size,colour,label\n" + "".join(f"{i},{i * 0.5},{'red' if i % 3 else ''},{i % 2}\n" for i in range(60)),
    )
    iris_config.dataset.label = "label"
    schema = Schema.load(prepare(iris_config, str(tmp_path / "run")).schema_uri)
    types = {f.name: f.type for f in schema.features}
    assert types == {"count": "int", "size": "float", "colour": "string"}
    colour = schema.features[2]
    assert colour.missing == 20 and colour.vocabulary == ["red"]
    assert schema.label.classes == ["0", "1"]


def test_split_key_column_must_exist(iris_config, tmp_path):
    iris_config.dataset.split.key = ["nope"]
    with pytest.raises(DataError, match=r"dataset.split.key column\(s\) \['nope'\] not in header"):
        prepare(iris_config, str(tmp_path / "run"))
