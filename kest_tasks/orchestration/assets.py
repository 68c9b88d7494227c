"""What DAG files need at parse time, without TensorFlow or Airflow: the default config's path and the name of the
Airflow Asset a model's published versions are announced on (`kest://<model_name>`)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import yaml


def bundled_config() -> Path:
    """The Iris config shipped in the package (with its dataset beside it), wherever the package is installed."""
    return Path(str(resources.files("kest_tasks") / "configs" / "iris.yaml"))


def default_config_path() -> str:
    """The DAG's default config: KEST_CONFIG, else the bundled Iris config."""
    return os.environ.get("KEST_CONFIG") or str(bundled_config())


def model_asset_uri(config_path: str) -> str:
    """`kest://<model_name>` of a config file, read without validating it (the configure task does that)."""
    try:
        with open(config_path) as handle:
            name = (yaml.safe_load(handle) or {}).get("model_name")
    except (OSError, yaml.YAMLError):
        name = None
    return f"kest://{name or 'model'}"
