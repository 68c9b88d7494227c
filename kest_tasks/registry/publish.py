"""publish: copy the exported SavedModel to `<export_root>/<model_name>/<version>/` and make it champion.

The export root is a local folder or `gs://bucket/prefix` (kest_tasks.registry.model_store). A version appears whole
(staged, verified by object count and crc32c, `saved_model.pb` last) and is never overwritten. The champion
pointer moves by compare-and-swap, and only from the champion the gate compared against: of two concurrent
publishes that both beat the same champion, one becomes champion and the other stays published without it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from pathlib import Path

from kest_tasks.core import files
from kest_tasks.core.config import PipelineConfig
from kest_tasks.core.errors import KestError
from kest_tasks.core.execution import stage_function
from kest_tasks.core.layout import (
    REPORT_FILE,
    SAVED_MODEL_FILE,
    SCHEMA_FILE,
    STATS_FILE,
    RunLayout,
    champion_key,
    history_key,
    version_key,
    version_name,
)
from kest_tasks.core.results import EvaluateResult, ExportResult, GateResult, PublishResult, ReportResult
from kest_tasks.core.stages import PREPARE, PUBLISH
from kest_tasks.registry.champion import store_for
from kest_tasks.registry.model_store import Store
from kest_tasks.registry.promotion import record_champion_change

log = logging.getLogger("kest.publish")


class PublishError(KestError, RuntimeError):
    """The model could not be published; nothing partial is visible."""


def claim_champion(store: Store, model_name: str, pointer: dict, expected: str | None) -> tuple[bool, str]:
    """Point champion.json at `pointer` if it still names `expected` (the champion the gate compared against);
    (made champion?, why not)."""
    version = pointer["version"]
    current, token = store.read_json(champion_key(model_name))
    current_version = (current or {}).get("version")
    if current_version == version:  # a retry after the pointer moved
        store.put_json(history_key(model_name, version), pointer, if_token=None)
        return True, ""
    if store.exists(history_key(model_name, version)):
        return False, f"{version} was champion once and was replaced by {current_version}; not moving back"
    if current_version != expected:
        return False, (
            f"the champion changed to {current_version} after the gate compared against {expected}; "
            "re-run the gate to compare against it"
        )
    if not store.put_json(champion_key(model_name), pointer, if_token=token):
        latest = (store.read_json(champion_key(model_name))[0] or {}).get("version")
        return False, f"another publish made {latest} champion first"
    store.put_json(history_key(model_name, version), pointer, if_token=None)
    by = f"publish of run {pointer.get('run_uri')}"
    record_champion_change(store, model_name, pointer, current_version, by, "blessed by the gate")
    return True, ""


def publish_record(
    config: PipelineConfig, run_uri: str, version: str, exported: ExportResult, metrics: dict[str, float]
) -> dict:
    """What the store keeps beside a version (and the Models page lists): its run, the Airflow DAG run when there is
    one (Airflow puts its ids in the task's environment), the trainer, test metrics, infra-validation latency and
    the drift prepare found."""
    stats_uri = RunLayout(run_uri).file(PREPARE.folder, STATS_FILE)
    compared = (files.read_json(stats_uri).get("drift") or {}) if files.exists(stats_uri) else {}
    return {
        "run_uri": run_uri,
        "version": version,
        # The features whose training data drifted from the previous champion's (None: nothing to compare with).
        "drift": [f for f in compared.get("features", []) if f["drifted"]] if compared.get("baseline") else None,
        "metrics": metrics,
        "trainer": config.trainer.kind,
        "latency_ms_p50": exported.latency_ms_p50,
        "latency_ms_p99": exported.latency_ms_p99,
        "dag_id": os.environ.get("AIRFLOW_CTX_DAG_ID"),
        "dag_run_id": os.environ.get("AIRFLOW_CTX_DAG_RUN_ID"),
    }


@stage_function
def publish(
    config: PipelineConfig,
    run_uri: str,
    exported: ExportResult,
    blessing: GateResult,
    evaluated: EvaluateResult,
    reported: ReportResult,
) -> PublishResult:
    """Publish a blessed export and make it champion if the champion is still the one it beat. Raises
    PublishError if the model is not blessed or the store fails (after its retries)."""
    if not blessing.blessed:
        raise PublishError(f"refusing to publish a model that is not blessed ({blessing.reason})")
    version = version_name(exported.exported_at, run_uri)
    metrics = evaluated.metrics
    try:
        store = store_for(config)
        # A run folder in object storage is read through a local copy (publish_tree verifies files it has).
        with tempfile.TemporaryDirectory(prefix="kest-publish-") as scratch:
            source = files.get_tree(exported.saved_model_uri, Path(scratch) / "saved_model")
            # Beside the model: its report, and the schema and statistics of the data it learned from (batch
            # scoring reads the schema; the next runs' drift check compares with the statistics).
            beside = {
                REPORT_FILE: reported.report_uri,
                SCHEMA_FILE: RunLayout(run_uri).file(PREPARE.folder, SCHEMA_FILE),
                STATS_FILE: RunLayout(run_uri).file(PREPARE.folder, STATS_FILE),
            }
            extra = {}
            for name, uri in beside.items():
                if files.exists(uri):
                    extra[name] = Path(scratch) / name
                    extra[name].write_bytes(files.read_bytes(uri))
            file_count = store.publish_tree(
                source,
                version_key(config.model_name, version),
                last=SAVED_MODEL_FILE,
                record=publish_record(config, run_uri, version, exported, metrics),
                extra=extra,
            )
        model_uri = store.uri(version_key(config.model_name, version))
        pointer = {
            "version": version,
            "model_uri": model_uri,
            "metrics": metrics,
            "run_uri": run_uri,
            "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        champion, note = claim_champion(store, config.model_name, pointer, blessing.champion_version)
    except files.StorageError as error:  # the store's own refusals (StoreError) included
        raise PublishError(f"publishing {config.model_name} {version} failed: {error}") from None
    if champion:
        log.info(
            "publish: %s → %s (%d files); champion is now %s", exported.saved_model_uri, model_uri, file_count, version
        )
    else:
        log.warning(
            "publish: %s → %s (%d files); not made champion: %s", exported.saved_model_uri, model_uri, file_count, note
        )
    result = PublishResult(
        model_uri=model_uri,
        version=version,
        files=file_count,
        champion=champion,
        champion_note=note,
        champion_uri=store.uri(champion_key(config.model_name)),
    )
    files.write_json(RunLayout(run_uri).result_file(PUBLISH.folder), result.model_dump(mode="json"))
    return result
