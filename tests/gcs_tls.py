"""TensorFlow's own gs:// filesystem against the GCS emulator, on loopback only.

TensorFlow 2.15's GCS filesystem has no endpoint setting, but it honours `https_proxy` (it sends `CONNECT
www.googleapis.com:443`; object reads go to `storage.googleapis.com`), `CURL_CA_BUNDLE` and
`GOOGLE_AUTH_TOKEN_FOR_TESTING` (no OAuth). `TlsProxy` accepts those CONNECTs, terminates TLS with a certificate
from a throwaway CA (trustme) and pipes the plain HTTP to the emulator; nothing leaves 127.0.0.1.

The emulator needs four things TF relies on: its in-memory store (the disk store cannot hold `run/` beside
`run/data/`), an empty media upload stored as b"" (TF's folder markers), `Transfer-Encoding: chunked` honoured
over `Content-Length` (TF sends both on resumable PUTs), and resumable-upload `Location`s in https (TF follows
them through the proxy). `patch_emulator_for_tensorflow` adds them, once per process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gcp_storage_emulator import server as emulator_server
from gcp_storage_emulator.handlers import objects

from dev.gcs_tls_proxy import GOOGLE_HOSTS, TlsProxy
from tests.gcs_emulator import Emulator, enforce_generation_preconditions

_patched: dict[str, Any] = {}


def _read_raw_data(request_handler: Any) -> bytes | None:
    """The emulator's body reader, with chunked transfer-encoding taking precedence as HTTP/1.1 says."""
    encoding = request_handler.headers.get("Transfer-Encoding")
    if encoding and encoding.lower() == "chunked":
        data = b""
        while True:
            line = request_handler.rfile.readline().strip()
            size = int(line, 16) if line else 0
            if size == 0:
                request_handler.rfile.readline()
                return data
            data += request_handler.rfile.read(size)
            request_handler.rfile.readline()
    length = request_handler.headers.get("Content-Length")
    return request_handler.rfile.read(int(length)) if length else None


def patch_emulator_for_tensorflow() -> None:
    if _patched:
        return
    enforce_generation_preconditions()
    _patched["read"] = emulator_server._read_raw_data
    emulator_server._read_raw_data = _read_raw_data
    original_media = objects._media_upload

    def media_upload(request: Any, response: Any, storage: Any) -> Any:
        if request.data is None:  # an empty object (TF's folder marker), not a missing body
            request._data = b""
        return original_media(request, response, storage)

    objects._media_upload = media_upload
    original_insert = objects.insert

    def insert(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        result = original_insert(request, response, storage, *args, **kwargs)
        location = response._headers.get("Location")
        if location and location.startswith("http://") and urlsplit(location).hostname in GOOGLE_HOSTS:
            response["Location"] = "https://" + location[len("http://") :]
        return result

    for _, handlers in emulator_server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler is original_insert:
                handlers[method] = insert
    objects.insert = insert


class TensorFlowGcs:
    """The emulator (in memory) with bucket `bucket`, and the TLS proxy in front of it."""

    def __init__(self, folder: Path, bucket: str = "kest-runs") -> None:
        patch_emulator_for_tensorflow()
        self.emulator = Emulator(None, bucket)
        self.bucket = bucket
        self.proxy = TlsProxy(self.emulator.port, folder)

    def start(self) -> None:
        self.emulator.start()
        self.proxy.start()

    def stop(self) -> None:
        self.proxy.stop()
        self.emulator.stop()

    def settings(self) -> dict[str, str]:
        """What a process needs to reach the emulator: TensorFlow through the proxy, google-cloud-storage directly."""
        return {**self.proxy.environment(), "STORAGE_EMULATOR_HOST": self.emulator.host, "GOOGLE_CLOUD_PROJECT": "kest"}

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.settings()}

    def create_bucket(self, name: str) -> None:
        from gcp_storage_emulator.handlers import buckets

        buckets.create_bucket(name, self.emulator.server._storage)


def main() -> None:
    """`python -m tests.gcs_tls FOLDER`: serve the emulator (buckets kest-runs, kest-models) and the proxy in this
    process, print the settings a client process needs as one JSON line, and serve until stdin closes (so a
    benchmark keeps the emulator's work out of the process it measures)."""
    import json
    import sys

    gcs = TensorFlowGcs(Path(sys.argv[1]))
    gcs.start()
    gcs.create_bucket("kest-models")
    print(json.dumps(gcs.settings()), flush=True)
    sys.stdin.read()
    gcs.stop()


if __name__ == "__main__":
    main()
