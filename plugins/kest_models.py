"""The Models page, served by Airflow's api-server under `/kest` (a plugin FastAPI app; the nav entry is an
`external_views` item in kest_plugin). The pages' data, links and name checks are kest_tasks.orchestration.models_view;
this file adds Airflow's authentication and authorization.

Plugin endpoints are not protected by Airflow on their own: every route here resolves the user from Airflow's
session cookie or a bearer token (401 without one, 403 for a bad one) and asks the auth manager whether that user may
read the kest_pipeline DAG (403 otherwise). A champion change needs the right to trigger kest_promote: the page runs
that DAG as the user, so the change goes through the same compare-and-swap, history and Asset event as any other.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kest_tasks.core.errors import KestError
from kest_tasks.orchestration import models_view

log = logging.getLogger("kest.models_page")

PIPELINE_DAG = "kest_pipeline"
PROMOTE_DAG = "kest_promote"
_RUN_ID = re.compile(r"^[A-Za-z0-9_.:+-]{1,250}$")
T = TypeVar("T")

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


def _promoter(user: Reader) -> Any:
    if not can_promote(user):
        raise HTTPException(403, f"changing the champion needs the right to trigger the {PROMOTE_DAG} DAG")
    return user


Promoter = Annotated[Any, Depends(_promoter)]


def _answer(produce: Callable[[], T]) -> T:
    """`produce()`, kest's one-line errors as HTTP answers."""
    from kest_tasks.core.files import StorageError

    try:
        return produce()
    except models_view.BadName as error:
        raise HTTPException(400, str(error)) from None
    except models_view.NotFound as error:
        raise HTTPException(404, str(error)) from None
    except StorageError as error:
        raise HTTPException(502, str(error)) from None
    except KestError as error:
        raise HTTPException(400, str(error)) from None


def _airflow_url() -> str:
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback="")


@app.get("/models/", response_class=HTMLResponse)
def models(user: Reader) -> str:
    return models_view.list_html(_answer(models_view.listing))


@app.get("/models/{root}/{model}", response_class=HTMLResponse)
def model(root: int, model: str, user: Reader, promoted: str = "", paused: int = 0) -> str:
    view = _answer(lambda: models_view.model_view(root, model, _airflow_url()))
    notice = ""
    if promoted and _RUN_ID.match(promoted):
        notice = f"{PROMOTE_DAG} run {promoted} is queued: the champion changes when it has run (reload to see it)."
        if paused:
            notice += f" {PROMOTE_DAG} is paused: unpause it for the run to start."
    return models_view.model_html(view, notice, can_promote(user))


@app.get("/models/{root}/{model}/{version}/report", response_class=HTMLResponse)
def report(root: int, model: str, version: str, user: Reader) -> str:
    return _answer(lambda: models_view.report_html(root, model, version))


@app.get("/models/{root}/{model}/{version}/promote", response_class=HTMLResponse)
def confirm(root: int, model: str, version: str, user: Promoter) -> str:
    return _answer(lambda: models_view.confirm_html(models_view.model_view(root, model), version))


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
    view = _answer(lambda: models_view.model_view(root, model))
    if not reason.strip():
        page = _answer(lambda: models_view.confirm_html(view, version, error="Give a reason."))
        return HTMLResponse(page, status_code=400)
    conf = _answer(lambda: models_view.promotion_conf(view, version, reason))
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.models.dag import DagModel
    from airflow.utils.types import DagRunTriggeredByType

    run = trigger_dag(
        PROMOTE_DAG, triggered_by=DagRunTriggeredByType.UI, triggering_user_name=user.get_name(), conf=conf
    )
    run_id = run.run_id if run else ""
    paused = (DagModel.get_current(PROMOTE_DAG) or DagModel()).is_paused
    log.info("models page: %s asked for %s %s as champion (run %s)", user.get_name(), model, version, run_id)
    suffix = "&paused=1" if paused else ""
    return RedirectResponse(f"../../{model}?promoted={quote(run_id, safe='')}{suffix}", status_code=303)


@app.get("/api/models")
def api_models(user: Reader) -> list[dict[str, Any]]:
    return _answer(models_view.listing)


@app.get("/api/models/{root}/{model}")
def api_model(root: int, model: str, user: Reader) -> dict[str, Any]:
    view = _answer(lambda: models_view.model_view(root, model, _airflow_url()))
    return {**view, "can_promote": can_promote(user)}
