"""kest under a real Airflow: `airflow standalone` (scheduler, dag-processor, api-server, triggerer; LocalExecutor,
SQLite) on a free loopback port. Runs are triggered through REST v2 and through the UI's trigger form in headless
Chromium, and each must end with a published model."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kest_tasks.core import layout
from tests.airflow_server import USER, VIEWER, AirflowServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.server]

DAG = "kest_pipeline"
RUN_TIMEOUT = 900
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The runs' folders, served over HTTP like the dev stack's artifacts-browser: the UI shows only http(s) links."""
    root = tmp_path_factory.mktemp("kest-files")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield root, f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory, files):
    root, url = files
    # Both runs publish into one model store, which the Models page lists.
    env = {"KEST_FILES_ROOT": str(root), "KEST_FILES_URL": url, "KEST_MODEL_ROOTS": str(root / "models")}
    started = AirflowServer(tmp_path_factory.mktemp("airflow-standalone"), env).start()
    try:
        for dag_id in (DAG, "kest_model_consumer", "kest_promote", "kest_batch_score"):
            status, body = started.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            assert status == 200, body
        yield started
    finally:
        started.stop()


def _trigger(server: AirflowServer, conf: dict) -> tuple[int, dict]:
    # logical_date null: a manual run not tied to a data interval (Airflow 3 requires the key).
    return server.request("POST", f"/api/v2/dags/{DAG}/dagRuns", {"logical_date": None, "conf": conf})


def _summary(run_folder: str) -> dict:
    return json.loads((Path(run_folder) / layout.SUMMARY_FILE).read_text())


def test_invalid_params_are_refused_with_400_before_any_run(server):
    runs_before = server.request("GET", f"/api/v2/dags/{DAG}/dagRuns")[1]["total_entries"]
    refusals: list[tuple[dict, str]] = [
        ({"trainer__steps": 0}, "trainer__steps: 0 is less than the minimum of 1"),
        ({"trainer__kind": "xgboost"}, "trainer__kind"),
        ({"model__learning_rate": "fast"}, "model__learning_rate"),
    ]
    for conf, message in refusals:
        status, body = _trigger(server, conf)
        assert status == 400, (conf, status, body)
        assert message in body["detail"], body
    status, runs = server.request("GET", f"/api/v2/dags/{DAG}/dagRuns")
    assert status == 200 and runs["total_entries"] == runs_before


def test_a_run_conf_outside_the_deployment_policy_fails_configure_and_nothing_runs(server):
    """Through REST, as a triggerer would: a path outside the allowed roots and a code setting each fail the first
    task with the one-line reason (in its log), and no other task runs — for the pipeline, batch scoring and
    promotion alike."""
    refused = [
        (
            DAG,
            {"overrides": {"dataset": {"path": "/etc/passwd", "delimiter": ":"}}},
            "dataset.path: '/etc/passwd' is outside",
        ),
        (
            DAG,
            {"overrides": {"model": {"code_dir": "/tmp", "builder": "evil:build"}}},
            "model.code_dir, model.builder may not",
        ),
        ("kest_batch_score", {"input": "/etc/passwd"}, "input: '/etc/passwd' is outside"),
        (
            "kest_promote",
            {"version": "v1", "reason": "r", "overrides": {"export": {"root": "/etc"}}},
            "export.root: '/etc' is outside",
        ),
    ]
    for dag_id, conf, line in refused:
        status, triggered = server.request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf}
        )
        assert status == 200, triggered
        run_id = triggered["dag_run_id"]
        run = server.wait_for_run(dag_id, run_id, 300)
        first = {DAG: "configure", "kest_batch_score": "score", "kest_promote": "promote"}[dag_id]
        assert run["state"] == "failed" and run["task_states"][first] == "failed", run["task_states"]
        assert {s for t, s in run["task_states"].items() if t != first} <= {"upstream_failed", None}
        status, log = server.request(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{first}/logs/1?full_content=true"
        )
        text = json.dumps(log)
        assert status == 200 and line in text, text[-3000:]
        assert "root:x:0:0" not in text


def test_rest_triggered_run_publishes_the_model(server, files):
    work, files_url = files[0] / "rest", files[1]
    conf = {
        "overrides": {"artifact_root": str(work / "artifacts"), "export": {"root": str(files[0] / "models")}},
        "trainer__steps": 200,
    }
    status, triggered = _trigger(server, conf)
    assert status == 200, triggered
    run_id = triggered["dag_run_id"]
    run = server.wait_for_run(DAG, run_id, RUN_TIMEOUT)
    assert run["state"] == "success", (run["task_states"], server.tail())
    assert set(run["task_states"].values()) == {"success"}

    # The configure task's run folder came from the plugin's macro (its rendered template), and holds the run.
    status, configure = server.request("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/configure")
    run_folder = configure["rendered_fields"]["op_kwargs"]["run_folder"]
    assert Path(run_folder).parent == work / "artifacts" / layout.RUNS_FOLDER
    assert configure["rendered_fields"]["op_kwargs"]["export_root"] == str(files[0] / "models")
    summary = _summary(run_folder)
    assert json.loads((Path(run_folder) / layout.CONFIG_FILE).read_text())["trainer"]["steps"] == 200
    assert summary["blessed"] is True and summary["test_metrics"]["accuracy"] >= 0.9
    published = Path(summary["published_model"])
    assert published.parent == files[0] / "models" / "iris" and (published / layout.SAVED_MODEL_FILE).exists()
    champion = json.loads((published.parent / layout.CHAMPION_FILE).read_text())
    assert champion["model_uri"] == str(published)

    # The plugin's extra links, as the UI reads them.
    status, train_links = server.request("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/train/links")
    assert train_links["extra_links"] == {
        "TensorBoard": f"http://localhost:6006/?runFilter={Path(run_folder).name}#timeseries",
        "Model dir": f"{files_url}/rest/artifacts/runs/{Path(run_folder).name}/train/",
    }
    status, publish_links = server.request("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/publish/links")
    assert publish_links["extra_links"] == {"Published model": f"{files_url}/models/iris/{published.name}/"}

    # The Asset event made the scheduler run the example consumer, which received the model.
    def consumer_got_it() -> bool:
        status, runs = server.request("GET", "/api/v2/dags/kest_model_consumer/dagRuns")
        return any(r["state"] == "success" for r in runs.get("dag_runs", []))

    server.wait_for(consumer_got_it, 180, "the consumer DAG to run on the Asset event", every=3)
    status, runs = server.request("GET", "/api/v2/dags/kest_model_consumer/dagRuns")
    consumer_run = next(r for r in runs["dag_runs"] if r["state"] == "success")
    status, xcom = server.request(
        "GET",
        f"/api/v2/dags/kest_model_consumer/dagRuns/{consumer_run['dag_run_id']}/taskInstances/announce/"
        "xcomEntries/return_value",
    )
    assert status == 200, xcom
    announced = xcom["value"] if isinstance(xcom["value"], list) else json.loads(xcom["value"])
    assert [model["model_uri"] for model in announced] == [str(published)]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (`make test` installs it)")
def test_ui_trigger_form_runs_the_pipeline(server, files, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    work = files[0] / "ui"
    screenshots = tmp_path / "screenshots"
    screenshots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{server.url}/dags/{DAG}")
            page.get_by_label("Username").fill(USER)  # the simple auth manager's login page
            page.get_by_label("Password").fill(server.password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"**/dags/{DAG}**")

            page.get_by_role("button", name="Trigger").first.click()
            form = page.get_by_role("dialog")
            for section in ("Run", "Dataset", "Evaluate", "Export", "Gate", "Model", "Trainer"):
                expect(form.get_by_role("button", name=section, exact=True)).to_be_visible()
            # One section open at a time (an accordion): open each before filling its field.
            for section, field, value in [
                ("Run", "#element_artifact_root", str(work / "artifacts")),
                ("Export", "#element_export__root", str(files[0] / "models")),
                ("Trainer", "[name=element_trainer__steps]", "120"),
            ]:
                form.get_by_role("button", name=section, exact=True).click()
                form.locator(field).fill(value)
            expect(form.get_by_text("Total training steps (global_step to reach).", exact=False)).to_be_visible()
            expect(form.get_by_text("(the config file's value)").filter(visible=True).first).to_be_visible()
            page.screenshot(path=str(screenshots / "trigger-form.png"), full_page=True)
            form.get_by_role("button", name="Trigger", exact=True).click()
            expect(form).to_be_hidden()

            def ui_run() -> dict | None:
                status, runs = server.request("GET", f"/api/v2/dags/{DAG}/dagRuns?order_by=-run_after")
                return next((r for r in runs["dag_runs"] if r["conf"].get("trainer__steps") == 120), None)

            server.wait_for(lambda: ui_run() is not None, 60, "the run triggered from the form")
            triggered = ui_run()
            assert triggered is not None
            assert triggered["triggered_by"] == "ui" and triggered["triggering_user_name"] == USER
            assert triggered["conf"]["artifact_root"] == str(work / "artifacts")
            run = server.wait_for_run(DAG, triggered["dag_run_id"], RUN_TIMEOUT)
            assert run["state"] == "success", (run["task_states"], server.tail())

            page.goto(f"{server.url}/dags/{DAG}/runs/{triggered['dag_run_id']}")
            expect(page.get_by_text("success").first).to_be_visible()
            page.screenshot(path=str(screenshots / "run.png"), full_page=True)
            # The plugin's extra links on the train task instance (its Details tab); Model dir opens the checkpoints.
            page.goto(f"{server.url}/dags/{DAG}/runs/{triggered['dag_run_id']}/tasks/train/details")
            tensorboard = page.get_by_role("link", name="TensorBoard")
            expect(tensorboard).to_have_attribute("href", re.compile(r"^http://localhost:6006/\?runFilter=manual__"))
            model_dir = page.get_by_role("link", name="Model dir")
            train_folder = re.compile(rf"^{re.escape(files[1])}/ui/artifacts/runs/manual__.*/train/$")
            expect(model_dir).to_have_attribute("href", train_folder)
            page.screenshot(path=str(screenshots / "train-task.png"), full_page=True)
            page.goto(model_dir.get_attribute("href") or "")
            expect(page.get_by_role("link", name="checkpoint", exact=True)).to_be_visible()
        finally:
            browser.close()

    (run_folder,) = (work / "artifacts" / layout.RUNS_FOLDER).iterdir()
    assert json.loads((run_folder / layout.CONFIG_FILE).read_text())["trainer"]["steps"] == 120
    summary = _summary(str(run_folder))
    assert Path(summary["published_model"]).parent == files[0] / "models" / "iris"
    for shot in ("trigger-form.png", "run.png", "train-task.png"):  # real page renders, not blank captures
        assert (screenshots / shot).stat().st_size > 20_000, shot


def test_models_page_is_for_signed_in_users_only(server):
    """The plugin's pages and API: 401 without a session, 403 with a bad token, read-only for viewers, every path
    parameter checked before the store is touched."""
    for path in ("/kest/models/", "/kest/api/models", "/kest/api/models/0/iris"):
        assert server.request("GET", path, auth=False)[0] == 401, path
        assert server.request("GET", path, token="not-a-token")[0] == 403, path
    viewer = server.token(VIEWER)
    status, roots = server.request("GET", "/kest/api/models", token=viewer)
    assert status == 200 and roots[0]["models"][0]["model"] == "iris"
    status, view = server.request("GET", "/kest/api/models/0/iris", token=viewer)
    assert status == 200 and view["can_promote"] is False
    version = view["versions"][0]["version"]
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": server.url}
    promote = f"/kest/models/0/iris/{version}/promote"
    assert server.request("GET", promote, token=viewer) == (
        403,
        {"detail": "changing the champion needs the right to trigger the kest_promote DAG"},
    )
    assert server.request("POST", promote, b"reason=x", token=viewer, headers=form)[0] == 403
    posted_elsewhere = {**form, "Origin": "http://attacker.example"}
    assert server.request("POST", promote, b"reason=x", headers=posted_elsewhere) == (
        403,
        {"detail": "a champion change must be posted from the Models page"},
    )
    refusals = {
        "/kest/api/models/7/iris": (404, "no model root 7 (there are 1)"),
        "/kest/api/models/0/.git": (400, "model '.git' is not a safe name"),
        "/kest/models/0/iris/..%2E/report": (400, "version '...' is not a safe name"),
        "/kest/api/models/0/no-such-model": (404, f"no model 'no-such-model' in {view['root']}"),
        "/kest/models/0/iris/20990101T000000Z-00000000/report": (404, "iris has no published version"),
    }
    for path, (code, message) in refusals.items():
        status, body = server.request("GET", path, token=viewer)
        assert status == code and message in body["detail"], (path, status, body)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (`make test` installs it)")
def test_models_page_shows_the_versions_and_rolls_back(server, files, tmp_path):
    """After the REST and the UI run: the Models page, opened from Airflow's navigation, lists both versions with
    the newer one champion, opens a version's report, and makes the older one champion again through kest_promote
    (confirmation, reason) — history, pointer and Asset event follow."""
    from playwright.sync_api import expect, sync_playwright

    status, view = server.request("GET", "/kest/api/models/0/iris")
    assert status == 200 and len(view["versions"]) == 2, view
    older, newer = (v["version"] for v in view["versions"])
    assert view["champion"] == newer and [v["dag_id"] for v in view["versions"]] == [DAG, DAG]
    screenshots = tmp_path / "screenshots"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(server.url)
            page.get_by_label("Username").fill(USER)
            page.get_by_label("Password").fill(server.password)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("link", name="Models").click()  # the plugin's nav entry; the page is framed
            frame = page.frame_locator("iframe[title=Models]")
            frame.get_by_role("link", name="iris", exact=True).click()
            expect(frame.get_by_role("heading", name="iris", exact=True)).to_be_visible()
            expect(frame.locator("strong.champion")).to_have_text(newer)
            versions = frame.get_by_role("table", name="versions")
            expect(versions.get_by_role("row", name=older)).to_be_visible()
            expect(versions.get_by_role("row", name=newer)).to_contain_text("champion")
            expect(frame.get_by_role("img", name="accuracy across versions").locator("circle")).to_have_count(2)
            page.screenshot(path=str(screenshots / "models-page.png"), full_page=True)

            versions.get_by_role("row", name=older).get_by_role("link", name="report").click()
            expect(frame.get_by_role("heading", name="Test metrics")).to_be_visible()
            page.go_back()

            versions.get_by_role("row", name=older).get_by_role("link", name="make champion…").click()
            frame.get_by_label("Reason").fill("the newer one misroutes EU traffic")
            page.screenshot(path=str(screenshots / "promote.png"), full_page=True)
            frame.get_by_role("button", name=f"Make {older} champion").click()
            expect(frame.locator(".notice")).to_contain_text("kest_promote run")

            def promoted() -> bool:
                status, runs = server.request("GET", "/api/v2/dags/kest_promote/dagRuns")
                return any(r["state"] == "success" for r in runs["dag_runs"])

            server.wait_for(promoted, 120, "the kest_promote run the page triggered", every=2)
            page.reload()
            expect(frame.locator("strong.champion")).to_have_text(older)
            history = frame.get_by_role("table", name="champion history").get_by_role("row", name="misroutes EU")
            expect(history).to_contain_text(f"{newer} → {older}")
            expect(history).to_contain_text(f"{USER} via kest_promote run manual__")
        finally:
            browser.close()

    status, runs = server.request("GET", "/api/v2/dags/kest_promote/dagRuns")
    (run,) = [r for r in runs["dag_runs"] if r["state"] == "success"]  # the policy test's run failed
    assert run["triggering_user_name"] == USER and run["conf"]["version"] == older
    status, events = server.request("GET", "/api/v2/assets/events?source_dag_id=kest_promote")
    assert [event["extra"]["version"] for event in events["asset_events"]] == [older]
    pointer = json.loads((files[0] / "models" / "iris" / layout.CHAMPION_FILE).read_text())
    assert pointer["version"] == older and pointer["reason"] == "the newer one misroutes EU traffic"
    for shot in ("models-page.png", "promote.png"):
        assert (screenshots / shot).stat().st_size > 20_000, shot
