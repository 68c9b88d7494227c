"""Inputs in a bucket (the GCS emulator over real HTTP): globs and {SPAN} resolved by listing, CSV and Parquet read
in ranged requests, and one-line errors naming the URI."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kest_tasks.core import files
from kest_tasks.core.config import load_config
from kest_tasks.data.sources import DataError, plan_sources, read_chunks
from tests.helpers import IRIS_CONFIG, IRIS_CSV

ROOT = "gs://kest-models/incoming"


def _dataset(path: str, **extra):
    return load_config(IRIS_CONFIG, {"dataset": {"path": path, **extra}}).dataset


def test_spans_and_globs_resolve_by_listing_the_bucket(gcs):
    for span in (1, 2, 10):
        files.write_bytes(f"{ROOT}/span-{span}/a.csv", IRIS_CSV.read_bytes())
        files.write_bytes(f"{ROOT}/span-{span}/b.csv", IRIS_CSV.read_bytes())
    files.write_bytes(f"{ROOT}/span-x/a.csv", b"not a span")
    latest = plan_sources(_dataset(f"{ROOT}/span-{{SPAN}}/*.csv"))
    assert latest.span == 10 and latest.inputs == {None: [f"{ROOT}/span-10/a.csv", f"{ROOT}/span-10/b.csv"]}
    chosen = plan_sources(_dataset(f"{ROOT}/span-{{SPAN}}/a.csv", span=2))
    assert chosen.span == 2 and chosen.inputs == {None: [f"{ROOT}/span-2/a.csv"]}
    dataset = _dataset(f"{ROOT}/span-{{SPAN}}/*.csv")
    assert sum(chunk.batch.num_rows for chunk in read_chunks(dataset, latest, {})) == 300


def test_parquet_from_a_bucket_is_read_in_ranges(gcs):
    table = pa.table({"x": list(range(50_000)), "species": ["a", "b"] * 25_000})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=10_000)
    files.write_bytes(f"{ROOT}/t.parquet", buffer.getvalue())
    dataset = _dataset(f"{ROOT}/t.parquet", source="parquet")
    chunks = list(read_chunks(dataset, plan_sources(dataset), {}))
    assert sum(chunk.batch.num_rows for chunk in chunks) == 50_000 and chunks[0].origin == f"{ROOT}/t.parquet"


def test_missing_inputs_are_one_line_naming_the_uri(gcs):
    with pytest.raises(DataError, match=rf"^{ROOT}/nothing-here/\*\.csv: no file matches$"):
        plan_sources(_dataset(f"{ROOT}/nothing-here/*.csv"))
    missing = _dataset(f"{ROOT}/gone.csv")
    with pytest.raises(DataError, match=rf"^{ROOT}/gone.csv: file not found$"):
        list(read_chunks(missing, plan_sources(missing), {}))
    with pytest.raises(DataError, match=rf"^{ROOT}/span-{{SPAN}}/\*\.csv: no span found"):
        plan_sources(_dataset(f"{ROOT}/span-{{SPAN}}/*.csv"))


@pytest.mark.parametrize("sharding", [{"shards": 64}, {"rows_per_shard": 20}], ids=["64-shards", "rows-per-shard"])
def test_prepare_writes_many_shards_into_a_bucket_in_bounded_memory(gcs, sharding):
    """Every open shard upload holds one chunk: 64 shards per split get 256 KiB chunks (not 8 MiB each), and with
    rows_per_shard a full shard is finished before the next one starts."""
    from kest_tasks.data.prepare import SPLITS, UPLOAD_BUFFER_BYTES, prepare, upload_chunk

    config = load_config(IRIS_CONFIG, {"artifact_root": "gs://kest-models/many", "dataset": sharding})
    assert upload_chunk(config.dataset) * len(SPLITS) * config.dataset.shards <= UPLOAD_BUFFER_BYTES
    prepared = prepare(config, "gs://kest-models/many/runs/r1")
    written = files.list_files("gs://kest-models/many/runs/r1/prepare")
    shards = [name for name in written if name.endswith(".tfrecord.gz")]
    assert sum(prepared.split_rows.values()) == 150 and not [name for name in written if name.startswith(".")]
    assert len(shards) == sum(len(names) for names in prepared.files.values())
    if "shards" in sharding:
        assert len(shards) == 3 * 64
    else:
        assert len(prepared.files["train"]) == -(-prepared.split_rows["train"] // 20)
