"""The Models page's data and HTML (the api-server renders them; the plugin's routes and auth are tested against a
real Airflow in tests/orchestration/test_airflow_server.py): the catalog of a model store, local and gs://."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from kest_tasks.core.config import load_config
from kest_tasks.registry import catalog
from kest_tasks.registry.champion import store_for
from kest_tasks.registry.promotion import set_champion
from kest_tasks.reporting import models_page
from tests.helpers import IRIS_CONFIG, publish_version

OLD, NEW = "20261101T000000Z-aaaaaaaa", "20261102T080910Z-bbbbbbbb"


@pytest.fixture(params=["local", "gs"])
def store_config(request, tmp_path):
    root = str(tmp_path / "models") if request.param == "local" else "gs://kest-models/catalog"
    if request.param == "gs":
        request.getfixturevalue("tf_gcs")
    config = load_config(IRIS_CONFIG, {"artifact_root": str(tmp_path / "artifacts"), "export": {"root": root}})
    drift = [{"feature": "petal_length", "statistic": "jensen_shannon", "distance": 0.31, "threshold": 0.1}]
    publish_version(config, tmp_path, OLD, {"accuracy": 0.9, "loss": 0.3}, None, trainer="keras", drift=[])
    publish_version(
        config, tmp_path, NEW, {"accuracy": 0.96, "loss": 0.2}, OLD, trainer="native", latency_ms_p50=1.5, drift=drift
    )
    # Not listed: a version whose copy never finished, and a folder that is no model.
    store = store_for(config)
    store.put_json("iris/20261103T000000Z-cccccccc/kest_publish.json", {"run_uri": "/runs/c"}, if_token=None)
    store.put_json("scratch/notes.json", {}, if_token=None)
    return config


def test_the_catalog_lists_whole_versions_champion_and_history(store_config):
    store = store_for(store_config)
    assert catalog.model_names(store) == ["iris"]
    assert [v["version"] for v in catalog.versions(store, "iris")] == [OLD, NEW]
    assert (catalog.champion(store, "iris") or {}).get("version") == NEW
    assert [(e["previous"], e["version"]) for e in catalog.history(store, "iris")] == [(None, OLD), (OLD, NEW)]
    assert catalog.published_at(NEW) == "2026-11-02T08:09:10+00:00" and catalog.published_at("x") == ""
    with pytest.raises(catalog.CatalogError, match=f"iris has no published version 'nope' in .* \\(published: {OLD}"):
        catalog.find_version(store, "iris", "nope")
    with pytest.raises(catalog.CatalogError, match="^no model 'cat' in "):
        catalog.find_version(store, "cat", OLD)
    with pytest.raises(catalog.CatalogError, match="^model '../iris' is not a safe name"):
        catalog.find_version(store, "../iris", OLD)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)

    def handle_data(self, data) -> None:
        self.text.append(data)


def test_the_model_page_shows_versions_plot_drift_and_history(store_config):
    set_champion(store_config, OLD, "<script>alert(1)</script> rollback", "ana")
    view = models_page.model_view(store_for(store_config), "iris", ["accuracy"])
    assert view["metric"] == "accuracy" and view["champion"] == OLD
    view["versions"][0]["links"] = {"report": f"iris/{OLD}/report", "promote": f"iris/{OLD}/promote"}
    view["versions"][1]["links"] = {"report": f"iris/{NEW}/report", "promote": f"iris/{NEW}/promote"}
    page = models_page.model_html(view, can_promote=True, back="../")
    parsed = _Text()
    parsed.feed(page)
    text = " ".join(" ".join(parsed.text).split())
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; rollback" in page
    assert f"Champion: {OLD}" in text
    assert f"{NEW} 2026-11-02T08:09:10+00:00" in text and "native 0.96 0.2 yes 1.5 / —" in text
    assert "petal_length jensen_shannon 0.31 > 0.1" in text  # the drift of the data it learned from
    assert f"{NEW} → {OLD} ana" in text and f"{OLD} → {NEW} publish of run /runs/{NEW} blessed by the gate" in text
    # Newest first; the champion is marked instead of offered; the others can be promoted.
    rows = re.findall(r"<tr( class='champion')?><td>(\d{8}T\d{6}Z-\w+)</td>", page)
    assert rows == [("", NEW), (" class='champion'", OLD)]
    assert f"href='iris/{NEW}/promote'" in page and f"href='iris/{OLD}/promote'" not in page
    # The plot: one point per version, the champion's larger.
    circles = re.findall(r"<circle cx='[\d.]+' cy='([\d.]+)' r='([\d.]+)'", page)
    assert [radius for _, radius in circles] == ["6", "3.5"] and float(circles[0][0]) > float(circles[1][0])
    assert "make champion" not in models_page.model_html(view, can_promote=False)


def test_the_list_and_the_confirmation(store_config):
    store = store_for(store_config)
    summary = {**models_page.model_summary(store, "iris"), "link": "0/iris"}
    assert summary["champion"] == NEW and summary["versions"] == 2
    page = models_page.list_html(
        [{"root": store.root, "models": [summary]}, {"root": "gs://other", "models": [], "error": "cannot read it"}]
    )
    assert "<a href='0/iris'>iris</a>" in page and "cannot read it" in page
    view = models_page.model_view(store, "iris")
    confirm = models_page.confirm_html(view, view["versions"][0], "promote", "../../iris")
    assert f"The champion is now <strong>{NEW}</strong>; it becomes <strong>{OLD}</strong>" in confirm
    assert "<input id='reason' name='reason' size='60' required>" in confirm
    with pytest.raises(catalog.CatalogError, match="no model 'dog'"):
        models_page.model_view(store, "dog")


def test_the_versions_table_shows_the_key_metrics():
    every = {"accuracy": 1, "auc": 1, "f1_macro": 1, "loss": 0.3, "precision_macro": 1, "recall_macro": 1, "a/b": 1}
    assert models_page.key_metrics([every], ["accuracy"]) == ["accuracy", "loss", "auc", "f1_macro"]
    assert models_page.key_metrics([{"rmse": 1.0, "zeta": 2.0}], ["r2"]) == ["rmse", "zeta"]
