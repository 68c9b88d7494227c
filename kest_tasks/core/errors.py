"""The errors kest raises for bad input: each message is one line naming the file, row, column or key."""

ERROR_PREFIX = "kest: error: "  # how the CLI prints a KestError, alone on its line


class KestError(Exception):
    """A user-facing failure: the CLI prints its message alone, and Airflow fails the task with it."""


class ConfigError(KestError, ValueError):
    """A configuration that cannot be used; the message names the offending key."""


def plural(count: int, noun: str) -> str:
    """`1 field`, `2 fields`: counts in one-line messages."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
