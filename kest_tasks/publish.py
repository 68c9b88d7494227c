"""publish: copy the exported SavedModel to `<export_root>/<model_name>/<version>/` and make it champion.

A version folder appears whole (copied under a staging name, saved_model.pb last, then renamed) and is
never overwritten. The champion pointer `champion.json` is replaced atomically under a lock, and every
change is appended to `champions.jsonl`.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

from kest_tasks.champion import CHAMPION_FILE, HISTORY_FILE, model_root
from kest_tasks.config import PipelineConfig
from kest_tasks.errors import KestError
from kest_tasks.evaluate import EvaluateResult
from kest_tasks.export import ExportResult
from kest_tasks.gate import GateResult
from kest_tasks.stage import RESULT_FILE, StageResult, stage_dir, stage_function
from kest_tasks.storage import (
    copy_tree_last,
    file_lock,
    read_json,
    write_json_atomic,
)

log = logging.getLogger("kest.publish")

PUBLISH_RECORD = "kest_publish.json"


class PublishError(KestError, RuntimeError):
    """The model could not be published; nothing partial is visible."""


class PublishResult(StageResult):
    model_uri: str
    version: str
    champion_uri: str
    files: int


def version_name(exported: ExportResult, run_uri: str) -> str:
    """`<UTC export time>-<8 hex of the run>`: sortable, unique per run, the same on every retry."""
    stamp = dt.datetime.fromtimestamp(int(exported.exported_at), tz=dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{hashlib.sha256(run_uri.encode()).hexdigest()[:8]}"


def _copy_version(source: Path, dest: Path, record: dict) -> int:
    if (dest / "saved_model.pb").exists():
        existing = read_json(dest / PUBLISH_RECORD) if (dest / PUBLISH_RECORD).exists() else {}
        if existing.get("run_uri") != record["run_uri"]:
            raise PublishError(f"{dest} already holds a model from another run; versions are never overwritten")
        log.info("publish: %s already published by this run", dest)
        return sum(1 for p in dest.rglob("*") if p.is_file())
    staging = dest.with_name(f".{dest.name}.staging-{uuid.uuid4().hex[:8]}")
    try:
        write_json_atomic(staging / PUBLISH_RECORD, record)
        files = copy_tree_last(source, staging, last="saved_model.pb") + 1
        if dest.exists():  # a folder left without saved_model.pb was never published: replace it
            shutil.rmtree(dest)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files


def _update_champion(root: Path, pointer: dict) -> None:
    champion = root / CHAMPION_FILE
    with file_lock(root / ".champion.lock"):
        history = root / HISTORY_FILE
        seen = history.read_text().splitlines() if history.exists() else []
        if any(json.loads(line)["version"] == pointer["version"] for line in seen):
            return  # a retry: this version was made champion once; never move the pointer back to it
        write_json_atomic(champion, pointer)
        with open(history, "a") as log_file:
            log_file.write(json.dumps(pointer, sort_keys=True) + "\n")


@stage_function
def publish(
    config: PipelineConfig, run_uri: str, exported: ExportResult, blessing: GateResult, evaluated: EvaluateResult
) -> PublishResult:
    """Publish a blessed export and point champion.json at it. Raises PublishError if not blessed."""
    if not blessing.blessed:
        raise PublishError(f"refusing to publish a model that is not blessed ({blessing.reason})")
    root = model_root(config.export.root, config.model_name)
    version = version_name(exported, run_uri)
    dest = root / version
    metrics = evaluated.metrics
    record = {"run_uri": run_uri, "version": version, "metrics": metrics}
    files = _copy_version(Path(exported.saved_model_uri), dest, record)
    published_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    _update_champion(root, {
        "version": version, "model_uri": str(dest), "metrics": metrics,
        "run_uri": run_uri, "published_at": published_at,
    })
    log.info("publish: %s → %s (%d files); champion is now %s", exported.saved_model_uri, dest, files, version)
    result = PublishResult(model_uri=str(dest), version=version, champion_uri=str(root / CHAMPION_FILE),
                           files=files)
    write_json_atomic(stage_dir(run_uri, "publish") / RESULT_FILE, result.model_dump(mode="json"))
    return result
