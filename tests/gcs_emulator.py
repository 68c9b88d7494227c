"""A real HTTP GCS emulator (gcp-storage-emulator) on loopback for tests, with generation preconditions.

gcp-storage-emulator ignores `ifGenerationMatch`, which GCS enforces and kest's compare-and-swap relies on, so
`enforce_generation_preconditions` adds GCS's rule to the emulator's upload and copy handlers: a request whose
`ifGenerationMatch` differs from the object's current generation (0: the object must not exist) gets 412.
"""

from __future__ import annotations

import socket
from http import HTTPStatus
from pathlib import Path
from typing import Any

from gcp_storage_emulator import server as emulator_server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

BUCKET = "kest-models"
_wrapped: dict = {}


def _target(request) -> tuple[str, str | None]:
    if "dest_object_id" in request.params:
        return request.params["dest_bucket_name"], request.params["dest_object_id"]
    name = (request.query.get("name") or [None])[0]
    if name is None and isinstance(request.data, dict):
        name = (request.data.get("meta") or {}).get("name")
    return request.params["bucket_name"], name


def _with_precondition(handler):
    def checked(request, response, storage, *args, **kwargs):
        wanted = request.query.get("ifGenerationMatch")
        if wanted:
            bucket, name = _target(request)
            try:
                current = str(storage.get_file_obj(bucket, name)["generation"])
            except NotFound:
                current = "0"
            if current != wanted[0]:
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json(
                    {
                        "error": {
                            "code": 412,
                            "message": "At least one of the pre-conditions you specified did not hold.",
                        }
                    }
                )
                return None
        return handler(request, response, storage, *args, **kwargs)

    return checked


def enforce_generation_preconditions() -> None:
    """Wrap the emulator's insert/copy/rewrite handlers once per process (it serves one request at a time, so
    the check and the write cannot interleave with another request)."""
    if _wrapped:
        return
    for original in (objects.insert, objects.copy, objects.rewrite):
        _wrapped[original] = _with_precondition(original)
    for _, handlers in emulator_server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler in _wrapped:
                handlers[method] = _wrapped[handler]
    objects.insert = _wrapped[objects.insert]  # the router's fallback for uploads posted without /upload


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Emulator:
    """The emulator on a loopback port, storing objects in `data_dir` so a restart keeps them (or in memory)."""

    def __init__(self, data_dir: Path | None, bucket: str = BUCKET) -> None:
        enforce_generation_preconditions()
        self.port = free_port()
        self.data_dir = data_dir
        self.server: Any = None
        self.bucket = bucket

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = emulator_server.create_server(
            "127.0.0.1",
            self.port,
            in_memory=self.data_dir is None,
            default_bucket=self.bucket,
            data_dir=str(self.data_dir) if self.data_dir else None,
        )
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def pause(self) -> None:
        """Stop answering (connections are refused), keeping every object, as an outage would."""
        self.server._api.join()

    def resume(self) -> None:
        """Answer again on the same port, with the objects it held."""
        self.server._api = emulator_server.APIThread("127.0.0.1", self.port, self.server._storage, daemon=True)
        self.server.start()
