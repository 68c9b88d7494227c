"""prepare: rows → statistics + schema (+ validation against a pinned schema) → hash split → TFRecord shards.

One streaming pass: each chunk of rows updates the statistics, is checked, split and written straight into
`<run_uri>/prepare/` (local or gs://). The folder is marked complete only if the whole input was good; a failed
prepare removes what it wrote. When pyarrow's type guess from the first block proves too narrow later (an integer
column with a fraction further down), the pass restarts with that column read as the wider type.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kest_tasks.core import files
from kest_tasks.core.config import DatasetConfig, PipelineConfig
from kest_tasks.core.errors import ConfigError, plural
from kest_tasks.core.execution import run_once, stage_function
from kest_tasks.core.layout import ANOMALIES_FILE, SCHEMA_FILE, STATS_FILE
from kest_tasks.core.results import PrepareResult
from kest_tasks.core.stages import PREPARE
from kest_tasks.data import drift, tfrecord_writer
from kest_tasks.data.feature_names import tf_names
from kest_tasks.data.schema import Schema
from kest_tasks.data.sources import (
    Chunk,
    DataError,
    SourcePlan,
    WiderTypeNeeded,
    arrow_type,
    kind_of,
    plan_sources,
    read_ahead,
    read_chunks,
)
from kest_tasks.data.stats import ColumnStats, infer_schema
from kest_tasks.data.validation import Validator

log = logging.getLogger("kest.prepare")

__all__ = ["DataError", "PrepareResult", "prepare", "shard_name", "split_of_hashes", "row_hashes"]

SPLITS = ("train", "eval", "test")
PROGRESS_EVERY_ROWS = 1_000_000
FLOAT32_MAX = float(np.finfo(np.float32).max)


def shard_name(split: str, index: int, shards: int, compression: str) -> str:
    suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
    return f"{split}-{index:05d}-of-{shards:05d}{suffix}"


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NULL = np.uint64(0x6A09E667F3BCC908)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a stable, well-spread 64-bit mix (NumPy wraps uint64 arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _column_hash(array: pa.Array) -> np.ndarray:
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        encoded = pc.dictionary_encode(array)
        words = encoded.dictionary.to_pylist()
        digests = np.array(
            [int.from_bytes(hashlib.md5(w.encode()).digest()[:8], "little") for w in words] or [0], dtype=np.uint64
        )
        indices = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        hashed = digests[indices]
    else:
        # Numbers hash by value as float64, so 5 and 5.0 (an int column read as float later) agree.
        values = pc.cast(array, pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False) + 0.0
        hashed = np.ascontiguousarray(values).view(np.uint64).copy()
    if array.null_count:
        hashed[array.is_null().to_numpy(zero_copy_only=False)] = _NULL
    return hashed


def row_hashes(batch: pa.RecordBatch, columns: list[str]) -> np.ndarray:
    """A stable 64-bit hash of each row's values in `columns`: the same on every machine and every run."""
    state = np.full(batch.num_rows, _GOLDEN, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in columns:
            state = _mix(state * np.uint64(31) ^ _column_hash(batch.column(name)))
    return state


def split_of_hashes(hashes: np.ndarray, fractions: dict[str, float]) -> np.ndarray:
    """Split index (0 train, 1 eval, 2 test) of each hash against the cumulative split fractions."""
    position = (hashes >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    bounds = np.cumsum([fractions[s] for s in SPLITS])[:-1]
    return np.searchsorted(bounds, position, side="right")


# What all open shard uploads to gs:// may buffer together (each holds one resumable-upload chunk, at most 8 MiB).
UPLOAD_BUFFER_BYTES = 64 << 20


def upload_chunk(dataset: DatasetConfig) -> int:
    """Each shard upload's chunk: 8 MiB, less when many shards are open at once, so memory stays bounded."""
    open_shards = len(SPLITS) * (1 if dataset.rows_per_shard else dataset.shards)
    return min(files.TRANSFER_CHUNK, UPLOAD_BUFFER_BYTES // open_shards)


class _SplitWriter:
    """The shard files of one split: rows dealt round-robin to `shards` files, or a new file every N rows (a full
    one is finished at once, so one file per split is open)."""

    def __init__(self, folder: str, split: str, dataset: DatasetConfig, encoding: tfrecord_writer.Encoding) -> None:
        self.folder, self.split, self.dataset, self.encoding = folder, split, dataset, encoding
        self.files: list[tfrecord_writer.TFRecordFile] = []
        self.rows = 0
        self.chunk = upload_chunk(dataset)
        if not dataset.rows_per_shard:
            self.files = [self._open(i) for i in range(dataset.shards)]

    def _open(self, index: int) -> tfrecord_writer.TFRecordFile:
        if self.dataset.rows_per_shard and self.files:
            self.files[-1].close()
        part = files.join(self.folder, f".{self.split}-{index:05d}.part")
        return tfrecord_writer.TFRecordFile(
            part,
            self.dataset.compression,
            level=self.dataset.compression_level,
            upload_chunk=self.chunk,
            encoding=self.encoding,
        )

    def write(self, encode: Any, rows: np.ndarray) -> None:
        if self.dataset.rows_per_shard:
            per = self.dataset.rows_per_shard
            start = 0
            while start < len(rows):
                if not self.files or self.files[-1].records >= per:
                    self.files.append(self._open(len(self.files)))
                take = rows[start : start + per - self.files[-1].records]
                self.files[-1].submit(functools.partial(encode, take), len(take))
                start += len(take)
        else:
            shards = len(self.files)
            target = (self.rows + np.arange(len(rows))) % shards
            for index, file in enumerate(self.files):
                chosen = rows[target == index]
                if len(chosen):
                    file.submit(functools.partial(encode, chosen), len(chosen))
        self.rows += len(rows)

    def abort(self) -> None:
        """Close the files without naming them: they are left unmarked, for the next attempt to remove."""
        for file in self.files:
            file.abort()

    def close(self) -> list[str]:
        names = []
        for index, file in enumerate(self.files):
            file.close()
            name = shard_name(self.split, index, len(self.files), self.dataset.compression)
            files.rename(file.uri, files.join(self.folder, name))
            names.append(name)
        return names


def _feature_part(array: pa.Array) -> tfrecord_writer.Part:
    kind = array.type
    # fill_null only where there are nulls: the call's Python side holds the GIL the other encoders wait for.
    if pa.types.is_floating(kind):
        return tfrecord_writer.float_feature(
            (array.fill_null(0.0) if array.null_count else array).to_numpy(zero_copy_only=False)
        )
    if pa.types.is_integer(kind):
        return tfrecord_writer.int64_feature(
            (array.fill_null(0) if array.null_count else array).to_numpy(zero_copy_only=False)
        )
    array = array.fill_null("") if array.null_count else array
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8) if array.buffers()[2] else np.empty(0, np.uint8)
    return tfrecord_writer.bytes_feature(tfrecord_writer.strings(data, offsets.astype(np.int64)))


def _encoder(batch: pa.RecordBatch, columns: list[str]) -> Any:
    """`encode(rows)`: those rows of the batch as framed TFRecords (run on the encoding threads)."""

    def encode(rows: np.ndarray) -> np.ndarray:
        taken = batch.take(pa.array(rows)) if len(rows) != batch.num_rows else batch
        entries = []
        for name in columns:
            array = taken.column(name)
            present = array.is_valid().to_numpy(zero_copy_only=False) if array.null_count else None
            entries.append(tfrecord_writer.map_entry(name, _feature_part(array), present))
        return tfrecord_writer.tfrecords(entries)[0]

    return encode


class _Pass:
    """One streaming pass over the inputs: statistics, validation, split and write."""

    def __init__(
        self,
        config: PipelineConfig,
        plan: SourcePlan,
        pinned: Schema | None,
        out: str,
        column_types: dict[str, pa.DataType],
        encoding: tfrecord_writer.Encoding,
    ) -> None:
        self.plan, self.pinned, self.out = plan, pinned, out
        self.column_types = column_types
        self.config = config
        self.dataset = config.dataset
        self.validator = Validator(pinned, self.dataset.validation) if pinned else None
        self.columns: dict[str, ColumnStats] = {}
        self.kept: list[str] = []
        self.first_origin = ""
        self.writers = {s: _SplitWriter(out, s, self.dataset, encoding) for s in SPLITS}
        self.rows = 0

    def _start(self, chunk: Chunk) -> None:
        names, label = chunk.batch.schema.names, self.dataset.label
        if label not in names:
            raise DataError(
                # The names are the file's own bytes (it may not even be a header): counted, never quoted.
                f"{chunk.origin}: no label column {label!r}: the first line has {plural(len(names), 'field')} and none "
                f"is named {label!r}; check dataset.label, and that the file starts with a header"
            )
        missing_keys = [k for k in self.dataset.split.key or [] if k not in names]
        if missing_keys:
            raise DataError(
                f"{chunk.origin}: dataset.split.key column(s) {missing_keys} not among the data's "
                f"{plural(len(names), 'column')}"
            )
        self.kept = self.validator.check_columns(names, chunk.origin) if self.validator else list(names)
        self.columns = {name: ColumnStats(name, is_label=name == self.dataset.label) for name in names}
        self.first_origin = chunk.origin

    def add(self, chunk: Chunk) -> None:
        if not self.columns:
            self._start(chunk)
        elif set(chunk.batch.schema.names) != set(self.columns):
            names = set(chunk.batch.schema.names)
            raise DataError(
                f"{chunk.origin}: columns differ from {self.first_origin}: missing "
                f"{sorted(set(self.columns) - names)}, extra {sorted(names - set(self.columns))}"
            )
        batch = chunk.batch
        arrays = {}
        for name in batch.schema.names:
            array = self._finite_or_missing(name, batch.column(name), chunk)
            if self.validator and name in self.kept:
                array = self.validator.conform(name, array, chunk)
            arrays[name] = array
        batch = pa.RecordBatch.from_pydict(arrays)
        if chunk.split is not None:
            assignment = np.full(batch.num_rows, SPLITS.index(chunk.split))
        else:
            key = self.dataset.split.key or batch.schema.names
            assignment = split_of_hashes(row_hashes(batch, key), self.dataset.split.fractions())
        train = assignment == 0
        for name, array in arrays.items():
            stats, kind = self.columns[name], kind_of(array.type)
            if stats.rows and kind != stats.kind and name not in self.column_types:
                # Another file (or part) holds a wider type than the first: read every input again as that type.
                raise WiderTypeNeeded(name, arrow_type("string" if "string" in (kind, stats.kind) else "float"))
            stats.add(array, chunk, train)
        if self.validator:
            self.validator.check(batch.select(self.kept), chunk)
        encode = _encoder(batch, self.kept)
        for index, split in enumerate(SPLITS):
            rows = np.flatnonzero(assignment == index)
            if len(rows):
                self.writers[split].write(encode, rows)
        before = self.rows
        self.rows += batch.num_rows
        if self.rows // PROGRESS_EVERY_ROWS > before // PROGRESS_EVERY_ROWS:
            elapsed = time.monotonic() - self.started
            log.info("prepare: %d rows so far, %.0f rows/s", self.rows, self.rows / elapsed)

    def _finite_or_missing(self, name: str, array: pa.Array, chunk: Chunk) -> pa.Array:
        """A float column with NaN made missing, and numbers that are infinite or beyond float32 (what the
        TFRecords hold) refused with their row — or, with dataset.non_finite: clip, kept as ±inf for the readers
        to clip to the column's range."""
        if not pa.types.is_floating(array.type):
            return array
        values = array.to_numpy(zero_copy_only=False)  # missing values read as NaN
        with np.errstate(invalid="ignore"):
            beyond = np.abs(values) > FLOAT32_MAX
        nan = np.isnan(values)
        if beyond.any():
            first = int(np.flatnonzero(beyond)[0])
            where = f"{chunk.origin} row {chunk.first_row + first} column {name!r}"
            if name == self.dataset.label:
                raise DataError(f"{where}: label {float(values[first])!r} is not a finite number")
            if self.dataset.non_finite == "error":
                raise DataError(
                    f"{where}: {float(values[first])!r} is not a finite float32 number; fix it, or set "
                    "dataset.non_finite: clip to clip such values to the column's range"
                )
            values = np.where(beyond, np.copysign(np.inf, values), values)
        elif array.null_count == nan.sum():
            return array
        return pa.array(values, type=pa.float64(), mask=nan)

    def run(self) -> None:
        """Read every chunk, then check the whole and write schema.json, stats.json and anomalies.json."""
        self.started = time.monotonic()
        try:
            with read_ahead(read_chunks(self.dataset, self.plan, self.column_types)) as chunks:
                for chunk in chunks:
                    self.add(chunk)
        except BaseException:
            for writer in self.writers.values():
                writer.abort()
            raise
        self.files = {split: writer.close() for split, writer in self.writers.items()}
        self._finish()

    def _finish(self) -> None:
        inputs = [f for fs in self.plan.inputs.values() for f in fs]
        if self.rows == 0:
            raise DataError(f"{', '.join(inputs)}: header only, no data rows")
        forced = set(self.dataset.column_types)
        for stats in self.columns.values():
            stats.check_numeric_text(forced=stats.name in forced or self.validator is not None)
            if stats.name != self.dataset.label:
                stats.check_missing(self.dataset.missing)
        size = self.dataset.vocabulary_size
        inferred = infer_schema(self.columns, self.dataset, self.rows)
        anomalies = self.validator.finish(self.columns) if self.validator else []
        schema = _pinned_schema(self.pinned, self.rows, self.columns) if self.pinned else inferred
        split_rows = {split: self.writers[split].rows for split in SPLITS}
        empty = [split for split, count in split_rows.items() if count == 0]
        if empty:
            raise DataError(
                f"{', '.join(inputs)}: split(s) {empty} received no rows out of {self.rows}; "
                "add data or change dataset.split weights"
            )
        columns = {name: stats.stats(size) for name, stats in self.columns.items()}
        compared = self._drift(columns, schema)
        anomalies = anomalies + compared["anomalies"]
        files.write_json(files.join(self.out, SCHEMA_FILE), schema.model_dump(mode="json"))
        files.write_json(
            files.join(self.out, STATS_FILE),
            {
                "rows": self.rows,
                "split_rows": split_rows,
                "inputs": inputs,
                "span": self.plan.span,
                "columns": columns,
                "drift": {"baseline": compared["baseline"], "features": compared["features"]},
            },
        )
        files.write_json(files.join(self.out, ANOMALIES_FILE), anomalies)
        self.split_rows = split_rows
        self.inputs = inputs
        self.anomalies = anomalies

    def _drift(self, columns: dict[str, dict], schema: Schema) -> dict:
        """This data against the champion's training data: the comparison, and a `drift` anomaly per feature
        beyond its threshold (raises DataError when drift is an error)."""
        baseline = drift.champion_statistics(self.config)
        if baseline is None:
            log.info("prepare: drift: %s has no champion yet; nothing to compare with", self.config.model_name)
            return {"baseline": None, "features": [], "anomalies": []}
        version, stats = baseline
        features = drift.compare(columns, stats.get("columns", {}), schema, self.dataset.validation.drift)
        severity = self.dataset.validation.severity_of("drift")
        anomalies = []
        for found in features:
            if not found["drifted"] or severity == "ignore":
                continue
            detail = (
                f"{found['statistic']} {found['distance']:.3g} > {found['threshold']:g} from the training data of "
                f"champion {version}"
            )
            anomalies.append(
                {
                    "kind": "drift",
                    "column": found["feature"],
                    "severity": severity,
                    "count": columns[found["feature"]]["rows"],
                    "first": None,
                    "detail": detail,
                    **{key: found[key] for key in ("statistic", "distance", "threshold")},
                    "baseline": version,
                }
            )
        lines = [f"{a['severity']} drift: column {a['column']!r} ({a['detail']})" for a in anomalies]
        log.info(
            "prepare: drift: %d of %d features checked against champion %s moved beyond their threshold",
            len(anomalies),
            len(features),
            version,
        )
        for line in lines:
            log.warning("prepare: %s", line)
        if severity == "error" and anomalies:
            raise DataError(f"data drifted from the champion's training data: {'; '.join(lines)}")
        return {"baseline": version, "features": features, "anomalies": anomalies}


def _pinned_schema(pinned: Schema, rows: int, columns: dict[str, ColumnStats]) -> Schema:
    """The pinned schema for this data: its statistics, with this data's missing and infinite counts (readers skip
    filling columns with none), and TensorFlow names and fill values where an older schema.json lacks them."""
    names = tf_names(pinned.feature_names)
    features = [
        feature.model_copy(
            update={
                "missing": columns[feature.name].missing if feature.name in columns else rows,
                "infinite": columns[feature.name].nan_or_inf if feature.name in columns else 0,
                "tf_name": feature.tf_name or names[feature.name],
                "fill": feature.fill
                if feature.fill is not None
                else ("" if feature.type == "string" else feature.mean or 0.0),
            }
        )
        for feature in pinned.features
    ]
    return pinned.model_copy(update={"rows": rows, "features": features})


def _initial_types(dataset: DatasetConfig) -> dict[str, pa.DataType]:
    # A pinned schema's types are not imposed on the reader: data that breaks them is an anomaly to report
    # (with its severity), not a parse failure.
    return {name: arrow_type(kind) for name, kind in dataset.column_types.items()}


_M_MMAP_THRESHOLD = -3


def keep_memory_flat() -> None:
    """Make freed buffers go back to the OS, so peak memory tracks one chunk, not the size of the input.

    pyarrow's mimalloc pool and glibc's adaptive mmap threshold both keep freed chunk buffers for reuse;
    over thousands of chunks their retained memory grew with the input (measured: +90 MB per 1M rows). Arrow
    then allocates with the system allocator, and glibc serves every allocation of 1 MiB or more with mmap.
    """
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


THREADS_SETTING = "KEST_PREPARE_THREADS"


def prepare_threads() -> int:
    """Threads that encode and compress shards: KEST_PREPARE_THREADS, else every core this process may use."""
    value = os.environ.get(THREADS_SETTING, "").strip()
    if not value:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not value.isdigit() or not 1 <= int(value) <= 256:
        raise ConfigError(f"{THREADS_SETTING}={value!r}: expected a whole number of threads from 1 to 256")
    return int(value)


@stage_function
def prepare(config: PipelineConfig, run_uri: str) -> PrepareResult:
    """Read the configured dataset into `<run_uri>/prepare/`: TFRecord shards per split, schema.json, stats.json
    and anomalies.json. Raises DataError (naming file, row and column) on unusable input; nothing is kept then.
    """
    dataset = config.dataset
    pinned = Schema.load(dataset.schema_file) if dataset.schema_file else None

    def produce(work: Path, folder: str) -> PrepareResult:
        # Shards stream straight into the stage folder (to gs:// as resumable uploads), never staged on local disk.
        keep_memory_flat()
        plan = plan_sources(dataset)
        if plan.span is not None:
            log.info("prepare: reading span %d: %s", plan.span, plan.inputs)
        column_types = _initial_types(dataset)
        started = time.monotonic()
        encoding = tfrecord_writer.Encoding(prepare_threads())
        try:
            while True:
                one_pass = _Pass(config, plan, pinned, folder, column_types, encoding)
                try:
                    one_pass.run()
                    break
                except WiderTypeNeeded as wider:
                    log.info("prepare: column %r needs type %s; reading again", wider.column, wider.wider)
                    column_types = {**column_types, wider.column: wider.wider}
                    files.remove_tree(folder)
        finally:
            encoding.close()
        seconds = time.monotonic() - started
        log.info(
            "prepare: %d rows → %s in %.2f s (%.0f rows/s)",
            one_pass.rows,
            one_pass.split_rows,
            seconds,
            one_pass.rows / max(seconds, 1e-9),
        )
        return PrepareResult(
            data_uri=folder,
            schema_uri=files.join(folder, SCHEMA_FILE),
            stats_uri=files.join(folder, STATS_FILE),
            rows=one_pass.rows,
            split_rows=one_pass.split_rows,
            files={s: [files.join(folder, n) for n in names] for s, names in one_pass.files.items()},
            compression=dataset.compression,
            inputs=one_pass.inputs,
            span=plan.span,
            anomalies=len(one_pass.anomalies),
        )

    return run_once(run_uri, PREPARE.folder, PrepareResult, produce)
