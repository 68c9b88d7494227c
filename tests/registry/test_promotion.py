"""Promotion and rollback in the model store (local folder and gs://): `champion set` by compare-and-swap, every
champion change in the history, one line for a version that cannot be champion; the CLI's `champion show|set`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kest_tasks.core import layout
from kest_tasks.core.config import load_config
from kest_tasks.registry.champion import store_for
from kest_tasks.registry.promotion import PromotionError, champion_history, published_versions, set_champion
from kest_tasks.registry.publish import claim_champion
from tests.helpers import IRIS_CONFIG, publish_version


def _publish(config, scratch: Path, version: str, accuracy: float, expected: str | None) -> None:
    publish_version(config, scratch, version, {"accuracy": accuracy}, expected)


@pytest.fixture(params=["local", "gs"])
def store_config(request, tmp_path):
    root = str(tmp_path / "models") if request.param == "local" else "gs://kest-models/promotion"
    if request.param == "gs":
        request.getfixturevalue("tf_gcs")
    return load_config(IRIS_CONFIG, {"artifact_root": str(tmp_path / "artifacts"), "export": {"root": root}})


def test_promote_and_roll_back_with_the_reason_in_the_history(store_config, tmp_path):
    _publish(store_config, tmp_path, "20261101T000000Z-aaaaaaaa", 0.90, None)
    _publish(store_config, tmp_path, "20261102T000000Z-bbbbbbbb", 0.95, "20261101T000000Z-aaaaaaaa")
    assert [v["version"] for v in published_versions(store_config)] == [
        "20261101T000000Z-aaaaaaaa",
        "20261102T000000Z-bbbbbbbb",
    ]

    event = set_champion(store_config, "20261101T000000Z-aaaaaaaa", "b misroutes EU traffic", "ana")
    assert event["changed"] and event["previous"] == "20261102T000000Z-bbbbbbbb"
    store = store_for(store_config)
    champion = store.read_json(layout.champion_key("iris"))[0]
    assert champion["version"] == "20261101T000000Z-aaaaaaaa" and champion["metrics"] == {"accuracy": 0.90}
    assert champion["promoted_by"] == "ana" and champion["reason"] == "b misroutes EU traffic"
    history = champion_history(store_config)
    assert [(e["previous"], e["version"], e["by"], e["reason"]) for e in history] == [
        (None, "20261101T000000Z-aaaaaaaa", "publish of run /runs/20261101T000000Z-aaaaaaaa", "blessed by the gate"),
        (
            "20261101T000000Z-aaaaaaaa",
            "20261102T000000Z-bbbbbbbb",
            "publish of run /runs/20261102T000000Z-bbbbbbbb",
            "blessed by the gate",
        ),
        ("20261102T000000Z-bbbbbbbb", "20261101T000000Z-aaaaaaaa", "ana", "b misroutes EU traffic"),
    ]
    # The champion again: nothing changes, nothing is recorded.
    assert not set_champion(store_config, "20261101T000000Z-aaaaaaaa", "again", "ana")["changed"]
    assert len(champion_history(store_config)) == 3
    # Publish still never moves the pointer back by itself: the rolled-back version stays out.
    pointer = {"version": "20261102T000000Z-bbbbbbbb", "run_uri": "/runs/b"}
    assert claim_champion(store, "iris", pointer, "20261101T000000Z-aaaaaaaa")[0] is False


def test_a_version_that_cannot_be_champion_is_one_line(store_config, tmp_path):
    _publish(store_config, tmp_path, "20261101T000000Z-aaaaaaaa", 0.90, None)
    store = store_for(store_config)
    with pytest.raises(PromotionError) as caught:
        set_champion(store_config, "nope", "why not", "ana")
    assert str(caught.value) == (
        f"iris has no published version 'nope' in {store.uri('iris')} (published: 20261101T000000Z-aaaaaaaa)"
    )
    with pytest.raises(PromotionError) as caught:
        set_champion(store_config, "20261101T000000Z-aaaaaaaa", "  ", "ana")
    assert str(caught.value) == (
        "iris 20261101T000000Z-aaaaaaaa: give a reason (--reason TEXT); it is kept in the champion history"
    )
    # A version whose files are there but whose saved_model.pb never arrived was not published whole.
    store.put_json(f"iris/20261103T000000Z-cccccccc/{layout.PUBLISH_RECORD}", {"run_uri": "/runs/c"}, if_token=None)
    with pytest.raises(PromotionError) as caught:
        set_champion(store_config, "20261103T000000Z-cccccccc", "try", "ana")
    assert str(caught.value) == (
        f"{store.uri('iris/20261103T000000Z-cccccccc')}: incomplete (no saved_model.pb); it was never published whole"
    )
    assert store.read_json(layout.champion_key("iris"))[0]["version"] == "20261101T000000Z-aaaaaaaa"


def test_the_cli_shows_and_sets_the_champion(tmp_path):
    config = load_config(IRIS_CONFIG, {"export": {"root": str(tmp_path / "models")}})
    _publish(config, tmp_path, "20261101T000000Z-aaaaaaaa", 0.90, None)
    _publish(config, tmp_path, "20261102T000000Z-bbbbbbbb", 0.95, "20261101T000000Z-aaaaaaaa")
    root = ["--set", f"export.root={tmp_path / 'models'}"]

    def cli(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "kest_tasks", "champion", *arguments, *root],
            capture_output=True,
            text=True,
            env={**os.environ, "LOGNAME": "ana", "USER": "ana"},  # who promotes, as getpass sees it
        )

    done = cli("set", "iris", "20261101T000000Z-aaaaaaaa", "--reason", "roll back")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["previous"] == "20261102T000000Z-bbbbbbbb"
    shown = cli("show", "iris").stdout.splitlines()
    assert shown[0] == f"iris in {tmp_path / 'models' / 'iris'}: champion 20261101T000000Z-aaaaaaaa"
    assert shown[2].startswith(" * 20261101T000000Z-aaaaaaaa  accuracy 0.9  (/runs/20261101T000000Z-aaaaaaaa)")
    assert shown[3].startswith("   20261102T000000Z-bbbbbbbb  accuracy 0.95")
    assert shown[-1].endswith("20261102T000000Z-bbbbbbbb → 20261101T000000Z-aaaaaaaa  by ana (command line): roll back")
    refused = cli("set", "iris", "20261109T000000Z-zzzzzzzz", "--reason", "x")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .startswith("kest: error: iris has no published version '20261109T000000Z-zzzzzzzz'")
    )


def _champion_events(model: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == f"kest://{model}")  # (the stored URI is normalised to kest://<model>/)
            .all()
        )
        return [dict(event.extra) for event in events]


def test_the_promote_dag_rolls_back_and_announces_it_on_the_model_asset(airflow_db, tmp_path):
    """kest_promote from its form: the rollback happens, the history says which run did it and why, the model's
    Asset gets an event (what kest_model_consumer is scheduled on); a bad version fails the task in one line."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.helpers import REPO, task_states

    bag = DagBag(dag_folder=str(REPO / "dags" / "kest_promote.py"))
    assert bag.import_errors == {}
    dag = bag.get_dag("kest_promote")
    config = load_config(IRIS_CONFIG, {"export": {"root": str(tmp_path / "models")}})
    _publish(config, tmp_path, "20261101T000000Z-aaaaaaaa", 0.90, None)
    _publish(config, tmp_path, "20261102T000000Z-bbbbbbbb", 0.95, "20261101T000000Z-aaaaaaaa")
    conf = {"overrides": {"export": {"root": str(tmp_path / "models")}}, "model": "iris"}

    run = dag.test(run_conf={**conf, "version": "20261101T000000Z-aaaaaaaa", "reason": "b misroutes EU traffic"})
    assert run.state == "success", task_states(run)
    assert store_for(config).read_json(layout.champion_key("iris"))[0]["version"] == "20261101T000000Z-aaaaaaaa"
    last = champion_history(config)[-1]
    assert last["by"] == f"{run.triggering_user_name} via kest_promote run {run.run_id}"  # who triggered, which run
    assert last["reason"] == "b misroutes EU traffic"
    assert {
        "version": "20261101T000000Z-aaaaaaaa",
        "model_uri": str(tmp_path / "models" / "iris" / "20261101T000000Z-aaaaaaaa"),
        "previous": "20261102T000000Z-bbbbbbbb",
        "reason": "b misroutes EU traffic",
        "champion": True,
    } in _champion_events("iris")  # what the example consumer logs: the model's URI, its version, champion

    refused = dag.test(run_conf={**conf, "version": "20261109T000000Z-zzzzzzzz", "reason": "x"})
    assert refused.state == "failed" and task_states(refused) == {"promote": "failed"}
    assert len(champion_history(config)) == 3
