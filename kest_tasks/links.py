"""Where a person looks at an artifact: the URLs the Airflow plugin's extra links open (no Airflow import here)."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

GCS_CONSOLE = "https://console.cloud.google.com/storage/browser/"
DEFAULT_TENSORBOARD = "http://localhost:6006"


def browse_url(uri: str) -> str:
    """The Cloud console page of a gs:// folder, or the file:// URL of a local one."""
    if uri.startswith("gs://"):
        return GCS_CONSOLE + quote(uri[len("gs://"):].rstrip("/"))
    return Path(uri).resolve().as_uri()


def tensorboard_url(run_name: str, base: str | None = None) -> str:
    """TensorBoard (the dev stack serves `<artifact_root>/runs`), filtered to one run folder's curves. The server
    is KEST_TENSORBOARD_URL."""
    base = (base or os.environ.get("KEST_TENSORBOARD_URL") or DEFAULT_TENSORBOARD).rstrip("/")
    return f"{base}/?runFilter={quote(run_name, safe='')}#timeseries"
