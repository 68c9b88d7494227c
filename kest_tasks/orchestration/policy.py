"""What a run's conf may point at: the deployment's allowed roots, read from the workers' environment.

Whoever can trigger a DAG chooses its run conf, and its paths become reads and writes on the workers. Every path a
run's conf sets or changes (compared with the config file alone) must resolve — symlinks and `..` included — inside
an allowed root of its kind, else configure fails in one line naming the key and the roots:

  KEST_ALLOWED_CONFIG_ROOTS    config_path (the config file a run asks for)
  KEST_ALLOWED_DATA_ROOTS      dataset.path, dataset.splits.*, dataset.schema_file, dataset.tfds.data_dir,
                               batch scoring's input
  KEST_ALLOWED_ARTIFACT_ROOTS  artifact_root (and batch scoring's output)
  KEST_ALLOWED_EXPORT_ROOTS    export.root

Each lists local folders and gs:// prefixes, separated by commas. Unset, a kind allows the project's own folders:
the default config's folder, its dataset's folder, its artifact_root and export.root — so the embedded default and
the dev stack work as they are. Paths in the config file itself are the deployer's and are not checked; the CLI is
the deployer's tool and is not checked either.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kest_tasks.core.errors import ConfigError
from kest_tasks.orchestration.assets import default_config_path

if TYPE_CHECKING:
    from kest_tasks.core.config import PipelineConfig

CONFIG_ROOTS = "KEST_ALLOWED_CONFIG_ROOTS"
DATA_ROOTS = "KEST_ALLOWED_DATA_ROOTS"
ARTIFACT_ROOTS = "KEST_ALLOWED_ARTIFACT_ROOTS"
EXPORT_ROOTS = "KEST_ALLOWED_EXPORT_ROOTS"
_MAGIC = re.compile(r"[*?\[{]")


def _normal(path: str) -> str:
    """A gs:// URI without `.`/`..` games, or a local path with symlinks and `..` resolved."""
    if path.startswith("gs://"):
        parts = path[len("gs://") :].rstrip("/").split("/")
        if any(part in ("..", ".") for part in parts):
            return ""  # never inside anything
        return "gs://" + "/".join(parts)
    return os.path.realpath(os.path.expanduser(path.removeprefix("file://")))


def _fixed_part(path: str) -> str:
    """The folder a glob or a {SPAN} pattern stays within: everything before its first wildcard."""
    match = _MAGIC.search(path)
    if not match:
        return path
    head = path[: match.start()]
    return head.rsplit("/", 1)[0] if "/" in head else "."


def inside(path: str, roots: Iterable[str]) -> bool:
    """Whether `path` (a file, folder, glob or pattern) resolves inside one of `roots`."""
    target = _normal(_fixed_part(path))
    if not target:
        return False
    for root in roots:
        base = _normal(root)
        if base and (target == base or target.startswith(base.rstrip("/") + "/")):
            return True
    return False


def _default_roots() -> dict[str, list[str]]:
    from kest_tasks.core.config import load_config

    path = default_config_path()
    config = load_config(path)
    folder = str(Path(path).resolve().parent)
    data = [folder]
    if config.dataset.path:
        data.append(_fixed_part(config.dataset.path).rsplit("/", 1)[0] or folder)
    return {
        CONFIG_ROOTS: [folder],
        DATA_ROOTS: [*data, config.artifact_root],  # a previous run's schema.json may be pinned
        ARTIFACT_ROOTS: [config.artifact_root],
        EXPORT_ROOTS: [config.export.root, config.artifact_root],
    }


def allowed_roots(setting: str) -> list[str]:
    """The roots `setting` lists, or the project's own folders when it is unset."""
    listed = [root.strip() for root in os.environ.get(setting, "").split(",") if root.strip()]
    return listed or _default_roots()[setting]


def _printable(key: str, path: str) -> None:
    if not path.isprintable():  # a newline, NUL or control character in a path is a trick, and breaks log lines
        raise ConfigError(f"{key}: {path!r} has characters that are not printable; a run's conf may not use it")


def check(key: str, path: str, setting: str) -> None:
    """ConfigError unless `path` resolves inside the roots `setting` allows."""
    _printable(key, path)
    roots = allowed_roots(setting)
    if not inside(path, roots):
        raise ConfigError(
            f"{key}: {path!r} is outside the folders a run's conf may use ({', '.join(roots)}); the deployment "
            f"lists them in {setting}"
        )


def _paths(config: Any) -> dict[str, tuple[str, str]]:
    """key → (path, the setting whose roots it must be inside) of every path setting of a config."""
    dataset = config.dataset
    found = {
        "artifact_root": (config.artifact_root, ARTIFACT_ROOTS),
        "export.root": (config.export.root, EXPORT_ROOTS),
    }
    if dataset.path:
        found["dataset.path"] = (dataset.path, DATA_ROOTS)
    for split, path in (dataset.splits or {}).items():
        found[f"dataset.splits.{split}"] = (path, DATA_ROOTS)
    if dataset.schema_file:
        found["dataset.schema_file"] = (dataset.schema_file, DATA_ROOTS)
    if dataset.tfds is not None:
        found["dataset.tfds.data_dir"] = (dataset.tfds.data_dir, DATA_ROOTS)
    return found


def check_run_conf(config_path: str, overrides: dict[str, Any]) -> PipelineConfig:
    """The run's config (the file with `overrides`), once its file and every path the overrides set or change are
    inside the allowed roots; else ConfigError (one line). Paths the config file itself sets are the deployer's."""
    from kest_tasks.core.config import load_config

    _printable("config_path", config_path)
    if _normal(config_path) != _normal(default_config_path()):
        check("config_path", config_path, CONFIG_ROOTS)
    from_file = _paths(load_config(config_path))
    config = load_config(config_path, overrides)
    for key, (path, setting) in _paths(config).items():
        if from_file.get(key, (None,))[0] != path:
            check(key, path, setting)
    return config
