"""The stage registry: every stage of the pipeline, its folder, its code, its upstream inputs and its result.

The DAG, the CLI's in-process runner, the docs and the tests all read this one table: adding a stage, or an
input to a stage, is one edit here. Reading it imports no TensorFlow: a stage's code (`run`) is imported only
when the stage runs.

Blessing rule (the only place it lives): stages marked `needs_blessing` run only when the gate blessed the model;
a stage that does not need blessing takes the outputs of those stages as optional inputs (None when skipped).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kest_tasks.core import files
from kest_tasks.core.errors import ConfigError
from kest_tasks.core.layout import RunLayout
from kest_tasks.core.results import (
    BuildResult,
    EvaluateResult,
    ExportResult,
    GateResult,
    PrepareResult,
    PublishResult,
    ReportResult,
    StageResult,
    TrainResult,
)

R = TypeVar("R", bound=StageResult)


@dataclass(frozen=True)
class StageSpec(Generic[R]):
    """One stage: `run(config, run_uri, **inputs) -> result`, writing into the run's `<name>/` folder."""

    name: str
    run: str  # "module:function"
    result: type[R]
    summary: str
    inputs: Mapping[str, str] = field(default_factory=dict)  # argument → upstream stage
    needs_blessing: bool = False

    @property
    def folder(self) -> str:
        return self.name

    def function(self) -> Callable[..., R]:
        module, _, function = self.run.partition(":")
        return getattr(importlib.import_module(module), function)

    def stored(self, run_uri: str) -> R | None:
        """This stage's result in the run folder, or None if it has not finished there."""
        path = RunLayout(run_uri).result_file(self.folder)
        return self.result.model_validate(files.read_json(path)) if files.exists(path) else None

    def load(self, run_uri: str) -> R:
        """This stage's result in the run folder; ConfigError if it has not finished there."""
        result = self.stored(run_uri)
        if result is None:
            raise ConfigError(f"stage {self.name!r} has not finished in {run_uri}: run it first")
        return result


PREPARE = StageSpec(
    "prepare",
    "kest_tasks.data.prepare:prepare",
    PrepareResult,
    "Read the dataset, infer its schema and statistics, validate it, hash-split it and write TFRecord shards.",
)
BUILD = StageSpec(
    "build",
    "kest_tasks.training.build:build",
    BuildResult,
    "Build and compile the configured Keras model (or describe the Estimator); save it.",
    {"prepared": "prepare"},
)
TRAIN = StageSpec(
    "train",
    "kest_tasks.training.train:train",
    TrainResult,
    "Train (model_to_estimator, premade, model_fn or native fit) with checkpoints; a retry resumes "
    "from the last checkpoint.",
    {"prepared": "prepare", "built": "build"},
)
EVALUATE = StageSpec(
    "evaluate",
    "kest_tasks.evaluation.evaluate:evaluate",
    EvaluateResult,
    "Metrics on the whole held-out test split: per class, confusion matrix, slices.",
    {"prepared": "prepare", "built": "build", "trained": "train"},
)
GATE = StageSpec(
    "gate",
    "kest_tasks.evaluation.gate:gate",
    GateResult,
    "Bless the model only if its thresholds hold and it compares well with the champion (re-scored "
    "on the same test split).",
    {"evaluated": "evaluate", "prepared": "prepare"},
)
EXPORT = StageSpec(
    "export",
    "kest_tasks.serving.export:export",
    ExportResult,
    "Export a SavedModel and check, in a fresh process, that it answers like the trained model.",
    {"prepared": "prepare", "built": "build", "trained": "train"},
    needs_blessing=True,
)
REPORT = StageSpec(
    "report",
    "kest_tasks.reporting.report:report",
    ReportResult,
    "report.html: data, training curves, confusion matrix or residuals, the gate's table, where the "
    "model went. Runs for unblessed models too.",
    {"prepared": "prepare", "trained": "train", "evaluated": "evaluate", "blessing": "gate", "exported": "export"},
)
PUBLISH = StageSpec(
    "publish",
    "kest_tasks.registry.publish:publish",
    PublishResult,
    "Copy the SavedModel and its report to the model store (saved_model.pb last) and make it "
    "champion if it still beats the champion the gate compared it with.",
    {"exported": "export", "blessing": "gate", "evaluated": "evaluate", "reported": "report"},
    needs_blessing=True,
)

STAGES: tuple[StageSpec[Any], ...] = (PREPARE, BUILD, TRAIN, EVALUATE, GATE, EXPORT, REPORT, PUBLISH)
BY_NAME: dict[str, StageSpec[Any]] = {spec.name: spec for spec in STAGES}
BLESSING_STAGE = GATE


def stage(name: str) -> StageSpec[Any]:
    if name not in BY_NAME:
        raise ConfigError(f"unknown stage {name!r} (stages: {', '.join(BY_NAME)})")
    return BY_NAME[name]


def stage_table() -> str:
    """The registry as a Markdown table, for the docs (docs/architecture.md holds it; a test keeps it current)."""
    rows = ["| stage | code | takes | needs blessing | does |", "|---|---|---|---|---|"]
    for spec in STAGES:
        takes = ", ".join(f"{argument} ← {upstream}" for argument, upstream in spec.inputs.items()) or "—"
        rows.append(
            f"| {spec.name} | `{spec.run}` | {takes} | {'yes' if spec.needs_blessing else 'no'} | {spec.summary} |"
        )
    return "\n".join(rows)


def optional_inputs(spec: StageSpec[Any]) -> set[str]:
    """Inputs that are None when the model was not blessed: outputs of stages that need blessing, taken by a stage
    that does not."""
    if spec.needs_blessing:
        return set()
    return {argument for argument, upstream in spec.inputs.items() if BY_NAME[upstream].needs_blessing}


def blessing_decision(blessing: GateResult | Mapping[str, Any]) -> tuple[bool, str]:
    """(may the stages that need blessing run?, why) from the gate's result."""
    gate = blessing if isinstance(blessing, GateResult) else GateResult.model_validate(blessing)
    return gate.blessed, gate.reason


def invoke(spec: StageSpec[R], run_uri: str, upstream: Mapping[str, StageResult | Mapping[str, Any] | None]) -> R:
    """Run a stage of a run with its upstream results (typed or as XCom's dicts). A required input that is missing
    is a ConfigError naming it: the upstream stage has not run for this run."""
    # Deferred: execution loads the config model, which DAG files reading the registry at parse time need not build.
    from kest_tasks.core.execution import load_run_config

    optional = optional_inputs(spec)
    missing = [argument for argument in spec.inputs if upstream.get(argument) is None and argument not in optional]
    if missing:
        stages = ", ".join(spec.inputs[argument] for argument in missing)
        raise ConfigError(
            f"{spec.name}: no result of {stages} for run {run_uri}: run the upstream stages of the same run first"
        )
    arguments = {argument: upstream.get(argument) for argument in spec.inputs}
    return spec.function()(load_run_config(run_uri), run_uri, **arguments)
