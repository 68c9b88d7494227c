"""One file layer for local folders and gs:// (the GCS emulator over real HTTP): the same behaviour for both, and
one-line errors naming the URI."""

from __future__ import annotations

import os

import pytest

from kest_tasks.core import files
from kest_tasks.core.execution import run_once
from kest_tasks.core.layout import RESULT_FILE
from kest_tasks.core.results import StageResult
from tests.helpers import IRIS_CONFIG


class Counted(StageResult):
    count: int


@pytest.fixture(params=["local", "gs"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "root")
    request.getfixturevalue("gcs")
    return "gs://kest-models/root"


def test_whole_files_and_the_if_absent_precondition(root):
    uri = files.join(root, "a", "b.json")
    assert not files.exists(uri)
    with pytest.raises(files.StorageNotFound, match=f"^{uri}: not found$"):
        files.read_bytes(uri)
    assert files.write_json(uri, {"n": 1}, if_absent=True)
    assert not files.write_json(uri, {"n": 2}, if_absent=True)  # the generation-0 precondition holds
    assert files.read_json(uri) == {"n": 1}
    files.write_json(uri, {"n": 3})
    assert files.read_json(uri) == {"n": 3} and files.exists(uri)


def test_streams_listing_globs_and_removal(root):
    big = os.urandom(files.TRANSFER_CHUNK + 12345)  # more than one resumable-upload chunk / ranged read
    with files.open_write(files.join(root, "data", "part.bin")) as out:
        for start in range(0, len(big), 1 << 20):
            out.write(big[start : start + (1 << 20)])
    with files.open_read(files.join(root, "data", "part.bin")) as stream:
        assert stream.read(10) == big[:10]
        stream.seek(files.TRANSFER_CHUNK - 5)
        assert stream.read(10) == big[files.TRANSFER_CHUNK - 5 : files.TRANSFER_CHUNK + 5]
        stream.seek(0)
        assert stream.read() == big
    for name in ("x-1.csv", "x-2.csv", "sub/x-3.csv", "y-1.csv"):
        files.write_bytes(files.join(root, "data", name), b"a\n")
    files.rename(files.join(root, "data", "y-1.csv"), files.join(root, "data", "z-1.csv"))
    assert files.list_files(files.join(root, "data")) == ["part.bin", "sub/x-3.csv", "x-1.csv", "x-2.csv", "z-1.csv"]
    assert files.glob(files.join(root, "data", "x-*.csv")) == [files.join(root, "data", f"x-{i}.csv") for i in (1, 2)]
    assert files.glob(files.join(root, "data", "*", "x-[3].csv")) == [files.join(root, "data", "sub", "x-3.csv")]
    files.remove_tree(files.join(root, "data"))
    assert files.list_files(files.join(root, "data")) == [] and files.glob(files.join(root, "data", "*")) == []


def test_a_stage_output_is_trusted_only_with_its_marker(root):
    run = files.join(root, "run")
    folder = files.join(run, "prepare")
    calls = []

    def failing(work, out):
        files.write_bytes(files.join(out, "shard-0"), b"half")
        raise RuntimeError("killed mid-stage")

    with pytest.raises(RuntimeError):
        run_once(run, "prepare", Counted, failing)
    assert files.list_files(folder) == []  # a failed attempt removes what it wrote

    files.write_bytes(files.join(folder, "shard-9"), b"left by a killed attempt")

    def produce(work, out):
        calls.append(out)
        files.write_bytes(files.join(out, "shard-0"), b"whole")
        (work / "small.txt").write_text("moved in after produce")
        return Counted(count=len(calls))

    assert run_once(run, "prepare", Counted, produce).count == 1
    assert files.list_files(folder) == [RESULT_FILE, "shard-0", "small.txt"]  # the leftover is gone
    assert run_once(run, "prepare", Counted, produce).count == 1 and len(calls) == 1  # reused, not redone


def test_gcs_errors_are_one_line_naming_the_uri(gcs, monkeypatch):
    with pytest.raises(files.StorageNotFound, match=r"^gs://no-such-bucket: bucket not found \(create it, or fix"):
        files.read_bytes("gs://no-such-bucket/runs/x/config.json")
    monkeypatch.setenv(files.RETRY_SECONDS_ENV, "1")
    gcs.pause()
    try:
        with pytest.raises(files.StorageError) as raised:
            files.write_bytes("gs://kest-models/runs/x/config.json", b"{}")
    finally:
        gcs.resume()
    message = str(raised.value)
    assert raised.value.retryable and "\n" not in message
    assert message.startswith("gs://kest-models/runs/x/config.json: storage unavailable for 1 s of retries (")
    files.write_bytes("gs://kest-models/runs/x/config.json", b"{}")  # back: the same call succeeds


def test_config_refuses_other_schemes_and_malformed_bucket_uris():
    from kest_tasks.core.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"^artifact_root: s3:// is not supported; use a local path or gs://"):
        load_config(IRIS_CONFIG, {"artifact_root": "s3://bucket/runs"})
    with pytest.raises(ConfigError, match=r"^export.root: 'gs://Bad_Bucket/x' is not a gs://bucket/path URI$"):
        load_config(IRIS_CONFIG, {"export": {"root": "gs://Bad_Bucket/x"}})
    config = load_config(IRIS_CONFIG, {"artifact_root": "gs://kest-runs/team/", "dataset": {"path": "file:///d.csv"}})
    assert config.artifact_root == "gs://kest-runs/team" and config.export.root == "gs://kest-runs/team/models"
    assert config.dataset.path == "/d.csv"


def test_a_discarded_upload_never_becomes_an_object(gcs):
    import gc

    uri = "gs://kest-models/root/.train-00000.part"
    stream = files.open_write(uri)
    stream.write(os.urandom(files.TRANSFER_CHUNK + 1))  # the first chunk is already uploaded
    stream.discard()  # type: ignore[attr-defined]
    del stream
    gc.collect()
    assert not files.exists(uri) and files.list_files("gs://kest-models/root") == []


def test_missing_credentials_are_one_line_naming_the_uri(monkeypatch, tmp_path):
    """Real google-auth, no emulator: credentials that point nowhere fail before any request is sent."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "kest-credentials-test")
    with pytest.raises(files.StorageError) as raised:
        files.exists("gs://kest-runs/runs/r1/config.json")
    assert str(raised.value) == (
        "gs://kest-runs/runs/r1/config.json: no usable Google credentials (DefaultCredentialsError); set "
        "GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`"
    )
    assert not raised.value.retryable


def test_permission_errors_never_carry_query_strings_or_tokens():
    from google.api_core import exceptions

    denied = exceptions.Forbidden(
        "POST https://storage.googleapis.com/upload/storage/v1/b/kest/o?uploadType=resumable&upload_id=SECRET123: "
        "kest@project.iam.gserviceaccount.com does not have storage.objects.create access"
    )
    error = files.translate_gcs_error("gs://kest/runs/r1/config.json", denied)
    assert isinstance(error, files.StorageError) and not error.retryable
    assert str(error).startswith("gs://kest/runs/r1/config.json: permission denied (403 POST https://storage")
    assert "SECRET123" not in str(error) and "uploadType" not in str(error) and "\n" not in str(error)
