"""Files and folders of runs and inputs, addressed by URI: a local path (or file:// URI) or `gs://bucket/key`.

One set of functions for both, so a stage reads and writes its run folder the same way on one machine and across
many. Local writes are atomic (a temporary name, renamed last). On GCS an object appears whole when its upload
finishes; `if_absent` writes carry the generation precondition `ifGenerationMatch=0`, which is how a completion
marker is written exactly once. google-cloud-storage does the talking (credentials from the standard Google
environment; `STORAGE_EMULATOR_HOST` honoured); TensorFlow reads and writes gs:// itself where it does the I/O.

Transient GCS errors (429, 5xx, dropped connections) are retried for KEST_GCS_RETRY_SECONDS (default 120);
then, and for permanent errors (missing bucket or object, no credentials, permission denied), a StorageError
names the URI in one line — never a query string, upload id or token.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from kest_tasks.core.errors import KestError

GCS_SCHEME = "gs://"
RETRY_SECONDS_ENV = "KEST_GCS_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 120.0
RETRYABLE_MARK = "storage unavailable"  # in every retryable StorageError's line (a parent process tells them apart)
TRANSFER_CHUNK = 8 << 20  # bytes per ranged read and per resumable-upload chunk: what a stream holds in memory


class StorageError(KestError, OSError):
    """Storage refused or failed an operation. `retryable`: the service was unavailable for the whole retry
    budget, so a later attempt may succeed (a task retry); otherwise retrying cannot help."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class StorageNotFound(StorageError, FileNotFoundError):
    """The object or bucket does not exist (or disappeared between listing and reading)."""


def is_gcs(uri: str | Path) -> bool:
    return str(uri).startswith(GCS_SCHEME)


def local_path(uri: str | Path) -> Path:
    """Return the local path of a plain path or file:// URI; other schemes are refused."""
    text = str(uri)
    if text.startswith("file://"):
        return Path(text[len("file://") :])
    if "://" in text:
        raise ValueError(f"{text!r} is not a local path; only local folders are supported here")
    return Path(text)


def join(uri: str | Path, *parts: str) -> str:
    """`uri/part/part…`: a gs:// key or a local path."""
    if is_gcs(uri):
        return "/".join([str(uri).rstrip("/"), *(part.strip("/") for part in parts)])
    return str(local_path(uri).joinpath(*parts))


def sibling(uri: str, name: str) -> str:
    """The file `name` in the same folder as `uri`."""
    return join(uri.rstrip("/").rsplit("/", 1)[0], name)


def name_of(uri: str) -> str:
    """The last component of a URI (a file's or folder's name)."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def split_gcs(uri: str) -> tuple[str, str]:
    """(bucket, object name) of `gs://bucket/name`."""
    bucket, _, name = uri[len(GCS_SCHEME) :].partition("/")
    return bucket, name


def retry_seconds() -> float:
    try:
        return float(os.environ.get(RETRY_SECONDS_ENV) or DEFAULT_RETRY_SECONDS)
    except ValueError:
        raise StorageError(f"{RETRY_SECONDS_ENV}: not a number of seconds") from None


def gcs_retry(seconds: float | None = None) -> Any:
    """google-cloud-storage's retry policy for transient errors, bounded to `seconds` (default: the setting)."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(retry_seconds() if seconds is None else seconds)


@functools.cache
def _client(project: str | None, emulator: str | None) -> Any:
    """One storage client (credentials, HTTP session) per project and endpoint for the whole process. The emulator
    address is part of the key so a process that switches endpoints gets a client for the new one."""
    from google.cloud import storage

    return storage.Client(project=project)


def gcs_bucket(bucket: str) -> Any:
    """A bucket handle of the process's client (credentials are looked up here: call it under gcs_errors)."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or ("kest" if emulator else None)
    return _client(project, emulator).bucket(bucket)


def _blob(uri: str) -> Any:
    bucket, name = split_gcs(uri)
    with gcs_errors(uri):
        return gcs_bucket(bucket).blob(name, chunk_size=TRANSFER_CHUNK)


_QUERY = re.compile(r"(\?|&)[^ ]*")  # query strings carry upload ids and signatures


def error_summary(error: BaseException) -> str:
    """The first line of an error's text without query strings, at most 300 characters."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return _QUERY.sub("", text)[:300]


def _bucket_missing(uri: str) -> bool:
    with contextlib.suppress(Exception):
        return not gcs_bucket(split_gcs(uri)[0]).exists(retry=gcs_retry(5))
    return False


def translate_gcs_error(uri: str, error: BaseException) -> StorageError | None:
    """The one-line StorageError for a google-cloud-storage / google-auth / HTTP error about `uri`, or None when
    `error` is none of those."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    from google.resumable_media import common as media
    from requests import exceptions as http

    if isinstance(error, api.NotFound):
        bucket = f"{GCS_SCHEME}{split_gcs(uri)[0]}"
        if _bucket_missing(uri):
            return StorageNotFound(f"{bucket}: bucket not found (create it, or fix the URI {uri})")
        return StorageNotFound(f"{uri}: not found")
    if isinstance(error, api.Forbidden):
        return StorageError(f"{uri}: permission denied ({error_summary(error)})")
    if isinstance(error, api.Unauthorized | auth.DefaultCredentialsError | auth.RefreshError):
        return StorageError(
            f"{uri}: no usable Google credentials ({type(error).__name__}); set GOOGLE_APPLICATION_CREDENTIALS or "
            "run `gcloud auth application-default login`"
        )
    if isinstance(error, api.RetryError):
        cause = error.cause if error.cause is not None else error
        # The budget of the retry that gave up (a model store has its own), as its message states it.
        budget = re.search(r"Timeout of ([\d.]+)s", str(error))
        seconds = float(budget.group(1)) if budget else retry_seconds()
        return StorageError(
            f"{uri}: {RETRYABLE_MARK} for {seconds:g} s of retries ({type(cause).__name__}: {error_summary(cause)})",
            retryable=True,
        )
    transient = (api.TooManyRequests, api.ServerError, http.ConnectionError, http.Timeout, ConnectionError)
    if isinstance(error, transient):
        return StorageError(f"{uri}: {RETRYABLE_MARK} ({type(error).__name__})", retryable=True)
    if isinstance(error, api.GoogleAPIError | auth.GoogleAuthError | http.RequestException | media.InvalidResponse):
        return StorageError(f"{uri}: {type(error).__name__}: {error_summary(error)}")
    return None


@contextlib.contextmanager
def gcs_errors(uri: str) -> Iterator[None]:
    """Turn what google-cloud-storage raises into one StorageError line naming `uri`."""
    try:
        yield
    except StorageError:
        raise
    except Exception as error:
        translated = translate_gcs_error(uri, error)
        if translated is None:
            raise
        raise translated from None


# --- objects -----------------------------------------------------------------------------------------------------


def exists(uri: str | Path) -> bool:
    """Whether a file (local) or object (gs://) exists."""
    if is_gcs(uri):
        with gcs_errors(str(uri)):
            return bool(_blob(str(uri)).exists(retry=gcs_retry()))
    return local_path(uri).exists()


def read_bytes(uri: str | Path) -> bytes:
    """A file's bytes; StorageNotFound (a FileNotFoundError) if it is not there."""
    if is_gcs(uri):
        with gcs_errors(str(uri)):
            return bytes(_blob(str(uri)).download_as_bytes(retry=gcs_retry()))
    try:
        return local_path(uri).read_bytes()
    except FileNotFoundError:
        raise StorageNotFound(f"{uri}: not found") from None


def read_json(uri: str | Path) -> Any:
    return json.loads(read_bytes(uri))


def write_bytes(uri: str | Path, data: bytes, if_absent: bool = False) -> bool:
    """Write a whole file at once. With `if_absent`, only if it does not exist yet (GCS: generation precondition
    0; locally an exclusive link); returns False when it already existed, True when written."""
    if is_gcs(uri):
        from google.api_core.exceptions import PreconditionFailed

        with gcs_errors(str(uri)):
            try:
                _blob(str(uri)).upload_from_string(
                    data, if_generation_match=0 if if_absent else None, retry=gcs_retry()
                )
            except PreconditionFailed:
                return False
        return True
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if not if_absent:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails if `path` exists: the local generation-0 precondition
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def write_json(uri: str | Path, value: Any, if_absent: bool = False) -> bool:
    return write_bytes(uri, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode(), if_absent=if_absent)


def write_text(uri: str | Path, text: str) -> None:
    write_bytes(uri, text.encode())


class _GcsStream(io.RawIOBase):
    """A BlobReader/BlobWriter whose errors become one StorageError line naming the object."""

    def __init__(self, uri: str, inner: Any) -> None:
        self.uri, self.inner = uri, inner

    def readable(self) -> bool:
        return bool(self.inner.readable())

    def writable(self) -> bool:
        return bool(self.inner.writable())

    def seekable(self) -> bool:
        return bool(self.inner.seekable())

    def readinto(self, buffer: Any) -> int:
        with gcs_errors(self.uri):
            data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        with gcs_errors(self.uri):
            return bytes(self.inner.read(size))

    def write(self, data: Any) -> int:
        with gcs_errors(self.uri):
            return int(self.inner.write(data))

    def seek(self, offset: int, whence: int = 0) -> int:
        with gcs_errors(self.uri):
            return int(self.inner.seek(offset, whence))

    def tell(self) -> int:
        return int(self.inner.tell())

    def close(self) -> None:
        if not self.closed:
            try:
                with gcs_errors(self.uri):
                    self.inner.close()
            finally:
                super().close()

    def discard(self) -> None:
        """Drop a write without finishing it: the resumable upload is never finalized, so no object appears.
        (BlobWriter finalizes on close, even from its finalizer, unless its buffer is closed first.)"""
        with contextlib.suppress(Exception):
            self.inner._buffer.close()
        super().close()


def open_read(uri: str | Path) -> BinaryIO:
    """A seekable binary stream of a file. A gs:// object is read in ranged requests of TRANSFER_CHUNK bytes, so
    memory stays bounded whatever its size."""
    if is_gcs(uri):
        blob = _blob(str(uri))
        with gcs_errors(str(uri)):
            blob.reload(retry=gcs_retry())  # fails here, naming the object, if it is not there
        reader = blob.open("rb", chunk_size=TRANSFER_CHUNK, retry=gcs_retry(), if_generation_match=blob.generation)
        return io.BufferedReader(_GcsStream(str(uri), reader), buffer_size=1 << 16)
    try:
        return open(local_path(uri), "rb")
    except FileNotFoundError:
        raise StorageNotFound(f"{uri}: not found") from None


UPLOAD_CHUNK_UNIT = 256 << 10  # GCS takes resumable-upload chunks in multiples of 256 KiB


def open_write(uri: str | Path, chunk_bytes: int = TRANSFER_CHUNK) -> BinaryIO:
    """A binary stream writing a new file. To gs:// it is a resumable upload in pieces of `chunk_bytes` (a multiple
    of 256 KiB; what the stream holds in memory): the object appears only when the stream is closed."""
    if is_gcs(uri):
        chunk = max(UPLOAD_CHUNK_UNIT, chunk_bytes // UPLOAD_CHUNK_UNIT * UPLOAD_CHUNK_UNIT)
        writer = _blob(str(uri)).open("wb", chunk_size=chunk, retry=gcs_retry(), ignore_flush=True)
        return _GcsStream(str(uri), writer)  # type: ignore[return-value]
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "wb")


def rename(source: str, dest: str) -> None:
    """Give a file a new name (on GCS a server-side copy, then the source is deleted)."""
    if is_gcs(source):
        blob = _blob(source)
        bucket_name, name = split_gcs(dest)
        with gcs_errors(source):
            bucket = gcs_bucket(bucket_name)
            bucket.copy_blob(blob, bucket, name, retry=gcs_retry())
            blob.delete(retry=gcs_retry())
        return
    os.replace(local_path(source), local_path(dest))


def modified(uri: str | Path) -> float:
    """When a file was last written, as a POSIX timestamp."""
    if is_gcs(uri):
        blob = _blob(str(uri))
        with gcs_errors(str(uri)):
            blob.reload(retry=gcs_retry())
        return float(blob.updated.timestamp())
    return local_path(uri).stat().st_mtime


# --- folders -----------------------------------------------------------------------------------------------------


def list_files(folder: str | Path) -> list[str]:
    """The files under a folder (recursively), as sorted `/`-separated names relative to it; [] if none."""
    if is_gcs(folder):
        bucket_name, name = split_gcs(str(folder))
        prefix = name.rstrip("/") + "/" if name.strip("/") else ""
        with gcs_errors(str(folder)):
            blobs = gcs_bucket(bucket_name).list_blobs(prefix=prefix, retry=gcs_retry())
            return sorted(blob.name[len(prefix) :] for blob in blobs if not blob.name.endswith("/"))
    root = local_path(folder)
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def remove_tree(folder: str | Path) -> None:
    """Delete a folder and everything under it (nothing if it is not there)."""
    if is_gcs(folder):
        bucket_name, name = split_gcs(str(folder))
        prefix = name.rstrip("/") + "/"
        with gcs_errors(str(folder)):
            bucket = gcs_bucket(bucket_name)
            for blob in bucket.list_blobs(prefix=prefix, retry=gcs_retry()):
                with contextlib.suppress(_not_found()):  # another attempt deleted it first
                    blob.delete(retry=gcs_retry())
        return
    shutil.rmtree(local_path(folder), ignore_errors=True)


def _not_found() -> type[Exception]:
    from google.api_core.exceptions import NotFound

    return NotFound


def put_file(source: Path, uri: str | Path) -> None:
    """Copy a local file to `uri` (an upload to gs://)."""
    if is_gcs(uri):
        with gcs_errors(str(uri)):
            _blob(str(uri)).upload_from_filename(str(source), retry=gcs_retry())
        return
    target = local_path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def move_tree(source: Path, folder: str | Path) -> int:
    """Move the files of a local folder into `folder` (uploaded to gs://, renamed locally); returns their count."""
    files = sorted(p for p in source.rglob("*") if p.is_file())
    for file in files:
        relative = file.relative_to(source).as_posix()
        if is_gcs(folder):
            put_file(file, join(folder, relative))
        else:
            target = local_path(folder) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, target)
    return len(files)


@contextlib.contextmanager
def local_file(uri: str | Path) -> Iterator[Path]:
    """A local path of a file for libraries that cannot read gs:// (h5py): the file itself when local, else a
    download that is removed after the block."""
    if not is_gcs(uri):
        yield local_path(uri)
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kest-download-") as scratch:
        target = Path(scratch) / name_of(str(uri))
        with gcs_errors(str(uri)):
            _blob(str(uri)).download_to_filename(str(target), retry=gcs_retry())
        yield target


def get_tree(folder: str | Path, dest: Path) -> Path:
    """A local folder holding the files under `folder`: `folder` itself when local, else downloaded into `dest`."""
    if not is_gcs(folder):
        return local_path(folder)
    for relative in list_files(folder):
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with gcs_errors(join(folder, relative)):
            _blob(join(folder, relative)).download_to_filename(str(target), retry=gcs_retry())
    return dest


_MAGIC = re.compile(r"[*?\[]")


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a glob whose `*` and `?` stay within one path component, like the shell's."""
    out, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and "]" in pattern[index + 1 :]:
            end = pattern.index("]", index + 1)
            body = pattern[index + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            index = end
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("".join(out))


def has_magic(pattern: str) -> bool:
    return _MAGIC.search(pattern) is not None


def glob(pattern: str) -> list[str]:
    """The files matching a shell pattern (`*`, `?`, `[…]` within one path component), sorted."""
    if not is_gcs(pattern):
        import glob as local_glob

        return sorted(local_glob.glob(pattern))
    magic = _MAGIC.search(pattern)
    literal = pattern[: magic.start()] if magic else pattern
    bucket_name, prefix = split_gcs(literal)
    regex = _glob_regex(pattern)
    with gcs_errors(literal):
        blobs = gcs_bucket(bucket_name).list_blobs(prefix=prefix, retry=gcs_retry())
        names = [f"{GCS_SCHEME}{bucket_name}/{blob.name}" for blob in blobs]
    return sorted(name for name in names if regex.fullmatch(name))


# --- local helpers the model store uses ---------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if needed) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def copy_tree_last(source: Path, dest: Path, last: str) -> int:
    """Copy the folder `source` to `dest` file by file, the file named `last` after all others.

    Returns the number of files copied. Readers that wait for `last` never see a partial copy.
    """
    files = sorted(p for p in source.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(source).as_posix() == last)
    for file in files:
        target = dest / file.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)
    return len(files)
