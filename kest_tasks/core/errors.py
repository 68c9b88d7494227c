"""The errors kest raises for bad input: each message is one line naming the file, row, column or key."""

import os

ERROR_PREFIX = "kest: error: "  # how the CLI prints a KestError, alone on its line


class KestError(Exception):
    """A user-facing failure: the CLI prints its message alone, and Airflow fails the task with it."""


class ConfigError(KestError, ValueError):
    """A configuration that cannot be used; the message names the offending key."""


def plural(count: int, noun: str) -> str:
    """`1 field`, `2 fields`: counts in one-line messages."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


QUOTED_CHARACTERS = 24  # of a bad cell shown in a message: enough to find it, too few to copy a secret out
HIDE_VALUES_SETTING = "KEST_HIDE_VALUES_IN_ERRORS"  # "1": messages name row and column only, never a cell


def values_hidden() -> bool:
    """Whether the deployment keeps data values out of messages and artifacts (HIDE_VALUES_SETTING)."""
    return os.environ.get(HIDE_VALUES_SETTING, "") == "1"


def quoted(value: object) -> str:
    """A data value in a one-line message: its first QUOTED_CHARACTERS characters, or only its length when the
    deployment hides values (task logs are read by more people than the data)."""
    text = value if isinstance(value, str) else str(value)
    if values_hidden():
        return f"a value of {plural(len(text), 'character')}"
    if len(text) <= QUOTED_CHARACTERS:
        return repr(value) if isinstance(value, str) else text
    return f"{text[:QUOTED_CHARACTERS]!r}… ({len(text):,} characters)"


def excerpt(value: object) -> object:
    """A data value kept in a JSON artifact beside its row: numbers as they are, text by its first
    QUOTED_CHARACTERS characters, nothing when the deployment hides values."""
    if values_hidden():
        return None
    if isinstance(value, str) and len(value) > QUOTED_CHARACTERS:
        return value[:QUOTED_CHARACTERS] + "…"
    return value
