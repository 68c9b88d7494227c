"""The NumPy Example encoder against TensorFlow's own parser and record reader."""

import functools

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kest_tasks.core.tfenv import import_tensorflow
from kest_tasks.data import tfrecord_writer as examples


def _strings(words):
    offsets = np.concatenate([[0], np.cumsum([len(w) for w in words])]).astype(np.int64)
    return examples.strings(np.frombuffer(b"".join(words), dtype=np.uint8), offsets)


def _write_and_read(tmp_path, entries, compression="NONE"):
    tf = import_tensorflow()
    path = tmp_path / "records"
    file = examples.TFRecordFile(path, compression)
    file.write(*examples.tfrecords(entries))
    file.close()
    return [
        tf.train.Example.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP" if compression == "GZIP" else "")
    ]


@pytest.mark.parametrize("compression", ["NONE", "GZIP"])
def test_every_kind_of_value_parses_back(tmp_path, compression):
    floats = np.array([1.5, -0.0, 3.25e38, np.nan, 7], dtype=np.float32)
    ints = np.array([0, 127, 128, -5, 2**62])
    words = [b"a", b"", b"hello world", b"x" * 300, "caf\u00e9".encode()]
    present = np.array([True, False, True, True, True])
    entries = [
        examples.map_entry("f", examples.float_feature(floats), present),
        examples.map_entry("i", examples.int64_feature(ints)),
        examples.map_entry("s", examples.bytes_feature(_strings(words))),
    ]
    parsed = _write_and_read(tmp_path, entries, compression)
    assert len(parsed) == 5
    assert "f" not in parsed[1].features.feature
    assert [p.features.feature["i"].int64_list.value[0] for p in parsed] == ints.tolist()
    assert [p.features.feature["s"].bytes_list.value[0] for p in parsed] == words
    got = [p.features.feature["f"].float_list.value[0] for i, p in enumerate(parsed) if present[i]]
    assert got[0] == 1.5 and got[1] == np.float32(3.25e38) and np.isnan(got[2]) and got[3] == 7


def test_bytes_match_protobuf_serialisation(tmp_path):
    tf = import_tensorflow()
    data, count = examples.tfrecords(
        [
            examples.map_entry("x", examples.float_feature(np.array([2.0], np.float32))),
            examples.map_entry("y", examples.int64_feature(np.array([300]))),
        ]
    )
    reference = tf.train.Example(
        features=tf.train.Features(
            feature={
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=[2.0])),
                "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[300])),
            }
        )
    ).SerializeToString()
    assert count == 1 and data.tobytes()[12:-4] == reference


def test_a_corrupted_record_is_detected_by_the_reader(tmp_path):
    tf = import_tensorflow()
    path = tmp_path / "records"
    data, count = examples.tfrecords([examples.map_entry("x", examples.float_feature(np.arange(50, dtype=np.float32)))])
    corrupted = data.copy()
    corrupted[len(corrupted) // 2] ^= 0xFF
    path.write_bytes(corrupted.tobytes())
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(str(path)))


def _records(data: np.ndarray) -> list[bytes]:
    """The payloads of TFRecord frames: 8-byte length, 4-byte CRC, payload, 4-byte CRC."""
    raw, records, at = data.tobytes(), [], 0
    while at < len(raw):
        length = int.from_bytes(raw[at : at + 8], "little")
        records.append(raw[at + 12 : at + 12 + length])
        at += 12 + length + 4
    return records


_VALUES = {
    "float": st.floats(width=32, allow_nan=False),
    "int": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "string": st.binary(max_size=40),
}


@st.composite
def _tables(draw: st.DrawFn) -> tuple[list[tuple[str, str]], list[list[object]]]:
    """A random schema (1-5 columns of float, int or string; any unicode names) and 1-8 rows, each value possibly
    missing (None)."""
    names = draw(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=5, unique=True))
    # In protobuf's deterministic map order (upb: byte-wise, a key before its own prefixes — 'ab' before 'a'), so
    # the records can be compared with SerializeToString(deterministic=True) byte for byte.
    ordered = sorted(names, key=lambda name: name.encode() + b"\xff")
    columns = [(name, draw(st.sampled_from(sorted(_VALUES)))) for name in ordered]
    rows = draw(st.integers(min_value=1, max_value=8))
    values = [draw(st.lists(st.none() | _VALUES[kind], min_size=rows, max_size=rows)) for _, kind in columns]
    return columns, values


@settings(max_examples=200, deadline=None)
@given(_tables())
@example(([("00", "float"), ("0", "int")], [[0.5, None], [1, 2]]))  # a key before its prefix: the order it found
def test_every_record_is_byte_identical_to_protobuf(table):
    """Whatever the schema — ints (negative ones are 10-byte varints), floats, strings, empty strings, missing
    values — each record is exactly what protobuf's SerializeToString writes for the same Example."""
    tf = import_tensorflow()
    columns, values = table
    entries = []
    for (name, kind), column in zip(columns, values):
        present = np.array([value is not None for value in column])
        if kind == "float":
            part = examples.float_feature(np.array([0.0 if v is None else v for v in column], dtype=np.float32))
        elif kind == "int":
            part = examples.int64_feature(np.array([0 if v is None else v for v in column], dtype=np.int64))
        else:
            part = examples.bytes_feature(_strings([b"" if v is None else v for v in column]))
        entries.append(examples.map_entry(name, part, present))
    data, count = examples.tfrecords(entries)
    expected = []
    for row in range(len(values[0])):
        feature = {}
        for (name, kind), column in zip(columns, values):
            value = column[row]
            if value is None:
                continue
            if kind == "float":
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
            elif kind == "int":
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
            else:
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        expected.append(example.SerializeToString(deterministic=True))
    assert count == len(expected) and _records(data) == expected


def _blocks(count: int, rows: int = 3000) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [
        examples.tfrecords(
            [
                examples.map_entry("x", examples.float_feature(rng.normal(size=rows).astype(np.float32))),
                examples.map_entry("y", examples.int64_feature(rng.integers(0, 1000, rows))),
            ]
        )[0]
        for _ in range(count)
    ]


def test_gzip_blocks_compressed_on_many_threads_make_one_standard_member(tmp_path):
    """Blocks deflated independently on 4 threads concatenate into one gzip member: the same bytes as on one
    thread, Python's gzip and TensorFlow read back every record in order."""
    import gzip

    tf = import_tensorflow()
    blocks = _blocks(12)
    written = {}
    for threads in (1, 4):
        encoding = examples.Encoding(threads)
        path = tmp_path / f"records-{threads}.gz"
        file = examples.TFRecordFile(path, "GZIP", level=1, encoding=encoding)
        for block in blocks:
            file.submit(functools.partial(np.asarray, block), 3000)
        file.close()
        encoding.close()
        written[threads] = path.read_bytes()
        assert file.records == 36000
    assert written[1] == written[4]
    whole = b"".join(block.tobytes() for block in blocks)
    assert gzip.decompress(written[4]) == whole
    read = [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "records-4.gz"), compression_type="GZIP")]
    assert read == _records(np.frombuffer(whole, dtype=np.uint8))


def test_an_empty_gzip_file_is_valid_and_holds_no_records(tmp_path):
    import gzip

    tf = import_tensorflow()
    path = tmp_path / "empty.gz"
    examples.TFRecordFile(path, "GZIP", level=1).close()
    assert gzip.decompress(path.read_bytes()) == b""
    assert list(tf.data.TFRecordDataset(str(path), compression_type="GZIP")) == []


def test_a_block_that_fails_to_encode_fails_the_file(tmp_path):
    path = tmp_path / "records.gz"
    file = examples.TFRecordFile(path, "GZIP", level=1)

    def broken() -> np.ndarray:
        raise ValueError("cannot encode this block")

    file.submit(broken, 10)
    with pytest.raises(ValueError, match="cannot encode this block"):
        file.close()
    assert file.closed
