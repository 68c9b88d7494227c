"""The whole pipeline without Airflow, and the two steps that bracket it: configure and summarize.

The DAG calls the same stage functions one per task; `run_pipeline` calls them in one process.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kest_tasks.config import PipelineConfig, config_to_json, load_config
from kest_tasks.stage import RESULT_FILE, StageResult, load_run_config, run_uri_for
from kest_tasks.storage import (
    local_path,
    read_json,
    write_bytes_atomic,
    write_json_atomic,
)

log = logging.getLogger("kest")

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "iris.yaml"


class ConfigureResult(StageResult):
    run_uri: str
    config_uri: str
    model_name: str


def configure(config_path: str | Path, overrides: dict[str, Any] | None, run_id: str) -> ConfigureResult:
    """Validate the config (file + overrides) and freeze it as `<run_uri>/config.json` for the later stages.

    A retry keeps the frozen config, so every stage of a run sees the same one even if the file changed since.
    """
    config = load_config(config_path, overrides)
    run_uri = run_uri_for(config, run_id)
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
    summary = {
        "run_uri": run_uri,
        "test_metrics": metrics["metrics"],
        "test_examples": metrics["examples"],
        "blessed": blessing["blessed"],
        "gate": blessing["reason"],
        "published_model": published_uri,
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
        f"run folder: {summary['run_uri']}"
    )


def latest_summary(config: PipelineConfig) -> dict[str, Any] | None:
    """The summary of the most recently finished run under the config's artifact root."""
    summaries = sorted((local_path(config.artifact_root) / "runs").glob("*/summary.json"),
                       key=lambda p: p.stat().st_mtime)
    return read_json(summaries[-1]) if summaries else None


def run_pipeline(config_path: str | Path, overrides: dict[str, Any] | None, run_id: str) -> dict[str, Any]:
    """Run every stage in this process, as the DAG does task by task. Returns the run summary."""
    from kest_tasks.build import build
    from kest_tasks.evaluate import evaluate
    from kest_tasks.export import export
    from kest_tasks.gate import gate
    from kest_tasks.prepare import prepare
    from kest_tasks.publish import publish
    from kest_tasks.train import train

    configured = configure(config_path, overrides, run_id)
    run_uri = configured.run_uri
    config = load_run_config(run_uri)
    prepared = prepare(config, run_uri)
    built = build(config, run_uri, prepared)
    trained = train(config, run_uri, prepared, built)
    evaluated = evaluate(config, run_uri, prepared, built, trained)
    blessing = gate(config, run_uri, evaluated)
    if blessing.blessed:
        exported = export(config, run_uri, prepared, built, trained)
        publish(config, run_uri, exported, blessing, evaluated)
    else:
        log.info("export and publish skipped: %s", blessing.reason)
    return summarize(run_uri)
