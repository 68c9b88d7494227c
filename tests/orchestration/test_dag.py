"""The DAG itself: it parses without TensorFlow, and real `dag.test()` runs take Iris to a published model."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kest_tasks.core import layout, stages
from tests.helpers import REPO, iris_overrides, stage_file, task_links, task_states

DAG_FILE = REPO / "dags" / "kest_pipeline.py"
TASK_IDS = ["configure", *(spec.name for spec in stages.STAGES), "blessed", "summarize"]


def test_dag_edges_come_from_the_stage_registry(dag):
    """Each stage's task takes exactly its registry inputs (plus the run), stages that need blessing wait for the
    short-circuit, and a stage taking their optional outputs runs unless something failed."""
    assert sorted(dag.task_ids) == sorted(TASK_IDS)
    for spec in stages.STAGES:
        task = dag.get_task(spec.name)
        expected = {"configure", *spec.inputs.values()} | ({"blessed"} if spec.needs_blessing else set())
        assert task.upstream_task_ids == expected, spec.name
        assert task.trigger_rule == ("none_failed" if stages.optional_inputs(spec) else "all_success"), spec.name
        assert task.doc_md == spec.summary
    assert dag.get_task("blessed").upstream_task_ids == {stages.BLESSING_STAGE.name}
    assert dag.get_task("blessed").downstream_task_ids == {s.name for s in stages.STAGES if s.needs_blessing}
    assert dag.get_task("summarize").upstream_task_ids == {"configure", *(s.name for s in stages.STAGES)}
    assert dag.get_task("summarize").trigger_rule == "none_failed"
    assert dag.get_task("report").trigger_rule == "none_failed"  # the registry's blessing rule, as users see it
    assert dag.get_task("train").retries == 2
    for task_id in TASK_IDS:
        assert dag.get_task(task_id).doc_md, f"{task_id} has no doc"


def test_production_settings(dag):
    from airflow.sdk import Asset

    assert dag.schedule is None
    assert dag.owner == "kest" and {"kest", "ml"} <= set(dag.tags)
    for task_id in TASK_IDS:
        task = dag.get_task(task_id)
        assert task.retry_exponential_backoff and task.max_retry_delay == dt.timedelta(minutes=10)
        assert task.on_failure_callback, task_id
        expected = dt.timedelta(hours=6) if task_id == "train" else dt.timedelta(hours=1)
        assert task.execution_timeout == expected, task_id
    assert dag.get_task("publish").outlets == [Asset("kest://iris")]


def test_trigger_form_fields_come_from_the_config_schema(dag):
    steps = dag.params.get_param("trainer__steps")
    assert steps.value is None and steps.schema["type"] == ["null", "integer"] and steps.schema["minimum"] == 1
    assert steps.schema["section"] == "Trainer" and "Total training steps" in steps.description
    kind = dag.params.get_param("trainer__kind")
    assert kind.schema["enum"] == [None, "keras", "premade", "model_fn", "native"]
    assert dag.params.get_param("model__learning_rate").schema["exclusiveMinimum"] == 0
    # Draft 7 (numeric exclusiveMinimum included) so Airflow's many validations skip the 2020-12 meta-schema.
    assert {dag.params.get_param(name).schema["$schema"] for name in dag.params} == {
        "http://json-schema.org/draft-07/schema#"
    }
    assert {"config_path", "overrides", "model_name", "dataset__path", "export__root", "gate__mode"} <= set(dag.params)
    assert not {"model__code_dir", "trainer__model_fn"} & set(dag.params)  # code comes from the config file


@pytest.mark.parametrize(
    "conf",
    [{"trainer__steps": 0}, {"trainer__kind": "xgboost"}, {"trainer__steps": "many"}, {"model__learning_rate": 0}],
)
def test_an_invalid_form_value_is_refused_before_any_task(dag, tmp_path, conf):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match=next(iter(conf))):
        dag.test(run_conf={"overrides": iris_overrides(tmp_path), **conf})
    assert not (tmp_path / "artifacts").exists()


def test_schedule_from_the_environment(airflow_db):
    probe = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAG_FILE.parent)!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "score = bag.get_dag('kest_batch_score')\n"
        "when = score.schedule if isinstance(score.schedule, str | None) else [a.uri for a in score.schedule]\n"
        "print(bag.get_dag('kest_pipeline').schedule, '|', type(score.timetable).__name__, when, sorted(bag.dag_ids))\n"
    )
    dag_ids = "['kest_batch_score', 'kest_model_consumer', 'kest_pipeline', 'kest_promote']"
    for env, expected in [
        ({"KEST_SCHEDULE": "0 3 * * *"}, f"0 3 * * * | NullTimetable None {dag_ids}"),
        (
            {"KEST_SCORE_SCHEDULE": "@daily", "KEST_SCORE_INPUT": "in.csv"},
            f"None | CronTriggerTimetable @daily {dag_ids}",
        ),
        (
            {"KEST_SCORE_SCHEDULE": "@model", "KEST_SCORE_INPUT": "in.csv"},
            f"None | AssetTriggeredTimetable ['kest://iris/'] {dag_ids}",
        ),
    ]:
        run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ, **env})
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.strip().splitlines()[-1] == expected, env


def test_the_example_consumer_is_scheduled_on_the_model_asset(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE.parent / "kest_model_consumer.py"))
    assert bag.import_errors == {}
    consumer = bag.get_dag("kest_model_consumer")
    assert "kest://iris" in str(consumer.timetable.asset_condition)


def test_dag_file_imports_no_tensorflow():
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('kest_dag', {str(DAG_FILE)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tensorflow_estimator')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _run_folder(artifacts: Path) -> Path:
    (folder,) = (artifacts / layout.RUNS_FOLDER).iterdir()
    return folder


# Credential-like values in the workers' environment: none may reach a log, XCom, the report or the summary.
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "aws-sekret-4f9c2e71",
    "GOOGLE_OAUTH_ACCESS_TOKEN": "ya29.sekret-token-8d1b",
    "KEST_WAREHOUSE_PASSWORD": "hunter2-sekret-66aa",
    "AIRFLOW_CONN_WAREHOUSE": "postgresql://etl:pw-sekret-93c0@db.internal/warehouse",
}
SIGNED_OR_TOKEN_QUERY = re.compile(r"X-Goog-Signature|X-Amz-Signature|access_token=|[?&](token|sig|signature)=", re.I)


def assert_no_secrets(run_id: str, texts: list[str]) -> None:
    """No secret value nor signed-URL/token query string in `texts` or in the run's XCom values."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = [json.dumps(x.value, default=str) for x in session.query(XComModel).filter_by(run_id=run_id)]
    assert xcoms, "the run's XComs were not found"
    for where, text in [*enumerate(texts), *(("xcom", x) for x in xcoms)]:
        leaked = [name for name, value in SECRETS.items() if value in text]
        assert not leaked and not SIGNED_OR_TOKEN_QUERY.search(text), (where, leaked)


@pytest.mark.slow
def test_dag_run_publishes_a_model_that_classifies_iris(dag, tmp_path, monkeypatch, capfd, caplog):
    from kest_tasks.core.tfenv import import_tensorflow
    from kest_tasks.data.schema import Schema
    from kest_tasks.data.tfdata import read_examples

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    run = dag.test(run_conf={"overrides": iris_overrides(tmp_path)})
    assert run.state == "success", task_states(run)
    folder = _run_folder(tmp_path / "artifacts")
    logs = "".join(capfd.readouterr()) + caplog.text
    assert "export: infra validation passed" in logs and "publish: " in logs  # the tasks' logs were captured
    outputs = [
        logs,
        *(p.read_text(errors="replace") for p in folder.rglob("*") if p.suffix in {".json", ".html", ".txt"}),
    ]
    # The Models page shows what the publish recorded: its pages and JSON are grepped too.
    from kest_tasks.orchestration import models_view

    monkeypatch.setenv("KEST_MODEL_ROOTS", str(tmp_path / "models"))
    listing = models_view.listing()
    view = models_view.model_view(0, "iris", "http://airflow.example")
    (version,) = [v["version"] for v in view["versions"]]
    outputs += [json.dumps(listing), json.dumps(view, default=str), models_view.list_html(listing)]
    outputs += [models_view.model_html(view, "", True), models_view.report_html(0, "iris", version)]
    assert "dag_run_id" in outputs[-4] and version in outputs[-2]  # the page shows the run it came from
    assert_no_secrets(run.run_id, outputs)
    assert set(task_states(run).values()) == {"success"}
    folder = _run_folder(tmp_path / "artifacts")
    summary = json.loads((folder / layout.SUMMARY_FILE).read_text())
    assert summary["blessed"] is True
    published = Path(summary["published_model"])
    assert published.parent == tmp_path / "models" / "iris"
    assert json.loads((published.parent / layout.CHAMPION_FILE).read_text())["model_uri"] == str(published)
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:  # the publish task announced the model on its Asset
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri.like("kest://iris%"))
            .all()
        )
        assert any(event.extra.get("model_uri") == str(published) and event.extra.get("champion") for event in events)
    # The plugin's macros chose the run folder; its extra links were worked out when the tasks finished.
    assert task_links(run.run_id) == {
        "train": {
            "_link_TensorBoardLink": f"http://localhost:6006/?runFilter={folder.name}#timeseries",
            "_link_ModelDirLink": stage_file(folder, stages.TRAIN).as_uri(),
        },
        "publish": {"_link_PublishedModelLink": published.as_uri()},
    }

    # The published SavedModel on its own: raw named features in, class ids out, over the whole test split.
    tf = import_tensorflow()
    prepared = stages.PREPARE.load(str(folder))
    schema = Schema.of(prepared)
    serve = tf.saved_model.load(str(published)).signatures["serving_default"]
    correct = total = 0
    for features, labels in read_examples(prepared.files["test"], schema, prepared.compression, 64):
        predicted = serve(**features)["class_ids"].numpy()
        correct += int((predicted == labels.numpy()).sum())
        total += int(labels.shape[0])
    assert total == prepared.split_rows["test"]
    assert correct / total >= 0.9

    # One task alone, again, on the same run: `airflow tasks test` reuses the finished output.
    airflow = Path(sys.executable).with_name("airflow")
    mtime = stage_file(folder, stages.EVALUATE, layout.METRICS_FILE).stat().st_mtime_ns
    alone = subprocess.run(
        [str(airflow), "tasks", "test", "kest_pipeline", "evaluate", run.run_id],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert alone.returncode == 0, alone.stdout[-3000:] + alone.stderr[-3000:]
    assert "already done" in alone.stdout + alone.stderr
    assert stage_file(folder, stages.EVALUATE, layout.METRICS_FILE).stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_impossible_threshold_skips_export_and_publish(dag, tmp_path):
    overrides = iris_overrides(tmp_path, gate={"thresholds": {"accuracy": {"lower": 1.01}}})
    # A typed form field on top of the overrides object, as the UI's trigger form sends it.
    run = dag.test(run_conf={"overrides": overrides, "trainer__steps": 50, "trainer__kind": "native"})
    states = task_states(run)
    assert run.state == "success", states
    assert states["export"] == "skipped" and states["publish"] == "skipped"
    assert states["summarize"] == "success" and states["gate"] == "success" and states["report"] == "success"
    frozen = json.loads((_run_folder(tmp_path / "artifacts") / layout.CONFIG_FILE).read_text())
    assert frozen["trainer"]["steps"] == 50 and frozen["trainer"]["kind"] == "native"
    summary = json.loads((_run_folder(tmp_path / "artifacts") / layout.SUMMARY_FILE).read_text())
    assert summary["blessed"] is False and summary["published_model"] is None
    report = Path(summary["report"]).read_text()
    assert "not published: the gate did not bless this model" in report and "FAIL" in report
    assert "accuracy" in summary["gate"] and "needs >= 1.01" in summary["gate"]
    assert not (tmp_path / "models").exists()


def test_bad_config_fails_the_first_task_without_retries(dag, tmp_path, capfd, caplog):
    run = dag.test(run_conf={"overrides": {**iris_overrides(tmp_path), "trainer": {"stepz": 1}}})
    states = task_states(run)
    assert run.state == "failed"
    assert states["configure"] == "failed"
    output = "".join(capfd.readouterr())
    assert "AirflowFailException: invalid config " in output and "trainer.stepz: unknown key" in output
    # the failure callback's one line
    assert "kest: stage configure failed: invalid config" in output + caplog.text
    assert "run folder unknown (configure did not finish)" in output + caplog.text
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize(
    ("conf", "settings"),
    [
        ({"overrides": {"model": {"code_dir": "/tmp"}}}, "model.code_dir"),
        ({"model__builder": "evil:run"}, "model.builder"),
        ({"overrides": {"trainer": {"kind": "model_fn", "model_fn": "evil:model_fn"}}}, "trainer.model_fn"),
        ({"overrides": {"trainer": {"cluster": {"address": "ray://attacker:10001"}}}}, "trainer.cluster.address"),
    ],
)
def test_code_settings_from_the_run_conf_fail_configure(airflow_db, tmp_path, capfd, monkeypatch, conf, settings):
    from airflow.dag_processing.dagbag import DagBag

    # A DAG of its own: dag.test() keeps the form values it was given as the DAG's params.
    dag = DagBag(dag_folder=str(DAG_FILE)).get_dag("kest_pipeline")
    monkeypatch.delenv("KEST_ALLOW_CODE_FROM_RUN_CONF", raising=False)
    overrides = {**iris_overrides(tmp_path), **conf.get("overrides", {})}
    run = dag.test(run_conf={**conf, "overrides": overrides})
    states = task_states(run)
    assert run.state == "failed" and states["configure"] == "failed"
    assert {state for task, state in states.items() if task != "configure"} <= {"upstream_failed", "skipped", None}
    assert (
        f"{settings} may not come from a run's conf: settings that choose code or where it runs (model.code_dir, "
        "model.builder, trainer.model_fn, trainer.cluster.address) come from the config file on the workers (a "
        "deployment may allow them with KEST_ALLOW_CODE_FROM_RUN_CONF=1)"
    ) in "".join(capfd.readouterr())
    assert not (tmp_path / "artifacts").exists()


def test_code_settings_from_the_run_conf_where_the_deployment_allows_them(monkeypatch):
    from kest_tasks.orchestration.assets import bundled_config
    from kest_tasks.orchestration.trigger_form import config_arguments

    config = str(bundled_config())
    params = {"config_path": config, "overrides": {"model": {"code_dir": str(REPO / "examples"), "builder": "m:f"}}}
    monkeypatch.setenv("KEST_ALLOW_CODE_FROM_RUN_CONF", "1")
    assert config_arguments(params) == (config, params["overrides"])
    monkeypatch.setenv("KEST_ALLOW_CODE_FROM_RUN_CONF", "yes")  # only 1 opts in
    with pytest.raises(Exception, match=r"^model.code_dir, model.builder may not come from a run's conf"):
        config_arguments(params)
    registered = {"config_path": config, "overrides": {"model": {"builder": "tabular"}}}
    assert config_arguments(registered)[1] == {"model": {"builder": "tabular"}}  # a registered builder is fine


def _penguins_csv(path: Path) -> Path:
    import random

    rng = random.Random(1)
    lines = ["island,bill_length,flipper,sex,species"]
    for _ in range(400):
        species = rng.choice(["adelie", "gentoo", "chinstrap"])
        island = {"adelie": rng.choice(["torgersen", "biscoe", "dream"]), "gentoo": "biscoe", "chinstrap": "dream"}
        bill = {"adelie": 38.8, "gentoo": 47.5, "chinstrap": 48.8}[species] + rng.gauss(0, 2)
        flipper = {"adelie": 190, "gentoo": 217, "chinstrap": 196}[species] + rng.gauss(0, 5)
        lines.append(f"{island[species]},{bill:.1f},{int(flipper)},{rng.choice(['male', 'female', ''])},{species}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_dag_run_on_a_csv_with_string_features(dag, tmp_path):
    overrides = iris_overrides(
        tmp_path,
        dataset={"path": str(_penguins_csv(tmp_path / "penguins.csv")), "label": "species"},
        model={"builder": "tabular"},
    )
    overrides["model_name"] = "penguins"
    run = dag.test(run_conf={"overrides": overrides})
    assert run.state == "success", task_states(run)
    folder = _run_folder(tmp_path / "artifacts")
    schema = json.loads(stage_file(folder, stages.PREPARE, layout.SCHEMA_FILE).read_text())
    assert {f["name"]: f["type"] for f in schema["features"]} == {
        "island": "string",
        "bill_length": "float",
        "flipper": "int",
        "sex": "string",
    }
    summary = json.loads((folder / layout.SUMMARY_FILE).read_text())
    published = Path(summary["published_model"])
    from kest_tasks.serving.infra_validation import query_in_fresh_process

    answer = query_in_fresh_process(
        published,
        {"island": ["biscoe", "torgersen"], "bill_length": [47.0, 38.0], "flipper": [218, 189], "sex": ["male", ""]},
    )
    assert answer["outputs"]["serving_default"]["classes"] == ["gentoo", "adelie"]


def test_train_task_placement_comes_from_the_environment(airflow_db):
    # Queue and pool for Celery GPU workers; for KubernetesExecutor a GPU pod_override, which must survive the
    # DAG serialization the scheduler and executor read it from.
    probe = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        "from airflow.serialization.serialized_objects import DagSerialization\n"
        f"dag = DagBag(dag_folder={str(DAG_FILE)!r}).get_dag('kest_pipeline')\n"
        "stored = DagSerialization.from_dict(DagSerialization.to_dict(dag))\n"
        "pod = stored.get_task('train').executor_config['pod_override']\n"
        "print(dag.get_task('train').queue, dag.get_task('train').pool, dag.get_task('prepare').queue,\n"
        "      pod.spec.containers[0].resources.limits, stored.get_task('prepare').executor_config)\n"
    )
    env = {**os.environ, "KEST_TRAIN_QUEUE": "gpu", "KEST_TRAIN_POOL": "gpu_pool", "KEST_TRAIN_GPUS": "1"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip().splitlines()[-1] == "gpu gpu_pool default {'nvidia.com/gpu': '1'} {}"


def test_a_bad_worker_setting_is_a_one_line_import_error(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    os.environ["KEST_TRAIN_GPUS"] = "-1"
    try:
        bag = DagBag(dag_folder=str(DAG_FILE))
    finally:
        del os.environ["KEST_TRAIN_GPUS"]
    (error,) = bag.import_errors.values()
    assert "KEST_TRAIN_GPUS: Input should be greater than or equal to 0 (got '-1')" in error


def test_without_the_kest_plugin_the_import_error_says_what_to_set(airflow_db, tmp_path):
    probe = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"print(list(DagBag(dag_folder={str(DAG_FILE)!r}).import_errors.values())[0].strip().splitlines()[-1])\n"
    )
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env).stdout
    assert "kest_pipeline needs the kest plugin: set AIRFLOW__CORE__PLUGINS_FOLDER" in out


def test_storage_unavailable_fails_the_task_but_leaves_retries_to_airflow(dag):
    """Bad input fails at once (no retry can fix it); an outage longer than the in-process retry budget fails the
    attempt with its line, and Airflow's retries (2, with backoff) try again."""
    import importlib.util

    from airflow.sdk.exceptions import AirflowFailException

    from kest_tasks.core.files import StorageError

    spec = importlib.util.spec_from_file_location("kest_dag_module", DAG_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(AirflowFailException, match=r"^gs://b/x: permission denied"):
        with module.bad_input_fails_without_retry():
            raise StorageError("gs://b/x: permission denied (403)")
    with pytest.raises(module.StorageUnavailable, match=r"^gs://b/x: storage unavailable for 120 s"):
        with module.bad_input_fails_without_retry():
            raise StorageError("gs://b/x: storage unavailable for 120 s of retries (ConnectionError: refused)", True)
    assert dag.get_task("prepare").retries == 2
