"""Runs that live in object storage, against the real GCS protocol (the emulator; TensorFlow's own gs:// through the
loopback TLS proxy): a whole `dag.test()` with each stage in a fresh process in an empty folder, as on separate
workers with nothing shared but the buckets."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kest_tasks.core import files, layout, stages
from kest_tasks.orchestration.links import GCS_CONSOLE
from tests.helpers import IRIS_CSV, task_links, task_states

pytestmark = pytest.mark.slow

RUNS = "gs://kest-runs/pipeline"
MODELS = "gs://kest-models/registry"


def upload_spans(root: str) -> None:
    """Iris as two spans in the bucket, the latest one split over two CSV files (plus a file the glob skips)."""
    lines = IRIS_CSV.read_text().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    files.write_text(f"{root}/span-1/part-0.csv", header + "".join(rows[:30]))
    files.write_text(f"{root}/span-2/part-0.csv", header + "".join(rows[: len(rows) // 2]))
    files.write_text(f"{root}/span-2/part-1.csv", header + "".join(rows[len(rows) // 2 :]))
    files.write_text(f"{root}/span-2/notes.txt", "not data")


def test_a_dag_run_in_object_storage_with_each_task_on_its_own_worker(dag, tf_gcs, tmp_path, monkeypatch):
    from kest_tasks.core.tfenv import import_tensorflow

    upload_spans("gs://kest-runs/incoming")
    monkeypatch.setenv("KEST_STAGE_PROCESS", "fresh")
    monkeypatch.chdir(tmp_path)
    overrides = {
        "artifact_root": RUNS,
        "export": {"root": MODELS},
        "dataset": {"path": "gs://kest-runs/incoming/span-{SPAN}/*.csv"},
    }
    run = dag.test(run_conf={"overrides": overrides})
    assert run.state == "success", task_states(run)
    assert set(task_states(run).values()) == {"success"}
    assert list(tmp_path.iterdir()) == []  # nothing was written to a local folder

    (run_uri,) = {f"{RUNS}/runs/{name.split('/')[0]}" for name in files.list_files(f"{RUNS}/runs")}
    summary = files.read_json(f"{run_uri}/{layout.SUMMARY_FILE}")
    version = summary["published_model"].rsplit("/", 1)[1]
    assert summary["published_model"] == f"{MODELS}/iris/{version}" and summary["blessed"]
    assert summary["test_metrics"]["accuracy"] >= 0.9

    # The whole run folder is in the bucket, every stage marked complete last.
    names = set(files.list_files(run_uri))
    assert {layout.CONFIG_FILE, layout.SUMMARY_FILE} <= names
    assert {f"{spec.name}/{layout.RESULT_FILE}" for spec in stages.STAGES} <= names
    assert sum(name.startswith("prepare/train-") and name.endswith(".tfrecord.gz") for name in names) >= 1
    assert not [name for name in names if name.endswith(".part") or "-work-" in name]
    assert "train/checkpoint" in names and any(name.startswith("train/events.out.tfevents") for name in names)
    assert "export/saved_model/saved_model.pb" in names and "report/report.html" in names
    prepared = stages.PREPARE.load(run_uri)
    assert prepared.span == 2 and prepared.rows == 150
    assert prepared.inputs == [f"gs://kest-runs/incoming/span-2/part-{i}.csv" for i in (0, 1)]
    report = files.read_bytes(f"{run_uri}/report/report.html").decode()
    assert f"published as {MODELS}/iris/{version}" in report

    # The published version and the champion pointer, in the other bucket.
    published = files.list_files(f"{MODELS}/iris")
    assert f"{version}/saved_model.pb" in published and f"{version}/report.html" in published
    assert files.read_json(f"{MODELS}/iris/{layout.CHAMPION_FILE}")["version"] == version

    # The UI's links: the model dir and the published model open in the Cloud console.
    run_name = run_uri.rsplit("/", 1)[1]
    assert task_links(run.run_id) == {
        "train": {
            "_link_TensorBoardLink": f"http://localhost:6006/?runFilter={run_name}#timeseries",
            "_link_ModelDirLink": f"{GCS_CONSOLE}kest-runs/pipeline/runs/{run_name}/train",
        },
        "publish": {"_link_PublishedModelLink": f"{GCS_CONSOLE}kest-models/registry/iris/{version}"},
    }

    # `python -m kest_tasks summary` finds the run in the bucket.
    shown = subprocess.run(
        [sys.executable, "-m", "kest_tasks", "summary", "--set", f"artifact_root={RUNS}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert f"published model: {MODELS}/iris/{version}" in shown.stdout and f"run folder: {run_uri}" in shown.stdout

    # The published model, downloaded, classifies Iris rows.
    model = files.get_tree(f"{MODELS}/iris/{version}", tmp_path / "download")
    serve = import_tensorflow().saved_model.load(str(model)).signatures["serving_default"]
    rows = [line.split(",") for line in IRIS_CSV.read_text().splitlines()[1:]]
    header = IRIS_CSV.read_text().splitlines()[0].split(",")
    schema = json.load(io.BytesIO(files.read_bytes(prepared.schema_uri)))
    inputs = {
        feature["tf_name"]: import_tensorflow().constant([float(row[header.index(feature["name"])]) for row in rows])
        for feature in schema["features"]
    }
    predicted = serve(**inputs)["class_ids"].numpy().reshape(-1)
    classes = schema["label"]["classes"]
    truth = [classes.index(row[header.index(schema["label"]["name"])]) for row in rows]
    assert sum(int(p == t) for p, t in zip(predicted, truth)) / len(rows) >= 0.9
    assert not Path("artifacts").exists()


def test_a_shard_deleted_after_prepare_fails_training_in_one_line(tf_gcs):
    """An object that disappears between listing (prepare's result) and reading (TensorFlow's tf.data in train)."""
    from kest_tasks.orchestration.runner import configure, run_stage
    from tests.helpers import IRIS_CONFIG

    run_uri = configure(IRIS_CONFIG, {"artifact_root": f"{RUNS}-missing", "trainer": {"steps": 20}}, "gone").run_uri
    shard = run_stage("prepare", run_uri)["files"]["train"][0]
    run_stage("build", run_uri)
    bucket, name = files.split_gcs(shard)
    files.gcs_bucket(bucket).blob(name).delete()
    done = subprocess.run(
        [sys.executable, "-m", "kest_tasks", "stage", "train", "--run", run_uri],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"kest: error: {shard}: not found (TensorFlow: HTTP response code 404)"
    )
    assert stages.TRAIN.stored(run_uri) is None
