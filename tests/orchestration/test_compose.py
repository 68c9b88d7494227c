"""No Docker engine runs here: the dev stack is checked statically (parsed, every service, volume, variable and
profile it must have; the image's requirements are the repo's)."""

import re

import yaml

from tests.helpers import REPO

AIRFLOW_SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer", "airflow-worker", "airflow-worker-gpu")


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_compose_has_every_service_and_mount():
    compose = _compose()
    services = compose["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "fake-gcs",
        "airflow-init",
        "tensorboard",
        "artifacts-browser",
        *AIRFLOW_SERVICES,
    }
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["build"] == "." and service["image"] == "kest-airflow:dev"
        mounts = {volume.split(":")[1] for volume in service["volumes"]}
        assert {"/opt/kest/dags", "/opt/kest/plugins", "/opt/kest/artifacts"} <= mounts
        # The image installs kest (not editable): the bundled config and its data come with the package, and its
        # default artifact root, ./artifacts in the working directory, is the shared volume.
        assert service["working_dir"] == "/opt/kest" and "KEST_CONFIG" not in service["environment"]
        environment = service["environment"]
        assert environment["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/kest/dags"
        assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert environment["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
        assert environment["STORAGE_EMULATOR_HOST"] == "http://fake-gcs:4443"
        assert environment["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/kest/plugins"
        assert environment["KEST_TENSORBOARD_URL"].startswith("${KEST_TENSORBOARD_URL:-http://")
        assert environment["KEST_FILES_ROOT"] == "/opt/kest/artifacts" and "KEST_FILES_URL" in environment
        assert {"postgres", "redis", "airflow-init"} <= set(service["depends_on"])
    assert set(compose["volumes"]) == {"postgres-db", "artifacts", "gcs-data"}


def test_celery_workers_and_the_gpu_profile():
    services = _compose()["services"]
    assert services["airflow-worker"]["command"] == "celery worker --queues default"
    assert "profiles" not in services["airflow-worker"]
    gpu = services["airflow-worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and "--queues gpu" in gpu["command"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    # The DAG reads the train task's queue from the environment; .env switches it to the GPU worker's.
    assert services["dag-processor"]["environment"]["KEST_TRAIN_QUEUE"] == "${KEST_TRAIN_QUEUE:-default}"


def test_object_store_and_tensorboard():
    services = _compose()["services"]
    fake_gcs = services["fake-gcs"]
    assert fake_gcs["image"].startswith("fsouza/fake-gcs-server:") and "4443:4443" in fake_gcs["ports"]
    assert "kest-models" in " ".join(fake_gcs["entrypoint"])
    tensorboard = services["tensorboard"]
    assert "artifacts:/opt/kest/artifacts:ro" in tensorboard["volumes"] and "6006:6006" in tensorboard["ports"]
    assert tensorboard["command"][:3] == ["tensorboard", "--logdir", "/opt/kest/artifacts/runs"]
    browser = services["artifacts-browser"]  # the target of the UI's links to local folders
    assert "artifacts:/opt/kest/artifacts:ro" in browser["volumes"] and "8081:8000" in browser["ports"]
    assert browser["command"][-2:] == ["--directory", "/opt/kest/artifacts"]


def test_secrets_come_from_env_and_example_has_every_variable():
    text = (REPO / "docker-compose.yaml").read_text()
    used = set(re.findall(r"\$\{(\w+)", text))
    example = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert {"POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "KEST_TRAIN_QUEUE"} <= used <= set(example)
    assert all(
        value in ("change-me", "") or not re.search(r"(?i)secret|password|key", name) for name, value in example.items()
    )
    assert "password" not in text.lower().replace("postgres_password", "")
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in ignored


def test_image_installs_the_pinned_requirements():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM apache/airflow:3.3.2-python3.11" in dockerfile
    assert "-r /opt/kest/requirements.txt -c /opt/kest/constraints.txt" in dockerfile
    requirements = (REPO / "requirements.txt").read_text()
    assert "apache-airflow==3.3.2" in requirements and "tensorflow==2.15.1" in requirements
