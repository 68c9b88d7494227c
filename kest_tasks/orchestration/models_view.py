"""What the Airflow plugin's Models page serves, without Airflow: which export roots it lists (KEST_MODEL_ROOTS),
the metric it plots (the default config's gate), each page's data with its links, and the checks on every name a
request brings. The plugin (plugins/kest_models.py) adds Airflow's authentication and turns the errors below into
HTTP answers: BadName → 400, NotFound → 404, StorageError → 502.

An export root is addressed by its index in the list, never by a path; models and versions must be single safe
names; only whole published versions are served.
"""

from __future__ import annotations

import os
from typing import Any

from kest_tasks.core.errors import KestError
from kest_tasks.orchestration.assets import default_config_path
from kest_tasks.orchestration.links import browse_url

MODEL_ROOTS_SETTING = "KEST_MODEL_ROOTS"


class BadName(KestError, ValueError):
    """A model or version name that cannot be one (a path, `..`)."""


class NotFound(KestError, LookupError):
    """No such export root, model, version or report."""


def model_roots() -> list[str]:
    """The export roots to list, in the order given; the default config's export.root when none is set."""
    listed = [root.strip() for root in os.environ.get(MODEL_ROOTS_SETTING, "").split(",") if root.strip()]
    if listed:
        return listed
    from kest_tasks.core.config import load_config

    return [str(load_config(default_config_path()).export.root)]


def gate_metrics() -> list[str]:
    """The metrics the default config's gate checks (thresholds first), [] if it cannot be read."""
    from kest_tasks.core.config import load_config

    try:
        gate = load_config(default_config_path()).gate
    except KestError:
        return []
    return [*gate.thresholds, *(name for name in gate.change if name not in gate.thresholds)]


def _store(root: int) -> Any:
    from kest_tasks.registry.model_store import open_store

    roots = model_roots()
    if not 0 <= root < len(roots):
        raise NotFound(f"no model root {root} (there are {len(roots)})")
    return open_store(roots[root])


def _name(value: str, what: str) -> str:
    from kest_tasks.registry import catalog

    try:
        return catalog.checked_name(value, what)
    except catalog.CatalogError as error:
        raise BadName(str(error)) from None


def listing() -> list[dict[str, Any]]:
    """Per export root: its models (summary and the link to each model's page), or why it cannot be read."""
    from kest_tasks.registry import catalog
    from kest_tasks.registry.model_store import open_store
    from kest_tasks.reporting import models_page

    found = []
    for index, root in enumerate(model_roots()):
        entry: dict[str, Any] = {"root": root, "index": index, "models": []}
        try:
            store = open_store(root)
            for model in catalog.model_names(store):
                entry["models"].append({**models_page.model_summary(store, model), "link": f"{index}/{model}"})
        except KestError as error:  # one unreadable store does not hide the others
            entry["error"] = f"cannot read {root}: {error}"
        found.append(entry)
    return found


def model_view(root: int, model: str, airflow_url: str = "") -> dict[str, Any]:
    """A model's page data; each version with its links, relative to the model's page (`<root>/<model>`):
    report, files (file server or Cloud console), its Airflow run (under `airflow_url`), promote."""
    from kest_tasks.registry import catalog
    from kest_tasks.reporting import models_page

    store = _store(root)
    try:
        view = models_page.model_view(store, _name(model, "model"), gate_metrics())
    except catalog.CatalogError as error:
        raise NotFound(str(error)) from None
    for version in view["versions"]:
        links = {"files": browse_url(version["model_uri"]), "promote": f"{model}/{version['version']}/promote"}
        if version.get("has_report"):
            links["report"] = f"{model}/{version['version']}/report"
        if version.get("dag_id") and version.get("dag_run_id"):
            links["run"] = f"{airflow_url.rstrip('/')}/dags/{version['dag_id']}/runs/{version['dag_run_id']}"
        version["links"] = links
    return view


def version_of(view: dict[str, Any], version: str) -> dict[str, Any]:
    """The published `version` of a model's view, else NotFound listing what is published."""
    _name(version, "version")
    for found in view["versions"]:
        if found["version"] == version:
            return found
    listed = ", ".join(v["version"] for v in view["versions"]) or "none"
    raise NotFound(f"{view['model']} has no published version {version!r} (published: {listed})")


def report_html(root: int, model: str, version: str) -> str:
    """The report published beside a version."""
    from kest_tasks.core import files
    from kest_tasks.core.layout import REPORT_FILE

    found = version_of(model_view(root, model), version)
    if not found.get("has_report"):
        raise NotFound(f"{model} {version} was published without a report")
    return files.read_bytes(files.join(found["model_uri"], REPORT_FILE)).decode()


def promotion_conf(view: dict[str, Any], version: str, reason: str) -> dict[str, Any]:
    """kest_promote's run conf making `version` champion of the view's model in the view's export root."""
    return {
        "model": view["model"],
        "version": version_of(view, version)["version"],
        "reason": reason.strip(),
        "overrides": {"export": {"root": view["root"]}},
    }


def list_html(listing_: list[dict[str, Any]]) -> str:
    from kest_tasks.reporting import models_page

    return models_page.list_html(listing_)


def model_html(view: dict[str, Any], notice: str, can_promote: bool) -> str:
    from kest_tasks.reporting import models_page

    return models_page.model_html(view, notice=notice, can_promote=can_promote, back="../")


def confirm_html(view: dict[str, Any], version: str, error: str = "") -> str:
    from kest_tasks.reporting import models_page

    model = view["model"]
    return models_page.confirm_html(view, version_of(view, version), "promote", f"../../{model}", error=error)
