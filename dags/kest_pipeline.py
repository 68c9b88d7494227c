"""
### kest: a Keras model trained as a TensorFlow Estimator, from data to a published model

`configure → prepare → build → train → evaluate → gate → blessed? → export → report → publish → summarize`

The stages, their inputs and the blessing rule come from kest's stage registry (`kest_tasks.core.stages`).

Each task calls one stage of the `kest_tasks` library and passes only small JSON (URIs, counts, metrics)
on. Artifacts live in the run folder `<artifact_root>/runs/<run_id>/`; a blessed model is published to
`<export.root>/<model_name>/<version>/` (a local folder or gs://) with its report.html, and named in
`champion.json` there if it still beats the champion the gate compared it with.

Trigger with a different config file (`config_path`) or override single values (`overrides`, nested like
the config: `{"trainer": {"steps": 1000}}`). A model that fails the gate is not exported or published:
those tasks are skipped, the run stays green, the gate task's log says why and the report still shows it.

The kest plugin adds links on task instances (Details tab): train → TensorBoard and its model dir, publish → the
published model; its macros `macros.kest.run_folder(params, run_id)` and `macros.kest.export_root(params)` give the
configure task its folders (see Rendered Templates). Where the train task runs (queue, pool, GPUs) comes from the
KEST_TRAIN_* settings of the deployment.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from typing import Any

from airflow.sdk import Asset, Param, dag, task

from kest_tasks.core.stages import BLESSING_STAGE, STAGES, StageSpec, optional_inputs
from kest_tasks.orchestration.assets import default_config_path, model_asset_uri
from kest_tasks.orchestration.trigger_form import JSON_SCHEMA_DIALECT, config_arguments, stored_form_fields
from kest_tasks.orchestration.workers import TrainWorkers

try:
    from kest_plugin import PUBLISH_LINKS, TRAIN_LINKS
except ModuleNotFoundError as missing:  # Airflow puts its plugins folder on sys.path; this one must be kest's
    raise ImportError(
        f"kest_pipeline needs the kest plugin: set AIRFLOW__CORE__PLUGINS_FOLDER to kest's plugins/ folder ({missing})"
    ) from None

DEFAULT_CONFIG = default_config_path()
# Where the train task runs (KEST_TRAIN_*): a Celery queue and pool for GPU workers, its timeout, and under
# KubernetesExecutor a pod_override asking for nvidia.com/gpu (see the README's "GPU workers").
TRAIN_WORKERS = TrainWorkers.from_env()
# None: runs only when triggered; a cron expression (e.g. "0 3 * * *") or preset ("@daily") schedules them.
SCHEDULE = os.environ.get("KEST_SCHEDULE") or None
# Published models of the default config's model name; downstream DAGs can be scheduled on it.
MODEL_ASSET = Asset(model_asset_uri(DEFAULT_CONFIG))


def log_failure(context: dict) -> None:
    """One line per failed task: the stage, the reason, and the run folder to look in."""
    ti = context.get("ti") or context.get("task_instance")
    reason = str(context.get("exception") or "unknown reason").splitlines()[0][:500]
    run_folder = "unknown (configure did not finish)"
    try:
        configured = ti.xcom_pull(task_ids="configure") if ti else None
        if configured:
            run_folder = configured["run_uri"]
    except Exception:  # noqa: BLE001 - a callback must never raise
        pass
    logging.getLogger("kest").error(
        "kest: stage %s failed: %s; run folder %s", getattr(ti, "task_id", "?"), reason, run_folder
    )


class StorageUnavailable(RuntimeError):
    """Storage stayed unavailable for kest's whole retry budget: the task fails, and Airflow retries it later."""


@contextlib.contextmanager
def bad_input_fails_without_retry():
    """Bad input (a KestError) fails the task at once with its one-line message: retrying cannot fix it. Storage
    that was unavailable for the whole in-process retry budget fails it with its line too, but leaves the task's
    own retries to Airflow (each attempt resumes from what the last one marked complete)."""
    from airflow.sdk.exceptions import AirflowFailException

    from kest_tasks.core.errors import KestError

    try:
        yield
    except KestError as error:
        if getattr(error, "retryable", False):
            raise StorageUnavailable(str(error)) from None
        raise AirflowFailException(str(error)) from None


def call_stage(name: str, run: dict | None, **upstream: dict | None) -> dict:
    """Run the registry's stage `name` for this run with its upstream results from XCom; its result as JSON."""
    from airflow.sdk.exceptions import AirflowFailException

    from kest_tasks.core.stages import invoke, stage
    from kest_tasks.orchestration.runner import run_stage_in_fresh_process, stage_wants_own_process

    if run is None:
        raise AirflowFailException(
            "no configure result in this DAG run: run configure first (e.g. `airflow tasks "
            "test kest_pipeline configure <run_id>`)"
        )
    with bad_input_fails_without_retry():
        # KEST_STAGE_PROCESS=fresh: as if on another worker, frees TF's memory too; train on Ray: the Ray driver.
        if stage_wants_own_process(name, run["run_uri"]):
            return run_stage_in_fresh_process(name, run["run_uri"])
        return invoke(stage(name), run["run_uri"], upstream).model_dump(mode="json")


def announce_model(published: dict, outlet_events) -> None:
    """The model Asset's event carries where the new version went, for downstream DAGs."""
    if outlet_events is not None:
        outlet_events[MODEL_ASSET].extra = {key: published[key] for key in ("model_uri", "version", "champion")}


# How each stage's task runs in Airflow (the registry says what it runs and what it takes).
TASK_OPTIONS: dict[str, dict] = {
    "train": {
        "queue": TRAIN_WORKERS.queue,
        "pool": TRAIN_WORKERS.pool,
        "execution_timeout": TRAIN_WORKERS.timeout,
        "executor_config": TRAIN_WORKERS.executor_config(),
    },
    "publish": {"outlets": [MODEL_ASSET]},
}
EXTRA_LINKS = {"train": TRAIN_LINKS, "publish": PUBLISH_LINKS}
AFTER_STAGE = {"publish": announce_model}


def stage_task(spec: StageSpec):
    """A TaskFlow task running one registry stage. Inputs whose upstream may be skipped (the blessing rule) arrive
    as None, so such a stage runs whenever nothing upstream failed."""
    options = dict(TASK_OPTIONS.get(spec.name, {}))
    if optional_inputs(spec):
        options["trigger_rule"] = "none_failed"

    def run_stage(run: dict, **context) -> dict:
        result = call_stage(spec.name, run, **{argument: context.get(argument) for argument in spec.inputs})
        if spec.name in AFTER_STAGE:
            AFTER_STAGE[spec.name](result, context.get("outlet_events"))
        return result

    run_stage.__name__ = run_stage.__qualname__ = spec.name
    run_stage.__doc__ = spec.summary
    return task(task_id=spec.name, doc_md=spec.summary, **options)(run_stage)


@dag(
    dag_id="kest_pipeline",
    schedule=SCHEDULE,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    doc_md=__doc__,
    tags=["kest", "ml"],
    default_args={
        "owner": "kest",
        "retries": 2,
        "retry_delay": dt.timedelta(seconds=10),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=10),
        "execution_timeout": dt.timedelta(hours=1),
        "on_failure_callback": log_failure,
    },
    params={
        "config_path": Param(
            DEFAULT_CONFIG,
            type="string",
            title="Config file",
            section="Run",
            description="Pipeline config (YAML or JSON) on the workers' file system.",
            **{"$schema": JSON_SCHEMA_DIALECT},  # type: ignore[arg-type]
        ),
        "overrides": Param(
            {},
            type="object",
            title="Config overrides",
            section="Run",
            description='Nested values that replace the file\'s, e.g. {"trainer": {"steps": 1000}}; '
            "the typed fields below are applied on top.",
            **{"$schema": JSON_SCHEMA_DIALECT},  # type: ignore[arg-type]
        ),
        **{
            name: Param(**{key: value for key, value in field.items() if key != "path"})
            for name, field in stored_form_fields().items()
        },
    },
)
def kest_pipeline():
    @task
    def configure(run_folder: str, export_root: str, params=None, run_id=None) -> dict:
        """Validate the config file plus overrides and freeze it in the run folder (both folders come from the
        kest plugin's macros, so they show under Rendered Templates)."""
        from kest_tasks.orchestration.runner import configure

        with bad_input_fails_without_retry():
            configured = configure(*config_arguments(params), run_id, run_uri=run_folder)
        logging.getLogger("kest").info("configure: blessed models go to %s", export_root)
        return configured.model_dump(mode="json")

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def blessed(blessing: dict) -> bool:
        """Let the stages that need blessing run only for a blessed model; otherwise skip them, saying why."""
        from kest_tasks.core.stages import blessing_decision

        decision, reason = blessing_decision(blessing)
        logging.getLogger("kest").info("%s", reason)
        return decision

    @task(trigger_rule="none_failed")
    def summarize(run: dict) -> dict:
        """Test metrics, gate decision and the published model's location, in the log and summary.json."""
        from kest_tasks.orchestration.runner import summarize

        return summarize(run["run_uri"])

    # Templated with the plugin's macros: rendered by the worker from this run's params.
    run = configure(
        run_folder="{{ macros.kest.run_folder(params, run_id) }}", export_root="{{ macros.kest.export_root(params) }}"
    )
    results: dict[str, Any] = {}  # stage name → its task's XComArg
    gate_open: Any = None
    for spec in STAGES:  # the registry's order: every input's stage comes before the stage taking it
        results[spec.name] = stage_task(spec)(
            run, **{argument: results[upstream] for argument, upstream in spec.inputs.items()}
        )
        results[spec.name].operator.operator_extra_links = EXTRA_LINKS.get(spec.name, [])
        if spec.needs_blessing:
            gate_open = gate_open or blessed(results[BLESSING_STAGE.name])
            gate_open >> results[spec.name]
    list(results.values()) >> summarize(run)  # type: ignore[arg-type]


kest_pipeline()
