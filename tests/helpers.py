"""Helpers shared by the tests (one module; test modules never import each other)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml

from kest_tasks.core.layout import RunLayout
from kest_tasks.core.stages import StageSpec
from kest_tasks.orchestration.assets import bundled_config

REPO = Path(__file__).resolve().parent.parent
IRIS_CONFIG = bundled_config()
IRIS_CSV = IRIS_CONFIG.with_name("iris.csv")


def iris_overrides(root: Path, **extra: Any) -> dict[str, Any]:
    """Overrides that keep a run's artifacts and published models under `root`."""
    overrides: dict[str, Any] = {"artifact_root": str(root / "artifacts"), "export": {"root": str(root / "models")}}
    for key, value in extra.items():
        overrides[key] = {**overrides.get(key, {}), **value} if isinstance(value, dict) else value
    return overrides


def run_iris(tmp_path: Path, thresholds: dict | None = None, **sections: Any) -> dict[str, Any]:
    """Run the whole pipeline on the bundled Iris config with overrides; `thresholds` replaces the gate's (not
    merged). Returns the run summary."""
    from kest_tasks.orchestration.runner import run_pipeline

    config_file = IRIS_CONFIG
    if thresholds is not None:
        data = yaml.safe_load(IRIS_CONFIG.read_text())
        data["gate"]["thresholds"] = thresholds
        data["dataset"]["path"] = str(IRIS_CSV)
        config_file = tmp_path / "config.yaml"
        tmp_path.mkdir(parents=True, exist_ok=True)
        config_file.write_text(yaml.safe_dump(data))
    return run_pipeline(config_file, iris_overrides(tmp_path, **sections), "kinds")


def regression_csv(path: Path) -> Path:
    """A 300-row house-price table: two numbers and a string feature, price a noisy linear function of them."""
    rng = random.Random(3)
    lines = ["size,rooms,area,price"]
    for _ in range(300):
        size, rooms, area = rng.uniform(30, 200), rng.randint(1, 6), rng.choice(["north", "south", "centre"])
        price = 2.0 * size + 10 * rooms + {"north": 0, "south": 20, "centre": 60}[area] + rng.gauss(0, 5)
        lines.append(f"{size:.1f},{rooms},{area},{price:.2f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def binary_csv(path: Path) -> Path:
    """A 400-row loan table: two numbers and a region, approved yes/no from a noisy score of them."""
    rng = random.Random(7)
    lines = ["income,debt,region,approved"]
    for _ in range(400):
        income, debt, region = rng.uniform(0, 100), rng.uniform(0, 50), rng.choice(["east", "west"])
        score = income - 1.5 * debt + (10 if region == "east" else -10) + rng.gauss(0, 5)
        lines.append(f"{income:.1f},{debt:.1f},{region},{'yes' if score > 25 else 'no'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def run_layout(summary: dict[str, Any]) -> RunLayout:
    """The layout of the run a summary describes."""
    return RunLayout(summary["run_uri"])


def stage_file(run: str | Path, spec: StageSpec[Any], name: str = "") -> Path:
    """A stage's folder in a run (`name` empty) or a file in it, e.g. `stage_file(run, EVALUATE, METRICS_FILE)`."""
    layout = RunLayout(str(run))
    return Path(layout.file(spec.folder, name) if name else layout.stage_dir(spec.folder))


def task_links(run_id: str) -> dict[str, dict[str, str]]:
    """The extra-link URLs stored for each task of a run (what the UI's link buttons open)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.run_id == run_id, XComModel.key.like("_link_%")).all()
        links: dict[str, dict[str, str]] = {}
        for row in rows:
            value = XComModel.deserialize_value(row)
            links.setdefault(row.task_id, {})[row.key] = value
    return links


def task_states(run) -> dict[str, str]:
    return {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in run.get_task_instances()}


def stage_process(name: str, run_uri: str, timeout: float = 600) -> tuple[dict[str, Any], str]:
    """Run one stage of an existing run as `python -m kest_tasks stage NAME --run RUN_URI` in a new process (as a
    task on another worker would): its result and its log (stderr). Fails the test if the stage fails."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "kest_tasks", "stage", name, "--run", run_uri],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), done.stderr


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (free now; closed, so connecting to it is refused)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def publish_version(config, scratch: Path, version: str, metrics: dict, expected: str | None, **record) -> None:
    """A version as publish leaves it (files, record, saved_model.pb last; a report), then the champion claim publish
    makes against `expected` — without training (the store does not look inside the SavedModel)."""
    from kest_tasks.core import layout
    from kest_tasks.registry.champion import store_for
    from kest_tasks.registry.publish import claim_champion

    source = scratch / version
    (source / "variables").mkdir(parents=True)
    (source / "variables" / "variables.index").write_bytes(b"weights of " + version.encode())
    (source / layout.SAVED_MODEL_FILE).write_bytes(b"graph of " + version.encode())
    report = scratch / f"{version}.html"
    report.write_text(f"<h1>report of {version}</h1>")
    store = store_for(config)
    full_record = {"run_uri": f"/runs/{version}", "version": version, "metrics": metrics, **record}
    key = layout.version_key(config.model_name, version)
    store.publish_tree(
        source, key, last=layout.SAVED_MODEL_FILE, record=full_record, extra={layout.REPORT_FILE: report}
    )
    pointer = {**full_record, "model_uri": store.uri(key), "published_at": "now"}
    assert claim_champion(store, config.model_name, pointer, expected) == (True, "")
