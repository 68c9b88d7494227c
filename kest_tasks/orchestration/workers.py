"""Where the train task runs: its Celery queue and pool, its timeout, and for KubernetesExecutor the pod it asks
for (GPUs, image, node selector). One set of settings, read from the environment of the DAG processor and
workers (KEST_TRAIN_*), so the DAG file needs no TensorFlow and no config file to place the task."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from kest_tasks.core.errors import ConfigError

# The NVIDIA device plugin's resource name, and the taint GPU node pools usually carry.
GPU_RESOURCE = "nvidia.com/gpu"
ENVIRONMENT = {
    "queue": "KEST_TRAIN_QUEUE",
    "pool": "KEST_TRAIN_POOL",
    "timeout_minutes": "KEST_TRAIN_TIMEOUT_MINUTES",
    "gpus": "KEST_TRAIN_GPUS",
    "image": "KEST_TRAIN_IMAGE",
    "node_selector": "KEST_TRAIN_NODE_SELECTOR",
}


class TrainWorkers(BaseModel):
    queue: str = Field("default", min_length=1, description="Celery queue of the workers that train (e.g. gpu).")
    pool: str = Field("default_pool", min_length=1, description="Airflow pool capping concurrent trainings.")
    timeout_minutes: float = Field(360, gt=0, description="The train task's execution timeout.")
    gpus: int = Field(0, ge=0, description="GPUs the train pod requests under KubernetesExecutor (0: no override).")
    image: str | None = Field(None, description="Image of the train pod (a CUDA build), else the executor's.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the train pod needs.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrainWorkers:
        """The settings from KEST_TRAIN_*; KEST_TRAIN_NODE_SELECTOR is `label=value,label=value`."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {field: environ[name] for field, name in ENVIRONMENT.items() if environ.get(name)}
        if "node_selector" in values:
            pairs = [pair.partition("=") for pair in values["node_selector"].split(",") if pair.strip()]
            if any(not sep or not key.strip() for key, sep, _ in pairs):
                raise ConfigError(
                    f"KEST_TRAIN_NODE_SELECTOR: expected label=value[,label=value], got {values['node_selector']!r}"
                )
            values["node_selector"] = {key.strip(): value.strip() for key, _, value in pairs}
        try:
            return cls(**values)
        except ValidationError as error:
            first = error.errors()[0]
            raise ConfigError(f"{ENVIRONMENT[str(first['loc'][0])]}: {first['msg']} (got {first['input']!r})") from None

    @property
    def timeout(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.timeout_minutes)

    def pod_override(self) -> Any:
        """A kubernetes V1Pod for KubernetesExecutor's pod_override: the `base` container limited to `gpus`
        NVIDIA GPUs (and optionally another image), tolerating the GPU taint, on the selected nodes."""
        from kubernetes.client import models as k8s

        container = k8s.V1Container(
            name="base",
            image=self.image,
            resources=k8s.V1ResourceRequirements(
                limits={GPU_RESOURCE: str(self.gpus)}, requests={GPU_RESOURCE: str(self.gpus)}
            ),
        )
        return k8s.V1Pod(
            spec=k8s.V1PodSpec(
                containers=[container],
                node_selector=self.node_selector or None,
                tolerations=[k8s.V1Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")],
            )
        )

    def executor_config(self) -> dict[str, Any]:
        """The train task's executor_config: a GPU pod_override when GPUs are asked for, else nothing (the
        kubernetes client is only imported then, keeping DAG parsing light). Celery workers ignore it."""
        return {"pod_override": self.pod_override()} if self.gpus else {}
