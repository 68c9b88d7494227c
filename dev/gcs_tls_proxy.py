"""A CONNECT proxy that lets TensorFlow's own gs:// filesystem reach a GCS emulator (tests, the dev stack).

TensorFlow 2.15's GCS filesystem has no endpoint setting, but it honours `https_proxy` (it sends `CONNECT
www.googleapis.com:443`; object reads go to `storage.googleapis.com`), `CURL_CA_BUNDLE` and
`GOOGLE_AUTH_TOKEN_FOR_TESTING` (no OAuth). This proxy accepts those CONNECTs only, terminates TLS with a
certificate from a throwaway CA (trustme) written to `<folder>/ca.pem`, and pipes the plain HTTP to the emulator.

    python -m dev.gcs_tls_proxy --upstream fake-gcs:4443 --listen 0.0.0.0:8443 --ca-dir /tls
"""

from __future__ import annotations

import argparse
import select
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import trustme

GOOGLE_HOSTS = ("www.googleapis.com", "storage.googleapis.com")


class TlsProxy:
    """A CONNECT proxy on loopback that terminates TLS for the Google storage hosts and pipes to `upstream`."""

    def __init__(
        self, upstream_port: int, folder: Path, upstream_host: str = "127.0.0.1", listen: tuple[str, int] | None = None
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        ca = trustme.CA()
        self.ca_file = folder / "ca.pem"
        folder.mkdir(parents=True, exist_ok=True)
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*GOOGLE_HOSTS).configure_cert(self.context)
        self.listener = socket.create_server(listen or ("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
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
            with secure, socket.create_connection(self.upstream) as upstream:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dev.gcs_tls_proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the emulator, host:port (plain HTTP)")
    parser.add_argument("--listen", default="127.0.0.1:8443", help="host:port to accept CONNECTs on")
    parser.add_argument("--ca-dir", required=True, type=Path, help="where ca.pem (for CURL_CA_BUNDLE) is written")
    args = parser.parse_args(argv)
    upstream_host, _, upstream_port = args.upstream.rpartition(":")
    listen_host, _, listen_port = args.listen.rpartition(":")
    proxy = TlsProxy(int(upstream_port), args.ca_dir, upstream_host, (listen_host, int(listen_port)))
    print(f"gcs-tls-proxy: CONNECT proxy on {args.listen} -> {args.upstream}; CA {proxy.ca_file}", flush=True)
    proxy._serve()


if __name__ == "__main__":
    main()
