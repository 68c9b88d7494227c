"""Training on a Ray cluster (trainer.cluster): N workers, one MultiWorkerMirrored job writing one model_dir.

The train stage's process is the Ray *driver*. It starts a Ray on this machine for the task (or connects to
trainer.cluster.address / RAY_ADDRESS), hands Ray Train's `TensorflowTrainer` a function that runs on every
worker, and waits. Ray places the workers, writes each one's TF_CONFIG and restarts them all when one dies
(FailureConfig). On a worker the function runs the ordinary train stage under `multi_worker`: every trainer kind
(keras, premade, model_fn, native) trains unchanged, the checkpoints go to the run's model_dir, and a restarted
worker resumes from the last one. Worker 0 is the chief: it writes the stage's result, which the driver returns.

A Ray started here listens on loopback only (Ray's single-machine mode) and is stopped, with every process it
started, when the task ends — also when the driver is killed (the Ray head gets SIGTERM from Linux then).

Ray is an optional dependency (`pip install kest[ray]`): it is imported only when trainer.cluster is set.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kest_tasks.core.cluster import WORKER_RANK_SETTING, check_cluster, ray_address
from kest_tasks.core.config import ClusterConfig, PipelineConfig
from kest_tasks.core.errors import ERROR_PREFIX, KestError
from kest_tasks.core.execution import die_with_parent

log = logging.getLogger("kest.train")

LOOPBACK = "127.0.0.1"
# A Ray started here: every address loopback (Ray's single-machine mode, as on macOS), and no 30 s drain on stop.
LOCAL_RAY_ENVIRONMENT = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 30.0


RAY_FOLDER_PREFIX = "kest-ray-"
HEAD_PID_FILE = "head.pid"
STALE_AFTER_SECONDS = 300.0


def remove_stale_ray_folders(parent: Path, now: float | None = None) -> list[Path]:
    """Remove the folders of local Rays that are gone: a driver stopped by SIGTERM exits at once and leaves its
    Ray's session folder (logs, sockets) behind. A folder is stale when its head process no longer runs (or it
    never recorded one) and it is older than STALE_AFTER_SECONDS (a Ray being started right now is kept)."""
    now = time.time() if now is None else now
    removed = []
    for folder in parent.glob(f"{RAY_FOLDER_PREFIX}*"):
        try:
            if not folder.is_dir() or now - folder.stat().st_mtime < STALE_AFTER_SECONDS:
                continue
            pid_file = folder / HEAD_PID_FILE
            if pid_file.exists() and _running(int(pid_file.read_text() or 0)):
                continue
        except (OSError, ValueError):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _running(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def local_ray(cluster: ClusterConfig) -> Iterator[str]:
    """A Ray head on loopback for this task (`ray start --head --block` in its own session); its address.

    Stopped on the way out: SIGTERM (Ray stops its processes), then SIGKILL for anything left in its session.
    """
    port = _free_loopback_port()
    # Ray's socket paths must stay short (108 bytes): a folder directly under /tmp.
    parent = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
    remove_stale_ray_folders(parent)
    temp = Path(tempfile.mkdtemp(prefix=RAY_FOLDER_PREFIX, dir=parent))
    command = [
        sys.executable,
        "-c",
        "import sys; from ray.scripts.scripts import main; sys.exit(main())",
        "start",
        "--head",
        "--block",
        f"--node-ip-address={LOOPBACK}",
        f"--port={port}",
        f"--num-cpus={max(os.cpu_count() or 1, math.ceil(cluster.workers * cluster.cpus_per_worker))}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    head_log = temp / "head.log"
    started = time.monotonic()
    with open(head_log, "wb") as output:
        head = subprocess.Popen(
            command,
            env={**os.environ, **LOCAL_RAY_ENVIRONMENT},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    (temp / HEAD_PID_FILE).write_text(str(head.pid))
    _stop_local_ray.append(head.terminate)
    try:
        _wait_for_head(head, port, head_log)
        log.info("train: started a Ray on %s:%d in %.1f s (%s)", LOOPBACK, port, time.monotonic() - started, temp)
        yield f"{LOOPBACK}:{port}"
    finally:
        _stop_local_ray.clear()
        _stop_head(head)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_head(head: subprocess.Popen, port: int, head_log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if head.poll() is not None:
            tail = head_log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            raise KestError(f"train: the local Ray did not start (exit code {head.returncode}): {tail[0]}")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=1):
            return
        time.sleep(0.2)
    raise KestError(f"train: the local Ray did not answer on {LOOPBACK}:{port} within {START_TIMEOUT_SECONDS:.0f} s")


def _stop_head(head: subprocess.Popen) -> None:
    if head.poll() is None:
        head.terminate()
        try:
            head.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("train: the local Ray did not stop within %.0f s; killing it", STOP_TIMEOUT_SECONDS)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(head.pid, signal.SIGKILL)  # anything of its session still running (workers, agents)
    head.wait()


STOPPED_MESSAGE = "train: stopped (SIGTERM): the Ray job and the Ray started for it were stopped"
# Asks the Ray this driver started to stop (SIGTERM to `ray start --block`, which stops every process it started);
# the SIGTERM handler calls it and exits at once — waiting here, Ray's core worker would end this process first
# (exit code 1) when it sees its raylet go.
_stop_local_ray: list[Callable[[], None]] = []


@contextlib.contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """In a process of its own (the CLI's `stage train`, the DAG's train task), SIGTERM — Airflow stopping the
    task, PR_SET_PDEATHSIG — stops the local Ray and exits with the CLI's one line and code 2. (Raising from the
    handler does not work: Ray's blocking wait swallows it.) The driver's exit ends the job on a remote cluster:
    Ray stops the actors a finished driver owned. A handler someone else installed (Airflow's) is kept."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        print(f"{ERROR_PREFIX}{STOPPED_MESSAGE}", file=sys.stderr, flush=True)
        for stop_ray in _stop_local_ray:
            with contextlib.suppress(Exception):
                stop_ray()
        os._exit(2)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _driver_on_loopback() -> None:
    """This driver's own Ray address is loopback too: the setting for processes it starts, and for Ray already
    imported in this process (configure may have imported it), the flag Ray reads on every address lookup."""
    os.environ.update(LOCAL_RAY_ENVIRONMENT)
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def _plain_worker_logs() -> None:
    """Every worker's lines reach the task log as they are: no colour codes, no "repeated Nx across cluster"
    (Ray's deduplication would hide one worker's lines behind another's)."""
    os.environ.update({"RAY_DEDUP_LOGS": "0", "RAY_COLOR_PREFIX": "0"})
    from ray._private import ray_logging

    ray_logging.RAY_DEDUP_LOGS = False  # read when ray was imported, maybe before this


@contextlib.contextmanager
def ray_session(cluster: ClusterConfig) -> Iterator[bool]:
    """Connected to the cluster (started here when no address is set) for the block; True when it is local."""
    address = ray_address(cluster)
    _plain_worker_logs()
    with contextlib.ExitStack() as stack:
        if address is None:
            _driver_on_loopback()
            address = stack.enter_context(local_ray(cluster))
        import ray

        previous = signal.getsignal(signal.SIGTERM)
        ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING, configure_logging=True)
        stack.callback(ray.shutdown)
        if previous is not signal.getsignal(signal.SIGTERM) and callable(previous):
            signal.signal(signal.SIGTERM, previous)  # ray.init's own handler would exit without stopping the job
        yield address.startswith(f"{LOOPBACK}:")


def train_on_ray(config: PipelineConfig, run_uri: str) -> None:
    """Run the train stage on trainer.cluster.workers Ray workers and wait for them; one line if they fail."""
    cluster = config.trainer.cluster
    assert cluster is not None
    check_cluster(config)
    from ray.train import FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.tensorflow import TensorflowTrainer

    resources: dict[str, float] = {"CPU": cluster.cpus_per_worker}
    if cluster.gpus_per_worker:
        resources["GPU"] = cluster.gpus_per_worker
    with _stopped_by_sigterm(), tempfile.TemporaryDirectory(prefix="kest-train-storage-") as storage:
        with ray_session(cluster) as local:
            log.info(
                "train: %d Ray workers × %s, max %d restarts, model_dir %s/train",
                cluster.workers,
                resources,
                cluster.max_failures,
                run_uri,
            )
            trainer = TensorflowTrainer(
                _train_worker,
                train_loop_config={"run_uri": run_uri, "loopback": local},
                scaling_config=ScalingConfig(
                    num_workers=cluster.workers, use_gpu=bool(cluster.gpus_per_worker), resources_per_worker=resources
                ),
                run_config=RunConfig(
                    name=f"kest-train-{uuid.uuid4().hex[:12]}",
                    storage_path=storage if local else None,
                    failure_config=FailureConfig(max_failures=cluster.max_failures),
                ),
            )
            try:
                trainer.fit()
            except TrainingFailedError as error:
                raise KestError(_failure_line(error, cluster.max_failures)) from None


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    line = lines[-1] if lines else type(error).__name__
    for prefix in ("kest_tasks.core.errors.", "kest_tasks.data.sources.", "ray.exceptions."):
        line = line.removeprefix(prefix)
    return line


def _failure_line(error: BaseException, max_failures: int) -> str:
    after = f" (after {max_failures} restart{'s' if max_failures != 1 else ''})" if max_failures else ""
    failures: dict[int, BaseException] = getattr(error, "worker_failures", None) or {}
    if failures:
        rank = min(failures)
        return f"train on Ray: worker {rank} failed{after}: {_last_line(failures[rank])}"
    return f"train on Ray: failed{after}: {_last_line(getattr(error, 'controller_failure', error))}"


def _log_with_rank(rank: int) -> None:
    """This worker's log lines carry its rank (Ray forwards them to the driver, which streams them to Airflow).
    TensorFlow's own logger loses its handler and goes through the same one (not every line twice)."""
    from kest_tasks.core.tfenv import import_tensorflow

    import_tensorflow().get_logger().handlers[:] = []
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[worker {rank}] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _check_loopback(tf_config: dict) -> None:
    addresses = [address for task in tf_config.get("cluster", {}).values() for address in task]
    outside = [address for address in addresses if not address.startswith(f"{LOOPBACK}:")]
    if outside:
        raise KestError(f"train on Ray: TF_CONFIG has non-loopback addresses {outside} for a Ray started here")


def _train_worker(settings: dict[str, Any]) -> None:  # pragma: no cover - runs in a Ray worker process
    """One worker's part: the train stage of the run under the TF_CONFIG Ray set, as a multi_worker task."""
    # Ray's TensorFlow backend asks for legacy Keras (tf_keras, not installed); TF 2.15's tf.keras is Keras 2.
    os.environ["TF_USE_LEGACY_KERAS"] = "0"
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    _log_with_rank(rank)
    tf_config = json.loads(os.environ["TF_CONFIG"])
    if settings["loopback"]:
        _check_loopback(tf_config)
    os.environ[WORKER_RANK_SETTING] = str(rank)
    log.info("train: Ray worker %d of %d, TF_CONFIG cluster %s", rank, len(tf_config["cluster"]["worker"]), tf_config)

    from kest_tasks.core.stages import BUILD, PREPARE, TRAIN, invoke

    run_uri = settings["run_uri"]
    invoke(TRAIN, run_uri, {"prepared": PREPARE.load(run_uri), "built": BUILD.load(run_uri)})
