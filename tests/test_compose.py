"""No Docker engine runs here: the dev stack is checked statically."""
import re

import yaml

from tests.conftest import REPO


def test_compose_has_the_airflow_services_and_mounts():
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "airflow-init", "api-server", "scheduler", "dag-processor", "triggerer"} <= set(services)
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        service = services[name]
        assert service["build"] == "."
        mounts = {volume.split(":")[1] for volume in service["volumes"]}
        assert {"/opt/kest/dags", "/opt/kest/configs", "/opt/kest/data", "/opt/kest/artifacts"} <= mounts
        assert service["environment"]["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/kest/dags"
    assert set(compose["volumes"]) == {"postgres-db", "artifacts"}


def test_secrets_come_from_env_and_example_has_every_variable():
    text = (REPO / "docker-compose.yaml").read_text()
    used = set(re.findall(r"\$\{(\w+)", text))
    example = dict(
        line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert used <= set(example)
    assert "password" not in text.lower().replace("postgres_password", "")


def test_image_installs_the_pinned_requirements():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM apache/airflow:3.3.2-python3.11" in dockerfile
    assert "-r /opt/kest/requirements.txt -c /opt/kest/constraints.txt" in dockerfile
    requirements = (REPO / "requirements.txt").read_text()
    assert "apache-airflow==3.3.2" in requirements and "tensorflow==2.15.1" in requirements
