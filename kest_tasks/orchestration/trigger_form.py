"""The DAG's trigger form, generated from the config model's JSON schema: one typed, titled, described field per
scalar setting of each section (bounds and enums included), so Airflow refuses an invalid value before any task
runs. Every field defaults to empty (null): the config file's value is kept unless a field is filled in.

Plain dicts here, so kest_tasks stays free of Airflow; the DAG wraps each in an Airflow Param. The DAG reads
them from form_fields.json (generated from the schema by `python -m kest_tasks.orchestration.trigger_form`; a
test keeps the two equal), so parsing the DAG file does not build the pydantic models.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

FORM_FILE = Path(__file__).with_name("form_fields.json")

SECTIONS = ("dataset", "model", "trainer", "evaluate", "gate", "export")
SCALARS = {"string", "integer", "number", "boolean"}
KEEP_FILE_VALUE = "(the config file's value)"
# Airflow validates every Param with jsonschema whenever it serializes the DAG (each task carries the DAG's params:
# 36 × 2 × 11 validations per parse); without `$schema` jsonschema checks each schema against the 2020-12
# meta-schema first, ~3× slower than against draft 7's, which has every keyword the form uses.
JSON_SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum")
# Settings that choose Python to run on the workers, or a Ray cluster to run the job on (it gets the data and the
# code, and its results come back as pickles): a deployer's choice, made in the config file. The form does not
# offer them, and a run's conf may set them only where the deployment allows it.
CODE_SETTINGS = ("model.code_dir", "model.builder", "trainer.model_fn", "trainer.cluster.address")
NOT_IN_FORM = {("model", "code_dir"), ("trainer", "model_fn")}
CODE_FROM_RUN_CONF_SETTING = "KEST_ALLOW_CODE_FROM_RUN_CONF"


def _scalar(spec: dict) -> dict | None:
    """The non-null scalar variant of a property (its type, bounds, enum), or None for lists, maps and sections."""
    variants = [v for v in spec.get("anyOf", [spec]) if v.get("type") != "null"]
    if len(variants) != 1 or variants[0].get("type") not in SCALARS:
        return None
    return variants[0]


def form_fields() -> dict[str, dict[str, Any]]:
    """Param name (`<section>__<field>`, or the field for top-level settings) → JSON-schema keywords for a
    nullable Param, plus `path`: where its value goes in the config."""
    from kest_tasks.core.config import PipelineConfig

    schema = PipelineConfig.model_json_schema()
    definitions = schema["$defs"]
    places: list[tuple[tuple[str, ...], Any, str]] = [
        ((name,), spec, "Run") for name, spec in schema["properties"].items()
    ]
    for section in SECTIONS:
        reference = schema["properties"][section]["$ref"].rsplit("/", 1)[-1]
        places += [
            ((section, name), spec, section.capitalize()) for name, spec in definitions[reference]["properties"].items()
        ]
    fields = {}
    for path, spec, section in places:
        scalar = _scalar(spec)
        if scalar is None or path in NOT_IN_FORM:
            continue
        field = {
            "$schema": JSON_SCHEMA_DIALECT,
            "default": None,
            "type": ["null", scalar["type"]],
            "title": spec.get("title", path[-1]),
            "description": f"{spec.get('description', '')} Empty: the config file's value.".strip(),
            "section": section,
            "path": list(path),
        }
        field.update({key: scalar[key] for key in BOUNDS if key in scalar})
        if "enum" in field:
            field["enum"] = [None, *field["enum"]]
            # The UI lists null as "null"; say what choosing it means.
            field["values_display"] = {"null": KEEP_FILE_VALUE}
        fields["__".join(path)] = field
    return fields


def stored_form_fields() -> dict[str, dict[str, Any]]:
    """form_fields() as generated into form_fields.json."""
    return json.loads(FORM_FILE.read_text())


def overrides_from_form(values: dict[str, Any]) -> dict[str, Any]:
    """Nested config overrides from the filled-in form fields (empty ones are left out)."""
    fields = stored_form_fields()
    overrides: dict[str, Any] = {}
    for name, value in values.items():
        if name not in fields or value is None or value == "":
            continue
        *sections, key = fields[name]["path"]
        target = overrides
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    return overrides


def code_settings_in(overrides: dict[str, Any]) -> list[str]:
    """The settings among `overrides` that would choose code or where it runs (CODE_SETTINGS; model.builder only
    as module:function)."""
    model, trainer = (
        section if isinstance(section := overrides.get(name), dict) else {} for name in ("model", "trainer")
    )
    found = []
    if model.get("code_dir") is not None:
        found.append("model.code_dir")
    if isinstance(model.get("builder"), str) and ":" in model["builder"]:
        found.append("model.builder")
    if trainer.get("model_fn") is not None:
        found.append("trainer.model_fn")
    if isinstance(cluster := trainer.get("cluster"), dict) and cluster.get("address") is not None:
        found.append("trainer.cluster.address")
    return found


def config_arguments(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The config file and the overrides a run's params ask for: the `overrides` object, then the form fields.
    Raises ConfigError when they set code-loading settings and the deployment does not allow that
    (KEST_ALLOW_CODE_FROM_RUN_CONF=1 does), or point outside the deployment's allowed roots (orchestration.policy)."""
    from kest_tasks.core.config import ConfigError, deep_merge

    overrides = deep_merge(params.get("overrides") or {}, overrides_from_form(dict(params)))
    found = code_settings_in(overrides)
    if found and os.environ.get(CODE_FROM_RUN_CONF_SETTING) != "1":
        raise ConfigError(
            f"{', '.join(found)} may not come from a run's conf: settings that choose code or where it runs "
            f"({', '.join(CODE_SETTINGS)}) come from the config file on the workers "
            f"(a deployment may allow them with {CODE_FROM_RUN_CONF_SETTING}=1)"
        )
    from kest_tasks.orchestration.policy import check_run_conf

    check_run_conf(params["config_path"], overrides)
    return params["config_path"], overrides


def run_folder(params: dict[str, Any], run_id: str) -> str:
    """Where a run with these params keeps its artifacts: `<artifact_root>/runs/<run_id>`."""
    from kest_tasks.core.config import load_config
    from kest_tasks.core.layout import RunLayout

    return RunLayout.for_run(load_config(*config_arguments(params)).artifact_root, run_id).uri


def export_root(params: dict[str, Any]) -> str:
    """Where a run with these params publishes its blessed models (`export.root`: a folder or gs://)."""
    from kest_tasks.core.config import load_config

    return str(load_config(*config_arguments(params)).export.root)


if __name__ == "__main__":
    json.dump(form_fields(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
