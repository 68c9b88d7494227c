"""Distribution: strategies from the config, and real clusters over loopback (chief + worker, chief + worker + ps)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kest_tasks.core import stages
from kest_tasks.core.config import ConfigError
from kest_tasks.orchestration.runner import configure, run_stage
from tests.helpers import IRIS_CONFIG, REPO, free_loopback_port, iris_overrides, stage_process


def test_cluster_strategies_need_tf_config(iris_config, monkeypatch):
    from kest_tasks.training.estimators import distribution_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    for kind in ("multi_worker", "parameter_server"):
        iris_config.trainer.distribution = kind
        with pytest.raises(ConfigError, match=f"trainer.distribution '{kind}' needs the cluster in the TF_CONFIG"):
            distribution_strategy(iris_config)


def test_unknown_distribution_is_a_config_error(tmp_path):
    from kest_tasks.core.config import load_config

    with pytest.raises(ConfigError, match=r"trainer.distribution: Input should be 'none', 'mirrored'"):
        load_config(IRIS_CONFIG, iris_overrides(tmp_path, trainer={"distribution": "tpu"}))


@pytest.mark.slow
@pytest.mark.parametrize(
    "trainer",
    [
        {"kind": "keras"},
        {"kind": "native"},
        {"kind": "premade", "premade": {"type": "dnn_linear"}},
        {"kind": "model_fn", "model_fn": "custom_model_fn:model_fn"},
    ],
    ids=["keras", "native", "premade", "model_fn"],
)
def test_mirrored_strategy_trains_every_kind(tmp_path, trainer):
    overrides = iris_overrides(
        tmp_path,
        trainer={**trainer, "steps": 100, "distribution": "mirrored"},
        model={"code_dir": str(REPO / "examples")},
    )
    run_uri = configure(IRIS_CONFIG, overrides, "mirrored").run_uri
    run_stage("prepare", run_uri)
    run_stage("build", run_uri)
    assert run_stage("train", run_uri)["global_step"] == 100


def _start_task(run_uri: str, cluster: dict, task_type: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": 0}}),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kest_tasks",
            "stage",
            "train",
            "--run",
            run_uri,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(processes: list[subprocess.Popen]) -> list[str]:
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=300)[0])
    finally:
        for process in processes:
            process.kill()
    assert [p.returncode for p in processes] == [0] * len(processes), "\n".join(o[-3000:] for o in outputs)
    return outputs


@pytest.mark.slow
def test_hand_started_chief_and_worker_train_one_gs_model_dir_then_export(tf_gcs, tmp_path):
    """Chief and worker processes started by hand with their TF_CONFIG train one model_dir in gs:// (TensorFlow's
    own GCS filesystem, as on machines that share nothing but the bucket); then export, in another process, reads
    the chief's checkpoint. (Workers on a local disk, keras and native, started by Ray: test_ray_cluster.py.)"""
    overrides = iris_overrides(
        tmp_path, trainer={"kind": "keras", "steps": 200, "checkpoint_steps": 50, "distribution": "multi_worker"}
    )
    overrides["artifact_root"] = "gs://kest-runs/multi-worker"
    run_uri = configure(IRIS_CONFIG, overrides, "multi-worker").run_uri
    run_stage("prepare", run_uri)
    run_stage("build", run_uri)
    cluster = {"chief": [f"127.0.0.1:{free_loopback_port()}"], "worker": [f"127.0.0.1:{free_loopback_port()}"]}
    outputs = _finish([_start_task(run_uri, cluster, task) for task in ("chief", "worker")])
    assert "worker 0 finished its part" in outputs[1], outputs[1][-4000:]
    result = stages.TRAIN.load(run_uri).model_dump()
    assert result["global_step"] == 200 and result["model_dir"] == f"{run_uri}/train"
    assert stage_process("export", run_uri)[0]["checked_rows"] > 0


@pytest.mark.slow
def test_parameter_server_cluster_on_loopback_then_export(tmp_path):
    overrides = iris_overrides(
        tmp_path, trainer={"steps": 200, "checkpoint_steps": 50, "distribution": "parameter_server"}
    )
    run_uri = configure(IRIS_CONFIG, overrides, "ps").run_uri
    run_stage("prepare", run_uri)
    run_stage("build", run_uri)
    cluster = {
        "chief": [f"127.0.0.1:{free_loopback_port()}"],
        "worker": [f"127.0.0.1:{free_loopback_port()}"],
        "ps": [f"127.0.0.1:{free_loopback_port()}"],
    }
    ps = _start_task(run_uri, cluster, "ps")  # a parameter server serves until it is stopped
    try:
        outputs = _finish([_start_task(run_uri, cluster, task) for task in ("chief", "worker")])
    finally:
        ps.kill()
        ps.wait()
    assert "worker 0 finished its part" in outputs[1], outputs[1][-4000:]
    result = stages.TRAIN.load(str(Path(run_uri))).model_dump()
    assert result["global_step"] >= 200
    assert run_stage("export", run_uri)["checked_rows"] > 0
