"""Where published models live: a local folder (default) or `gs://bucket/prefix` through google-cloud-storage.

Both stores give publish the same guarantees: a version appears whole (staged, verified, `saved_model.pb` last) and
is never overwritten, and small JSON pointers are replaced by compare-and-swap (a lock and a content token
locally; `if_generation_match` on GCS). Credentials come from the standard Google environment;
`STORAGE_EMULATOR_HOST` is honoured by google-cloud-storage itself. Errors name the object's URI, never a
credential, token or signed URL.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from kest_tasks.core import files
from kest_tasks.core.files import StorageError, copy_tree_last, file_lock
from kest_tasks.core.layout import PUBLISH_RECORD


class StoreError(StorageError):
    """The model store refused an operation (e.g. a version that would be overwritten)."""


class Store(ABC):
    """Objects under one root URI, addressed by `/`-separated keys."""

    root: str

    def uri(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{key}"

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def read_json(self, key: str) -> tuple[Any, Any]:
        """(value or None, token for put_json's compare-and-swap)."""

    @abstractmethod
    def put_json(self, key: str, value: Any, if_token: Any) -> bool:
        """Write `value` only if the object still has `if_token` (None: only if it does not exist); False if not."""

    @abstractmethod
    def publish_tree(self, source: Path, prefix: str, last: str, record: dict, extra: dict[str, Path]) -> int:
        """Copy the files under `source`, plus `extra` (name → file), to `prefix/` as a whole (staged and verified,
        `last` written last) with PUBLISH_RECORD beside them; a retry by the same run is a no-op. Returns the
        file count."""

    @abstractmethod
    def local_copy(self, prefix: str, scratch: Path) -> Path:
        """A local folder holding the objects under `prefix` (downloaded into `scratch` if need be)."""


def _already_published(store: Store, prefix: str, last: str, record: dict) -> bool:
    if not store.exists(f"{prefix}/{last}"):
        return False
    existing, _ = store.read_json(f"{prefix}/{PUBLISH_RECORD}")
    if (existing or {}).get("run_uri") != record["run_uri"]:
        raise StoreError(f"{store.uri(prefix)} already holds a model from another run; versions are never overwritten")
    return True


class LocalStore(Store):
    def __init__(self, root: str) -> None:
        self.root = root[len("file://") :] if root.startswith("file://") else root
        self.path = Path(self.root)

    def exists(self, key: str) -> bool:
        return (self.path / key).exists()

    def read_json(self, key: str) -> tuple[Any, Any]:
        path = self.path / key
        if not path.exists():
            return None, None
        data = path.read_bytes()
        return json.loads(data), hashlib.sha256(data).hexdigest()

    def put_json(self, key: str, value: Any, if_token: Any) -> bool:
        path = self.path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_name(f".{path.name}.lock")):
            if self.read_json(key)[1] != if_token:
                return False
            files.write_json(path, value)
        return True

    def publish_tree(self, source: Path, prefix: str, last: str, record: dict, extra: dict[str, Path]) -> int:
        dest = self.path / prefix
        if _already_published(self, prefix, last, record):
            return sum(1 for p in dest.rglob("*") if p.is_file())
        staging = dest.with_name(f".{dest.name}.staging-{uuid.uuid4().hex[:8]}")
        try:
            files.write_json(staging / PUBLISH_RECORD, record)
            for name, path in extra.items():
                shutil.copyfile(path, staging / name)
            count = copy_tree_last(source, staging, last=last) + 1 + len(extra)
            if dest.exists():  # a folder left without its last file was never published: replace it
                shutil.rmtree(dest)
            os.replace(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return count

    def local_copy(self, prefix: str, scratch: Path) -> Path:
        return self.path / prefix


def _crc32c(path: Path) -> str:
    import google_crc32c

    checksum = google_crc32c.Checksum()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            checksum.update(block)
    return base64.b64encode(checksum.digest()).decode()


class GcsStore(Store):
    def __init__(self, root: str, retry_seconds: float = 120.0) -> None:
        self.root = root.rstrip("/")
        bucket, self.prefix = files.split_gcs(self.root)
        with files.gcs_errors(self.root):
            self.bucket = files.gcs_bucket(bucket)
        self.retry = files.gcs_retry(retry_seconds)

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def exists(self, key: str) -> bool:
        with files.gcs_errors(self.uri(key)):
            return self.bucket.blob(self._name(key)).exists(retry=self.retry)

    def read_json(self, key: str) -> tuple[Any, Any]:
        with files.gcs_errors(self.uri(key)):
            blob = self.bucket.get_blob(self._name(key), retry=self.retry)
            if blob is None:
                return None, None
            generation = blob.generation  # read first: the download refreshes properties from its headers
            return json.loads(blob.download_as_bytes(if_generation_match=generation, retry=self.retry)), generation

    def put_json(self, key: str, value: Any, if_token: Any) -> bool:
        from google.api_core.exceptions import PreconditionFailed

        with files.gcs_errors(self.uri(key)):
            try:
                self.bucket.blob(self._name(key)).upload_from_string(
                    json.dumps(value, indent=2, sort_keys=True),
                    content_type="application/json",
                    if_generation_match=if_token or 0,
                    retry=self.retry,
                )
            except PreconditionFailed:
                return False
        return True

    def _objects(self, prefix: str) -> dict[str, Any]:
        name = self._name(prefix) + "/"
        return {blob.name[len(name) :]: blob for blob in self.bucket.list_blobs(prefix=name, retry=self.retry)}

    def _check(self, objects: dict[str, Any], expected: dict[str, str], where: str) -> None:
        if sorted(objects) != sorted(expected):
            raise StoreError(f"{where}: {len(objects)} objects after upload, expected {len(expected)}")
        for relative, crc in expected.items():
            if objects[relative].crc32c != crc:
                raise StoreError(f"{where}/{relative}: crc32c {objects[relative].crc32c} after upload, expected {crc}")

    def publish_tree(self, source: Path, prefix: str, last: str, record: dict, extra: dict[str, Path]) -> int:
        if _already_published(self, prefix, last, record):
            with files.gcs_errors(self.uri(prefix)):
                return len(self._objects(prefix))
        staging_dir = Path(source).parent / f".publish-{uuid.uuid4().hex[:8]}"
        files.write_json(staging_dir / PUBLISH_RECORD, record)
        sources = {p.relative_to(source).as_posix(): p for p in sorted(Path(source).rglob("*")) if p.is_file()}
        sources[PUBLISH_RECORD] = staging_dir / PUBLISH_RECORD
        sources.update(extra)
        order = sorted(sources, key=lambda relative: relative == last)  # `last` after every other file
        expected = {relative: _crc32c(path) for relative, path in sources.items()}
        staging = f"{prefix.rsplit('/', 1)[0]}/.staging/{prefix.rsplit('/', 1)[-1]}-{uuid.uuid4().hex[:8]}"
        with files.gcs_errors(self.uri(prefix)):
            try:
                for relative in order:
                    self.bucket.blob(self._name(f"{staging}/{relative}")).upload_from_filename(
                        str(sources[relative]), checksum="crc32c", if_generation_match=0, retry=self.retry
                    )
                staged = self._objects(staging)
                self._check(staged, expected, self.uri(staging))
                for stale in self._objects(prefix).values():  # a promotion cut short earlier, never published
                    stale.delete(retry=self.retry)
                for relative in order:
                    self.bucket.copy_blob(
                        staged[relative],
                        self.bucket,
                        self._name(f"{prefix}/{relative}"),
                        if_generation_match=0,
                        retry=self.retry,
                    )
                self._check(self._objects(prefix), expected, self.uri(prefix))
            finally:
                shutil.rmtree(staging_dir, ignore_errors=True)
                with contextlib.suppress(Exception):
                    for blob in self._objects(staging).values():
                        blob.delete(retry=self.retry)
        return len(sources)

    def local_copy(self, prefix: str, scratch: Path) -> Path:
        with files.gcs_errors(self.uri(prefix)):
            for relative, blob in self._objects(prefix).items():
                target = scratch / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                blob.download_to_filename(str(target), retry=self.retry)
        return scratch


def open_store(root: str, retry_seconds: float = 120.0) -> Store:
    """The store for an export root: `gs://bucket[/prefix]`, or a local path / file:// URI."""
    if root.startswith("gs://"):
        return GcsStore(root, retry_seconds)
    if "://" in root:
        raise StoreError(f"export.root {root!r}: only local paths and gs:// are supported")
    return LocalStore(root)
