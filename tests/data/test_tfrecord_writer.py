"""The NumPy Example encoder against TensorFlow's own parser and record reader."""
import numpy as np
import pytest

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
    return [tf.train.Example.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP" if compression == "GZIP" else "")]


@pytest.mark.parametrize("compression", ["NONE", "GZIP"])
def test_every_kind_of_value_parses_back(tmp_path, compression):
    floats = np.array([1.5, -0.0, 3.25e38, np.nan, 7], dtype=np.float32)
    ints = np.array([0, 127, 128, -5, 2**62])
    words = [b"a", b"", b"hello world", b"x" * 300, "caf\u00e9".encode()]
    present = np.array([True, False, True, True, True])
    entries = [examples.map_entry("f", examples.float_feature(floats), present),
               examples.map_entry("i", examples.int64_feature(ints)),
               examples.map_entry("s", examples.bytes_feature(_strings(words)))]
    parsed = _write_and_read(tmp_path, entries, compression)
    assert len(parsed) == 5
    assert "f" not in parsed[1].features.feature
    assert [p.features.feature["i"].int64_list.value[0] for p in parsed] == ints.tolist()
    assert [p.features.feature["s"].bytes_list.value[0] for p in parsed] == words
    got = [p.features.feature["f"].float_list.value[0] for i, p in enumerate(parsed) if present[i]]
    assert got[0] == 1.5 and got[1] == np.float32(3.25e38) and np.isnan(got[2]) and got[3] == 7


def test_bytes_match_protobuf_serialisation(tmp_path):
    tf = import_tensorflow()
    data, count = examples.tfrecords([examples.map_entry("x", examples.float_feature(np.array([2.0], np.float32))),
                                      examples.map_entry("y", examples.int64_feature(np.array([300])))])
    reference = tf.train.Example(features=tf.train.Features(feature={
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[2.0])),
        "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[300])),
    })).SerializeToString()
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
