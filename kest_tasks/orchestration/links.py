"""Where a person looks at an artifact: the URLs the Airflow plugin's extra links open (no Airflow import here).

Airflow's UI only shows http(s) links, so a local folder is linked through a file server when one is set up
(KEST_FILES_URL serving KEST_FILES_ROOT: the dev stack's `artifacts-browser`); otherwise it is a file:// URL,
which the REST API returns and the UI leaves out."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

GCS_CONSOLE = "https://console.cloud.google.com/storage/browser/"
DEFAULT_TENSORBOARD = "http://localhost:6006"


def browse_url(uri: str, files_url: str | None = None, files_root: str | None = None) -> str:
    """The Cloud console page of a gs:// folder; a local folder under the file server's root (KEST_FILES_URL,
    KEST_FILES_ROOT) on that server; any other local folder as a file:// URL."""
    if uri.startswith("gs://"):
        return GCS_CONSOLE + quote(uri[len("gs://") :].rstrip("/"))
    path = Path(uri).resolve()
    files_url = files_url or os.environ.get("KEST_FILES_URL")
    files_root = files_root or os.environ.get("KEST_FILES_ROOT")
    served = Path(files_root).resolve() if files_url and files_root else None
    if files_url and served and path.is_relative_to(served):
        return f"{files_url.rstrip('/')}/{quote(path.relative_to(served).as_posix())}/"
    return path.as_uri()


def tensorboard_url(run_name: str, base: str | None = None) -> str:
    """TensorBoard (the dev stack serves `<artifact_root>/runs`), filtered to one run folder's curves. The server
    is KEST_TENSORBOARD_URL."""
    base = (base or os.environ.get("KEST_TENSORBOARD_URL") or DEFAULT_TENSORBOARD).rstrip("/")
    return f"{base}/?runFilter={quote(run_name, safe='')}#timeseries"
