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
import select
import socket
import ssl
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trustme
from gcp_storage_emulator import server as emulator_server
from gcp_storage_emulator.handlers import objects

from tests.gcs_emulator import Emulator, enforce_generation_preconditions, free_port

GOOGLE_HOSTS = ("www.googleapis.com", "storage.googleapis.com")
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


class TlsProxy:
    """A CONNECT proxy on loopback that terminates TLS for the Google storage hosts and pipes to `upstream`."""

    def __init__(self, upstream_port: int, folder: Path) -> None:
        self.upstream_port, self.port = upstream_port, free_port()
        ca = trustme.CA()
        self.ca_file = folder / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*GOOGLE_HOSTS).configure_cert(self.context)
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()

    def environment(self) -> dict[str, str]:
        """What a process needs for TF's gs:// to reach the emulator through this proxy."""
        proxy = f"http://127.0.0.1:{self.port}"
        return {
            "https_proxy": proxy,
            "HTTPS_PROXY": proxy,
            "CURL_CA_BUNDLE": str(self.ca_file),
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "kest-test-token",
            "no_proxy": "127.0.0.1,localhost",
        }

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            request = b""
            while b"\r\n\r\n" not in request:
                data = client.recv(4096)
                if not data:
                    return
                request += data
            method, target = request.split(b" ", 2)[:2]
            host, _, port = target.decode().partition(":")
            if method != b"CONNECT" or host not in GOOGLE_HOSTS or port != "443":
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.connections += 1
            try:
                secure = self.context.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                return
            with secure, socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                _pipe(secure, upstream)


def _pipe(secure: ssl.SSLSocket, plain: socket.socket) -> None:
    """Copy both ways until either side closes."""
    sockets: list[Any] = [secure, plain]
    while True:
        readable = [secure] if secure.pending() else select.select(sockets, [], [], 30)[0]
        if not readable:
            return
        for source in readable:
            target = plain if source is secure else secure
            try:
                data = source.recv(65536)
            except (ssl.SSLError, OSError):
                return
            if not data:
                return
            target.sendall(data)
            if source is secure and b"\r\nexpect: 100-continue" in data[:8192].lower():
                # curl waits a second for "100 Continue" before an upload's body; the emulator (HTTP/1.0) never
                # sends one, so the proxy does, as GCS would.
                secure.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")


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
