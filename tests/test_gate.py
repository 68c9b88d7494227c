import json

import pytest

from kest_tasks.config import ConfigError, Threshold
from kest_tasks.evaluate import EvaluateResult
from kest_tasks.gate import check_thresholds, gate


def _evaluated(**metrics):
    return EvaluateResult(metrics_uri="m.json", metrics=metrics, examples=10, checkpoint="c")


def test_blesses_when_every_threshold_holds(iris_config, tmp_path):
    iris_config.gate.thresholds = {"accuracy": Threshold(lower=0.9), "loss": Threshold(upper=0.5)}
    result = gate(iris_config, str(tmp_path / "run"), _evaluated(accuracy=0.95, loss=0.2))
    assert result.blessed
    written = json.loads((tmp_path / "run" / "gate" / "blessing.json").read_text())
    assert written["blessed"] is True and len(written["checks"]) == 2


def test_reason_carries_the_numbers_when_not_blessed(iris_config, tmp_path):
    iris_config.gate.thresholds = {"accuracy": Threshold(lower=0.99), "loss": Threshold(upper=0.5)}
    result = gate(iris_config, str(tmp_path / "run"), _evaluated(accuracy=0.95, loss=0.2))
    assert not result.blessed
    assert result.reason == (
        "not blessed: accuracy = 0.9500 (needs >= 0.99): FAILED; loss = 0.2000 (needs <= 0.5): ok"
    )


def test_both_bounds(iris_config):
    iris_config.gate.thresholds = {"loss": Threshold(lower=0.1, upper=0.3)}
    assert [c.passed for c in check_thresholds(iris_config, {"loss": 0.05})] == [False]
    assert [c.passed for c in check_thresholds(iris_config, {"loss": 0.2})] == [True]
    assert [c.passed for c in check_thresholds(iris_config, {"loss": 0.31})] == [False]


def test_threshold_on_an_unknown_metric_is_a_config_error(iris_config, tmp_path):
    iris_config.gate.thresholds = {"auc": Threshold(lower=0.5)}
    with pytest.raises(ConfigError, match=r"gate.thresholds.auc: evaluation produced no such metric \(available: "
                                          r"accuracy, loss\)"):
        gate(iris_config, str(tmp_path / "run"), _evaluated(accuracy=0.9, loss=0.1))


def test_a_threshold_needs_a_bound():
    with pytest.raises(ValueError, match="needs 'lower', 'upper' or both"):
        Threshold()
