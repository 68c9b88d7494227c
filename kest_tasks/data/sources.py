"""Where rows come from: CSV files (streamed by pyarrow), a TFDS dataset in a local data_dir, NumPy .npz.

Every source yields `Chunk`s: an Arrow record batch of at most ~64k rows plus where it came from, so errors
can name the file and row. Memory holds a few chunks at a time (the one being written, the ones read ahead),
whatever the size of the input.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from kest_tasks.core import files
from kest_tasks.core.config import DatasetConfig
from kest_tasks.core.errors import KestError, quoted
from kest_tasks.data.schema import FeatureType

log = logging.getLogger("kest.prepare")

CHUNK_ROWS = 32_768
RANGE_BYTES = 2 << 20
_ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "string": pa.string()}
# A column pyarrow guessed wrongly from the first block is read again as the next type in this chain.
_WIDER = {pa.null(): pa.int64(), pa.int64(): pa.float64(), pa.float64(): pa.string()}


class DataError(KestError, ValueError):
    """Input data that cannot be used; the message names the file, row and column."""


@dataclass
class Chunk:
    batch: pa.RecordBatch
    origin: str  # a file path, or tfds:<name>/<split>
    first_row: int  # the row number a user would look up: a CSV line number, or a 1-based record index
    split: str | None = None  # set for pre-split inputs


@dataclass
class SourcePlan:
    """The concrete inputs a dataset config resolves to (files per split, the span chosen)."""

    inputs: dict[str | None, list[str]]  # split (None: hash-split) → files; for TFDS a single pseudo-path
    span: int | None = None


def resolve_span(pattern: str, span: int | None) -> tuple[str, int | None]:
    """Replace {SPAN} in `pattern` by the requested span, or by the latest one present on disk."""
    if "{SPAN}" not in pattern:
        return pattern, None
    if span is None:
        regex = re.compile(re.escape(pattern).replace(re.escape("{SPAN}"), r"(\d+)").replace(r"\*", "[^/]*"))
        found = sorted(
            {int(m.group(1)) for path in files.glob(pattern.replace("{SPAN}", "*")) if (m := regex.fullmatch(path))}
        )
        if not found:
            raise DataError(f"{pattern}: no span found (no path matches with {{SPAN}} as a number)")
        span = found[-1]
    candidates = [pattern.replace("{SPAN}", form) for form in (str(span), f"{span:02d}", f"{span:03d}", f"{span:04d}")]
    for candidate in candidates:
        if files.glob(candidate) if files.has_magic(candidate) else files.exists(candidate):
            return candidate, span
    raise DataError(f"{pattern}: span {span} not found")


def _expand(pattern: str) -> list[str]:
    found = files.glob(pattern) if files.has_magic(pattern) else [pattern]
    if not found:
        raise DataError(f"{pattern}: no file matches")
    return found


def plan_sources(dataset: DatasetConfig) -> SourcePlan:
    if dataset.source == "tfds":
        assert dataset.tfds is not None  # the config requires it for source tfds
        return SourcePlan({None: [f"tfds:{dataset.tfds.name}/{dataset.tfds.split}"]})
    if dataset.splits is not None:
        spans = {split: resolve_span(path, dataset.span) for split, path in dataset.splits.items()}
        return SourcePlan({split: _expand(path) for split, (path, _) in spans.items()}, next(iter(spans.values()))[1])
    assert dataset.path is not None  # the config requires path or splits
    path, span = resolve_span(dataset.path, dataset.span)
    return SourcePlan({None: _expand(path)}, span)


def read_chunks(dataset: DatasetConfig, plan: SourcePlan, column_types: dict[str, pa.DataType]) -> Iterator[Chunk]:
    """All chunks of every input, in a stable order (splits, then files sorted by name)."""
    for split, uris in plan.inputs.items():
        for file in uris:
            if dataset.source == "csv":
                chunks = _csv_chunks(file, dataset, column_types)
            elif dataset.source == "parquet":
                chunks = _parquet_chunks(file, column_types)
            elif dataset.source == "tfrecord":
                chunks = _tfrecord_chunks(file, column_types)
            elif dataset.source == "npz":
                chunks = _npz_chunks(file)
            else:
                chunks = _tfds_chunks(dataset)
            for chunk in chunks:
                chunk.split = split
                yield chunk


READ_AHEAD_CHUNKS = 2


@contextlib.contextmanager
def read_ahead(chunks: Iterator[Chunk], depth: int = READ_AHEAD_CHUNKS) -> Iterator[Iterator[Chunk]]:
    """The same chunks, read and parsed on a thread of their own up to `depth` ahead of the consumer (pyarrow's
    parse releases the GIL, so it overlaps the consumer's work). An error reading arrives in its place in the
    sequence; leaving the block stops the reader and closes `chunks` on its thread."""
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(("chunk", chunk)):
                    break
            else:
                put(("end", None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            put(("error", error))
        finally:
            chunks.close()  # type: ignore[attr-defined]  # a generator: runs its cleanup on this thread

    def consume() -> Iterator[Chunk]:
        while True:
            kind, value = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    reader = threading.Thread(target=produce, name="prepare-read-ahead", daemon=True)
    reader.start()
    try:
        yield consume()
    finally:
        stop.set()
        reader.join()


class WiderTypeNeeded(Exception):
    """pyarrow's guess from the first block was too narrow for a later value; read again, wider."""

    def __init__(self, column: str, wider: pa.DataType) -> None:
        super().__init__(column)
        self.column = column
        self.wider = wider


def _open_text(path: str) -> io.TextIOWrapper:
    """A CSV file as text for Python's csv module (a gs:// object streamed in ranges)."""
    return io.TextIOWrapper(files.open_read(path), encoding="utf-8", newline="")


_GZIP_MAGIC = b"\x1f\x8b"
# The first bytes of the binary formats kest reads, for a hint when one is read as CSV.
_MAGIC = {b"PAR1": "parquet", b"PK\x03\x04": "npz", _GZIP_MAGIC: "tfrecord"}


def _not_text(path: str, error: UnicodeDecodeError) -> DataError:
    """A CSV that is not UTF-8 text; when its first bytes are another format's, say which source to set."""
    message = f"{path}: not a UTF-8 text CSV (bad byte at offset {error.start})"
    with contextlib.suppress(OSError, files.StorageError):
        with files.open_read(path) as handle:
            start = handle.read(4)
        for magic, source in _MAGIC.items():
            if start.startswith(magic):
                what = "gzip data (a GZIP TFRecord file?)" if source == "tfrecord" else f"a {source} file"
                return DataError(f"{message}; it starts like {what}: set dataset.source: {source}")
    return DataError(message)


def csv_header(path: str, delimiter: str) -> list[str]:
    try:
        with _open_text(path) as handle:
            header = next(csv.reader(handle, delimiter=delimiter), None)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as error:
        raise _not_text(path, error) from None
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error.strerror}") from None
    if not header:
        raise DataError(f"{path}: file is empty (expected a header row)")
    header = [name.strip() for name in header]
    check_column_names(header, f"{path} row 1")
    return header


def check_column_names(names: list[str], where: str) -> None:
    """Raise DataError naming the first empty or repeated column name by its position (1-based)."""
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if not name:
            raise DataError(f"{where} column {position}: empty header cell; every column needs a name")
        if name in seen:
            raise DataError(
                f"{where} column {position}: the same name as column {seen[name]}; column names must be unique"
            )
        seen[name] = position


def _repeated_headers(data: bytes, header_line: bytes, end: int | None = None) -> list[int]:
    """Byte offsets of the lines in `data[:end]` that repeat the header line exactly (files joined with `cat`)."""
    end = len(data) if end is None else end
    offsets = [0] if data.startswith(header_line, 0, end) else []
    position = data.find(b"\n" + header_line, 0, end)
    while position >= 0:  # bytes.find is memchr-fast: the common case, no repeat, costs one scan of the range
        offsets.append(position + 1)
        position = data.find(b"\n" + header_line, position + 1, end)

    def whole_line(offset: int) -> bool:  # the match ends where its line does (not a longer line's prefix)
        rest = data[offset + len(header_line) : min(offset + len(header_line) + 2, end)]
        return rest in (b"", b"\r", b"\r\n") or rest.startswith(b"\n")

    return [offset for offset in offsets if whole_line(offset)]


def _csv_chunks(path: str, dataset: DatasetConfig, column_types: dict[str, pa.DataType]) -> Iterator[Chunk]:
    """The CSV in byte ranges of ~RANGE_BYTES cut at line ends, each parsed by pyarrow's multi-threaded
    `read_csv` (twice as fast here as its streaming reader). Types guessed on the first range are imposed on
    the rest, so every chunk of a file has the same schema; a later value that does not fit widens the column.
    A line repeating the header is an error naming its row, or skipped (dataset.skip_repeated_headers).
    """
    delimiter = dataset.delimiter
    header = csv_header(path, delimiter)
    types = {k: v for k, v in column_types.items() if k in header}
    row = 2
    skipped = 0
    try:
        with files.open_read(path) as handle:
            header_line = handle.readline().rstrip(b"\r\n")
            carry = b""
            while True:
                block = handle.read(RANGE_BYTES)
                data = carry + block
                if not data:
                    break
                cut = data.rfind(b"\n") + 1 if block else len(data)
                if cut == 0:
                    carry = data
                    continue
                carry = data[cut:]
                block_start = 0
                view = memoryview(data)  # ranges handed to pyarrow without copying
                for offset in _repeated_headers(data, header_line, cut) + [cut]:
                    if offset > block_start:
                        table = _parse_csv_range(view[block_start:offset], header, delimiter, types, dataset)
                        types = dict(zip(table.schema.names, table.schema.types))
                        for batch in table.to_batches(max_chunksize=CHUNK_ROWS):
                            yield Chunk(batch, str(path), row)
                            row += batch.num_rows
                    if offset == cut:
                        break
                    if not dataset.skip_repeated_headers:
                        raise DataError(
                            f"{path} row {row}: the header line is repeated inside the data (files "
                            "joined with cat?); remove it, or set dataset.skip_repeated_headers: true"
                        )
                    skipped += 1
                    row += 1
                    line_end = data.find(b"\n", offset, cut)
                    block_start = line_end + 1 if line_end >= 0 else cut
    except pa.ArrowInvalid as error:
        raise _explain_csv_error(path, dataset, header, str(error), column_types) from None
    if skipped:
        log.warning("prepare: %s: skipped %d repeated header line(s) (dataset.skip_repeated_headers)", path, skipped)


def _parse_csv_range(
    data: bytes | memoryview, header: list[str], delimiter: str, types: dict[str, pa.DataType], dataset: DatasetConfig
) -> pa.Table:
    return pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(column_names=header, block_size=8 << 20),
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            null_values=list(dataset.na_values) or [""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            true_values=["\x00true"],
            false_values=["\x00false"],
            timestamp_parsers=[],
        ),
    )


def _explain_csv_error(
    path: str, dataset: DatasetConfig, header: list[str], message: str, column_types: Any
) -> Exception:
    """Turn a pyarrow parse error into a widening request or a DataError naming row and column."""
    delimiter = dataset.delimiter
    conversion = re.search(r"In CSV column #(\d+): .*CSV conversion error to (\w+)", message)
    if conversion:
        column = header[int(conversion.group(1))]
        failed = {"null": pa.null(), "int64": pa.int64(), "double": pa.float64()}.get(conversion.group(2))
        if column not in column_types and failed in _WIDER:
            return WiderTypeNeeded(column, _WIDER[failed])
        return _first_bad_value(path, dataset, header, column, conversion.group(2))
    # Rare paths (ragged rows, bad bytes): a row-by-row scan finds the exact line for the message.
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle, delimiter=delimiter, strict=True)
            for fields in reader:
                if len(fields) != len(header):
                    found = len(fields)
                    return DataError(f"{path} row {reader.line_num}: expected {len(header)} fields, found {found}")
                if any("\x00" in field for field in fields):
                    return DataError(f"{path} row {reader.line_num}: binary data (NUL byte) in a text CSV")
    except UnicodeDecodeError as error:
        return _not_text(path, error)
    except csv.Error as error:
        return DataError(f"{path} row {reader.line_num}: malformed CSV: {error}")
    # pyarrow's message may end with the offending row's bytes ("… got 1: <row>"): keep its reason only.
    reason = re.sub(r"(got \d+)?: .*$", r"\1", message.splitlines()[0].removeprefix("CSV parse error: "))
    return DataError(f"{path}: unreadable CSV: {reason}")


def _first_bad_value(path: str, dataset: DatasetConfig, header: list[str], column: str, kind: str) -> DataError:
    parse = int if kind == "int64" else float
    position = header.index(column)
    missing = set(dataset.na_values)
    with _open_text(path) as handle:
        reader = csv.reader(handle, delimiter=dataset.delimiter)
        next(reader)
        for fields in reader:
            value = fields[position].strip() if position < len(fields) else ""
            try:
                if value and value not in missing:
                    parse(value)
            except ValueError:
                return DataError(
                    f"{path} row {reader.line_num} column {column!r}: {quoted(value)} is not a valid "
                    f"{'integer' if kind == 'int64' else 'number'}"
                )
    return DataError(f"{path} column {column!r}: values do not convert to {kind}")


def _npz_chunks(path: str) -> Iterator[Chunk]:
    try:
        arrays = np.load(files.open_read(path) if files.is_gcs(path) else path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (ValueError, OSError) as error:
        raise DataError(f"{path}: not a NumPy .npz archive ({error})") from None
    with arrays:
        columns = {name: arrays[name] for name in arrays.files}
    lengths = {name: len(a) if a.ndim else 0 for name, a in columns.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"{path}: arrays have different lengths {lengths}; each must hold one value per row")
    for name, array in columns.items():
        if array.ndim != 1:
            raise DataError(f"{path} column {name!r}: shape {array.shape}; kest takes one scalar per row and column")
    total = next(iter(lengths.values()))
    for start in range(0, total, CHUNK_ROWS):
        batch = pa.RecordBatch.from_pydict(
            {name: _arrow_array(a[start : start + CHUNK_ROWS]) for name, a in columns.items()}
        )
        yield Chunk(batch, str(path), start + 1)


def _arrow_array(values: np.ndarray) -> pa.Array:
    if values.dtype.kind in "US":
        return pa.array([v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()], pa.string())
    if values.dtype.kind == "b":
        return pa.array(values.astype(np.int64))
    if values.dtype.kind == "f":
        return pa.array(values.astype(np.float64))
    if values.dtype.kind in "iu":
        return pa.array(values.astype(np.int64))
    raise DataError(f"unsupported NumPy dtype {values.dtype}")


def _tfds_chunks(dataset: DatasetConfig) -> Iterator[Chunk]:
    import tensorflow_datasets as tfds

    from kest_tasks.core.tfenv import import_tensorflow

    import_tensorflow()
    source = dataset.tfds
    assert source is not None  # the config requires it for source tfds
    origin = f"tfds:{source.name}/{source.split} in {source.data_dir}"
    try:
        loaded = tfds.load(source.name, split=source.split, data_dir=source.data_dir, download=False)
    except Exception as error:  # noqa: BLE001 - TFDS raises many kinds; all mean "not loadable from this data_dir"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{origin}: cannot load without downloading: {first}") from None
    row = 1
    for batch in tfds.as_numpy(loaded.batch(CHUNK_ROWS)):
        columns = {}
        for name, values in batch.items():
            if values.ndim != 1:
                raise DataError(f"{origin} column {name!r}: shape {values.shape[1:]} per row; kest takes scalars")
            columns[name] = _arrow_array(values)
        record_batch = pa.RecordBatch.from_pydict(columns)
        yield Chunk(record_batch, origin, row)
        row += record_batch.num_rows


def _parquet_chunks(path: str, column_types: dict[str, pa.DataType]) -> Iterator[Chunk]:
    """A Parquet file in batches of CHUNK_ROWS rows (pyarrow reads one row group at a time)."""
    import pyarrow.parquet as pq

    try:
        source = files.open_read(path) if files.is_gcs(path) else path  # gs://: ranged reads, never a whole copy
        parquet = pq.ParquetFile(source, buffer_size=RANGE_BYTES, pre_buffer=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: not a readable Parquet file ({str(error).splitlines()[0]})") from None
    check_column_names(parquet.schema_arrow.names, f"{path} header")
    row = 1
    try:
        # One thread: memory stays flat (P6-parquet 1.07x instead of 1.21x from 100k to 10M rows) at the same
        # speed (226k vs 214k rows/s here: prepare's statistics and encoding, not decoding, set the pace).
        for batch in parquet.iter_batches(batch_size=CHUNK_ROWS, use_threads=False):
            yield Chunk(plain_columns(batch, str(path), column_types, row), str(path), row)
            row += batch.num_rows
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: unreadable Parquet data after row {row - 1}: {str(error).splitlines()[0]}") from None


def plain_columns(
    batch: pa.RecordBatch, origin: str, column_types: dict[str, pa.DataType], first_row: int = 1
) -> pa.RecordBatch:
    """Every column as int64, float64 or string (what prepare handles): booleans and integers → int64, floats and
    decimals → float64, text, dictionaries, dates and times → string; dataset.column_types applied. A column of
    lists or structs is a DataError naming it."""
    columns = {}
    for name, array in zip(batch.schema.names, batch.columns):
        kind = array.type
        if pa.types.is_dictionary(kind):
            array, kind = array.dictionary_decode(), kind.value_type
        if pa.types.is_boolean(kind) or pa.types.is_integer(kind):
            target = pa.int64()
        elif pa.types.is_floating(kind) or pa.types.is_decimal(kind) or pa.types.is_null(kind):
            target = pa.float64()
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_temporal(kind):
            target = pa.string()
        else:
            raise DataError(
                f"{origin} column {name!r}: type {kind} holds no single number or text per row; kest "
                "takes one scalar per row and column"
            )
        target = column_types.get(name, target)
        try:
            columns[name] = pc.cast(array, target) if array.type != target else array
        except pa.ArrowInvalid:
            raise _first_uncastable(array, target, origin, name, first_row) from None
    return pa.RecordBatch.from_pydict(columns)


CAST_PROBE = 1024  # values cast at once while looking for the one that fails


def _first_uncastable(array: pa.Array, target: pa.DataType, origin: str, name: str, first_row: int) -> DataError:
    """The first value of `array` that does not cast to `target`, by row. pyarrow's own message quotes the whole
    value; this quotes its start only. Slices of CAST_PROBE rows, then single values: only on the error path."""
    for start in range(0, len(array), CAST_PROBE):
        part = array.slice(start, CAST_PROBE)
        try:
            pc.cast(part, target)
            continue
        except pa.ArrowInvalid:
            pass
        for index in range(len(part)):
            try:
                pc.cast(part.slice(index, 1), target)
            except pa.ArrowInvalid:
                row = first_row + start + index
                wanted = "integer" if target == pa.int64() else "number"  # as _first_bad_value says it for CSV
                value = quoted(part[index].as_py())
                return DataError(f"{origin} row {row} column {name!r}: {value} is not a valid {wanted}")
    return DataError(f"{origin} column {name!r}: values from row {first_row} do not convert to {target}")


KEY_SAMPLE_RECORDS = 1000  # records of a TFRecord file read to find its keys and their types


def _tfrecord_keys(records: Any, path: str, column_types: dict[str, pa.DataType]) -> dict[str, str]:
    """Feature key → kind (int, float, string) from the first records, plus any key dataset.column_types pins."""
    import tensorflow as tf

    kinds = {"int64_list": "int", "float_list": "float", "bytes_list": "string"}
    keys: dict[str, str] = {}
    for index, record in enumerate(records, start=1):
        try:
            example = tf.train.Example.FromString(record.numpy())
        except Exception:  # noqa: BLE001 - protobuf DecodeError and friends: the record is not a tf.train.Example
            raise DataError(f"{path} record {index}: not a serialized tf.train.Example") from None
        for key, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            if kind is None:
                continue
            if key in keys and keys[key] != kinds[kind]:
                raise DataError(
                    f"{path} record {index} key {key!r}: {kinds[kind]} values, but earlier records hold "
                    f"{keys[key]} values"
                )
            keys[key] = kinds[kind]
    for key, arrow in column_types.items():
        keys.setdefault(key, kind_of(arrow))
    if not keys:
        raise DataError(f"{path}: no tf.train.Example features in its first {KEY_SAMPLE_RECORDS} records")
    return keys


def _tfrecord_chunks(path: str, column_types: dict[str, pa.DataType]) -> Iterator[Chunk]:
    """A TFRecord file of tf.train.Example (gzip or not, told by its first bytes) in batches of CHUNK_ROWS records,
    one value per key and record; keys a record lacks are missing values."""
    from kest_tasks.core.tfenv import import_tensorflow

    tf = import_tensorflow()
    try:
        with files.open_read(path) as handle:
            compression = "GZIP" if handle.read(2) == _GZIP_MAGIC else ""
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    records = tf.data.TFRecordDataset([str(path)], compression_type=compression)
    row = 1
    try:
        keys = _tfrecord_keys(records.take(KEY_SAMPLE_RECORDS), path, column_types)
        dtypes = {"int": tf.int64, "float": tf.float32, "string": tf.string}
        spec = {key: tf.io.VarLenFeature(dtypes[kind]) for key, kind in keys.items()}
        for serialized in records.batch(CHUNK_ROWS):
            count = int(serialized.shape[0])
            try:
                parsed = tf.io.parse_example(serialized, spec)
            except tf.errors.InvalidArgumentError as error:
                raise _explain_record_error(path, row, str(error)) from None
            columns = {key: _dense_column(path, row, key, parsed[key], count) for key in keys}
            batch = pa.RecordBatch.from_pydict(columns)
            yield Chunk(plain_columns(batch, str(path), column_types, row), str(path), row)
            row += count
    except tf.errors.OpError as error:  # a truncated or corrupted file (bad length, CRC or gzip stream)
        raise DataError(
            f"{path}: corrupt TFRecord data after record {row - 1}: {error.message.splitlines()[0]}"
        ) from None


def _dense_column(path: str, first_row: int, key: str, sparse: Any, count: int) -> pa.Array:
    indices = sparse.indices.numpy()
    values = sparse.values.numpy()
    if len(indices) and indices[:, 1].max() > 0:
        record = int(indices[indices[:, 1] > 0][0, 0])
        raise DataError(
            f"{path} record {first_row + record} key {key!r}: several values; kest takes one value per "
            "feature and record"
        )
    present = np.zeros(count, dtype=bool)
    present[indices[:, 0]] = True
    if values.dtype.kind == "O":
        text = [None] * count
        for position, value in zip(indices[:, 0].tolist(), values.tolist()):
            try:
                text[position] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(
                    f"{path} record {first_row + position} key {key!r}: bytes that are not UTF-8 text"
                ) from None
        return pa.array(text, pa.string())
    full = np.zeros(count, dtype=np.float64 if values.dtype.kind == "f" else np.int64)
    full[indices[:, 0]] = values
    return pa.array(full, mask=~present)


def _explain_record_error(path: str, first_row: int, message: str) -> DataError:
    """parse_example's error (e.g. a key's type differs from the first records') → one line naming the record."""
    found = re.search(r"Name: [^,]*, Key: ([^,]+), Index: (\d+)\.\s*(.*)", message)
    if found:
        return DataError(
            f"{path} record {first_row + int(found.group(2))} key {found.group(1)!r}: {found.group(3).splitlines()[0]}"
        )
    return DataError(f"{path} records from {first_row}: {message.splitlines()[0]}")


def kind_of(arrow_type: pa.DataType) -> FeatureType:
    """The schema type (int, float, string) of an Arrow type."""
    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type):
        return "float"
    return "string"


def arrow_type(kind: str) -> pa.DataType:
    return _ARROW_TYPES[kind]
