"""kest's Airflow plugin: extra links on the train and publish tasks, and macros for a run's folders.

Links (buttons on the task instance in the UI; worked out by the worker when the task finishes and kept with it):
  train   → "TensorBoard" (the run's curves; server from KEST_TENSORBOARD_URL) and "Model dir" (the checkpoints)
  publish → "Published model" (the GCS console page for gs://, a file:// URL otherwise)
The Models page (kest_models): every published model, its versions, champion and history, and promotion.
Macros, in any templated field: `{{ macros.kest.run_folder(params, run_id) }}`, `{{ macros.kest.export_root(params) }}`.
"""

from __future__ import annotations

from pathlib import PurePath

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink
from kest_models import app as models_app

from kest_tasks.core.errors import KestError
from kest_tasks.orchestration import trigger_form as run_params
from kest_tasks.orchestration.links import browse_url, tensorboard_url


def _result(ti_key, task_id: str) -> dict | None:
    """A task's XCom result in the same run. The worker passes its running task instance as `ti_key`."""
    pull = getattr(ti_key, "xcom_pull", None)
    return pull(task_ids=task_id) if pull else None


class TensorBoardLink(BaseOperatorLink):
    name = "TensorBoard"

    def get_link(self, operator, *, ti_key) -> str:
        # TensorBoard names runs by their folder under <artifact_root>/runs.
        run = _result(ti_key, "configure")
        return tensorboard_url(PurePath(run["run_uri"]).name) if run else ""


class ModelDirLink(BaseOperatorLink):
    name = "Model dir"

    def get_link(self, operator, *, ti_key) -> str:
        # From configure's result, so the link is there for a failed training too.
        run = _result(ti_key, "configure")
        return browse_url(f"{run['run_uri']}/train") if run else ""


class PublishedModelLink(BaseOperatorLink):
    name = "Published model"

    def get_link(self, operator, *, ti_key) -> str:
        published = _result(ti_key, ti_key.task_id)
        return browse_url(published["model_uri"]) if published else ""


def run_folder(params, run_id: str) -> str:
    """`<artifact_root>/runs/<run_id>` of this run's config; empty if the config is invalid (configure then
    fails with the one-line reason instead of a traceback from template rendering)."""
    try:
        return run_params.run_folder(params, run_id)
    except KestError:
        return ""


def export_root(params) -> str:
    """`export.root` of this run's config (a folder or gs://); empty if the config is invalid."""
    try:
        return run_params.export_root(params)
    except KestError:
        return ""


TRAIN_LINKS = (TensorBoardLink(), ModelDirLink())
PUBLISH_LINKS = (PublishedModelLink(),)


class KestPlugin(AirflowPlugin):
    name = "kest"
    macros = [run_folder, export_root]
    # Listed for `airflow plugins`; the DAG attaches them to its train and publish tasks (no `operators`, so
    # no other task gets them).
    operator_extra_links = [*TRAIN_LINKS, *PUBLISH_LINKS]
    # The Models page: an app served by the api-server under /kest, shown inside the UI from its navigation.
    fastapi_apps = [{"app": models_app, "url_prefix": "/kest", "name": "kest models"}]
    external_views = [{"name": "Models", "href": "kest/models/", "destination": "nav", "url_route": "kest-models"}]
