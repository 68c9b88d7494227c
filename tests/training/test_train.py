import logging
import math
from pathlib import Path

import pytest

from kest_tasks.data.prepare import prepare
from kest_tasks.training.build import build
from kest_tasks.training.train import train

pytestmark = pytest.mark.slow


@pytest.fixture
def upstream(iris_config, tmp_path):
    run = str(tmp_path / "run")
    prepared = prepare(iris_config, run)
    return run, prepared, build(iris_config, run, prepared)


def test_trains_to_the_configured_step_with_checkpoints_and_summaries(iris_config, upstream):
    run, prepared, built = upstream
    iris_config.trainer.steps = 120
    iris_config.trainer.checkpoint_steps = 50
    result = train(iris_config, run, prepared, built)
    assert result.global_step == 120
    assert result.checkpoint.endswith("model.ckpt-120")
    assert {"accuracy", "loss"} <= set(result.eval_metrics)
    events = list(Path(result.model_dir).glob("events.out.tfevents.*"))
    eval_events = list(Path(result.model_dir).glob("eval/events.out.tfevents.*"))
    assert events and eval_events


def test_retry_resumes_from_the_last_checkpoint(iris_config, upstream, caplog):
    run, prepared, built = upstream
    iris_config.trainer.steps = 60
    iris_config.trainer.checkpoint_steps = 30
    assert train(iris_config, run, prepared, built).global_step == 60
    iris_config.trainer.steps = 100
    caplog.set_level(logging.INFO)
    result = train(iris_config, run, prepared, built)
    assert result.global_step == 100
    assert "resuming from checkpoint" in caplog.text and "model.ckpt-60" in caplog.text


def test_finished_training_is_not_repeated(iris_config, upstream, caplog):
    run, prepared, built = upstream
    iris_config.trainer.steps = 40
    first = train(iris_config, run, prepared, built)
    caplog.set_level(logging.INFO)
    assert train(iris_config, run, prepared, built) == first
    assert "already trained at step 40" in caplog.text


def test_early_stopping_ends_training_and_a_retry_does_not_continue(iris_config, upstream, caplog):
    run, prepared, built = upstream
    iris_config.trainer.steps = 5000
    iris_config.trainer.checkpoint_steps = 50
    # Loss falls as Iris trains, so "stop if loss does not increase for 100 steps" must fire early.
    iris_config.trainer.early_stopping = {"metric": "loss", "mode": "max", "patience_steps": 100}
    result = train(iris_config, run, prepared, built)
    assert result.stopped_early and 100 <= result.global_step < 1000
    caplog.set_level(logging.INFO)
    assert train(iris_config, run, prepared, built) == result
    assert "stopped early" in caplog.text


def test_early_stopping_on_a_metric_evaluation_lacks_is_refused(iris_config, upstream):
    from kest_tasks.core.config import ConfigError

    run, prepared, built = upstream
    iris_config.trainer.early_stopping = {"metric": "auc", "mode": "max", "patience_steps": 100}
    with pytest.raises(ConfigError, match=r"trainer.early_stopping.metric 'auc' is not an evaluation metric"):
        train(iris_config, run, prepared, built)


def test_epochs_set_the_step_count_from_the_train_split(iris_config, upstream, caplog):
    run, prepared, built = upstream
    iris_config.trainer.epochs = 2.5
    caplog.set_level(logging.INFO)
    result = train(iris_config, run, prepared, built)
    expected = math.ceil(2.5 * prepared.split_rows["train"] / iris_config.trainer.batch_size)
    assert result.global_step == expected and expected != iris_config.trainer.steps
    rows = prepared.split_rows["train"]
    assert f"trainer.epochs 2.5 over {rows} train rows at batch 32 = {expected} steps" in caplog.text


def test_checkpoints_by_seconds(iris_config, upstream):
    from kest_tasks.training.estimators import run_config

    run, prepared, built = upstream
    iris_config.trainer.checkpoint_secs = 1
    estimator_config = run_config(iris_config, str(Path(run) / "probe"))
    assert estimator_config.save_checkpoints_secs == 1 and estimator_config.save_checkpoints_steps is None
    iris_config.trainer.steps = 150
    result = train(iris_config, run, prepared, built)
    assert result.global_step == 150 and result.checkpoint.endswith("model.ckpt-150")


def test_checkpoint_secs_with_the_native_trainer_is_refused(tmp_path):
    from kest_tasks.core.config import ConfigError, load_config
    from tests.helpers import IRIS_CONFIG, iris_overrides

    with pytest.raises(ConfigError, match="trainer.checkpoint_secs is not supported with trainer.kind 'native'"):
        load_config(IRIS_CONFIG, iris_overrides(tmp_path, trainer={"kind": "native", "checkpoint_secs": 5}))
