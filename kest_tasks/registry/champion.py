"""A model's champion: `<export_root>/<model_name>/champion.json` names the published version that is champion;
`<model_name>/champions/<version>.json` keeps every version that became champion (append-only, one object each,
so it works the same on GCS). Publish writes them; warm start and the gate read them."""

from __future__ import annotations

from pathlib import Path

from kest_tasks.core.config import PipelineConfig
from kest_tasks.core.layout import champion_key, version_key
from kest_tasks.registry.model_store import Store, open_store


def store_for(config: PipelineConfig) -> Store:
    """The model store of the config's export.root."""
    return open_store(config.export.root, config.export.gcs_retry_seconds)


def current_champion(config: PipelineConfig) -> dict | None:
    """The champion pointer ({version, model_uri, metrics, run_uri, published_at}), or None before the first."""
    return store_for(config).read_json(champion_key(config.model_name))[0]


def champion_model_dir(config: PipelineConfig, champion: dict, scratch: Path) -> Path:
    """A local folder with the champion's SavedModel (downloaded into `scratch` from object storage)."""
    return store_for(config).local_copy(version_key(config.model_name, champion["version"]), scratch)
