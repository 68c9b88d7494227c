"""The native trainer: the same Keras model through model.fit, with the Estimator kinds' folders and outputs."""

import json
import logging
from pathlib import Path

import pytest

from kest_tasks.core import layout, stages
from kest_tasks.core.config import ConfigError, load_config
from kest_tasks.orchestration.runner import configure, run_pipeline, run_stage
from tests.helpers import IRIS_CONFIG, iris_overrides, regression_csv, run_iris, stage_file

pytestmark = pytest.mark.slow


def test_native_iris_end_to_end_matches_the_keras_kind_layout(tmp_path, iris_run):
    summary = run_pipeline(IRIS_CONFIG, iris_overrides(tmp_path, trainer={"kind": "native"}), "native")
    assert summary["blessed"] and summary["test_metrics"]["accuracy"] >= 0.9, summary
    run = Path(summary["run_uri"])
    trained = stages.TRAIN.load(str(run)).model_dump()
    assert trained["global_step"] == 500 and trained["checkpoint"].endswith("train/model.ckpt-500")
    assert {"accuracy", "loss"} <= set(trained["eval_metrics"])
    assert list((stage_file(run, stages.TRAIN) / layout.NATIVE_TRAIN_EVENTS_FOLDER).glob("events.out.tfevents.*"))
    assert list((stage_file(run, stages.TRAIN) / layout.NATIVE_VALIDATION_EVENTS_FOLDER).glob("events.out.tfevents.*"))
    # keep_checkpoint_max: 3 of the 5 saves remain, as with the Estimator
    assert sorted(p.name for p in stage_file(run, stages.TRAIN).glob(f"{layout.CHECKPOINT_NAME}-*.index")) == [
        "model.ckpt-300.index",
        "model.ckpt-400.index",
        "model.ckpt-500.index",
    ]
    metrics = json.loads(stage_file(run, stages.EVALUATE, layout.METRICS_FILE).read_text())
    assert metrics["global_step"] == 500 and {"accuracy", "loss", "auc", "f1/setosa"} <= set(metrics["metrics"])
    keras_export = stages.EXPORT.load(str(Path(iris_run["summary"]["run_uri"]))).model_dump()
    native_export = stages.EXPORT.load(str(run)).model_dump()
    assert native_export["inputs"] == keras_export["inputs"]
    assert native_export["outputs"] == keras_export["outputs"] == ["class_ids", "classes", "logits", "probabilities"]
    assert Path(summary["published_model"], "saved_model.pb").exists()


def test_native_retry_resumes_and_stops_at_the_configured_step(tmp_path, caplog):
    run_uri = configure(
        IRIS_CONFIG, iris_overrides(tmp_path, trainer={"kind": "native", "steps": 60, "checkpoint_steps": 30}), "resume"
    ).run_uri
    run_stage("prepare", run_uri)
    run_stage("build", run_uri)
    assert run_stage("train", run_uri)["global_step"] == 60
    config_file = Path(run_uri) / layout.CONFIG_FILE
    frozen = json.loads(config_file.read_text())
    frozen["trainer"]["steps"] = 75  # not a multiple of checkpoint_steps: the last epoch is cut short
    config_file.write_text(json.dumps(frozen))
    stage_file(Path(run_uri), stages.TRAIN, layout.RESULT_FILE).unlink()
    caplog.set_level(logging.INFO)
    result = run_stage("train", run_uri)
    assert result["global_step"] == 75 and result["checkpoint"].endswith("model.ckpt-75")
    assert "resuming from checkpoint" in caplog.text and "model.ckpt-60" in caplog.text


def test_native_early_stopping(tmp_path):
    # Loss falls as Iris trains, so "stop if loss does not increase for 100 steps" must fire early.
    summary = run_pipeline(
        IRIS_CONFIG,
        iris_overrides(
            tmp_path,
            trainer={
                "kind": "native",
                "steps": 5000,
                "checkpoint_steps": 50,
                "early_stopping": {"metric": "loss", "mode": "max", "patience_steps": 100},
            },
        ),
        "stop",
    )
    trained = stages.TRAIN.load(str(Path(summary["run_uri"]))).model_dump()
    assert trained["stopped_early"] and 100 <= trained["global_step"] < 1000


def test_native_regression_with_string_features(tmp_path):
    data = regression_csv(tmp_path / "prices.csv")
    summary = run_iris(
        tmp_path,
        dataset={"path": str(data), "label": "price"},
        model={"builder": "tabular", "learning_rate": 0.05},
        trainer={"kind": "native", "steps": 1500},
        thresholds={"mae": {"upper": 40}},
    )
    assert summary["blessed"], summary["gate"]
    assert set(summary["test_metrics"]) == {"loss", "mae", "rmse", "r2"}


def test_native_with_parameter_server_is_refused_at_configure(tmp_path):
    with pytest.raises(ConfigError, match="parameter_server' is not supported with trainer.kind 'native'"):
        load_config(
            IRIS_CONFIG, iris_overrides(tmp_path, trainer={"kind": "native", "distribution": "parameter_server"})
        )
