"""gate: bless the candidate only when its value thresholds hold and it compares well enough with the champion
→ `<run_uri>/gate/blessing.json`.

The champion (the model published as champion of this model name) is re-scored on this run's test split
through its exported serving signature, with the code that scored the candidate, so the comparison is fair.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from kest_tasks.core import files
from kest_tasks.core.config import ChangeThreshold, ConfigError, PipelineConfig
from kest_tasks.core.execution import run_once, stage_function
from kest_tasks.core.files import StorageError, write_json
from kest_tasks.core.layout import BLESSING_FILE, CHAMPION_COPY_FOLDER
from kest_tasks.core.results import Check, EvaluateResult, GateResult, PrepareResult
from kest_tasks.core.stages import GATE
from kest_tasks.core.tfenv import import_tensorflow
from kest_tasks.data.schema import Schema
from kest_tasks.evaluation.metrics import score
from kest_tasks.evaluation.scoring import all_metrics, run_over_split, split_batches
from kest_tasks.registry.champion import champion_model_dir, current_champion

log = logging.getLogger("kest.gate")


def _metric(metrics: dict[str, float], name: str, section: str) -> float:
    if name not in metrics:
        available = ", ".join(sorted(key for key in metrics if "/" not in key))
        raise ConfigError(f"gate.{section}.{name}: evaluation produced no such metric (available: {available})")
    return metrics[name]


def check_thresholds(config: PipelineConfig, metrics: dict[str, float]) -> list[Check]:
    """Compare metrics with gate.thresholds; raise ConfigError if a threshold names an unknown metric."""
    checks = []
    for metric, threshold in sorted(config.gate.thresholds.items()):
        value = _metric(metrics, metric, "thresholds")
        passed = (threshold.lower is None or value >= threshold.lower) and (
            threshold.upper is None or value <= threshold.upper
        )
        checks.append(Check(metric=metric, value=value, lower=threshold.lower, upper=threshold.upper, passed=passed))
    return checks


def change_passes(threshold: ChangeThreshold, candidate: float, champion: float) -> bool:
    """TFMA-style change threshold: the improvement (in the better direction) must reach every bound given."""
    improvement = candidate - champion if threshold.direction == "higher" else champion - candidate
    return (threshold.absolute is None or improvement >= threshold.absolute) and (
        threshold.relative is None or improvement >= threshold.relative * abs(champion)
    )


def check_changes(config: PipelineConfig, metrics: dict[str, float], champion: dict[str, float]) -> list[Check]:
    checks = []
    for metric, threshold in sorted(config.gate.change.items()):
        value = _metric(metrics, metric, "change")
        baseline = _metric(champion, metric, "change")
        checks.append(
            Check(
                metric=metric,
                kind="change",
                value=value,
                champion=baseline,
                direction=threshold.direction,
                absolute=threshold.absolute,
                relative=threshold.relative,
                passed=change_passes(threshold, value, baseline),
            )
        )
    return checks


class ChampionError(RuntimeError):
    """The champion could not be scored on this run's test split."""


def score_saved_model(config: PipelineConfig, prepared: PrepareResult, saved_model_dir: str) -> dict:
    """Score an exported model (its `serving_default` signature on raw features) on this run's test split."""
    tf = import_tensorflow()
    schema = Schema.of(prepared)
    try:
        signature = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    except (OSError, KeyError, ValueError) as error:
        raise ChampionError(f"cannot load {saved_model_dir}: {str(error).splitlines()[0]}") from None
    inputs = signature.structured_input_signature[1]
    missing = sorted(set(inputs) - set(schema.feature_keys))
    if missing:
        raise ChampionError(f"it needs features this dataset lacks: {', '.join(missing)}")
    output = "logits" if schema.label.kind == "classification" else "predictions"

    def predict(features: Any) -> Any:
        answer = signature(**{name: tf.cast(features[name], spec.dtype) for name, spec in inputs.items()})
        if output not in answer:
            raise ChampionError(f"its serving signature has no {output!r} output")
        return answer[output]

    scored = run_over_split(split_batches(config, prepared, schema), [], predict)
    classes = schema.label.classes if schema.label.kind == "classification" else None
    if classes and np.asarray(scored.outputs).shape[-1] not in (1, len(classes)):
        raise ChampionError(f"it predicts {scored.outputs.shape[-1]} classes, this dataset has {len(classes)}")
    return score(scored.labels, scored.outputs, classes)


@stage_function
def gate(config: PipelineConfig, run_uri: str, evaluated: EvaluateResult, prepared: PrepareResult) -> GateResult:
    """Decide whether the evaluated model is blessed; the reason lists every check with its numbers."""
    gate_config = config.gate

    def produce(tmp: Path, folder: str) -> GateResult:
        metrics = all_metrics(evaluated)
        checks = check_thresholds(config, metrics)
        champion = current_champion(config)
        champion_record = None
        problems = []
        if champion is None:
            if gate_config.change:
                log.info("gate: %s has no champion yet: change thresholds skipped", config.model_name)
        elif gate_config.change:
            scratch = tmp / CHAMPION_COPY_FOLDER
            try:
                champion_dir = champion_model_dir(config, champion, scratch)
                champion_score = score_saved_model(config, prepared, str(champion_dir))
            except (ChampionError, StorageError) as error:  # the store's own refusals (StoreError) included
                problems.append(f"champion {champion['version']} cannot be scored on this test split: {error}")
            else:
                checks += check_changes(config, metrics, champion_score["metrics"])
                champion_record = {
                    "version": champion["version"],
                    "model_uri": champion["model_uri"],
                    "metrics": champion_score["metrics"],
                    "examples": champion_score["examples"],
                }
            finally:
                shutil.rmtree(scratch, ignore_errors=True)  # only a download lands here; a local champion is read
        passed = all(check.passed for check in checks) and not problems
        blessed = passed or gate_config.mode == "always_bless"
        details = "; ".join([c.describe() for c in checks] + problems) or "no checks"
        if gate_config.mode == "always_bless":
            reason = f"blessed (gate.mode always_bless; checks {'passed' if passed else 'not all passed'}): {details}"
        else:
            reason = ("blessed: " if blessed else "not blessed: ") + details
        if champion is not None and champion_record is None:
            champion_record = {"version": champion["version"], "model_uri": champion["model_uri"]}
        write_json(
            tmp / BLESSING_FILE,
            {
                "blessed": blessed,
                "reason": reason,
                "mode": gate_config.mode,
                "checks": [c.model_dump() for c in checks],
                "champion": champion_record,
            },
        )
        log.info("gate: %s (champion: %s)", reason, champion["version"] if champion else "none yet")
        return GateResult(
            blessed=blessed,
            blessing_uri=files.join(folder, BLESSING_FILE),
            checks=checks,
            reason=reason,
            champion_version=champion["version"] if champion else None,
        )

    return run_once(run_uri, GATE.folder, GateResult, produce)
