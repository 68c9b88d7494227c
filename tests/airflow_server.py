"""A real Airflow for tests: `airflow standalone` (api-server, scheduler, dag-processor, triggerer; LocalExecutor
on SQLite) in its own AIRFLOW_HOME on a free loopback port, with kest's dags and plugins folders, and a small
REST v2 client that logs in the way users do (`POST /auth/token`)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import REPO

USER = "kest-admin"
VIEWER = "kest-viewer"  # may read DAGs and runs, not trigger them (the simple auth manager's viewer role)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AirflowServer:
    """Started by `start()`, stopped (its whole process group) by `stop()`; its output goes to `log`."""

    def __init__(self, home: Path, extra_env: dict[str, str] | None = None):
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.passwords = {USER: secrets.token_urlsafe(12), VIEWER: secrets.token_urlsafe(12)}
        self.password = self.passwords[USER]
        self.log = home / "standalone.log"
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin,{VIEWER}:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **(extra_env or {}),
        }
        self.process: subprocess.Popen | None = None
        self._tokens: dict[str, str] = {}

    def start(self, timeout: float = 300) -> AirflowServer:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps(self.passwords))
        airflow = Path(sys.executable).with_name("airflow")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(airflow), "standalone"], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.wait_for(lambda: self._get_status("/api/v2/monitor/health") == 200, timeout, "the api-server")
        self.wait_for(
            lambda: self._get_status("/api/v2/dags/kest_pipeline", auth=True) == 200,
            timeout,
            "kest_pipeline to be parsed",
        )
        return self

    def stop(self) -> None:
        """SIGTERM to every component, then SIGKILL to whatever of the group is left (the api-server's worker
        can outlive standalone)."""
        if self.process is None:
            return
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)

    def wait_for(self, condition, timeout: float, what: str, every: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"airflow standalone exited ({self.process.returncode}):\n{self.tail()}")
            if condition():
                return
            time.sleep(every)
        raise TimeoutError(f"waited {timeout:.0f} s for {what}:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    # REST v2
    def token(self, user: str = USER) -> str:
        if user not in self._tokens:
            status, body = self.request(
                "POST", "/auth/token", {"username": user, "password": self.passwords[user]}, auth=False
            )
            assert status in (200, 201), (status, body)
            self._tokens[user] = body["access_token"]
        return self._tokens[user]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        auth: bool = True,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """`body` goes as JSON (bytes as they are); `token` replaces the admin's."""
        headers = {"Content-Type": "application/json", **(headers or {})}
        if token is not None or auth:
            headers["Authorization"] = f"Bearer {token if token is not None else self.token()}"
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw.decode(errors="replace")

    def _get_status(self, path: str, auth: bool = False) -> int | None:
        try:
            return self.request("GET", path, auth=auth)[0]
        except (OSError, AssertionError):
            return None

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict:
        """Poll a DAG run until it finishes; returns it (with `task_states`)."""
        finished: dict = {}

        def done() -> bool:
            status, run = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if status == 200 and run["state"] in ("success", "failed"):
                finished.update(run)
                return True
            return False

        self.wait_for(done, timeout, f"run {run_id} to finish", every=3)
        status, instances = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        finished["task_states"] = {ti["task_id"]: ti["state"] for ti in instances["task_instances"]}
        return finished
