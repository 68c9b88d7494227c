"""The whole pipeline without Airflow, and the two steps that bracket it: configure and summarize.

The DAG runs the stages of `core.stages` one per task; `run_pipeline` runs them in one process, in the same order
and under the same blessing rule.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kest_tasks.core import files
from kest_tasks.core.config import PipelineConfig, config_to_json, load_config
from kest_tasks.core.errors import ERROR_PREFIX, ConfigError, KestError
from kest_tasks.core.execution import die_with_parent, load_run_config
from kest_tasks.core.files import RETRYABLE_MARK, StorageError
from kest_tasks.core.layout import SUMMARY_FILE, RunLayout, runs_folder
from kest_tasks.core.results import ConfigureResult
from kest_tasks.core.stages import (
    BLESSING_STAGE,
    EVALUATE,
    GATE,
    PUBLISH,
    REPORT,
    STAGES,
    TRAIN,
    blessing_decision,
    invoke,
    optional_inputs,
    stage,
)

log = logging.getLogger("kest")


def configure(
    config_path: str | Path, overrides: dict[str, Any] | None, run_id: str, run_uri: str | None = None
) -> ConfigureResult:
    """Validate the config (file + overrides) and freeze it as `<run_uri>/config.json` for the later stages.
    `run_uri` defaults to `<artifact_root>/runs/<run_id>` (the DAG passes the same, from the plugin's macro).

    A retry keeps the frozen config, so every stage of a run sees the same one even if the file changed since.
    """
    config = load_config(config_path, overrides)
    if config.trainer.cluster is not None:
        from kest_tasks.core.cluster import check_cluster
        from kest_tasks.orchestration.workers import TrainWorkers

        # A Ray started for the train task runs where that task does: this machine's CPUs and GPUs count only
        # when training shares this task's workers (no KEST_TRAIN_QUEUE of its own); train checks them again.
        check_cluster(config, resources_here=TrainWorkers.from_env().queue == "default")
    layout = RunLayout(run_uri) if run_uri else RunLayout.for_run(config.artifact_root, run_id)
    if files.write_bytes(layout.config_file, config_to_json(config).encode(), if_absent=True):
        log.info("configure: run folder %s, config from %s", layout.uri, config_path)
    else:
        log.info("configure: run folder %s already has its config; keeping it", layout.uri)
    return ConfigureResult(run_uri=layout.uri, config_uri=layout.config_file, model_name=config.model_name)


def model_config_from_form(params: Mapping[str, Any]) -> PipelineConfig:
    """The config of a form that names a model (kest_promote, kest_batch_score): `config_path` and `overrides`
    checked against the deployment's policy, `model` as model_name."""
    from kest_tasks.core.config import deep_merge
    from kest_tasks.orchestration.policy import check_run_conf

    overrides = deep_merge(params.get("overrides") or {}, {"model_name": params["model"]})
    return check_run_conf(params["config_path"], overrides)


def scoring_request(params: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """The kest_batch_score DAG's form (model, version, input, output, keys, config_path, overrides) checked against
    the deployment's policy — input under the data roots, an output given under the artifact roots — as
    `serving.batch_score`'s arguments; the version chosen (the champion unless one is given) and `{run_id}` and
    `{version}` in the output filled in."""
    from kest_tasks.core.layout import safe_run_id
    from kest_tasks.orchestration.policy import ARTIFACT_ROOTS, DATA_ROOTS, check
    from kest_tasks.registry.catalog import chosen_version
    from kest_tasks.registry.champion import store_for

    config = model_config_from_form(params)
    check("input", params["input"], DATA_ROOTS)
    version = chosen_version(store_for(config), config.model_name, params.get("version") or None)["version"]
    output = params.get("output") or files.join(config.artifact_root, "scores", "{run_id}", "predictions.parquet")
    output = output.replace("{run_id}", safe_run_id(run_id)).replace("{version}", version)
    if params.get("output"):  # the default is under the config's artifact_root
        check("output", output, ARTIFACT_ROOTS)
    keys = [key.strip() for key in params["keys"].split(",") if key.strip()] if params.get("keys") else None
    return {"config": config, "input_uri": params["input"], "output_uri": output, "version": version, "keys": keys}


def summarize(run_uri: str) -> dict[str, Any]:
    """Write `<run_uri>/summary.json`: test metrics, the gate decision and where the model went (if it did)."""
    evaluated, blessing = EVALUATE.load(run_uri), GATE.load(run_uri)
    published, reported = PUBLISH.stored(run_uri), REPORT.stored(run_uri)
    summary = {
        "run_uri": run_uri,
        "test_metrics": evaluated.metrics,
        "test_examples": evaluated.examples,
        "blessed": blessing.blessed,
        "gate": blessing.reason,
        "published_model": published.model_uri if published else None,
        "report": reported.report_uri if reported else None,
    }
    files.write_json(RunLayout(run_uri).summary_file, summary)
    log.info("summary: %s", format_summary(summary))
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(summary["test_metrics"].items()))
    published = summary["published_model"] or "not published"
    return (
        f"test metrics ({summary['test_examples']} examples): {metrics}\n"
        f"gate: {summary['gate']}\n"
        f"published model: {published}\n"
        f"report: {summary.get('report') or 'none'}\n"
        f"run folder: {summary['run_uri']}"
    )


def latest_summary(config: PipelineConfig) -> dict[str, Any] | None:
    """The summary of the most recently finished run under the config's artifact root."""
    summaries = sorted(files.glob(files.join(runs_folder(config.artifact_root), "*", SUMMARY_FILE)), key=files.modified)
    return files.read_json(summaries[-1]) if summaries else None


def run_stage(name: str, run_uri: str) -> dict[str, Any]:
    """Run one stage of an existing run, its upstream results read from the run folder. Returns its result."""
    spec = stage(name)
    optional = optional_inputs(spec)
    upstream = {
        argument: (stage(source).stored(run_uri) if argument in optional else stage(source).load(run_uri))
        for argument, source in spec.inputs.items()
    }
    return invoke(spec, run_uri, upstream).model_dump(mode="json")


FRESH_PROCESS_SETTING = "KEST_STAGE_PROCESS"  # "fresh": every stage task runs its stage in a new interpreter


def fresh_process_wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the deployment asks for each stage in a fresh Python process (KEST_STAGE_PROCESS=fresh)."""
    value = (os.environ if environ is None else environ).get(FRESH_PROCESS_SETTING, "").strip().lower()
    if value not in ("", "fresh", "same"):
        raise ConfigError(f"{FRESH_PROCESS_SETTING}: expected 'fresh' or 'same', got {value!r}")
    return value == "fresh"


def stage_wants_own_process(name: str, run_uri: str) -> bool:
    """Whether a stage task runs its stage in a new process: every stage with KEST_STAGE_PROCESS=fresh, and train
    on a Ray cluster always — that process is the Ray driver, stopped with everything it started when the task
    is (a timeout, on_kill, the task process killed: PR_SET_PDEATHSIG)."""
    if fresh_process_wanted():
        return True
    return name == TRAIN.name and load_run_config(run_uri).trainer.cluster is not None


def run_stage_in_fresh_process(name: str, run_uri: str) -> dict[str, Any]:
    """Run one stage as `python -m kest_tasks stage NAME --run RUN_URI` in a new process whose working directory
    is a new empty folder, as a task on another worker would: it sees only the run folder (local or gs://). Its
    output goes to this process's log line by line. Returns its result; a failure raises a one-line KestError
    (a StorageError marked retryable when storage was unavailable)."""
    command = [sys.executable, "-m", "kest_tasks", "stage", name, "--run", run_uri]
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix=f"kest-{name}-") as cwd:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=die_with_parent,
        )
        assert process.stdout is not None
        try:
            for line in process.stdout:
                log.info("[%s] %s", name, line.rstrip())
                if line.strip():
                    lines.append(line.strip())
            code = process.wait()
        finally:
            if process.poll() is None:  # this task was stopped (on_kill, a timeout): stop the stage with it
                process.terminate()
                process.wait()
    if code != 0:
        errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
        message = errors[-1][len(ERROR_PREFIX) :] if errors else f"exited with code {code}: {(lines or [''])[-1]}"
        raise StorageError(message, retryable=True) if RETRYABLE_MARK in message else KestError(message)
    return stage(name).load(run_uri).model_dump(mode="json")


def run_pipeline(config_path: str | Path, overrides: dict[str, Any] | None, run_id: str) -> dict[str, Any]:
    """Run every stage in this process, as the DAG does task by task. Returns the run summary."""
    run_uri = configure(config_path, overrides, run_id).run_uri
    for spec in STAGES:
        if spec.needs_blessing:
            blessed, reason = blessing_decision(BLESSING_STAGE.load(run_uri))
            if not blessed:
                log.info("%s skipped: %s", spec.name, reason)
                continue
        run_stage(spec.name, run_uri)
    return summarize(run_uri)
