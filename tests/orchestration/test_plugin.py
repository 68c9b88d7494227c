"""The kest Airflow plugin as Airflow loads it: extra links and macros."""

from __future__ import annotations

from kest_tasks.core import layout
from kest_tasks.orchestration.links import browse_url, tensorboard_url
from tests.helpers import IRIS_CONFIG, iris_overrides


def test_airflow_loads_the_plugin_from_the_plugins_folder(airflow_db):
    from airflow import plugins_manager

    plugins = {plugin["name"]: plugin for plugin in plugins_manager.get_plugin_info()}
    assert "kest" in plugins, sorted(plugins)
    assert plugins["kest"]["macros"] and "run_folder" in str(plugins["kest"]["macros"])
    names = {link.name for link in plugins_manager.get_operator_extra_links()}
    assert {"TensorBoard", "Model dir", "Published model"} <= names


def test_macros_are_rendered_in_templates(airflow_db, tmp_path):
    from airflow.sdk import macros
    from airflow.sdk.plugins_manager import integrate_macros_plugins

    integrate_macros_plugins()
    kest = macros.kest  # type: ignore[attr-defined]  # added by the plugin at run time
    params = {"config_path": str(IRIS_CONFIG), "overrides": iris_overrides(tmp_path), "trainer__steps": 7}
    assert kest.run_folder(params, "manual__2026-01-01T00:00:00+00:00") == str(
        tmp_path / "artifacts" / layout.RUNS_FOLDER / "manual__2026-01-01T00_00_00_00_00"
    )
    assert kest.export_root(params) == str(tmp_path / "models")
    # A bad config renders empty: the configure task then fails with the one-line reason.
    assert kest.run_folder({**params, "overrides": {"trainer": {"stepz": 1}}}, "r") == ""


def test_link_urls():
    assert (
        browse_url("gs://kest-models/iris/2026-a")
        == "https://console.cloud.google.com/storage/browser/kest-models/iris/2026-a"
    )
    assert browse_url("/srv/models/iris/v1") == "file:///srv/models/iris/v1"
    # Under a file server's root: an http link the UI shows.
    assert browse_url("/opt/kest/artifacts/models/iris/v 1", "http://localhost:8081/", "/opt/kest/artifacts") == (
        "http://localhost:8081/models/iris/v%201/"
    )
    assert browse_url("/srv/models/iris/v1", "http://localhost:8081", "/opt/kest/artifacts") == (
        "file:///srv/models/iris/v1"
    )
    assert tensorboard_url("manual__2026-01-01T00_00_00_00_00", "http://tb:6006/") == (
        "http://tb:6006/?runFilter=manual__2026-01-01T00_00_00_00_00#timeseries"
    )
    assert tensorboard_url("a b") == "http://localhost:6006/?runFilter=a%20b#timeseries"
