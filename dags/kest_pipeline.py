"""
### kest: a Keras model trained as a TensorFlow Estimator, from data to a published model

`configure → prepare → build → train → evaluate → gate → blessed? → export → report → publish → summarize`

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

from airflow.sdk import Asset, Param, dag, task

from kest_tasks.assets import default_config_path, model_asset_uri
from kest_tasks.params import JSON_SCHEMA_DIALECT, config_arguments, stored_form_fields
from kest_tasks.workers import TrainWorkers

try:
    from kest_plugin import PUBLISH_LINKS, TRAIN_LINKS
except ModuleNotFoundError as missing:  # Airflow puts its plugins folder on sys.path; this one must be kest's
    raise ImportError("kest_pipeline needs the kest plugin: set AIRFLOW__CORE__PLUGINS_FOLDER to kest's plugins/ "
                      f"folder ({missing})") from None

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
    logging.getLogger("kest").error("kest: stage %s failed: %s; run folder %s",
                                    getattr(ti, "task_id", "?"), reason, run_folder)


@contextlib.contextmanager
def bad_input_fails_without_retry():
    """Bad input (a KestError) fails the task at once with its one-line message: retrying cannot fix it."""
    from airflow.sdk.exceptions import AirflowFailException

    from kest_tasks.errors import KestError

    try:
        yield
    except KestError as error:
        raise AirflowFailException(str(error)) from None


def call_stage(stage: str, run: dict | None, **upstream: dict | None) -> dict:
    """Call `kest_tasks.<stage>.<stage>(config, run_uri, **upstream)` and return its result as JSON for XCom."""
    import importlib

    from airflow.sdk.exceptions import AirflowFailException

    from kest_tasks.stage import load_run_config

    missing = [name for name, value in {"run": run, **upstream}.items() if value is None]
    if missing:
        raise AirflowFailException(
            f"no upstream result for {', '.join(missing)} in this DAG run: run the upstream tasks of the same "
            "run first (e.g. `airflow tasks test kest_pipeline configure <run_id>`)"
        )
    function = getattr(importlib.import_module(f"kest_tasks.{stage}"), stage)
    with bad_input_fails_without_retry():
        return function(load_run_config(run["run_uri"]), run["run_uri"], **upstream).model_dump(mode="json")


@dag(
    dag_id="kest_pipeline",
    schedule=SCHEDULE,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    doc_md=__doc__,
    tags=["kest", "ml"],
    default_args={
        "owner": "kest", "retries": 2, "retry_delay": dt.timedelta(seconds=10), "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=10), "execution_timeout": dt.timedelta(hours=1),
        "on_failure_callback": log_failure,
    },
    params={
        "config_path": Param(DEFAULT_CONFIG, type="string", title="Config file", section="Run",
                             description="Pipeline config (YAML or JSON) on the workers' file system.",
                             **{"$schema": JSON_SCHEMA_DIALECT}),
        "overrides": Param({}, type="object", title="Config overrides", section="Run",
                           description='Nested values that replace the file\'s, e.g. {"trainer": {"steps": 1000}}; '
                                       "the typed fields below are applied on top.",
                           **{"$schema": JSON_SCHEMA_DIALECT}),
        **{name: Param(**{key: value for key, value in field.items() if key != "path"})
           for name, field in stored_form_fields().items()},
    },
)
def kest_pipeline():
    @task
    def configure(run_folder: str, export_root: str, params=None, run_id=None) -> dict:
        """Validate the config file plus overrides and freeze it in the run folder (both folders come from the
        kest plugin's macros, so they show under Rendered Templates)."""
        from kest_tasks.pipeline import configure

        with bad_input_fails_without_retry():
            configured = configure(*config_arguments(params), run_id, run_uri=run_folder)
        logging.getLogger("kest").info("configure: blessed models go to %s", export_root)
        return configured.model_dump(mode="json")

    @task
    def prepare(run: dict) -> dict:
        """Read the dataset, infer its schema, hash-split it and write gzip TFRecord shards."""
        return call_stage("prepare", run)

    @task
    def build(run: dict, prepared: dict) -> dict:
        """Build and compile the configured Keras model; save it as HDF5."""
        return call_stage("build", run, prepared=prepared)

    @task(queue=TRAIN_WORKERS.queue, pool=TRAIN_WORKERS.pool, execution_timeout=TRAIN_WORKERS.timeout,
          executor_config=TRAIN_WORKERS.executor_config())
    def train(run: dict, prepared: dict, built: dict) -> dict:
        """model_to_estimator + train_and_evaluate; a retry resumes from the last checkpoint."""
        return call_stage("train", run, prepared=prepared, built=built)

    @task
    def evaluate(run: dict, prepared: dict, built: dict, trained: dict) -> dict:
        """Metrics on the whole held-out test split (metrics.json: per class, confusion matrix, slices)."""
        return call_stage("evaluate", run, prepared=prepared, built=built, trained=trained)

    @task
    def gate(run: dict, evaluated: dict, prepared: dict) -> dict:
        """Bless the model only if its thresholds hold and it compares well with the champion (re-scored on the
        same test split)."""
        return call_stage("gate", run, evaluated=evaluated, prepared=prepared)

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def blessed(blessing: dict) -> bool:
        """Let export and publish run only for a blessed model; otherwise skip them, saying why."""
        logging.getLogger("kest").info("%s", blessing["reason"])
        return blessing["blessed"]

    @task
    def export(run: dict, prepared: dict, built: dict, trained: dict) -> dict:
        """Export a SavedModel and check, in a fresh process, that it answers like the trained model."""
        return call_stage("export", run, prepared=prepared, built=built, trained=trained)

    @task(trigger_rule="none_failed")
    def report(run: dict) -> dict:
        """report.html from the run folder: data, training curves, confusion matrix or residuals, the gate's
        table, where the model went. Runs for unblessed models too."""
        return call_stage("report", run)

    @task(outlets=[MODEL_ASSET])
    def publish(run: dict, exported: dict, blessing: dict, evaluated: dict, outlet_events=None) -> dict:
        """Copy the SavedModel and its report to the export root (saved_model.pb last), make it champion if it
        still beats the champion, and emit the model's Asset event (`kest://<model_name>`) for downstream DAGs."""
        published = call_stage("publish", run, exported=exported, blessing=blessing, evaluated=evaluated)
        if outlet_events is not None:
            outlet_events[MODEL_ASSET].extra = {key: published[key] for key in ("model_uri", "version", "champion")}
        return published

    @task(trigger_rule="none_failed")
    def summarize(run: dict) -> dict:
        """Test metrics, gate decision and the published model's location, in the log and summary.json."""
        from kest_tasks.pipeline import summarize

        return summarize(run["run_uri"])

    # Templated with the plugin's macros: rendered by the worker from this run's params.
    run = configure(run_folder="{{ macros.kest.run_folder(params, run_id) }}",
                    export_root="{{ macros.kest.export_root(params) }}")
    prepared = prepare(run)
    built = build(run, prepared)
    trained = train(run, prepared, built)
    trained.operator.operator_extra_links = TRAIN_LINKS
    evaluated = evaluate(run, prepared, built, trained)
    blessing = gate(run, evaluated, prepared)
    exported = export(run, prepared, built, trained)
    reported = report(run)
    published = publish(run, exported, blessing, evaluated)
    published.operator.operator_extra_links = PUBLISH_LINKS
    blessed(blessing) >> exported
    [blessing, exported] >> reported >> published
    published >> summarize(run)


kest_pipeline()
