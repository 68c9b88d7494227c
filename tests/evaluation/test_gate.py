"""The gate: value thresholds, change thresholds against the champion (re-scored on the same test split),
first run, always_bless, and the config errors."""

import json
import logging
from pathlib import Path

import pytest

from kest_tasks.core import layout, stages
from kest_tasks.core.config import ChangeThreshold, ConfigError, Threshold, load_config
from kest_tasks.core.files import write_json
from kest_tasks.data.prepare import PrepareResult
from kest_tasks.evaluation.evaluate import EvaluateResult
from kest_tasks.evaluation.gate import change_passes, check_thresholds, gate
from tests.helpers import IRIS_CONFIG, IRIS_CSV, iris_overrides


def _evaluated(tmp_path, **metrics) -> EvaluateResult:
    uri = tmp_path / layout.METRICS_FILE
    write_json(uri, {"metrics": metrics, "examples": 10})
    return EvaluateResult(metrics_uri=str(uri), metrics=metrics, examples=10, checkpoint="c")


def _prepared(iris_run) -> PrepareResult:
    return stages.PREPARE.load(str(Path(iris_run["summary"]["run_uri"])))


def _gate(config, tmp_path, iris_run, **metrics):
    return gate(config, str(tmp_path / "run"), _evaluated(tmp_path, **metrics), _prepared(iris_run))


@pytest.mark.slow
def test_blesses_when_every_threshold_holds(iris_config, tmp_path, iris_run):
    iris_config.gate.thresholds = {"accuracy": Threshold(lower=0.9), "loss": Threshold(upper=0.5)}
    result = _gate(iris_config, tmp_path, iris_run, accuracy=0.95, loss=0.2)
    assert result.blessed and result.champion_version is None
    written = json.loads((tmp_path / "run" / "gate" / layout.BLESSING_FILE).read_text())
    assert written["blessed"] is True and len(written["checks"]) == 2 and written["champion"] is None


@pytest.mark.slow
def test_reason_carries_the_numbers_when_not_blessed(iris_config, tmp_path, iris_run):
    iris_config.gate.thresholds = {"accuracy": Threshold(lower=0.99), "loss": Threshold(upper=0.5)}
    result = _gate(iris_config, tmp_path, iris_run, accuracy=0.95, loss=0.2)
    assert not result.blessed
    assert result.reason == ("not blessed: accuracy = 0.9500 (needs >= 0.99): FAILED; loss = 0.2000 (needs <= 0.5): ok")


def test_both_bounds(iris_config):
    iris_config.gate.thresholds = {"loss": Threshold(lower=0.1, upper=0.3)}
    assert [c.passed for c in check_thresholds(iris_config, {"loss": 0.05})] == [False]
    assert [c.passed for c in check_thresholds(iris_config, {"loss": 0.2})] == [True]
    assert [c.passed for c in check_thresholds(iris_config, {"loss": 0.31})] == [False]


@pytest.mark.parametrize(
    "threshold, candidate, champion, passes",
    [
        ({"direction": "higher", "absolute": 0.0}, 0.90, 0.90, True),  # no worse
        ({"direction": "higher", "absolute": 0.01}, 0.905, 0.90, False),  # must gain a point
        ({"direction": "higher", "absolute": -0.02}, 0.89, 0.90, True),  # may lose two points
        ({"direction": "higher", "relative": 0.05}, 0.94, 0.90, False),  # 4.4 % better, 5 % needed
        ({"direction": "higher", "relative": 0.05}, 0.95, 0.90, True),
        ({"direction": "lower", "absolute": 0.0}, 0.30, 0.31, True),  # loss: lower is better
        ({"direction": "lower", "absolute": 0.0}, 0.32, 0.31, False),
        ({"direction": "lower", "relative": 0.1}, 0.27, 0.31, True),  # 12.9 % lower
        ({"direction": "lower", "absolute": 0.0, "relative": 0.1}, 0.29, 0.31, False),  # both must hold
    ],
)
def test_change_thresholds(threshold, candidate, champion, passes):
    assert change_passes(ChangeThreshold(**threshold), candidate, champion) is passes


@pytest.mark.slow
def test_first_run_skips_change_thresholds_and_says_so(iris_config, tmp_path, iris_run, caplog):
    iris_config.gate.change = {"accuracy": ChangeThreshold(direction="higher", absolute=0.0)}
    caplog.set_level(logging.INFO)
    result = _gate(iris_config, tmp_path, iris_run, accuracy=0.95, loss=0.2)
    assert result.blessed and [c.kind for c in result.checks] == ["value"]
    assert "has no champion yet: change thresholds skipped" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, blessed",
    [
        ({"accuracy": {"direction": "higher", "absolute": 0.0}}, True),  # the same model: no worse
        ({"accuracy": {"direction": "higher", "absolute": 0.01}}, False),  # but not better
        ({"loss": {"direction": "lower", "relative": -0.01}}, True),
        ({"loss": {"direction": "lower", "relative": 0.01}}, False),
    ],
)
@pytest.mark.slow
def test_the_champion_is_rescored_on_the_same_split(tmp_path, iris_run, change, blessed):
    """The session run published its model as champion; gating that run's own evaluation against it compares
    the model with itself, re-scored through its SavedModel, so the metrics must agree exactly."""
    config = load_config(IRIS_CONFIG, iris_overrides(iris_run["root"], gate={"change": change}))
    run_uri = iris_run["summary"]["run_uri"]
    evaluated = stages.EVALUATE.load(str(run_uri))
    result = gate(config, str(tmp_path / "candidate"), evaluated, _prepared(iris_run))
    assert result.blessed is blessed, result.reason
    written = json.loads((tmp_path / "candidate" / "gate" / layout.BLESSING_FILE).read_text())
    champion = json.loads((Path(config.export.root) / "iris" / layout.CHAMPION_FILE).read_text())
    assert written["champion"]["version"] == champion["version"] == result.champion_version
    (check,) = [c for c in written["checks"] if c["kind"] == "change"]
    assert check["champion"] == pytest.approx(check["value"], rel=1e-6)
    assert written["champion"]["examples"] == evaluated.examples


@pytest.mark.slow
def test_a_champion_that_cannot_be_scored_blocks_blessing(tmp_path, iris_run):
    broken = tmp_path / "models" / "iris"
    (broken / "v1").mkdir(parents=True)
    write_json(broken / layout.CHAMPION_FILE, {"version": "v1", "model_uri": str(broken / "v1")})
    config = load_config(
        IRIS_CONFIG, iris_overrides(tmp_path, gate={"change": {"accuracy": {"direction": "higher", "absolute": 0.0}}})
    )
    result = gate(config, str(tmp_path / "run"), _evaluated(tmp_path, accuracy=0.95, loss=0.2), _prepared(iris_run))
    assert not result.blessed
    assert "champion v1 cannot be scored on this test split: cannot load" in result.reason


@pytest.mark.slow
def test_regression_metrics_gate(iris_config, tmp_path, iris_run):
    iris_config.gate.thresholds = {"r2": Threshold(lower=0.8), "rmse": Threshold(upper=10)}
    result = gate(
        iris_config,
        str(tmp_path / "run"),
        _evaluated(tmp_path, loss=49.0, mae=5.0, rmse=7.0, r2=0.85),
        _prepared(iris_run),
    )
    assert result.blessed, result.reason


@pytest.mark.slow
def test_always_bless_records_the_checks(tmp_path, iris_run):
    config = load_config(IRIS_CONFIG, iris_overrides(tmp_path, gate={"mode": "always_bless"}))
    config.gate.thresholds = {"accuracy": Threshold(lower=0.99)}
    result = gate(config, str(tmp_path / "run"), _evaluated(tmp_path, accuracy=0.5, loss=2.0), _prepared(iris_run))
    assert result.blessed and not result.checks[0].passed
    assert result.reason.startswith("blessed (gate.mode always_bless; checks not all passed): accuracy = 0.5000")


def test_no_thresholds_is_a_config_error_unless_always_bless(tmp_path):
    import yaml

    data = yaml.safe_load(IRIS_CONFIG.read_text())
    data["gate"] = {}
    data["dataset"]["path"] = str(IRIS_CSV)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(data))
    with pytest.raises(
        ConfigError,
        match=r"gate: Value error, no thresholds: set gate.thresholds and/or gate.change, "
        r"or gate.mode: always_bless",
    ):
        load_config(config_file)
    assert load_config(config_file, {"gate": {"mode": "always_bless"}}).gate.mode == "always_bless"


@pytest.mark.slow
def test_threshold_on_an_unknown_metric_is_a_config_error(iris_config, tmp_path, iris_run):
    iris_config.gate.thresholds = {"auc": Threshold(lower=0.5)}
    with pytest.raises(
        ConfigError,
        match=r"gate.thresholds.auc: evaluation produced no such metric \(available: "
        r"accuracy, loss\)",
    ):
        gate(iris_config, str(tmp_path / "run"), _evaluated(tmp_path, accuracy=0.9, loss=0.1), _prepared(iris_run))


def test_a_threshold_needs_a_bound():
    with pytest.raises(ValueError, match="needs 'lower', 'upper' or both"):
        Threshold()
    with pytest.raises(ValueError, match="needs 'absolute', 'relative' or both"):
        ChangeThreshold(direction="higher")


@pytest.mark.slow
def test_candidate_against_a_weaker_and_a_stronger_champion(tmp_path, iris_run):
    """A one-step model published as champion is beaten by the session run's model; the one-step model does not
    beat the session run's champion. Both comparisons re-score the champion on the candidate's test split."""
    from kest_tasks.orchestration.runner import run_pipeline

    weak_root = tmp_path / "weak-models"
    weak = run_pipeline(
        IRIS_CONFIG,
        iris_overrides(
            tmp_path / "weak", export={"root": str(weak_root)}, trainer={"steps": 1}, gate={"mode": "always_bless"}
        ),
        "weak",
    )
    assert weak["published_model"] and weak["test_metrics"]["accuracy"] < 0.9
    change = {"accuracy": {"direction": "higher", "absolute": 0.05}}
    strong_run = iris_run["summary"]["run_uri"]
    strong_eval = stages.EVALUATE.load(str(strong_run))
    against_weak = load_config(
        IRIS_CONFIG, iris_overrides(tmp_path, export={"root": str(weak_root)}, gate={"change": change})
    )
    result = gate(against_weak, str(tmp_path / "strong-vs-weak"), strong_eval, _prepared(iris_run))
    assert result.blessed and result.champion_version == Path(weak["published_model"]).name, result.reason

    weak_eval = stages.EVALUATE.load(str(weak["run_uri"]))
    weak_prepared = stages.PREPARE.load(str(Path(weak["run_uri"])))
    against_strong = load_config(IRIS_CONFIG, iris_overrides(iris_run["root"], gate={"change": change}))
    result = gate(against_strong, str(tmp_path / "weak-vs-strong"), weak_eval, weak_prepared)
    assert not result.blessed and "vs champion" in result.reason and "FAILED" in result.reason
