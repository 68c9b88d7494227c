"""Where a model's champion is recorded: `<export_root>/<model_name>/champion.json`, with its history in
`champions.jsonl` beside it. Publish writes them; warm start and the gate read them."""
from __future__ import annotations

from pathlib import Path

from kest_tasks.storage import local_path, read_json

CHAMPION_FILE = "champion.json"
HISTORY_FILE = "champions.jsonl"


def model_root(export_root: str, model_name: str) -> Path:
    return local_path(export_root) / model_name


def current_champion(export_root: str, model_name: str) -> dict | None:
    """The champion pointer ({version, model_uri, metrics, run_uri, published_at}), or None before the first."""
    pointer = model_root(export_root, model_name) / CHAMPION_FILE
    return read_json(pointer) if pointer.exists() else None
