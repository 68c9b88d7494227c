"""Promotion and rollback: a published version made champion by hand, the reason recorded, by compare-and-swap
against the current champion as publish does (`python -m kest_tasks champion set MODEL VERSION --reason TEXT`).

Every champion change — publish's and a promotion's, a rollback included — appends one event to
`<model>/champion-history/` (`record_champion_change`): the version, the champion it replaced, who and why.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from kest_tasks.core import files
from kest_tasks.core.config import PipelineConfig
from kest_tasks.core.errors import KestError
from kest_tasks.core.layout import (
    PUBLISH_RECORD,
    SAVED_MODEL_FILE,
    champion_event_key,
    champion_key,
    history_key,
    version_key,
)
from kest_tasks.registry import catalog
from kest_tasks.registry.champion import store_for
from kest_tasks.registry.model_store import Store

log = logging.getLogger("kest.champion")


class PromotionError(KestError, ValueError):
    """A champion change that cannot be made; the message names the model and version."""


def record_champion_change(
    store: Store, model_name: str, pointer: dict, previous: str | None, by: str, reason: str
) -> dict:
    """Append the event of `pointer` becoming champion instead of `previous`."""
    at = dt.datetime.now(dt.UTC)
    event = {
        "version": pointer["version"],
        "previous": previous,
        "by": by,
        "reason": reason,
        "at": at.isoformat(timespec="seconds"),
        "run_uri": pointer.get("run_uri"),
    }
    store.put_json(champion_event_key(model_name, at, pointer["version"]), event, if_token=None)
    return event


def published_versions(config: PipelineConfig) -> list[dict]:
    """Every whole published version of the config's model, oldest first (see `catalog.versions`)."""
    return catalog.versions(store_for(config), config.model_name)


def champion_history(config: PipelineConfig) -> list[dict]:
    """The champion changes of the config's model, oldest first."""
    return catalog.history(store_for(config), config.model_name)


def set_champion(config: PipelineConfig, version: str, reason: str, by: str) -> dict[str, Any]:
    """Make a published `version` champion (a promotion, or a rollback to an earlier one); the event recorded.
    Refuses, in one line, an empty reason, a version that is not published or is incomplete, and a champion that
    moved while this ran. Making the champion champion again changes nothing."""
    model = config.model_name
    if not reason.strip():
        raise PromotionError(f"{model} {version}: give a reason (--reason TEXT); it is kept in the champion history")
    try:
        store = store_for(config)
        prefix = version_key(model, version)
        record, _ = store.read_json(f"{prefix}/{PUBLISH_RECORD}")
        if record is None:
            known = [v["version"] for v in published_versions(config)]
            raise PromotionError(
                f"{model} has no published version {version!r} in {store.uri(model)} "
                f"(published: {', '.join(known) or 'none'})"
            )
        if not store.exists(f"{prefix}/{SAVED_MODEL_FILE}"):
            raise PromotionError(
                f"{store.uri(prefix)}: incomplete (no {SAVED_MODEL_FILE}); it was never published whole"
            )
        current, token = store.read_json(champion_key(model))
        previous = (current or {}).get("version")
        if previous == version:
            log.info("champion: %s %s is already champion; nothing to change", model, version)
            return {"version": version, "previous": previous, "model_uri": current["model_uri"], "changed": False}
        pointer = {
            "version": version,
            "model_uri": store.uri(prefix),
            "metrics": record.get("metrics", {}),
            "run_uri": record.get("run_uri"),
            "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "promoted_by": by,
            "reason": reason,
        }
        if not store.put_json(champion_key(model), pointer, if_token=token):
            now = (store.read_json(champion_key(model))[0] or {}).get("version")
            raise PromotionError(f"{model}: the champion changed to {now} while promoting {version}; try again")
        store.put_json(history_key(model, version), pointer, if_token=None)
        event = record_champion_change(store, model, pointer, previous, by, reason)
    except files.StorageError as error:
        raise PromotionError(f"{model} {version}: the model store failed: {error}") from None
    log.info("champion: %s is now %s (was %s), by %s: %s", model, version, previous, by, reason)
    return {**event, "model_uri": pointer["model_uri"], "changed": True}


def describe(config: PipelineConfig) -> str:
    """The model's published versions (champion marked) and its champion history, as `champion show` prints them."""
    store = store_for(config)
    champion = (store.read_json(champion_key(config.model_name))[0] or {}).get("version")
    lines = [f"{config.model_name} in {store.uri(config.model_name)}: champion {champion or 'none yet'}", "versions:"]
    for version in published_versions(config):
        metrics = ", ".join(f"{key} {value:.4g}" for key, value in sorted(version.get("metrics", {}).items()))
        mark = "*" if version["version"] == champion else " "
        lines.append(f" {mark} {version['version']}  {metrics}  ({version.get('run_uri')})")
    lines.append("champion history:")
    for event in champion_history(config):
        change = f"{event['previous'] or '(none)'} → {event['version']}"
        lines.append(f"   {event['at']}  {change}  by {event['by']}: {event['reason']}")
    return "\n".join(lines)
