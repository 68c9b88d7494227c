"""Where the train task runs: settings from KEST_TRAIN_*, and the GPU pod_override for KubernetesExecutor."""

from __future__ import annotations

import datetime as dt

import pytest

from kest_tasks.core.errors import ConfigError
from kest_tasks.orchestration.workers import TrainWorkers


def test_defaults_place_training_with_every_other_task():
    workers = TrainWorkers.from_env({})
    assert (workers.queue, workers.pool, workers.timeout) == ("default", "default_pool", dt.timedelta(hours=6))
    assert workers.executor_config() == {}


def test_gpu_pod_override_is_built_from_the_same_settings():
    from kubernetes.client import ApiClient

    workers = TrainWorkers.from_env(
        {
            "KEST_TRAIN_QUEUE": "gpu",
            "KEST_TRAIN_GPUS": "2",
            "KEST_TRAIN_IMAGE": "registry.example/kest:gpu",
            "KEST_TRAIN_NODE_SELECTOR": "cloud.google.com/gke-accelerator=nvidia-l4, pool=gpu",
        }
    )
    pod = ApiClient().sanitize_for_serialization(workers.executor_config()["pod_override"])
    (container,) = pod["spec"]["containers"]
    assert container["name"] == "base"  # the container KubernetesExecutor merges the override into
    assert container["image"] == "registry.example/kest:gpu"
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "2"}, "requests": {"nvidia.com/gpu": "2"}}
    assert pod["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4", "pool": "gpu"}
    assert pod["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert workers.queue == "gpu"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"KEST_TRAIN_GPUS": "-1"}, "KEST_TRAIN_GPUS: Input should be greater than or equal to 0 (got '-1')"),
        ({"KEST_TRAIN_GPUS": "two"}, "KEST_TRAIN_GPUS: Input should be a valid integer"),
        ({"KEST_TRAIN_TIMEOUT_MINUTES": "0"}, "KEST_TRAIN_TIMEOUT_MINUTES: Input should be greater than 0"),
        (
            {"KEST_TRAIN_NODE_SELECTOR": "gpu"},
            "KEST_TRAIN_NODE_SELECTOR: expected label=value[,label=value], got 'gpu'",
        ),
    ],
)
def test_bad_settings_name_the_variable(environ, message):
    with pytest.raises(ConfigError) as error:
        TrainWorkers.from_env(environ)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
