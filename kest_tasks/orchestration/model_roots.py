"""Which model stores the Models page shows, and which metric it plots: read by the Airflow plugin in the
api-server (no TensorFlow, no Airflow here).

KEST_MODEL_ROOTS lists export roots (local folders or gs:// prefixes, separated by commas); without it, the default
config's `export.root`. The plotted metric is the first the default config's gate checks.
"""

from __future__ import annotations

import os

from kest_tasks.orchestration.assets import default_config_path

MODEL_ROOTS_SETTING = "KEST_MODEL_ROOTS"


def model_roots() -> list[str]:
    """The export roots to list, in the order given; the default config's export.root when none is set."""
    listed = [root.strip() for root in os.environ.get(MODEL_ROOTS_SETTING, "").split(",") if root.strip()]
    if listed:
        return listed
    from kest_tasks.core.config import load_config

    return [str(load_config(default_config_path()).export.root)]


def gate_metrics() -> list[str]:
    """The metrics the default config's gate checks (thresholds first), [] if it cannot be read."""
    from kest_tasks.core.config import load_config
    from kest_tasks.core.errors import KestError

    try:
        gate = load_config(default_config_path()).gate
    except KestError:
        return []
    return [*gate.thresholds, *(name for name in gate.change if name not in gate.thresholds)]
