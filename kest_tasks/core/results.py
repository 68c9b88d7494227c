"""What each stage hands on: its small, JSON-serialisable result (exactly what the DAG passes through XCom and
what `<run>/<stage>/result.json` holds).

The stage *specs* (this module and `core.stages`) are kept apart from the stage *executors* (data/, training/,
…), as TFX separates a component's spec from its executor: the DAG, the CLI and the report read results without
importing TensorFlow or another stage's code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class StageResult(BaseModel):
    """A stage's outcome; unknown keys are refused, so a renamed field cannot pass silently."""

    model_config = ConfigDict(extra="forbid")


class ConfigureResult(StageResult):
    run_uri: str
    config_uri: str
    model_name: str


class PrepareResult(StageResult):
    data_uri: str
    schema_uri: str
    stats_uri: str
    rows: int
    split_rows: dict[str, int]
    files: dict[str, list[str]]
    compression: str
    inputs: list[str]
    span: int | None
    anomalies: int


class InputSpec(BaseModel):
    """One Keras model input: its name and shape (None for the batch dimension)."""

    name: str
    shape: list[int | None]


class InputPlan(BaseModel):
    """How dataset features become model inputs.

    `by_name`: each model input is the feature of the same name. `stacked`: the model has one input as wide
    as the numeric features, which are stacked in schema order (the Iris tutorial's `dense_input`). `raw`:
    every feature under its own name, numbers as float32 (premade Estimators' feature columns, model_fns).
    """

    mode: Literal["by_name", "stacked", "raw"]
    inputs: list[InputSpec]
    features: list[str]
    vocabularies: dict[str, list[str]] = {}


class BuildResult(StageResult):
    model_uri: str
    input_plan: InputPlan
    output_names: list[str]
    parameters: int
    metric_names: list[str] = ["loss"]


class TrainResult(StageResult):
    model_dir: str
    checkpoint: str
    global_step: int
    eval_metrics: dict[str, float]
    seconds: float
    stopped_early: bool = False
    warm_started_from: str | None = None


class EvaluateResult(StageResult):
    metrics_uri: str
    metrics: dict[str, float]  # the headline metrics; per-class and sliced ones are in metrics.json
    examples: int
    checkpoint: str
    seconds: float = 0.0


class Check(BaseModel):
    """One row of the gate's table: a threshold on a metric, or its change against the champion."""

    metric: str
    kind: Literal["value", "change"] = "value"
    value: float
    lower: float | None = None
    upper: float | None = None
    champion: float | None = None
    direction: Literal["higher", "lower"] | None = None
    absolute: float | None = None
    relative: float | None = None
    passed: bool

    def needs(self, at_least: str = ">=", at_most: str = "<=") -> str:
        """What the check requires, e.g. `>= 0.9` or `higher by >= 0.01 and higher by >= 0.05 relative`."""
        if self.kind == "change":
            parts = [
                f"{self.direction} by {at_least} {self.absolute:g}" if self.absolute is not None else "",
                f"{self.direction} by {at_least} {self.relative:g} relative" if self.relative is not None else "",
            ]
        else:
            parts = [
                f"{at_least} {self.lower:g}" if self.lower is not None else "",
                f"{at_most} {self.upper:g}" if self.upper is not None else "",
            ]
        return " and ".join(part for part in parts if part)

    def describe(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        versus = f" vs champion {self.champion:.4f}" if self.kind == "change" else ""
        return f"{self.metric} = {self.value:.4f}{versus} (needs {self.needs()}): {verdict}"


class GateResult(StageResult):
    blessed: bool
    blessing_uri: str
    checks: list[Check]
    reason: str
    champion_version: str | None = None


class ExportResult(StageResult):
    saved_model_uri: str
    exported_at: str
    inputs: list[str]
    outputs: list[str]
    checked_rows: int
    load_seconds: float
    signatures: list[str] = []
    latency_ms_p50: float = 0.0
    latency_ms_p99: float = 0.0


class ReportResult(StageResult):
    report_uri: str
    plots: int


class PublishResult(StageResult):
    model_uri: str
    version: str
    champion_uri: str
    files: int
    champion: bool = True
    champion_note: str = ""


class BatchScoreResult(StageResult):
    """A batch scoring: which version scored what, where the predictions and rejected rows went, how many."""

    model: str
    version: str
    model_uri: str
    inputs: list[str]
    output_uri: str
    rejects_uri: str
    rows: int
    scored: int
    rejected: int
    seconds: float
