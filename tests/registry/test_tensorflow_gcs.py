"""TensorFlow's native gs:// filesystem (the one tf.data, checkpoints and SavedModel use) against the GCS emulator,
through the loopback TLS proxy: the footing for runs that live in object storage."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

PROBE = """
import json, sys
import numpy as np
import tensorflow as tf
root = sys.argv[1]
gfile = tf.io.gfile
gfile.makedirs(f"{root}/run/prepare")
with gfile.GFile(f"{root}/run/prepare/schema.json", "w") as handle:
    handle.write('{"label": "species"}')
with tf.io.TFRecordWriter(f"{root}/run/prepare/train-00000.tfrecord.gz", options="GZIP") as writer:
    for value in range(100):
        example = tf.train.Example(features=tf.train.Features(feature={
            "x": tf.train.Feature(float_list=tf.train.FloatList(value=[value]))}))
        writer.write(example.SerializeToString())
read = [float(tf.io.parse_single_example(r, {"x": tf.io.FixedLenFeature([], tf.float32)})["x"])
        for r in tf.data.TFRecordDataset(gfile.glob(f"{root}/run/prepare/*.tfrecord.gz"), compression_type="GZIP")]
gfile.rename(f"{root}/run/prepare/schema.json", f"{root}/run/prepare/schema2.json")
checkpoint = tf.train.Checkpoint(v=tf.Variable([1.0, 2.0]))
path = checkpoint.save(f"{root}/run/train/model.ckpt")
restored = tf.train.Checkpoint(v=tf.Variable([0.0, 0.0]))
restored.restore(path).assert_consumed()
print(json.dumps({"read": read, "listing": sorted(gfile.listdir(f"{root}/run/prepare")),
                  "schema": gfile.GFile(f"{root}/run/prepare/schema2.json").read(),
                  "restored": restored.v.numpy().tolist(), "latest": tf.train.latest_checkpoint(f"{root}/run/train")}))
"""


def test_tensorflow_reads_and_writes_gs_through_the_proxy(tf_gcs, monkeypatch):
    root = f"gs://{tf_gcs.bucket}/kest"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, root], env=tf_gcs.environment(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["read"] == [float(v) for v in range(100)]
    assert (
        set(answer["listing"]) >= {"schema2.json", "train-00000.tfrecord.gz"} and "schema.json" not in answer["listing"]
    )
    assert answer["schema"] == '{"label": "species"}' and answer["restored"] == [1.0, 2.0]
    assert answer["latest"] == f"{root}/run/train/model.ckpt-1"
    assert tf_gcs.proxy.connections > 10  # every request went through the loopback proxy to the emulator

    # google-cloud-storage (kest's model store) sees the same objects.
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", tf_gcs.environment()["STORAGE_EMULATOR_HOST"])
    client = storage.Client(project="kest-test")
    names = {blob.name for blob in client.list_blobs(tf_gcs.bucket, prefix="kest/run/")}
    assert "kest/run/prepare/train-00000.tfrecord.gz" in names and "kest/run/prepare/schema2.json" in names
