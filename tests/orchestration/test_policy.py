"""What a run's conf may point at (kest_tasks.orchestration.policy): paths it sets must resolve inside the roots the
deployment allows — symlinks, `..`, globs and look-alike buckets included — else configure fails in one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kest_tasks.core.config import ConfigError
from kest_tasks.orchestration import policy
from kest_tasks.orchestration.assets import bundled_config
from kest_tasks.orchestration.trigger_form import config_arguments
from tests.helpers import REPO, task_states


def test_inside_resolves_links_dots_globs_and_buckets(tmp_path):
    allowed = tmp_path / "allowed"
    (allowed / "data").mkdir(parents=True)
    (allowed / "escape").symlink_to("/etc")
    roots = [str(allowed), "gs://kest-data/team-a"]
    assert policy.inside(str(allowed / "data" / "x.csv"), roots)
    assert policy.inside(str(allowed / "data" / "*.csv"), roots) and policy.inside(str(allowed / "{SPAN}/x.csv"), roots)
    assert not policy.inside(str(allowed / "escape" / "passwd"), roots)  # a symlink out
    assert not policy.inside(str(allowed / ".." / "secret.csv"), roots)
    assert not policy.inside(str(tmp_path / "allowed-not" / "x.csv"), roots)  # a look-alike sibling
    assert not policy.inside("/etc/pass*", roots)
    assert policy.inside("gs://kest-data/team-a/2026/*.csv", roots)
    assert not policy.inside("gs://kest-data/team-ab/x.csv", roots) and not policy.inside("gs://kest-data/x", roots)
    assert not policy.inside("gs://kest-data/team-a/../team-b/x.csv", roots)


@pytest.fixture
def locked_down(tmp_path, monkeypatch):
    """A deployment that allows only its own data and artifact folders."""
    data, artifacts = tmp_path / "data", tmp_path / "artifacts"
    data.mkdir()
    monkeypatch.setenv(policy.DATA_ROOTS, str(data))
    monkeypatch.setenv(policy.ARTIFACT_ROOTS, str(artifacts))
    monkeypatch.setenv(policy.EXPORT_ROOTS, str(artifacts / "models"))
    monkeypatch.setenv(policy.CONFIG_ROOTS, str(bundled_config().parent))
    return data, artifacts


def _params(**overrides) -> dict:
    return {"config_path": str(bundled_config()), "overrides": overrides}


def test_run_conf_paths_outside_the_allowed_roots_are_refused(locked_down, tmp_path):
    data, artifacts = locked_down
    (data / "flowers.csv").write_text("a,b\n")
    config_arguments(_params(dataset={"path": str(data / "flowers.csv")}, artifact_root=str(artifacts)))
    refusals = {
        "dataset.path": _params(dataset={"path": "/etc/passwd"}),
        "dataset.schema_file": _params(dataset={"schema_file": "/root/schema.json"}),
        "artifact_root": _params(artifact_root=str(tmp_path / "elsewhere")),
        "export.root": _params(artifact_root=str(artifacts), export={"root": "gs://someone-elses-bucket/models"}),
    }
    for key, params in refusals.items():
        with pytest.raises(ConfigError) as raised:
            config_arguments(params)
        assert str(raised.value).startswith(f"{key}: ") and "is outside the folders a run's conf may use" in str(
            raised.value
        ), str(raised.value)
    with pytest.raises(ConfigError) as raised:
        config_arguments(_params(dataset={"path": "/etc/passwd"}))
    assert str(raised.value) == (
        f"dataset.path: '/etc/passwd' is outside the folders a run's conf may use ({data}); the deployment lists "
        "them in KEST_ALLOWED_DATA_ROOTS"
    )
    # Another config file: only from the allowed config folders (and read only then).
    with pytest.raises(ConfigError, match=r"^config_path: '/etc/passwd' is outside the folders"):
        config_arguments({"config_path": "/etc/passwd", "overrides": {}})


def test_paths_of_the_config_file_itself_are_the_deployers(locked_down):
    # The bundled config's dataset lies outside the locked-down data root: not from the run conf, so not checked.
    assert config_arguments(_params(trainer={"steps": 5}))[1] == {"trainer": {"steps": 5}}


def test_without_settings_the_project_folders_are_allowed(monkeypatch, tmp_path):
    for setting in (policy.CONFIG_ROOTS, policy.DATA_ROOTS, policy.ARTIFACT_ROOTS, policy.EXPORT_ROOTS):
        monkeypatch.delenv(setting, raising=False)
    monkeypatch.chdir(tmp_path)  # the default artifact_root is ./artifacts
    config_arguments(_params(artifact_root=str(tmp_path / "artifacts" / "team")))
    config_arguments(_params(dataset={"path": str(bundled_config().parent / "iris.csv")}))
    with pytest.raises(ConfigError, match=r"^artifact_root: '/srv' is outside"):
        config_arguments(_params(artifact_root="/srv"))
    assert os.path.realpath(policy.allowed_roots(policy.ARTIFACT_ROOTS)[0]) == str((tmp_path / "artifacts").resolve())


def test_a_forbidden_path_in_the_run_conf_fails_configure_and_nothing_runs(locked_down, airflow_db, capfd):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    dag = bag.get_dag("kest_pipeline")
    run = dag.test(run_conf={"overrides": {"dataset": {"path": "/etc/passwd", "delimiter": ":"}}})
    states = task_states(run)
    assert run.state == "failed" and states["configure"] == "failed"
    assert {state for task, state in states.items() if task != "configure"} <= {"upstream_failed", "skipped", None}
    output = "".join(capfd.readouterr())
    assert "dataset.path: '/etc/passwd' is outside the folders a run's conf may use" in output
    assert "root:x:0:0" not in output  # nothing of the file was read
    assert not Path(locked_down[1]).exists()
