import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from kest_tasks.core import layout, stages
from kest_tasks.data.prepare import DataError, prepare, row_hashes, shard_name, split_of_hashes
from kest_tasks.data.schema import Schema
from kest_tasks.data.tfdata import read_examples
from tests.helpers import IRIS_CONFIG, stage_file

PINNED_HASHES = [9775129517422774067, 13629475271234692863, 7486504508895695438, 9349957416564748071]


def _write(path, text):
    path.write_text(text)
    return str(path)


def _replace_dataset(config, **changes):
    from kest_tasks.core.config import DatasetConfig

    config.dataset = DatasetConfig.model_validate({**config.dataset.model_dump(), **changes})


def _use_csv(config, path, label="label"):
    config.dataset.path = str(path)
    config.dataset.label = label


def test_iris_schema_stats_and_split(iris_config, tmp_path):
    result = prepare(iris_config, str(tmp_path / "run"))
    schema = Schema.of(result)
    assert schema.feature_names == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert {f.type for f in schema.features} == {"float"}
    assert schema.label.kind == "classification" and schema.label.type == "string"
    assert schema.label.classes == ["setosa", "versicolor", "virginica"]
    # The schema holds the training split's statistics (what models normalise and impute with) ...
    train = np.concatenate(
        [f["petal_length"].numpy() for f, _ in read_examples(result.files["train"], schema, "GZIP", 1000)]
    )
    petal_length = schema.feature("petal_length")
    assert petal_length.min == 1.0 and petal_length.max == 6.9  # the range is the whole column's
    assert petal_length.mean == pytest.approx(train.mean(), rel=1e-6)
    assert petal_length.std == pytest.approx(train.std(), rel=1e-5)
    assert petal_length.median == pytest.approx(float(np.median(train))) and petal_length.fill == petal_length.mean
    assert petal_length.tf_name == "petal_length"
    assert result.rows == 150 and sum(result.split_rows.values()) == 150
    assert 85 <= result.split_rows["train"] <= 120 and min(result.split_rows.values()) >= 10
    stats = json.loads(open(result.stats_uri).read())
    assert stats["columns"]["species"]["top_values"] == [
        {"value": "setosa", "count": 50},
        {"value": "versicolor", "count": 50},
        {"value": "virginica", "count": 50},
    ]
    assert stats["columns"]["sepal_width"]["missing"] == 0
    # ... stats.json the whole column's.
    whole = stats["columns"]["petal_length"]
    assert whole["min"] == 1.0 and whole["max"] == 6.9 and abs(whole["mean"] - 3.758) < 1e-3


def test_the_same_input_gives_the_same_bytes(iris_config, tmp_path):
    first = prepare(iris_config, str(tmp_path / "a"))
    second = prepare(iris_config, str(tmp_path / "b"))
    assert first.split_rows == second.split_rows
    for split in ("train", "eval", "test"):
        assert [open(f, "rb").read() for f in first.files[split]] == [open(f, "rb").read() for f in second.files[split]]


def test_row_hash_is_pinned_and_follows_ratios():
    batch = pa.RecordBatch.from_pydict({"x": [1.0, 2.5, None, 4.0], "s": ["a", "b", "c", None]})
    # Fixed values: a change of hash would silently move users' rows between splits.
    assert row_hashes(batch, ["x", "s"]).tolist() == PINNED_HASHES
    # 5 and 5.0 hash alike, so an int column read as float later keeps every row's split.
    ints = pa.RecordBatch.from_pydict({"x": pa.array([5, 6], pa.int64())})
    floats = pa.RecordBatch.from_pydict({"x": pa.array([5.0, 6.0])})
    assert row_hashes(ints, ["x"]).tolist() == row_hashes(floats, ["x"]).tolist()
    many = pa.RecordBatch.from_pydict({"i": np.arange(100_000)})
    splits = split_of_hashes(row_hashes(many, ["i"]), {"train": 0.7, "eval": 0.15, "test": 0.15})
    fractions = np.bincount(splits, minlength=3) / 100_000
    assert np.allclose(fractions, [0.7, 0.15, 0.15], atol=0.01)


def test_split_key_keeps_a_key_in_one_split(iris_config, tmp_path):
    rows = "".join(f"{user},{i % 7},{i % 2}\n" for i in range(600) for user in [f"u{i % 40}"])
    _use_csv(iris_config, tmp_path / "users.csv")
    _write(tmp_path / "users.csv", "user,x,label\n" + rows)
    iris_config.dataset.split.key = ["user"]
    result = prepare(iris_config, str(tmp_path / "run"))
    schema = Schema.of(result)
    seen: dict[bytes, set[str]] = {}
    for split in ("train", "eval", "test"):
        for features, _ in read_examples(result.files[split], schema, "GZIP", 1000):
            for user in features["user"].numpy().tolist():
                seen.setdefault(user, set()).add(split)
    assert all(len(splits) == 1 for splits in seen.values()) and len(seen) == 40


def test_labels_and_features_round_trip_through_the_train_reader(iris_config, tmp_path):
    result = prepare(iris_config, str(tmp_path / "run"))
    schema = Schema.of(result)
    total = 0
    for features, labels in read_examples(result.files["test"], schema, "GZIP", 8):
        assert set(features) == set(schema.feature_names)
        assert set(labels.numpy().tolist()) <= {0, 1, 2}
        total += int(labels.shape[0])
    assert total == result.split_rows["test"]


def test_shard_count_and_rows_per_shard(iris_config, tmp_path):
    iris_config.dataset.shards = 3
    result = prepare(iris_config, str(tmp_path / "a"))
    assert [p.rsplit("/", 1)[1] for p in result.files["train"]] == [
        "train-00000-of-00003.tfrecord.gz",
        "train-00001-of-00003.tfrecord.gz",
        "train-00002-of-00003.tfrecord.gz",
    ]
    iris_config.dataset.shards = 1
    iris_config.dataset.rows_per_shard = 40
    iris_config.dataset.compression = "NONE"
    result = prepare(iris_config, str(tmp_path / "b"))
    train = result.split_rows["train"]
    assert len(result.files["train"]) == -(-train // 40)
    assert result.files["train"][0].endswith(shard_name("train", 0, len(result.files["train"]), "NONE"))
    schema = Schema.of(result)
    counts = [sum(int(y.shape[0]) for _, y in read_examples([f], schema, "NONE", 100)) for f in result.files["train"]]
    assert counts[:-1] == [40] * (len(counts) - 1) and sum(counts) == train


def test_retry_reuses_finished_output(iris_config, tmp_path):
    run = str(tmp_path / "run")
    first = prepare(iris_config, run)
    mtime = stage_file(run, stages.PREPARE, layout.SCHEMA_FILE).stat().st_mtime_ns
    assert prepare(iris_config, run) == first
    assert stage_file(run, stages.PREPARE, layout.SCHEMA_FILE).stat().st_mtime_ns == mtime


BAD_FILES = {
    "empty": ("", r"empty.csv: file is empty"),
    "header_only": ("a,b,label\n", r"header_only.csv: header only, no data rows"),
    "ragged": ("a,b,label\n1,2,x\n3,y\n", r"ragged.csv row 3: expected 3 fields, found 2"),
    "no_label": (
        "secret_token_abc123,b\n1,2\n",
        r"no_label.csv: no label column 'label': the first line has 2 fields and none is named 'label'; check "
        "dataset.label, and that the file starts with a header$",
    ),
    "missing_label": ("a,b,label\n1,2,x\n3,4,\n5,6,y\n", r"missing_label.csv row 3 column 'label': label is missing"),
    "one_class": ("a,b,label\n1,2,x\n3,4,x\n", r"column 'label': label has a single class"),
    "text_in_numbers": (
        "a,b,label\n" + "".join(f"{i},{i}.5,{i % 2}\n" for i in range(30)) + "7,oops,1\n",
        r"text_in_numbers.csv row 32 column 'b': 'oops' is not a number, but 96.8% of the column",
    ),
    "long_text_in_numbers": (  # a cell is quoted by its start: a message is no way to copy a file out
        "a,b,label\n" + "".join(f"{i},{i}.5,{i % 2}\n" for i in range(30)) + "7,SECRET_" + "Z" * 100 + ",1\n",
        r"row 32 column 'b': 'SECRET_ZZZZZZZZZZZZZZZZZ'… \(107 characters\) is not a number, but 96.8%",
    ),
    "duplicate_header": ("a,a,label\n1,2,3\n", r"duplicate_header.csv row 1 column 2: the same name as column 1"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_files_give_one_clear_line_and_write_nothing(iris_config, tmp_path, kind):
    text, message = BAD_FILES[kind]
    _use_csv(iris_config, tmp_path / f"{kind}.csv")
    _write(tmp_path / f"{kind}.csv", text)
    run = tmp_path / "run"
    with pytest.raises(DataError, match=message) as raised:
        prepare(iris_config, str(run))
    assert "\n" not in str(raised.value)
    folder = stage_file(run, stages.PREPARE)
    assert not folder.exists() and not any(run.glob(f".{folder.name}.tmp-*"))


def test_binary_garbage_is_refused(iris_config, tmp_path):
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"a,b,label\n1,2,x\n\xff\xfe\x00\x01,2,x\n")
    _use_csv(iris_config, garbage)
    with pytest.raises(DataError, match=r"garbage.csv: not a UTF-8 text CSV \(bad byte at offset 16\)"):
        prepare(iris_config, str(tmp_path / "run"))


def test_missing_file_and_empty_glob(iris_config, tmp_path):
    _use_csv(iris_config, tmp_path / "absent.csv")
    with pytest.raises(DataError, match=r"absent.csv: file not found"):
        prepare(iris_config, str(tmp_path / "run"))
    _use_csv(iris_config, tmp_path / "none-*.csv")
    with pytest.raises(DataError, match=r"none-\*.csv: no file matches"):
        prepare(iris_config, str(tmp_path / "run"))


def test_mixed_types_and_missing_values(iris_config, tmp_path):
    rows = "".join(f"{i},{i * 0.5},{'red' if i % 3 else ''},{'x' if i < 50 else 'y'}\n" for i in range(60))
    _use_csv(iris_config, tmp_path / "mixed.csv")
    _write(tmp_path / "mixed.csv", "count,size,colour,label\n" + rows)
    result = prepare(iris_config, str(tmp_path / "run"))
    schema = Schema.of(result)
    assert {f.name: f.type for f in schema.features} == {"count": "int", "size": "float", "colour": "string"}
    colour = schema.feature("colour")
    # Missing text is the empty-string token, a category of its own since the training split has some.
    assert colour.missing == 20 and colour.vocabulary == ["red", ""] and colour.fill == ""
    assert schema.label.classes == ["x", "y"]
    stats = json.loads(open(result.stats_uri).read())["columns"]
    assert stats["colour"]["missing_fraction"] == pytest.approx(1 / 3)
    assert stats["count"]["min"] == 0 and stats["count"]["max"] == 59
    # A missing string survives as "no value": the reader fills the default, nothing else is invented.
    values = []
    for split in ("train", "eval", "test"):
        for features, _ in read_examples(result.files[split], schema, "GZIP", 100):
            values += features["colour"].numpy().tolist()
    assert sorted(set(values)) == [b"", b"red"] and values.count(b"") == 20


def test_an_int_column_with_a_fraction_late_is_read_again_as_float(iris_config, tmp_path, monkeypatch):
    from kest_tasks.data import sources

    monkeypatch.setattr(sources, "RANGE_BYTES", 64)  # many small ranges: the fraction is not in the first
    rows = "".join(f"{i},{i % 2}\n" for i in range(100)) + "2.5,1\n"
    _use_csv(iris_config, tmp_path / "late.csv")
    _write(tmp_path / "late.csv", "n,label\n" + rows)
    result = prepare(iris_config, str(tmp_path / "run"))
    n = Schema.of(result).feature("n")
    assert n.type == "float" and n.max == 99 and result.rows == 101


def test_delimiter_and_glob_of_files(iris_config, tmp_path):
    for part in range(3):
        _write(tmp_path / f"part-{part}.csv", "a;b;label\n" + "".join(f"{part}{i};{i};{i % 3}\n" for i in range(30)))
    iris_config.dataset.path = str(tmp_path / "part-*.csv")
    iris_config.dataset.label = "label"
    iris_config.dataset.delimiter = ";"
    result = prepare(iris_config, str(tmp_path / "run"))
    assert result.rows == 90 and len(result.inputs) == 3
    assert Schema.of(result).label.classes == ["0", "1", "2"]


def test_files_with_different_columns_are_refused(iris_config, tmp_path):
    _write(tmp_path / "p-0.csv", "a,label\n1,x\n2,y\n")
    _write(tmp_path / "p-1.csv", "b,label\n1,x\n")
    _use_csv(iris_config, tmp_path / "p-*.csv")
    with pytest.raises(DataError, match=r"p-1.csv: columns differ from .*p-0.csv: missing \['a'\], extra \['b'\]"):
        prepare(iris_config, str(tmp_path / "run"))


def test_spans_latest_or_given(iris_config, tmp_path):
    for span in (1, 2, 10):
        (tmp_path / f"span-{span}").mkdir()
        _write(
            tmp_path / f"span-{span}" / "data.csv", "a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20 * span))
        )
    iris_config.dataset.path = str(tmp_path / "span-{SPAN}" / "data.csv")
    iris_config.dataset.label = "label"
    latest = prepare(iris_config, str(tmp_path / "latest"))
    assert latest.span == 10 and latest.rows == 200
    iris_config.dataset.span = 2
    given = prepare(iris_config, str(tmp_path / "given"))
    assert given.span == 2 and given.rows == 40
    iris_config.dataset.span = 7
    with pytest.raises(DataError, match=r"span 7 not found"):
        prepare(iris_config, str(tmp_path / "missing"))


def test_pre_split_inputs(iris_config, tmp_path):
    for split, n in (("train", 50), ("eval", 10), ("test", 12)):
        _write(tmp_path / f"{split}.csv", "a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(n)))
    _replace_dataset(
        iris_config, path=None, label="label", splits={s: str(tmp_path / f"{s}.csv") for s in ("train", "eval", "test")}
    )
    result = prepare(iris_config, str(tmp_path / "run"))
    assert result.split_rows == {"train": 50, "eval": 10, "test": 12}


def test_npz_source(iris_config, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "arrays.npz",
        x=rng.normal(size=300),
        n=np.arange(300),
        colour=np.array(["r", "g", "b"] * 100),
        label=rng.integers(0, 2, 300),
    )
    iris_config.dataset.source = "npz"
    _use_csv(iris_config, tmp_path / "arrays.npz")
    result = prepare(iris_config, str(tmp_path / "run"))
    schema = Schema.of(result)
    assert {f.name: f.type for f in schema.features} == {"x": "float", "n": "int", "colour": "string"}
    assert result.rows == 300 and schema.label.classes == ["0", "1"]


def test_npz_with_ragged_arrays_is_refused(iris_config, tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros(3), label=np.zeros(4))
    iris_config.dataset.source = "npz"
    _use_csv(iris_config, tmp_path / "bad.npz")
    with pytest.raises(DataError, match=r"bad.npz: arrays have different lengths"):
        prepare(iris_config, str(tmp_path / "run"))


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A small TFDS dataset built offline with TFDS's own writer, loaded back through tfds.load."""
    import tensorflow_datasets as tfds

    from kest_tasks.core.tfenv import import_tensorflow

    tf = import_tensorflow()
    data_dir = tmp_path_factory.mktemp("tfds")
    rng = np.random.default_rng(1)
    columns = {"x": rng.normal(size=200).astype(np.float32), "label": rng.integers(0, 3, 200)}
    tfds.dataset_builders.store_as_tfds_dataset(
        name="kest_toy",
        version="1.0.0",
        data_dir=str(data_dir),
        split_datasets={"train": tf.data.Dataset.from_tensor_slices(columns)},
        features=tfds.features.FeaturesDict(
            {
                "x": tfds.features.Scalar(dtype=np.float32),
                "label": tfds.features.ClassLabel(num_classes=3),
            }
        ),
    )
    return data_dir


def test_tfds_source_from_a_local_data_dir(iris_config, tmp_path, tfds_dir):
    _replace_dataset(
        iris_config,
        source="tfds",
        path=None,
        label="label",
        tfds={"name": "kest_toy", "split": "train", "data_dir": str(tfds_dir)},
    )
    result = prepare(iris_config, str(tmp_path / "run"))
    schema = Schema.of(result)
    assert result.rows == 200 and schema.feature_names == ["x"] and schema.label.classes == ["0", "1", "2"]
    _replace_dataset(iris_config, tfds={"name": "not_there", "split": "train", "data_dir": str(tfds_dir)})
    with pytest.raises(DataError, match=r"tfds:not_there/train in .*: cannot load without downloading"):
        prepare(iris_config, str(tmp_path / "other"))


def test_the_gzip_level_is_a_setting_and_every_level_reads_back(tmp_path):
    """Level 1 (the default: fastest) and 9 (smallest) hold the same records; 9's files are not larger."""
    from kest_tasks.core.config import ConfigError, load_config
    from kest_tasks.core.tfenv import import_tensorflow

    with pytest.raises(ConfigError, match="dataset.compression_level"):
        load_config(IRIS_CONFIG, {"dataset": {"compression_level": 0}})
    records, sizes = {}, {}
    for level in (1, 9):
        config = load_config(IRIS_CONFIG, {"artifact_root": str(tmp_path), "dataset": {"compression_level": level}})
        assert config.dataset.compression_level == level
        prepared = prepare(config, str(tmp_path / "runs" / f"level-{level}"))
        (shard,) = prepared.files["train"]
        data = import_tensorflow().data.TFRecordDataset([shard], compression_type="GZIP")
        records[level] = [record.numpy() for record in data]
        sizes[level] = Path(shard).stat().st_size
    assert records[1] == records[9] and len(records[1]) > 0 and sizes[9] <= sizes[1]
    assert load_config(IRIS_CONFIG).dataset.compression_level == 1


def test_shards_are_byte_identical_on_one_thread_and_on_many(tmp_path, monkeypatch):
    """Prepare encodes and compresses on every core; the files it writes do not depend on how many there are
    (several chunks, strings, missing values, round-robin shards and rows_per_shard)."""
    import hashlib

    from kest_tasks.core.config import load_config

    rng = np.random.default_rng(3)
    rows = 90_000  # ~3 chunks of rows
    numbers = rng.normal(size=rows).round(3).astype(str)
    numbers[rng.random(rows) < 0.05] = ""
    words = rng.choice(["red", "green", "blue", "a much longer colour name"], size=rows)
    lines = [f"{n},{w},{i % 3}" for i, (n, w) in enumerate(zip(numbers, words))]
    data = _write(tmp_path / "data.csv", "x,colour,label\n" + "\n".join(lines) + "\n")
    digests: dict[tuple[str, str], dict[str, str]] = {}
    for layout_setting in ({"shards": 3}, {"rows_per_shard": 25_000}):
        for threads in ("1", "4"):
            monkeypatch.setenv("KEST_PREPARE_THREADS", threads)
            config = load_config(
                IRIS_CONFIG,
                {"artifact_root": str(tmp_path), "dataset": {"path": data, "label": "label", **layout_setting}},
            )
            run = tmp_path / "runs" / f"{len(digests)}"
            prepared = prepare(config, str(run))
            shards = [Path(f) for fs in prepared.files.values() for f in fs]
            digests[(str(layout_setting), threads)] = {
                s.name: hashlib.sha256(s.read_bytes()).hexdigest() for s in shards
            }
        assert digests[(str(layout_setting), "1")] == digests[(str(layout_setting), "4")]
    assert len(digests[(str({"rows_per_shard": 25_000}), "1")]) >= 5
    assert prepared.rows == rows


@pytest.mark.parametrize("value", ["0", "many", "-2", "1000"])
def test_a_bad_thread_count_is_one_line(iris_config, tmp_path, monkeypatch, value):
    from kest_tasks.core.errors import ConfigError

    monkeypatch.setenv("KEST_PREPARE_THREADS", value)
    with pytest.raises(ConfigError) as caught:
        prepare(iris_config, str(tmp_path / "run"))
    assert str(caught.value) == (f"KEST_PREPARE_THREADS={value!r}: expected a whole number of threads from 1 to 256")
    assert not (tmp_path / "run" / "prepare").exists()
