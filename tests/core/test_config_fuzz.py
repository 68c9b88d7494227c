"""Config fuzzing (hypothesis): whatever a run's conf or `--set` brings — wrong types, unknown keys, huge numbers,
unicode and control characters, path tricks — ends as a valid config or one ConfigError line, never a traceback."""

from __future__ import annotations

import contextlib
import io
import typing
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from kest_tasks.cli import main, parse_override
from kest_tasks.core.config import ConfigError, PipelineConfig, load_config
from tests.helpers import IRIS_CONFIG

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))

TRICKS = [
    "../../etc/passwd",
    "/etc/shadow",
    "~root/.ssh/id_rsa",
    "gs://",
    "gs://b/../x",
    "gs://UPPER/x",
    "file:///etc/hosts",
    "s3://bucket/key",
    "/",
    "\x00",
    "a\nb",
    "a:b",
    "module:function",
    "{SPAN}",
    "é/ü/💥",
    "C:\\windows",
    "",
    " ",
    "nan",
    "-1",
    "1e400",
]
leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**18, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(TRICKS)
)
anything = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (directly or as `Model | None`)."""
    candidates = [annotation, *typing.get_args(annotation)]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def overrides_for(model: type[BaseModel], depth: int = 0) -> st.SearchStrategy[dict]:
    """Nested override objects shaped like the config (its real keys, sub-sections recursed) with any values, plus
    keys it does not have."""
    fields = {}
    for name, field in model.model_fields.items():
        inner = _model_of(field.annotation)
        fields[name] = overrides_for(inner, depth + 1) | anything if inner and depth < 3 else anything
    known = st.sampled_from(sorted(fields)).flatmap(lambda key: fields[key].map(lambda value: (key, value)))
    unknown = st.tuples(st.text(max_size=12), anything)
    return st.lists(known | unknown, max_size=4).map(dict)


@FUZZ
@given(overrides_for(PipelineConfig))
def test_any_override_object_is_a_config_or_one_line(overrides):
    try:
        load_config(IRIS_CONFIG, overrides)
    except ConfigError as error:
        assert "\n" not in str(error) and str(error), repr(str(error))


KEYS = sorted(
    [
        f"{section}.{name}"
        for section, field in PipelineConfig.model_fields.items()
        for name in getattr(_model_of(field.annotation), "model_fields", {})
    ]
    + list(PipelineConfig.model_fields)
)


@FUZZ
@given(st.sampled_from(KEYS) | st.text(max_size=20), st.text(max_size=30) | st.sampled_from(TRICKS))
def test_any_set_string_is_a_config_or_one_line(key, value):
    try:
        load_config(IRIS_CONFIG, parse_override(f"{key}={value}"))
    except ConfigError as error:
        assert "\n" not in str(error) and str(error), repr(str(error))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(KEYS) | st.text(max_size=20), st.text(max_size=30) | st.sampled_from(TRICKS))
def test_the_cli_answers_any_set_with_exit_2_and_one_line(key, value):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = main(["champion", "show", "iris", "--set", f"{key}={value}", "--set", "export.root=/nonexistent/kest"])
    lines = stderr.getvalue().strip().splitlines()
    assert code == 0 or (code == 2 and len(lines) == 1 and lines[0].startswith("kest: error: ")), (code, lines)


def test_a_set_value_that_is_not_yaml_is_one_line():
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main(["champion", "show", "iris", "--set", "dataset.delimiter=:"]) == 2
    assert stderr.getvalue() == (
        "kest: error: --set dataset.delimiter: the value is not valid YAML (expected <block end>, but found ':'); "
        "to pass it as text, quote it: --set dataset.delimiter='\":\"'\n"
    )
