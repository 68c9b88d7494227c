"""Files and folders the stages write, with the atomicity the stage contract needs.

Every writer here writes to a temporary name first and renames last, so a crashed or retried task
leaves either a finished file/folder or nothing under the final name.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def local_path(uri: str | Path) -> Path:
    """Return the local path of a plain path or file:// URI; other schemes are refused."""
    text = str(uri)
    if text.startswith("file://"):
        return Path(text[len("file://") :])
    if "://" in text:
        raise ValueError(f"{text!r} is not a local path; only local folders are supported here")
    return Path(text)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, value: Any) -> None:
    write_bytes_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    with open(path) as handle:
        return json.load(handle)


@contextlib.contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `final`; on success it is renamed to `final`.

    On failure the temporary folder is removed, so nothing half-written is ever visible under `final`.
    An existing `final` is replaced (callers check for finished output before staging again).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
