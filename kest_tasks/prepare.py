"""prepare: CSV → inferred schema → deterministic hash split → sharded TFRecords of tf.train.Example.

Two streaming passes over the input: the first infers types and statistics, the second writes records.
Memory stays flat whatever the number of rows.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from kest_tasks.config import PipelineConfig
from kest_tasks.errors import KestError
from kest_tasks.schema import FeatureSchema, LabelSchema, Schema
from kest_tasks.stage import StageResult, run_once, stage_function
from kest_tasks.storage import write_json_atomic
from kest_tasks.tfenv import import_tensorflow

log = logging.getLogger("kest.prepare")

SPLITS = ("train", "eval", "test")
VOCABULARY_SIZE = 100
_MAX_TRACKED_VALUES = 10_000
_PROGRESS_EVERY = 1_000_000


class DataError(KestError, ValueError):
    """Input data that cannot be used; the message names the file, row and column."""


class PrepareResult(StageResult):
    data_uri: str
    schema_uri: str
    rows: int
    split_rows: dict[str, int]
    files: dict[str, list[str]]
    compression: str


def _read_rows(path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for every data row, header first as line 1."""
    try:
        handle = open(path, newline="", encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error.strerror}") from None
    with handle:
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        try:
            for fields in reader:
                if "\x00" in "".join(fields):
                    raise DataError(f"{path} row {reader.line_num}: binary data (NUL byte) in a text CSV")
                yield reader.line_num, fields
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: not a UTF-8 text CSV (bad byte at offset {error.start})") from None
        except csv.Error as error:
            raise DataError(f"{path} row {reader.line_num}: malformed CSV: {error}") from None


class _ColumnStats:
    """Streaming type inference and statistics for one column."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.missing = 0
        self.count = 0
        self.could_be_int = True
        self.could_be_float = True
        self.total = 0.0
        self.total_sq = 0.0
        self.low = math.inf
        self.high = -math.inf
        self.values: Counter[str] = Counter()
        self.too_many_values = False

    def add(self, raw: str) -> None:
        value = raw.strip()
        if value == "":
            self.missing += 1
            return
        self.count += 1
        if not self.too_many_values:
            self.values[value] += 1
            if len(self.values) > _MAX_TRACKED_VALUES:
                self.too_many_values = True
                self.values = Counter(dict(self.values.most_common(VOCABULARY_SIZE)))
        elif value in self.values:
            self.values[value] += 1
        if not self.could_be_float:
            return
        try:
            number = float(value)
        except ValueError:
            self.could_be_int = self.could_be_float = False
            return
        if self.could_be_int and not _is_int_literal(value):
            self.could_be_int = False
        self.total += number
        self.total_sq += number * number
        self.low = min(self.low, number)
        self.high = max(self.high, number)

    @property
    def type(self) -> str:
        if self.count and self.could_be_int:
            return "int"
        if self.count and self.could_be_float:
            return "float"
        return "string"

    def feature_schema(self) -> FeatureSchema:
        if self.type == "string":
            vocabulary = [value for value, _ in self.values.most_common(VOCABULARY_SIZE)]
            return FeatureSchema(name=self.name, type="string", missing=self.missing, vocabulary=vocabulary)
        mean = self.total / self.count
        variance = max(self.total_sq / self.count - mean * mean, 0.0)
        return FeatureSchema(
            name=self.name, type=self.type, missing=self.missing,
            min=self.low, max=self.high, mean=mean, std=math.sqrt(variance),
        )


def _is_int_literal(value: str) -> bool:
    body = value[1:] if value[:1] in "+-" else value
    return body.isdigit()


def infer_schema(path: Path, label: str, delimiter: str) -> tuple[list[str], Schema]:
    """First pass: the header and the schema inferred from every row. Raises DataError on bad files."""
    rows = _read_rows(path, delimiter)
    try:
        _, header = next(rows)
    except StopIteration:
        raise DataError(f"{path}: file is empty (expected a header row)") from None
    header = [name.strip() for name in header]
    if label not in header:
        raise DataError(f"{path}: label column {label!r} not found in header (columns: {', '.join(header)})")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates or "" in header:
        raise DataError(f"{path} row 1: header has duplicate or empty column names: {duplicates or ['']}")
    columns = [_ColumnStats(name) for name in header]
    count = 0
    for line, fields in rows:
        if len(fields) != len(header):
            raise DataError(f"{path} row {line}: expected {len(header)} fields, found {len(fields)}")
        for column, raw in zip(columns, fields):
            column.add(raw)
        count += 1
    if count == 0:
        raise DataError(f"{path}: header only, no data rows")
    label_stats = columns[header.index(label)]
    if label_stats.missing:
        raise DataError(f"{path} column {label!r}: label is missing in {label_stats.missing} rows")
    features = [c.feature_schema() for c in columns if c.name != label]
    return header, Schema(features=features, label=_label_schema(path, label_stats), rows=count)


def _label_schema(path: Path, stats: _ColumnStats) -> LabelSchema:
    if stats.type == "float" or (stats.type == "int" and len(stats.values) > 100):
        return LabelSchema(name=stats.name, kind="regression")
    if stats.too_many_values:
        raise DataError(f"{path} column {stats.name!r}: label has over {_MAX_TRACKED_VALUES} distinct values")
    values = list(stats.values)
    classes = sorted(values, key=int) if stats.type == "int" else sorted(values)
    if len(classes) < 2:
        raise DataError(f"{path} column {stats.name!r}: label has a single class {classes}; nothing to learn")
    return LabelSchema(name=stats.name, kind="classification", classes=classes)


def split_of(key: str, fractions: dict[str, float]) -> str:
    """The split a row key falls in: a stable hash of the key against the cumulative split fractions."""
    bucket = int.from_bytes(hashlib.md5(key.encode()).digest()[:8], "big") / 2**64
    cumulative = 0.0
    for split in SPLITS:
        cumulative += fractions[split]
        if bucket < cumulative:
            return split
    return SPLITS[-1]


def shard_name(split: str, index: int, shards: int, compression: str) -> str:
    suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
    return f"{split}-{index:05d}-of-{shards:05d}{suffix}"


def _example_builder(header: list[str], schema: Schema):
    """Return fields → serialized tf.train.Example for the schema's features and label."""
    tf = import_tensorflow()
    types = {f.name: f.type for f in schema.features}
    positions = [(i, name) for i, name in enumerate(header) if name in types]
    label_index = header.index(schema.label.name)
    class_index = {name: i for i, name in enumerate(schema.label.classes or [])}

    def feature(kind: str, value: str):
        if kind == "string":
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        if kind == "int":
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))

    def build(fields: list[str]) -> bytes:
        values = {}
        for i, name in positions:
            raw = fields[i].strip()
            if raw != "":
                values[name] = feature(types[name], raw)
        raw_label = fields[label_index].strip()
        if schema.label.kind == "classification":
            values[schema.label.name] = feature("int", str(class_index[raw_label]))
        else:
            values[schema.label.name] = feature("float", raw_label)
        return tf.train.Example(features=tf.train.Features(feature=values)).SerializeToString()

    return build


def _write_splits(path: Path, header: list[str], schema: Schema, config: PipelineConfig, out: Path) -> dict:
    tf = import_tensorflow()
    dataset = config.dataset
    fractions = dataset.split.fractions()
    key_positions = [header.index(k) for k in dataset.split.key] if dataset.split.key else None
    options = tf.io.TFRecordOptions(compression_type="GZIP" if dataset.compression == "GZIP" else "")
    names = {s: [shard_name(s, i, dataset.shards, dataset.compression) for i in range(dataset.shards)] for s in SPLITS}
    writers = {s: [tf.io.TFRecordWriter(str(out / n), options) for n in names[s]] for s in SPLITS}
    counts = dict.fromkeys(SPLITS, 0)
    build = _example_builder(header, schema)
    started = time.monotonic()
    rows = _read_rows(path, dataset.delimiter)
    next(rows)
    try:
        for _, fields in rows:
            key_fields = fields if key_positions is None else [fields[i] for i in key_positions]
            split = split_of("\x1f".join(key_fields), fractions)
            writers[split][counts[split] % dataset.shards].write(build(fields))
            counts[split] += 1
            total = sum(counts.values())
            if total % _PROGRESS_EVERY == 0:
                log.info("prepare: %d rows written, %.0f rows/s", total, total / (time.monotonic() - started))
    finally:
        for split_writers in writers.values():
            for writer in split_writers:
                writer.close()
    return {"counts": counts, "files": names}


def check_key_columns(config: PipelineConfig, header: list[str], path: Path) -> None:
    missing = [k for k in config.dataset.split.key or [] if k not in header]
    if missing:
        raise DataError(f"{path}: dataset.split.key column(s) {missing} not in header (columns: {', '.join(header)})")


@stage_function
def prepare(config: PipelineConfig, run_uri: str) -> PrepareResult:
    """Read the configured dataset and write `<run_uri>/data/`: TFRecord shards per split + schema.json.

    Raises DataError (one line naming file, row and column) for unusable input; nothing is written then.
    """

    def produce(tmp: Path, final: Path) -> PrepareResult:
        path = Path(config.dataset.path)
        header, schema = infer_schema(path, config.dataset.label, config.dataset.delimiter)
        check_key_columns(config, header, path)
        written = _write_splits(path, header, schema, config, tmp)
        empty = [s for s, n in written["counts"].items() if n == 0]
        if empty:
            raise DataError(
                f"{path}: split(s) {empty} received no rows out of {schema.rows}; "
                "add data or change dataset.split weights"
            )
        write_json_atomic(tmp / "schema.json", schema.model_dump(mode="json"))
        log.info("prepare: %d rows → %s from %s", schema.rows, written["counts"], path)
        return PrepareResult(
            data_uri=str(final),
            schema_uri=str(final / "schema.json"),
            rows=schema.rows,
            split_rows=written["counts"],
            files={s: [str(final / n) for n in names] for s, names in written["files"].items()},
            compression=config.dataset.compression,
        )

    return run_once(run_uri, "data", PrepareResult, produce)
