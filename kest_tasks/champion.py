"""A model's champion: `<export_root>/<model_name>/champion.json` names the published version that is champion;
`<model_name>/champions/<version>.json` keeps every version that became champion (append-only, one object each,
so it works the same on GCS). Publish writes them; warm start and the gate read them."""
from __future__ import annotations

from pathlib import Path

from kest_tasks.config import PipelineConfig
from kest_tasks.objectstore import Store, open_store

CHAMPION_FILE = "champion.json"
HISTORY_FOLDER = "champions"


def store_for(config: PipelineConfig) -> Store:
    return open_store(config.export.root, config.export.gcs_retry_seconds)


def version_key(model_name: str, version: str) -> str:
    """Where a published version's files live under the export root."""
    return f"{model_name}/{version}"


def champion_key(model_name: str) -> str:
    return f"{model_name}/{CHAMPION_FILE}"


def history_key(model_name: str, version: str) -> str:
    return f"{model_name}/{HISTORY_FOLDER}/{version}.json"


def current_champion(config: PipelineConfig) -> dict | None:
    """The champion pointer ({version, model_uri, metrics, run_uri, published_at}), or None before the first."""
    return store_for(config).read_json(champion_key(config.model_name))[0]


def champion_model_dir(config: PipelineConfig, champion: dict, scratch: Path) -> Path:
    """A local folder with the champion's SavedModel (downloaded into `scratch` from object storage)."""
    return store_for(config).local_copy(version_key(config.model_name, champion["version"]), scratch)
