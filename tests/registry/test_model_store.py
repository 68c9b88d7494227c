"""Object stores: the local folder and GCS (a real HTTP emulator), their compare-and-swap and whole-tree publish,
and publishing to GCS end to end: champion CAS between concurrent publishers, an emulator stopped mid-upload,
idempotent re-publish."""

import shutil
import threading
from pathlib import Path

import pytest

from kest_tasks.core import stages
from kest_tasks.core.config import load_config
from kest_tasks.registry.model_store import GcsStore, LocalStore, StoreError, open_store
from kest_tasks.registry.publish import PublishError, claim_champion, publish
from kest_tasks.serving.infra_validation import query_in_fresh_process
from tests.helpers import IRIS_CONFIG, iris_overrides


def _stores(tmp_path, gcs) -> list:
    return [LocalStore(str(tmp_path / "local")), GcsStore(f"gs://{gcs.bucket}/cas", retry_seconds=5)]


def test_compare_and_swap_on_both_stores(tmp_path, gcs):
    for store in _stores(tmp_path, gcs):
        assert store.read_json("m/champion.json") == (None, None)
        assert store.put_json("m/champion.json", {"version": "a"}, if_token=None)
        assert not store.put_json("m/champion.json", {"version": "b"}, if_token=None), store  # exists already
        value, token = store.read_json("m/champion.json")
        assert value == {"version": "a"}
        assert store.put_json("m/champion.json", {"version": "c"}, if_token=token)
        assert not store.put_json("m/champion.json", {"version": "d"}, if_token=token), store  # stale token
        assert store.read_json("m/champion.json")[0] == {"version": "c"}


def test_stores_share_one_client_per_endpoint(gcs, monkeypatch):
    first, second = GcsStore(f"gs://{gcs.bucket}/a"), GcsStore(f"gs://{gcs.bucket}/b")
    assert first.bucket.client is second.bucket.client
    second.put_json("x.json", {"n": 1}, if_token=None)
    assert second.read_json("x.json")[0] == {"n": 1} and first.read_json("x.json")[0] is None  # own prefixes
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # another endpoint: another client
    assert GcsStore(f"gs://{gcs.bucket}/a").bucket.client is not first.bucket.client


def test_two_claims_from_the_same_champion_cannot_both_win(tmp_path, gcs):
    for store in _stores(tmp_path, gcs):
        store.put_json("m/champion.json", {"version": "old"}, if_token=None)
        outcomes: list[tuple[bool, str]] = []

        def claim(version, store=store, outcomes=outcomes):
            outcomes.append(claim_champion(store, "m", {"version": version}, expected="old"))

        threads = [threading.Thread(target=claim, args=(version,)) for version in ("v1", "v2")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(won for won, _ in outcomes) == [False, True], outcomes
        winner = store.read_json("m/champion.json")[0]["version"]
        assert store.exists(f"m/champions/{winner}.json")
        assert not store.exists(f"m/champions/{({'v1', 'v2'} - {winner}).pop()}.json")


def test_unsupported_scheme(tmp_path):
    with pytest.raises(StoreError, match=r"export.root 's3://b/x': only local paths and gs:// are supported"):
        open_store("s3://b/x")


def _results(iris_run, run_uri=None):
    run = Path(iris_run["summary"]["run_uri"])
    exported = stages.EXPORT.load(str(run))
    blessing = stages.GATE.load(str(run))
    evaluated = stages.EVALUATE.load(str(run))
    blessing = blessing.model_copy(update={"champion_version": None})  # what a first run's gate records
    return exported, blessing, evaluated, stages.REPORT.load(str(run))


def _gcs_config(tmp_path, gcs, retry_seconds=30.0):
    return load_config(
        IRIS_CONFIG,
        iris_overrides(tmp_path, export={"root": f"gs://{gcs.bucket}/prod", "gcs_retry_seconds": retry_seconds}),
    )


def _other_run(iris_run, name: str) -> str:
    """A copy of the session run's folder: another run id, so another version name."""
    run = Path(iris_run["summary"]["run_uri"])
    other = run.parent / name
    shutil.copytree(run, other, dirs_exist_ok=True)
    return str(other)


@pytest.mark.slow
def test_publish_to_gcs_then_load_the_model_back(tmp_path, gcs, iris_run):
    config = _gcs_config(tmp_path, gcs)
    run_uri = _other_run(iris_run, "gcs-publish")
    exported, blessing, evaluated, reported = _results(iris_run)
    result = publish(config, run_uri, exported, blessing, evaluated, reported)
    assert result.champion and result.model_uri == f"gs://{gcs.bucket}/prod/iris/{result.version}"
    store = open_store(config.export.root)
    assert isinstance(store, GcsStore)
    champion = store.read_json("iris/champion.json")[0]
    assert champion["model_uri"] == result.model_uri and champion["version"] == result.version
    local_files = sorted(
        p.relative_to(exported.saved_model_uri).as_posix()
        for p in Path(exported.saved_model_uri).rglob("*")
        if p.is_file()
    )
    published = sorted(name for name in store._objects(f"iris/{result.version}"))
    assert published == sorted(local_files + ["kest_publish.json", "report.html", "schema.json", "stats.json"])
    assert not store._objects("iris/.staging")  # staging objects are removed after promotion
    # a retry: same version, nothing rewritten
    again = publish(config, run_uri, exported, blessing, evaluated, reported)
    assert again == result
    downloaded = store.local_copy(f"iris/{result.version}", tmp_path / "download")
    rows = {"sepal_length": [5.1], "sepal_width": [3.5], "petal_length": [1.4], "petal_width": [0.2]}
    answer = query_in_fresh_process(downloaded, rows)
    assert answer["outputs"]["serving_default"]["classes"] == ["setosa"]


@pytest.mark.slow
def test_concurrent_publishers_one_champion_no_data_lost(tmp_path, gcs, iris_run):
    config = _gcs_config(tmp_path, gcs)
    exported, blessing, evaluated, reported = _results(iris_run)
    runs = [_other_run(iris_run, f"concurrent-{index}") for index in range(2)]
    results, errors = [], []

    def run_publish(run_uri):
        try:
            results.append(publish(config, run_uri, exported, blessing, evaluated, reported))
        except Exception as error:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run_publish, args=(run_uri,)) for run_uri in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 2
    assert sorted(r.champion for r in results) == [False, True]
    store = open_store(config.export.root)
    for result in results:  # both versions are there, whole
        assert store.exists(f"iris/{result.version}/saved_model.pb")
    (winner,) = [r for r in results if r.champion]
    (loser,) = [r for r in results if not r.champion]
    assert store.read_json("iris/champion.json")[0]["version"] == winner.version
    assert "champion" in loser.champion_note


@pytest.mark.slow
def test_emulator_stopped_mid_upload(tmp_path, gcs, iris_run, monkeypatch):
    from google.cloud.storage import blob as blob_module

    config = _gcs_config(tmp_path, gcs, retry_seconds=2.0)
    store = open_store(config.export.root)
    store.put_json("iris/champion.json", {"version": "earlier", "model_uri": "gs://x"}, if_token=None)
    exported, blessing, evaluated, reported = _results(iris_run)
    blessing = blessing.model_copy(update={"champion_version": "earlier"})
    run_uri = _other_run(iris_run, "cut-off")
    upload = blob_module.Blob.upload_from_filename
    uploads = []

    def upload_then_stop(self, *args, **kwargs):
        upload(self, *args, **kwargs)
        uploads.append(self.name)
        if len(uploads) == 2:
            gcs.stop()

    monkeypatch.setattr(blob_module.Blob, "upload_from_filename", upload_then_stop)
    with pytest.raises(PublishError) as failure:
        publish(config, run_uri, exported, blessing, evaluated, reported)
    message = str(failure.value)
    assert message.startswith("publishing iris ") and "gs://kest-models/prod/iris/" in message
    assert "\n" not in message and "?" not in message  # one line, no query strings (upload ids)
    monkeypatch.setattr(blob_module.Blob, "upload_from_filename", upload)

    gcs.start()  # the same data folder: what was written before the stop is still there
    version = Path(message.split()[2]).name
    assert not store.exists(f"iris/{version}/saved_model.pb")  # no partial version visible
    assert store.read_json("iris/champion.json")[0]["version"] == "earlier"  # champion untouched
    result = publish(config, run_uri, exported, blessing, evaluated, reported)  # the task's retry succeeds
    assert result.version == version and result.champion
    assert store.exists(f"iris/{version}/saved_model.pb")
