"""No Docker engine runs here: the dev stack is checked statically (parsed, every service, volume, variable and
profile it must have; the image's requirements are the repo's)."""

import os
import re
import subprocess
import sys

import pytest
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


def test_the_gcs_override_runs_every_task_on_the_fake_gcs_bucket():
    from kest_tasks.core.config import load_config

    override = yaml.safe_load((REPO / "docker-compose.gcs.yaml").read_text())
    services = override["services"]
    proxy = services["gcs-tls-proxy"]
    assert proxy["image"] == "kest-airflow:dev" and proxy["command"][:3] == ["python", "-m", "dev.gcs_tls_proxy"]
    assert "fake-gcs:4443" in proxy["command"] and "/tls" in proxy["command"]
    for name in ("api-server", "scheduler", "dag-processor", "triggerer", "airflow-worker"):
        environment = services[name]["environment"]
        assert (
            environment["https_proxy"] == "http://gcs-tls-proxy:8443" and environment["CURL_CA_BUNDLE"] == "/tls/ca.pem"
        )
        assert environment["KEST_STAGE_PROCESS"] == "fresh" and "fake-gcs" in environment["no_proxy"]
        assert "gcs-tls:/tls:ro" in services[name]["volumes"]
    config_path = environment["KEST_CONFIG"].replace("/opt/kest/", f"{REPO}/")
    config = load_config(config_path)
    assert config.artifact_root == "gs://kest-runs/dev" and config.export.root == "gs://kest-models/dev"
    assert config.dataset.path == str(REPO / "kest_tasks" / "configs" / "iris.csv")  # /opt/kest/... in the image
    assert "gs://kest-runs/dev/runs" in services["tensorboard"]["command"]
    assert "/data/kest-runs" in " ".join(_compose()["services"]["fake-gcs"]["entrypoint"])  # the bucket exists
    assert "COPY --chown=airflow:0 dev /opt/kest/dev" in (REPO / "Dockerfile").read_text()


@pytest.mark.slow
def test_the_dev_proxy_lets_tensorflow_write_to_the_emulator(tmp_path):
    """The gcs-tls-proxy service's program, started as the override starts it, in front of a real emulator."""
    from tests.gcs_emulator import Emulator, free_port
    from tests.gcs_tls import patch_emulator_for_tensorflow

    patch_emulator_for_tensorflow()
    emulator = Emulator(None, "kest-runs")
    emulator.start()
    port = free_port()
    proxy = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dev.gcs_tls_proxy",
            *("--upstream", f"127.0.0.1:{emulator.port}", "--listen", f"127.0.0.1:{port}", "--ca-dir", str(tmp_path)),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.stdout is not None and "CONNECT proxy on" in proxy.stdout.readline()
        probe = (
            "import tensorflow as tf\n"
            "with tf.io.gfile.GFile('gs://kest-runs/dev/probe.txt', 'w') as f: f.write('through the proxy')\n"
            "print(tf.io.gfile.GFile('gs://kest-runs/dev/probe.txt').read())\n"
        )
        environment = {
            **os.environ,
            "https_proxy": f"http://127.0.0.1:{port}",
            "CURL_CA_BUNDLE": str(tmp_path / "ca.pem"),
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "dev-token",
        }
        done = subprocess.run(
            [sys.executable, "-c", probe], env=environment, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip().endswith("through the proxy")
    finally:
        proxy.kill()
        proxy.wait()
        emulator.stop()


def test_the_kuberay_example_is_a_ray_cluster_with_a_gpu_worker_group():
    """examples/kuberay/raycluster.yaml (no Kubernetes here: checked statically): the Ray version kest pins, a head
    that does not train and serves the GCS port the docs point RAY_ADDRESS at, GPU workers on tainted GPU nodes."""
    manifest = yaml.safe_load((REPO / "examples" / "kuberay" / "raycluster.yaml").read_text())
    pinned = next(line for line in (REPO / "constraints.txt").read_text().splitlines() if line.startswith("ray=="))
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayCluster"
    spec = manifest["spec"]
    assert spec["rayVersion"] == pinned.split("==")[1]
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    (head_container,) = head["template"]["spec"]["containers"]
    assert {"containerPort": 6379, "name": "gcs"} in head_container["ports"]
    (gpu,) = spec["workerGroupSpecs"]
    (worker,) = gpu["template"]["spec"]["containers"]
    assert worker["image"] == head_container["image"]  # one image: kest, Ray and TensorFlow on every node
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == worker["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["template"]["spec"][
        "tolerations"
    ]
    assert gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    readme = (REPO / "README.md").read_text()
    assert "kind: RayCluster" in readme and 'nvidia.com/gpu: "1"' in readme
    assert "kest-ray-head-svc" in (REPO / "docs" / "ray.md").read_text()
