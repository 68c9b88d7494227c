"""The package as users install it (not editable): the bundled config and its data ship inside it."""

import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel, built from a copy of the sources (pip builds in the source tree and would leave build/ there)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "kest_tasks", source / "kest_tasks", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("kest-*.whl")
    return built


def test_wheel_carries_configs_form_license_and_metadata(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "kest_tasks/configs/iris.yaml",
        "kest_tasks/configs/iris.csv",
        "kest_tasks/orchestration/form_fields.json",
        "kest_tasks/core/stages.py",
    } <= names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License: Apache-2.0" in metadata and "Requires-Dist: tensorflow==2.15.1" in metadata
    assert "Provides-Extra: airflow" in metadata and "# kest" in metadata  # the README is the long description


def test_installed_package_runs_its_bundled_config_from_any_folder(wheel, tmp_path):
    target, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    probe = (
        "import kest_tasks, json\n"
        "from kest_tasks.core.config import load_config\n"
        "from kest_tasks.orchestration.assets import bundled_config\n"
        "config = load_config(bundled_config())\n"
        "print(json.dumps([kest_tasks.__file__, config.dataset.path, config.artifact_root, config.export.root]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    import json

    module, data, artifacts, models = json.loads(done.stdout)
    assert module.startswith(str(target)) and data.startswith(str(target)) and data.endswith("iris.csv")
    assert artifacts == str(work / "artifacts") and models == str(work / "artifacts" / "models")
