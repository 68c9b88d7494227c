"""gate: bless the candidate only when every configured threshold holds → `<run_uri>/gate/blessing.json`."""
from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel

from kest_tasks.config import ConfigError, PipelineConfig
from kest_tasks.evaluate import EvaluateResult
from kest_tasks.stage import StageResult, run_once, stage_function
from kest_tasks.storage import write_json_atomic

log = logging.getLogger("kest.gate")


class Check(BaseModel):
    metric: str
    value: float
    lower: float | None
    upper: float | None
    passed: bool

    def describe(self) -> str:
        bounds = []
        if self.lower is not None:
            bounds.append(f">= {self.lower:g}")
        if self.upper is not None:
            bounds.append(f"<= {self.upper:g}")
        verdict = "ok" if self.passed else "FAILED"
        return f"{self.metric} = {self.value:.4f} (needs {' and '.join(bounds)}): {verdict}"


class GateResult(StageResult):
    blessed: bool
    blessing_uri: str
    checks: list[Check]
    reason: str


def check_thresholds(config: PipelineConfig, metrics: dict[str, float]) -> list[Check]:
    """Compare metrics with gate.thresholds; raise ConfigError if a threshold names an unknown metric."""
    checks = []
    for metric, threshold in sorted(config.gate.thresholds.items()):
        if metric not in metrics:
            available = ", ".join(sorted(metrics))
            raise ConfigError(f"gate.thresholds.{metric}: evaluation produced no such metric (available: {available})")
        value = metrics[metric]
        passed = (threshold.lower is None or value >= threshold.lower) and (
            threshold.upper is None or value <= threshold.upper
        )
        checks.append(Check(metric=metric, value=value, lower=threshold.lower, upper=threshold.upper, passed=passed))
    return checks


@stage_function
def gate(config: PipelineConfig, run_uri: str, evaluated: EvaluateResult) -> GateResult:
    """Decide whether the evaluated model is blessed; the reason lists every check with its numbers."""

    def produce(tmp: Path, final: Path) -> GateResult:
        checks = check_thresholds(config, evaluated.metrics)
        blessed = all(check.passed for check in checks)
        reason = ("blessed: " if blessed else "not blessed: ") + "; ".join(c.describe() for c in checks)
        write_json_atomic(tmp / "blessing.json", {
            "blessed": blessed, "reason": reason, "checks": [c.model_dump() for c in checks],
        })
        log.info("gate: %s", reason)
        return GateResult(blessed=blessed, blessing_uri=str(final / "blessing.json"), checks=checks, reason=reason)

    return run_once(run_uri, "gate", GateResult, produce)
