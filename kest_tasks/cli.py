"""`python -m kest_tasks`: run the pipeline (or read its latest summary) without Airflow."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import logging
import sys
from typing import Any

import yaml

from kest_tasks.core.config import ConfigError, deep_merge, key_text, load_config
from kest_tasks.core.errors import ERROR_PREFIX, KestError
from kest_tasks.core.stages import BY_NAME
from kest_tasks.orchestration.assets import default_config_path
from kest_tasks.orchestration.runner import (
    configure,
    format_summary,
    latest_summary,
    run_pipeline,
    run_stage,
)
from kest_tasks.registry.promotion import describe, set_champion


def parse_override(text: str) -> dict:
    """`trainer.steps=200` → {"trainer": {"steps": 200}}; the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. trainer.steps=200")
    nested: dict = {}
    cursor = nested
    parts = key.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    try:
        cursor[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError as error:
        reason = " ".join(str(getattr(error, "problem", None) or error).split())
        shown = value if value.isprintable() and len(value) <= 20 and '"' not in value else "…"
        raise ConfigError(
            f"--set {key_text(key)}: the value is not valid YAML ({reason}); to pass it as text, quote it: "
            f"--set {key_text(key)}='\"{shown}\"'"
        ) from None
    return nested


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kest_tasks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run every stage of the pipeline in this process")
    summary = commands.add_parser("summary", help="print the latest run's test metrics, gate and model")
    stage = commands.add_parser("stage", help="run one stage of a run (configures the run if it is new)")
    stage.add_argument("name", help=", ".join(BY_NAME))
    champion = commands.add_parser(
        "champion", help="show a model's versions and champion history, or set its champion (promote, roll back)"
    )
    champion.add_argument("action", choices=["show", "set"])
    champion.add_argument("model", help="the model's name under the config's export.root")
    champion.add_argument("version", nargs="?", help="set: the published version to make champion")
    champion.add_argument("--reason", default="", help="set: why (kept in the champion history)")
    which = stage.add_mutually_exclusive_group(required=True)
    which.add_argument("--run-id", help="the run folder name under the config's artifact_root")
    which.add_argument(
        "--run", metavar="URI", help="an existing run folder (local or gs://), its config frozen in it by configure"
    )
    run.add_argument("--run-id", default=None, help="run folder name (default: cli__<UTC time>)")
    score = commands.add_parser(
        "score", help="score a dataset with a published model (the champion, or --version) into Parquet predictions"
    )
    score.add_argument("model", help="the model's name under the config's export.root")
    score.add_argument("input", help="CSV, Parquet or TFRecord file or glob, local or gs://")
    score.add_argument("output", help="the predictions' Parquet file (rejected rows go beside it, *.rejects.parquet)")
    score.add_argument("--version", default=None, help="a published version (default: the champion)")
    score.add_argument(
        "--keys",
        default=None,
        help="comma-separated key columns to copy (default: the columns the model does not read)",
    )
    score.add_argument("--format", default=None, choices=["csv", "parquet", "tfrecord"], help="default: from the name")
    for sub in (run, summary, stage, champion, score):
        sub.add_argument("--config", default=default_config_path(), help="pipeline config (YAML or JSON)")
        sub.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value, e.g. --set trainer.steps=200 (repeatable; for `stage`, used only when "
            "the run is new)",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        overrides: dict = {}
        for text in args.overrides:
            overrides = deep_merge(overrides, parse_override(text))
        if args.command == "champion":
            config = load_config(args.config, deep_merge(overrides, {"model_name": args.model}))
            if args.action == "show":
                print(describe(config))
                return 0
            if not args.version:
                raise ConfigError("champion set: name the VERSION to make champion (champion show lists them)")
            event = set_champion(config, args.version, args.reason, by=f"{getpass.getuser()} (command line)")
            print(json.dumps(event, indent=2, sort_keys=True))
            return 0
        if args.command == "score":
            from kest_tasks.serving.batch_score import batch_score

            config = load_config(args.config, deep_merge(overrides, {"model_name": args.model}))
            keys = [key.strip() for key in args.keys.split(",") if key.strip()] if args.keys is not None else None
            result = batch_score(config, args.input, args.output, args.version, keys, args.format)
            print(json.dumps(result.model_dump(mode="json"), indent=2, sort_keys=True))
            return 0
        if args.command == "stage":
            run_uri = args.run or configure(args.config, overrides, args.run_id).run_uri
            print(json.dumps(run_stage(args.name, run_uri), indent=2, sort_keys=True))
            return 0
        summary: dict[str, Any] | None
        if args.command == "run":
            run_id = args.run_id or "cli__" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
            summary = run_pipeline(args.config, overrides, run_id)
        else:
            summary = latest_summary(load_config(args.config, overrides))
            if summary is None:
                print("no finished run yet", file=sys.stderr)
                return 1
    except KestError as error:
        print(f"{ERROR_PREFIX}{error}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0
