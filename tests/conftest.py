"""Shared fixtures. Airflow's environment is set here, before any test imports airflow."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import IRIS_CONFIG, REPO, iris_overrides

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="kest-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The deployment's policy for run confs (kest_tasks.orchestration.policy): tests keep their runs in temporary
# folders and the emulator's buckets; the policy's own tests set narrower roots.
_TEST_ROOTS = ",".join([tempfile.gettempdir(), str(REPO), "gs://kest-runs", "gs://kest-models"])
for _setting in ("CONFIG", "DATA", "ARTIFACT", "EXPORT"):
    os.environ.setdefault(f"KEST_ALLOWED_{_setting}_ROOTS", _TEST_ROOTS)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB in a temporary AIRFLOW_HOME."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, timeout=600)
    return _AIRFLOW_HOME


@pytest.fixture(scope="module")
def dag(airflow_db):
    """The kest_pipeline DAG, parsed from its file as Airflow's DAG processor does."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "kest_pipeline.py"))
    assert bag.import_errors == {}
    return bag.get_dag("kest_pipeline")


@pytest.fixture
def iris_config(tmp_path):
    from kest_tasks.core.config import load_config

    return load_config(IRIS_CONFIG, iris_overrides(tmp_path))


@pytest.fixture(scope="session")
def iris_run(tmp_path_factory):
    """One full pipeline run on Iris (in process, no Airflow), shared by the stage tests that read its outputs."""
    from kest_tasks.core.execution import load_run_config
    from kest_tasks.orchestration.runner import run_pipeline

    root = tmp_path_factory.mktemp("iris-run")
    summary = run_pipeline(IRIS_CONFIG, iris_overrides(root), "session-run")
    return {"root": root, "summary": summary, "config": load_run_config(summary["run_uri"])}


@pytest.fixture
def gcs(tmp_path, monkeypatch):
    """A running GCS emulator (real HTTP on loopback); google-cloud-storage reaches it via STORAGE_EMULATOR_HOST."""
    from tests.gcs_emulator import Emulator

    emulator = Emulator(tmp_path / "gcs-data")
    emulator.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.host)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "kest-test")
    yield emulator
    emulator.stop()


@pytest.fixture
def tf_gcs(tmp_path_factory, monkeypatch):
    """The GCS emulator (in memory, buckets kest-runs and kest-models) with the loopback TLS proxy TensorFlow's own
    gs:// filesystem goes through; this process and every process it starts reach it (settings in os.environ)."""
    from tests.gcs_tls import TensorFlowGcs

    gcs = TensorFlowGcs(tmp_path_factory.mktemp("tls"))
    gcs.start()
    gcs.create_bucket("kest-models")
    for key, value in gcs.settings().items():
        monkeypatch.setenv(key, value)
    yield gcs
    gcs.stop()


# Fixtures that train a model: a test using one belongs to the slow tier (`make test-fast` leaves it out).
TRAINING_FIXTURES = {"iris_run"}


def pytest_collection_modifyitems(config, items):
    unmarked = [
        item.nodeid
        for item in items
        if TRAINING_FIXTURES & set(item.fixturenames) and not item.get_closest_marker("slow")
    ]
    if unmarked:
        raise pytest.UsageError(f"tests that train a model must be marked slow: {', '.join(unmarked)}")
