"""Drift: the new data's distributions against those of the data the current champion was trained on, with
TFDV's measures — Jensen-Shannon divergence between histograms for number features, L-infinity distance between
value frequencies for text features — each against its threshold (`dataset.validation.drift`). A feature beyond its
threshold is a `drift` anomaly: a warning unless `dataset.validation.severity.drift` is error.

Both sides are training-split statistics from stats.json: the champion's is published beside it (an older version's
is read from its run). The histograms have equal-width bins over each side's own range; before comparing, both are
spread uniformly over the union of their bin edges.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from kest_tasks.core import files
from kest_tasks.core.config import DriftConfig, PipelineConfig
from kest_tasks.core.layout import STATS_FILE, RunLayout, champion_key, version_key
from kest_tasks.data.schema import Schema

log = logging.getLogger("kest.prepare")


def _spread(edges: np.ndarray, counts: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A histogram's mass on the cells of `grid` (each bin's mass spread uniformly over its width)."""
    mass = np.zeros(len(grid) - 1)
    for low, high, count in zip(edges[:-1], edges[1:], counts):
        overlap = np.clip(np.minimum(grid[1:], high) - np.maximum(grid[:-1], low), 0.0, None)
        mass += count * overlap / (high - low)
    total = mass.sum()
    return mass / total if total else mass


def jensen_shannon(first: dict[str, list], second: dict[str, list]) -> float:
    """Jensen-Shannon divergence (base 2: 0 same, 1 disjoint) of two {edges, counts} histograms."""
    grid = np.union1d(first["edges"], second["edges"])
    p = _spread(np.asarray(first["edges"]), np.asarray(first["counts"], float), grid)
    q = _spread(np.asarray(second["edges"]), np.asarray(second["counts"], float), grid)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        present = a > 0
        return float(np.sum(a[present] * np.log2(a[present] / m[present])))

    return min(1.0, max(0.0, 0.5 * kl(p) + 0.5 * kl(q)))


def _frequencies(column: dict[str, Any]) -> dict[str, float]:
    present = column["rows"] - column["missing"]
    if present <= 0:
        return {}
    shares = {str(top["value"]): top["count"] / present for top in column.get("top_values", [])}
    rest = 1.0 - sum(shares.values())
    if rest > 1e-12:  # values beyond the kept top ones, as one bucket
        shares["\x00other"] = rest
    return shares


def infinity_norm(first: dict[str, Any], second: dict[str, Any]) -> float:
    """The largest change of any value's share of the present values (L-infinity distance), 0..1."""
    p, q = _frequencies(first), _frequencies(second)
    return max((abs(p.get(value, 0.0) - q.get(value, 0.0)) for value in p.keys() | q.keys()), default=0.0)


def measure(settings: DriftConfig, name: str, kind: str) -> tuple[str, float | None]:
    """The statistic a feature is checked with and its threshold (None: not checked)."""
    statistic = "infinity_norm" if kind == "string" else "jensen_shannon"
    default = settings.infinity_norm if kind == "string" else settings.jensen_shannon
    return statistic, settings.features.get(name, default)


def compare(
    columns: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]], schema: Schema, settings: DriftConfig
) -> list[dict[str, Any]]:
    """Every checked feature's distance from the baseline: {feature, statistic, distance, threshold, drifted}."""
    found = []
    for feature in schema.features:
        new, old = columns.get(feature.name), baseline.get(feature.name)
        statistic, threshold = measure(settings, feature.name, feature.type)
        if threshold is None or new is None or old is None:
            continue
        if statistic == "jensen_shannon":
            if not new.get("train_histogram") or not old.get("train_histogram"):
                continue
            distance = jensen_shannon(new["train_histogram"], old["train_histogram"])
        else:
            distance = infinity_norm(new, old)
        found.append(
            {
                "feature": feature.name,
                "statistic": statistic,
                "distance": round(distance, 6),
                "threshold": threshold,
                "drifted": distance > threshold,
            }
        )
    return found


def champion_statistics(config: PipelineConfig) -> tuple[str, dict[str, Any]] | None:
    """(version, its training stats.json) of the current champion of the config's model; None before the first
    champion, or when its statistics were never kept (logged)."""
    root, model = config.export.root, config.model_name
    pointer_uri = files.join(root, champion_key(model))
    if not files.exists(pointer_uri):
        return None
    pointer = files.read_json(pointer_uri)
    version = pointer["version"]
    for uri in (files.join(root, version_key(model, version), STATS_FILE), _run_stats(pointer.get("run_uri"))):
        if uri and files.exists(uri):
            return version, files.read_json(uri)
    log.warning("prepare: drift: champion %s of %s has no training statistics kept; not compared", version, model)
    return None


def _run_stats(run_uri: str | None) -> str | None:
    return RunLayout(run_uri).file("prepare", STATS_FILE) if run_uri else None
