"""The Models page, served by Airflow's api-server under `/kest` (a plugin FastAPI app; the nav entry is an
`external_views` item in kest_plugin).

Plugin endpoints are not protected by Airflow on their own: every route here resolves the user from Airflow's
session cookie or a bearer token (401 without one, 403 for a bad one) and asks the auth manager whether that user may
read the kest_pipeline DAG (403 otherwise). A champion change needs the right to trigger kest_promote: the page runs
that DAG as the user, so the change goes through the same compare-and-swap, history and Asset event as any other.

Path parameters are checked before any store access: an export root is addressed by its index in
KEST_MODEL_ROOTS (never by a path), models and versions must be single safe names, and only whole published
versions are served.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kest_tasks.core import files
from kest_tasks.core.errors import KestError
from kest_tasks.core.layout import REPORT_FILE
from kest_tasks.orchestration.links import browse_url
from kest_tasks.orchestration.model_roots import gate_metrics, model_roots
from kest_tasks.registry import catalog
from kest_tasks.registry.model_store import Store, open_store
from kest_tasks.reporting import models_page

log = logging.getLogger("kest.models_page")

PIPELINE_DAG = "kest_pipeline"
PROMOTE_DAG = "kest_promote"
_RUN_ID = re.compile(r"^[A-Za-z0-9_.:+-]{1,250}$")

app = FastAPI(title="kest models", description="Published models, champions and promotion (the kest plugin).")


_bearer = HTTPBearer(auto_error=False)


async def signed_in_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Any:
    """The user of the request's bearer token, else of Airflow's session cookie (the UI's): Airflow's own
    `get_user`, imported here because plugins load in every Airflow process, and only the api-server needs it."""
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, None, credentials)


def _may(user: Any, method: str, dag_id: str, run: bool = False) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return get_auth_manager().is_authorized_dag(
        method=method,  # type: ignore[arg-type]
        access_entity=DagAccessEntity.RUN if run else None,
        details=DagDetails(id=dag_id),
        user=user,
    )


def reader(user: Annotated[Any, Depends(signed_in_user)]) -> Any:
    """The signed-in user, if they may read the pipeline DAG (whose models these are)."""
    if not _may(user, "GET", PIPELINE_DAG):
        raise HTTPException(403, f"you may not read the {PIPELINE_DAG} DAG, whose models these are")
    return user


Reader = Annotated[Any, Depends(reader)]


def can_promote(user: Any) -> bool:
    return _may(user, "POST", PROMOTE_DAG, run=True)


def _store(root: int) -> Store:
    roots = model_roots()
    if not 0 <= root < len(roots):
        raise HTTPException(404, f"no model root {root} (there are {len(roots)})")
    try:
        return open_store(roots[root])
    except KestError as error:
        raise HTTPException(502, str(error)) from None


def _name(value: str, what: str) -> str:
    try:
        return catalog.checked_name(value, what)
    except catalog.CatalogError as error:
        raise HTTPException(400, str(error)) from None


def _view(root: int, model: str) -> dict[str, Any]:
    store = _store(root)
    try:
        return models_page.model_view(store, _name(model, "model"), gate_metrics())
    except catalog.CatalogError as error:
        raise HTTPException(404, str(error)) from None
    except files.StorageError as error:
        raise HTTPException(502, f"{store.root}: {error}") from None


def _version(view: dict[str, Any], version: str) -> dict[str, Any]:
    _name(version, "version")
    for found in view["versions"]:
        if found["version"] == version:
            return found
    listed = ", ".join(v["version"] for v in view["versions"]) or "none"
    raise HTTPException(404, f"{view['model']} has no published version {version!r} (published: {listed})")


def _airflow_url(path: str) -> str:
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback="").rstrip("/") + path


def _with_links(view: dict[str, Any]) -> dict[str, Any]:
    """Each version's links, relative to the model's page (`/kest/models/<root>/<model>`)."""
    model = view["model"]
    for version in view["versions"]:
        links = {"files": browse_url(version["model_uri"]), "promote": f"{model}/{version['version']}/promote"}
        if version.get("has_report"):
            links["report"] = f"{model}/{version['version']}/report"
        if version.get("dag_id") and version.get("dag_run_id"):
            links["run"] = _airflow_url(f"/dags/{version['dag_id']}/runs/{version['dag_run_id']}")
        version["links"] = links
    return view


def _listing() -> list[dict[str, Any]]:
    listing = []
    for index, root in enumerate(model_roots()):
        entry: dict[str, Any] = {"root": root, "index": index, "models": []}
        try:
            store = open_store(root)
            for model in catalog.model_names(store):
                entry["models"].append({**models_page.model_summary(store, model), "link": f"{index}/{model}"})
        except KestError as error:  # one unreadable store does not hide the others
            entry["error"] = f"cannot read {root}: {error}"
        listing.append(entry)
    return listing


@app.get("/models/", response_class=HTMLResponse)
def models(user: Reader) -> str:
    return models_page.list_html(_listing())


@app.get("/models/{root}/{model}", response_class=HTMLResponse)
def model(root: int, model: str, user: Reader, promoted: str = "", paused: int = 0) -> str:
    view = _with_links(_view(root, model))
    notice = ""
    if promoted and _RUN_ID.match(promoted):
        notice = f"{PROMOTE_DAG} run {promoted} is queued: the champion changes when it has run (reload to see it)."
        if paused:
            notice += f" {PROMOTE_DAG} is paused: unpause it for the run to start."
    return models_page.model_html(view, notice=notice, can_promote=can_promote(user), back="../")


@app.get("/models/{root}/{model}/{version}/report", response_class=HTMLResponse)
def report(root: int, model: str, version: str, user: Reader) -> str:
    found = _version(_view(root, model), version)
    if not found.get("has_report"):
        raise HTTPException(404, f"{model} {version} was published without a report")
    try:
        return files.read_bytes(files.join(found["model_uri"], REPORT_FILE)).decode()
    except files.StorageError as error:
        raise HTTPException(502, str(error)) from None


def _promoter(user: Reader) -> Any:
    if not can_promote(user):
        raise HTTPException(403, f"changing the champion needs the right to trigger the {PROMOTE_DAG} DAG")
    return user


Promoter = Annotated[Any, Depends(_promoter)]


@app.get("/models/{root}/{model}/{version}/promote", response_class=HTMLResponse)
def confirm(root: int, model: str, version: str, user: Promoter) -> str:
    view = _view(root, model)
    return models_page.confirm_html(view, _version(view, version), action="promote", back=f"../../{model}")


def _same_origin(request: Request) -> None:
    """A form post must come from this server's own pages (the session cookie is SameSite=Lax as well)."""
    origin = request.headers.get("origin") or request.headers.get("referer") or ""
    own = f"{request.url.scheme}://{request.url.netloc}"
    if not (origin == own or origin.startswith(own + "/")):
        raise HTTPException(403, "a champion change must be posted from the Models page")


@app.post("/models/{root}/{model}/{version}/promote")
def promote(
    request: Request, root: int, model: str, version: str, user: Promoter, reason: Annotated[str, Form()] = ""
) -> Any:
    _same_origin(request)
    view = _view(root, model)
    found = _version(view, version)
    if not reason.strip():
        page = models_page.confirm_html(view, found, "promote", f"../../{model}", error="Give a reason.")
        return HTMLResponse(page, status_code=400)
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.models.dag import DagModel
    from airflow.utils.types import DagRunTriggeredByType

    conf_ = {
        "model": model,
        "version": version,
        "reason": reason.strip(),
        "overrides": {"export": {"root": view["root"]}},
    }
    run = trigger_dag(
        PROMOTE_DAG, triggered_by=DagRunTriggeredByType.UI, triggering_user_name=user.get_name(), conf=conf_
    )
    run_id = run.run_id if run else ""
    paused = (DagModel.get_current(PROMOTE_DAG) or DagModel()).is_paused
    log.info("models page: %s asked for %s %s as champion (run %s)", user.get_name(), model, version, run_id)
    suffix = "&paused=1" if paused else ""
    return RedirectResponse(f"../../{model}?promoted={quote(run_id, safe='')}{suffix}", status_code=303)


@app.get("/api/models")
def api_models(user: Reader) -> list[dict[str, Any]]:
    return _listing()


@app.get("/api/models/{root}/{model}")
def api_model(root: int, model: str, user: Reader) -> dict[str, Any]:
    return {**_with_links(_view(root, model)), "can_promote": can_promote(user)}
