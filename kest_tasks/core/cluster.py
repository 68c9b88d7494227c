"""trainer.cluster's settings checked where they are set (configure) and where training starts: the parts of
Ray training that import neither Ray's trainer nor TensorFlow (the DAG's configure task runs them).

The training itself is kest_tasks.training.ray_cluster.
"""

from __future__ import annotations

import os
import socket

from kest_tasks.core import files
from kest_tasks.core.config import ClusterConfig, PipelineConfig
from kest_tasks.core.errors import ConfigError

RAY_REQUIREMENT = "ray[train]==2.60.0"
WORKER_RANK_SETTING = "KEST_RAY_WORKER_RANK"  # set on a Ray worker: the train stage runs its part of the job
REACHABLE_TIMEOUT_SECONDS = 5.0


def in_ray_worker() -> bool:
    return WORKER_RANK_SETTING in os.environ


def ray_address(cluster: ClusterConfig) -> str | None:
    """The Ray cluster to run on: trainer.cluster.address, else RAY_ADDRESS; None: start one here."""
    return cluster.address or os.environ.get("RAY_ADDRESS", "").strip() or None


def _require_ray() -> None:
    try:
        import ray.train.tensorflow  # noqa: F401
    except ImportError as error:
        raise ConfigError(
            f"trainer.cluster: engine 'ray' needs Ray, which is not installed here ({error}); install the "
            f"'ray' extra: pip install 'kest[ray]' ({RAY_REQUIREMENT})"
        ) from None


def visible_gpus() -> int:
    """GPUs Ray would find on this machine (CUDA_VISIBLE_DEVICES / NVML), as a Ray started here schedules them."""
    from ray._private.accelerators import get_accelerator_manager_for_resource

    manager = get_accelerator_manager_for_resource("GPU")
    return int(manager.get_current_node_num_accelerators() or 0) if manager else 0


def _check_resources_here(cluster: ClusterConfig) -> None:
    cpus = os.cpu_count() or 1
    needed_cpus = cluster.workers * cluster.cpus_per_worker
    if needed_cpus > cpus:
        raise ConfigError(
            f"trainer.cluster: {cluster.workers} workers × {cluster.cpus_per_worker:g} CPUs need {needed_cpus:g} "
            f"CPUs, but this machine has {cpus}; a Ray started here could never place them (lower workers or "
            "cpus_per_worker, or set trainer.cluster.address)"
        )
    needed_gpus = cluster.workers * cluster.gpus_per_worker
    gpus = visible_gpus() if needed_gpus else 0
    if needed_gpus > gpus:
        raise ConfigError(
            f"trainer.cluster.gpus_per_worker: {cluster.workers} workers × {cluster.gpus_per_worker:g} GPUs need "
            f"{needed_gpus:g} GPUs, but this machine has {gpus}"
        )


def _host_and_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"trainer.cluster.address {address!r}: expected host:port or ray://host:port")
    return host.strip("[]"), int(port)


def _check_reachable(address: str) -> None:
    host, port = _host_and_port(address)
    try:
        with socket.create_connection((host, port), timeout=REACHABLE_TIMEOUT_SECONDS):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(
            f"trainer.cluster.address {address!r}: no Ray cluster answers there ({reason}); check the head's "
            "address and port, or unset it (and RAY_ADDRESS) to start a Ray on this machine"
        ) from None


def check_cluster(config: PipelineConfig, resources_here: bool = True) -> None:
    """Refuse, in one line, trainer.cluster settings that cannot work: Ray missing, a local artifact_root for
    workers on other machines, an address where no Ray answers, or (for a Ray started on this machine, when
    `resources_here`) more CPUs or GPUs than the machine has. A remote cluster's size is not checked: an
    autoscaler may add the nodes (KubeRay)."""
    cluster = config.trainer.cluster
    if cluster is None:
        return
    _require_ray()
    address = ray_address(cluster)
    if address is None:
        if resources_here:
            _check_resources_here(cluster)
        return
    if not files.is_gcs(config.artifact_root) and not cluster.shared_filesystem:
        raise ConfigError(
            f"trainer.cluster.address {address!r}: Ray workers on other machines cannot reach the local "
            f"artifact_root {config.artifact_root}; use a gs:// artifact_root, or set "
            "trainer.cluster.shared_filesystem: true if every node mounts it at that path"
        )
    _check_reachable(address)
