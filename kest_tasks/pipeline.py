"""The whole pipeline without Airflow, and the two steps that bracket it: configure and summarize.

The DAG calls the same stage functions one per task; `run_pipeline` calls them in one process.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kest_tasks.assets import BUNDLED_CONFIG
from kest_tasks.config import ConfigError, PipelineConfig, config_to_json, load_config
from kest_tasks.metrics import headline
from kest_tasks.report import REPORT_FILE
from kest_tasks.stage import RESULT_FILE, StageResult, load_run_config, run_uri_for
from kest_tasks.storage import (
    local_path,
    read_json,
    write_bytes_atomic,
    write_json_atomic,
)

log = logging.getLogger("kest")

DEFAULT_CONFIG = BUNDLED_CONFIG


class ConfigureResult(StageResult):
    run_uri: str
    config_uri: str
    model_name: str


def configure(config_path: str | Path, overrides: dict[str, Any] | None, run_id: str,
              run_uri: str | None = None) -> ConfigureResult:
    """Validate the config (file + overrides) and freeze it as `<run_uri>/config.json` for the later stages.
    `run_uri` defaults to `<artifact_root>/runs/<run_id>` (the DAG passes the same, from the plugin's macro).

    A retry keeps the frozen config, so every stage of a run sees the same one even if the file changed since.
    """
    config = load_config(config_path, overrides)
    run_uri = run_uri or run_uri_for(config, run_id)
    config_file = local_path(run_uri) / "config.json"
    if config_file.exists():
        log.info("configure: run folder %s already has its config; keeping it", run_uri)
    else:
        write_bytes_atomic(config_file, config_to_json(config).encode())
        log.info("configure: run folder %s, config from %s", run_uri, config_path)
    return ConfigureResult(run_uri=run_uri, config_uri=str(config_file), model_name=config.model_name)


def summarize(run_uri: str) -> dict[str, Any]:
    """Write `<run_uri>/summary.json`: test metrics, the gate decision and where the model went (if it did)."""
    run = local_path(run_uri)
    metrics = read_json(run / "eval" / "metrics.json")
    blessing = read_json(run / "gate" / "blessing.json")
    published = run / "publish" / RESULT_FILE
    published_uri = read_json(published)["model_uri"] if published.exists() else None
    report = run / "report" / REPORT_FILE
    summary = {
        "run_uri": run_uri,
        "test_metrics": headline(metrics["metrics"]),
        "test_examples": metrics["examples"],
        "blessed": blessing["blessed"],
        "gate": blessing["reason"],
        "published_model": published_uri,
        "report": str(report) if report.exists() else None,
    }
    write_json_atomic(run / "summary.json", summary)
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
    summaries = sorted((local_path(config.artifact_root) / "runs").glob("*/summary.json"),
                       key=lambda p: p.stat().st_mtime)
    return read_json(summaries[-1]) if summaries else None


# Stage name → (folder its result.json lives in, {argument: upstream stage}).
STAGES: dict[str, tuple[str, dict[str, str]]] = {
    "prepare": ("data", {}),
    "build": ("model", {"prepared": "prepare"}),
    "train": ("train", {"prepared": "prepare", "built": "build"}),
    "evaluate": ("eval", {"prepared": "prepare", "built": "build", "trained": "train"}),
    "gate": ("gate", {"evaluated": "evaluate", "prepared": "prepare"}),
    "export": ("export", {"prepared": "prepare", "built": "build", "trained": "train"}),
    "report": ("report", {}),
    "publish": ("publish", {"exported": "export", "blessing": "gate", "evaluated": "evaluate"}),
}


def stage_result(run_uri: str, stage: str) -> dict[str, Any]:
    """The stored result of a finished stage of this run; ConfigError if it has not finished."""
    path = local_path(run_uri) / STAGES[stage][0] / RESULT_FILE
    if not path.exists():
        raise ConfigError(f"stage {stage!r} has not finished in {run_uri}: run it first")
    return read_json(path)


def run_stage(stage: str, run_uri: str) -> dict[str, Any]:
    """Run one stage of an existing run, its upstream results read from the run folder. Returns its result."""
    import importlib

    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})")
    upstream = {argument: stage_result(run_uri, source) for argument, source in STAGES[stage][1].items()}
    function = getattr(importlib.import_module(f"kest_tasks.{stage}"), stage)
    return function(load_run_config(run_uri), run_uri, **upstream).model_dump(mode="json")


def run_pipeline(config_path: str | Path, overrides: dict[str, Any] | None, run_id: str) -> dict[str, Any]:
    """Run every stage in this process, as the DAG does task by task. Returns the run summary."""
    run_uri = configure(config_path, overrides, run_id).run_uri
    for stage in STAGES:
        if stage in ("export", "publish"):
            blessing = stage_result(run_uri, "gate")
            if not blessing["blessed"]:
                log.info("%s skipped: %s", stage, blessing["reason"])
                continue
        run_stage(stage, run_uri)
    return summarize(run_uri)
