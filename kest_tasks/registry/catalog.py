"""The model store read as a catalog: the models under an export root, each model's published versions, its
champion and its champion history — what `champion show` prints and the Models page shows. No TensorFlow here:
the Airflow api-server imports it.

A version is listed only when it is whole (its saved_model.pb is there: publish copies it last) and has its
publish record.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kest_tasks.core import files
from kest_tasks.core.errors import KestError
from kest_tasks.core.layout import (
    CHAMPION_EVENTS_FOLDER,
    CHAMPION_FILE,
    PUBLISH_RECORD,
    REPORT_FILE,
    SAVED_MODEL_FILE,
    champion_key,
    check_safe_name,
    version_key,
)
from kest_tasks.registry.model_store import Store


class CatalogError(KestError, ValueError):
    """A model or version that is not in the store, or a name that cannot be one; the message says which."""


def model_names(store: Store) -> list[str]:
    """The models under the store's root: folders holding a champion pointer or a whole version, sorted."""
    names = set()
    for name in files.list_files(store.root):
        parts = name.split("/")
        if (len(parts) == 2 and parts[1] == CHAMPION_FILE) or (len(parts) == 3 and parts[2] == SAVED_MODEL_FILE):
            names.add(parts[0])
    return sorted(names)


def versions(store: Store, model: str) -> list[dict[str, Any]]:
    """Every whole published version of `model`, oldest first: its publish record plus `version`, `model_uri`,
    `has_report`."""
    names = files.list_files(store.uri(model))
    whole = sorted({name.split("/")[0] for name in names if name.endswith(f"/{SAVED_MODEL_FILE}")})
    reports = {name.split("/")[0] for name in names if name.endswith(f"/{REPORT_FILE}")}
    found = []
    for version in whole:
        record, _ = store.read_json(f"{version_key(model, version)}/{PUBLISH_RECORD}")
        if record is not None:
            found.append(
                {
                    **record,
                    "version": version,
                    "model_uri": store.uri(version_key(model, version)),
                    "has_report": version in reports,
                }
            )
    return found


def champion(store: Store, model: str) -> dict[str, Any] | None:
    """The champion pointer of `model`, or None before its first."""
    return store.read_json(champion_key(model))[0]


def history(store: Store, model: str) -> list[dict[str, Any]]:
    """The champion changes of `model`, oldest first."""
    folder = f"{model}/{CHAMPION_EVENTS_FOLDER}"
    names = [name for name in files.list_files(store.uri(folder)) if name.endswith(".json") and "/" not in name]
    events = [store.read_json(f"{folder}/{name}")[0] for name in names if not name.startswith(".")]
    return [event for event in events if event]


def published_at(version: str) -> str:
    """The export time a version's name starts with (`20261122T101500Z-…`), as ISO 8601; '' if it has none."""
    try:
        return dt.datetime.strptime(version.split("-")[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC).isoformat()
    except ValueError:
        return ""


def checked_name(value: str, what: str) -> str:
    """`value` if it can be a model or version name (one path component, no `..`), else CatalogError."""
    try:
        return check_safe_name(value, what)
    except ValueError as error:
        raise CatalogError(str(error)) from None


def find_version(store: Store, model: str, version: str) -> dict[str, Any]:
    """The published version `version` of `model`, or CatalogError naming what is published."""
    checked_name(model, "model")
    checked_name(version, "version")
    known = versions(store, model)
    for found in known:
        if found["version"] == version:
            return found
    if not known and champion(store, model) is None:
        raise CatalogError(f"no model {model!r} in {store.root}")
    listed = ", ".join(v["version"] for v in known) or "none"
    raise CatalogError(f"{model} has no published version {version!r} in {store.uri(model)} (published: {listed})")


def chosen_version(store: Store, model: str, version: str | None) -> dict[str, Any]:
    """The published version to use: `version`, else the champion; its record plus `model_uri`."""
    if version:
        return find_version(store, model, version)
    claimed = champion(store, model)
    if claimed is None:
        known = versions(store, model)
        hint = f"pass a version ({', '.join(v['version'] for v in known)})" if known else "publish one first"
        raise CatalogError(f"{model} has no champion in {store.root}; {hint}")
    return find_version(store, model, claimed["version"])
