"""The user's own code a config names as `module:function` (a model builder, a model_fn), imported from
`model.code_dir`."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from kest_tasks.core.errors import ConfigError


def import_function(spec: str, code_dir: str | None, what: str) -> Callable[..., Any]:
    """`module:function` → the function, importing from `code_dir` first; ConfigError naming `what` if absent."""
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name:
        raise ConfigError(f"{what} {spec!r}: expected module:function")
    if code_dir and code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ConfigError(f"{what} {spec!r}: module {error.name!r} not found (code_dir: {code_dir})") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"{what} {spec!r}: {module_name} has no function {function_name!r}")
    return function
