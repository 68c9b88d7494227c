"""Training on a real local Ray cluster (trainer.cluster): started for the task on loopback, two workers as one
MultiWorkerMirrored job, through the DAG; a worker killed mid-training; the driver stopped; bad settings."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kest_tasks.core import stages
from kest_tasks.core.errors import ConfigError
from kest_tasks.orchestration.runner import configure, run_stage
from tests.helpers import IRIS_CONFIG, free_loopback_port, iris_overrides, task_states

pytest.importorskip("ray.train.tensorflow")


def ray_processes() -> dict[int, str]:
    """Every Ray process on this machine (head, raylet, agents, workers), by pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "ray::" in command or "/raylet" in command or "gcs_server" in command or "kest-ray-" in command:
                found[int(entry.name)] = command
    return found


def no_ray_left(timeout: float = 30) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while (left := ray_processes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.fixture
def ray_cleanup():
    """Fails the test if Ray processes were running before it, and if any it started are left after it."""
    assert ray_processes() == {}, "Ray processes from elsewhere are running"
    yield
    left = no_ray_left()
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert left == {}, f"Ray processes left behind: {left}"


def test_bad_cluster_settings_are_one_line_configure_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def refused(cluster: dict, **trainer) -> str:
        with pytest.raises(ConfigError) as caught:
            configure(IRIS_CONFIG, iris_overrides(tmp_path, trainer={"cluster": cluster, **trainer}), "bad")
        assert "\n" not in str(caught.value)
        return str(caught.value)

    assert refused({"workers": 0}).endswith("trainer.cluster.workers: Input should be greater than or equal to 1")
    assert refused({"workers": 2, "gpus_per_worker": 1}) == (
        "trainer.cluster.gpus_per_worker: 2 workers × 1 GPUs need 2 GPUs, but this machine has 0"
    )
    cpus = os.cpu_count() or 1
    assert refused({"workers": cpus + 1}) == (
        f"trainer.cluster: {cpus + 1} workers × 1 CPUs need {cpus + 1} CPUs, but this machine has {cpus}; a Ray "
        "started here could never place them (lower workers or cpus_per_worker, or set trainer.cluster.address)"
    )
    port = free_loopback_port()
    assert refused({"address": f"127.0.0.1:{port}"}) == (
        f"trainer.cluster.address '127.0.0.1:{port}': Ray workers on other machines cannot reach the local "
        f"artifact_root {tmp_path}/artifacts; use a gs:// artifact_root, or set trainer.cluster.shared_filesystem: "
        "true if every node mounts it at that path"
    )
    assert refused({"address": f"127.0.0.1:{port}", "shared_filesystem": True}) == (
        f"trainer.cluster.address '127.0.0.1:{port}': no Ray cluster answers there (Connection refused); check the "
        "head's address and port, or unset it (and RAY_ADDRESS) to start a Ray on this machine"
    )
    monkeypatch.setenv("RAY_ADDRESS", f"ray://127.0.0.1:{port}")  # the address may come from the environment
    assert "no Ray cluster answers there" in refused({"shared_filesystem": True})
    assert refused({"workers": 2}, distribution="mirrored").endswith(
        "trainer.cluster runs one MultiWorkerMirrored job; trainer.distribution 'mirrored' cannot be combined "
        "with it (leave it none)"
    )
    assert not (tmp_path / "artifacts" / "runs" / "bad").exists()


def test_the_cli_refuses_a_bad_cluster_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "kest_tasks", "run", "--set", f"artifact_root={tmp_path}"]
        + ["--set", "trainer.cluster.workers=2", "--set", "trainer.cluster.gpus_per_worker=4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "kest: error: trainer.cluster.gpus_per_worker: 2 workers × 4 GPUs need 8 GPUs, but this machine has 0"
    )
    assert "Traceback" not in done.stderr


def _kill_a_worker_after_the_first_checkpoint(artifacts: Path, killed: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        if list(artifacts.glob("runs/*/train/model.ckpt-*.index")):
            workers = [pid for pid, command in ray_processes().items() if "RayTrainWorker" in command]
            if workers:
                os.kill(max(workers), signal.SIGKILL)
                killed.append(max(workers))
                return
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["keras", "native"])
def test_two_ray_workers_train_the_pipeline_through_the_dag(dag, tmp_path, monkeypatch, caplog, ray_cleanup, kind):
    """A Ray started for the train task on loopback, two workers, one model_dir; export answers like the chief's
    checkpoint; the Ray is gone after. For native, a worker is killed mid-training: Ray restarts the workers and
    training resumes from the checkpoint."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("KEST_STAGE_PROCESS", raising=False)
    caplog.set_level("INFO", logger="kest")
    killed: list[int] = []
    stop = threading.Event()
    steps = 400 if kind == "native" else 200
    overrides = iris_overrides(
        tmp_path, trainer={"kind": kind, "steps": steps, "checkpoint_steps": 50, "cluster": {"workers": 2}}
    )
    killer = threading.Thread(
        target=_kill_a_worker_after_the_first_checkpoint, args=(tmp_path / "artifacts", killed, stop), daemon=True
    )
    if kind == "native":
        killer.start()
    try:
        run = dag.test(run_conf={"overrides": overrides})
    finally:
        stop.set()
    assert run.state == "success", task_states(run)
    (run_folder,) = (tmp_path / "artifacts" / "runs").iterdir()
    trained = stages.TRAIN.load(str(run_folder))
    assert trained.global_step == steps and trained.model_dir == f"{run_folder}/train"
    assert stages.EXPORT.load(str(run_folder)).checked_rows > 0  # the SavedModel answers like the chief's checkpoint
    assert stages.EVALUATE.load(str(run_folder)).metrics["accuracy"] >= 0.9

    log = caplog.text
    assert "train: started a Ray on 127.0.0.1:" in log
    for rank in (0, 1):  # each worker's lines reach the task log with its rank; every TF address is loopback
        assert f"[worker {rank}] INFO kest.train: train: Ray worker {rank} of 2, TF_CONFIG cluster" in log
    assert "'worker': ['127.0.0.1:" in log and "192." not in log.split("TF_CONFIG cluster", 1)[1][:200]
    assert (
        "[worker 0] INFO kest.train: train: reached step" in log or "[worker 0] INFO kest.train: train: already" in log
    )
    if kind == "native":
        assert killed, "no worker was killed"
        assert log.count("Started training worker group of size 2") >= 2  # Ray restarted the group
        assert "[worker 0] INFO kest.train: train: resuming from checkpoint" in log


@pytest.mark.slow
def test_stopping_the_driver_stops_the_ray_job_and_the_ray_it_started(tmp_path, ray_cleanup, monkeypatch):
    """SIGTERM to the train process (what a killed or timed-out Airflow task sends it) ends it in one line, and
    every Ray process it started stops."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    overrides = iris_overrides(tmp_path, trainer={"steps": 100_000, "checkpoint_steps": 50, "cluster": {"workers": 2}})
    run_uri = configure(IRIS_CONFIG, overrides, "stopped").run_uri
    run_stage("prepare", run_uri)
    run_stage("build", run_uri)
    driver = subprocess.Popen(
        [sys.executable, "-m", "kest_tasks", "stage", "train", "--run", run_uri],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not list(Path(run_uri, "train").glob("model.ckpt-*.index")) and time.monotonic() < deadline:
            assert driver.poll() is None, driver.communicate()[1][-3000:]
            time.sleep(0.5)
        assert any("RayTrainWorker" in command for command in ray_processes().values())
        driver.send_signal(signal.SIGTERM)
        _, stderr = driver.communicate(timeout=90)
    finally:
        driver.kill()
    assert driver.returncode == 2, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        "kest: error: train: stopped (SIGTERM): the Ray job and the Ray started for it were stopped"
    )
    assert no_ray_left() == {}


def test_a_failed_ray_job_is_one_line_naming_the_worker():
    """What the driver makes of Ray Train's own failure (the lowest rank's last line, after the restarts)."""
    from ray.exceptions import ActorDiedError
    from ray.train import ControllerError, WorkerGroupError

    from kest_tasks.training.ray_cluster import _failure_line

    died = WorkerGroupError("worker 1 died", {1: ActorDiedError(), 3: RuntimeError("later")})
    assert _failure_line(died, 2) == (
        "train on Ray: worker 1 failed (after 2 restarts): The actor died unexpectedly before finishing this task."
    )
    bad_data = ConfigError("stage 'prepare' has not finished in /runs/x: run it first")
    traceback_text = f"Traceback (most recent call last):\n  File ...\nkest_tasks.core.errors.ConfigError: {bad_data}"
    assert _failure_line(WorkerGroupError("", {0: RuntimeError(traceback_text)}), 0) == (
        "train on Ray: worker 0 failed: ConfigError: stage 'prepare' has not finished in /runs/x: run it first"
    )
    assert _failure_line(ControllerError(RuntimeError("no resources\nfor the workers")), 1) == (
        "train on Ray: failed (after 1 restart): for the workers"
    )


def test_the_folders_of_local_rays_that_are_gone_are_removed(tmp_path):
    """A driver stopped by SIGTERM leaves its Ray's folder; the next local Ray removes it — not a live one's, not
    one being set up right now, not another program's."""
    from kest_tasks.training.ray_cluster import HEAD_PID_FILE, STALE_AFTER_SECONDS, remove_stale_ray_folders

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folders = {name: tmp_path / f"kest-ray-{name}" for name in ("stale", "no-pid", "live", "young")}
    for folder in folders.values():
        folder.mkdir()
        (folder / "session").mkdir()
    (folders["stale"] / HEAD_PID_FILE).write_text(dead.stdout.strip())
    (folders["live"] / HEAD_PID_FILE).write_text(str(os.getpid()))
    (folders["young"] / HEAD_PID_FILE).write_text(dead.stdout.strip())
    (tmp_path / "other-program").mkdir()
    now = time.time() + STALE_AFTER_SECONDS + 1
    os.utime(folders["young"], (now, now))  # modified just now, as seen at `now`
    assert sorted(remove_stale_ray_folders(tmp_path, now=now)) == sorted([folders["stale"], folders["no-pid"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kest-ray-live", "kest-ray-young", "other-program"]
