"""Validating new data against a pinned schema: anomalies with a kind, a severity and where they were seen."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kest_tasks.core.config import AnomalyKind, ValidationConfig
from kest_tasks.core.errors import excerpt, quoted, values_hidden
from kest_tasks.data.schema import Schema
from kest_tasks.data.sources import Chunk, DataError, arrow_type, kind_of
from kest_tasks.data.stats import ColumnStats, Sighting, first_true

log = logging.getLogger("kest.prepare")

# Data of the first kind may fill a pinned column of the second without loss.
_COMPATIBLE = {("int", "float"), ("int", "string"), ("float", "string")}


@dataclass
class Anomaly:
    kind: str
    column: str
    severity: str
    count: int
    first: Sighting | None
    detail: str

    def line(self) -> str:
        where = self.first.where(self.column) if self.first else f"column {self.column!r}"
        value = ""
        if self.first and self.first.value is not None:
            value = f": {quoted(self.first.value)}" if values_hidden() else f": value {quoted(self.first.value)}"
        return f"{self.severity} {self.kind}: {where}{value} ({self.detail}; {self.count} rows)"

    def as_json(self) -> dict:
        first = {**self.first.__dict__, "value": excerpt(self.first.value)} if self.first else None
        return {
            "kind": self.kind,
            "column": self.column,
            "severity": self.severity,
            "count": self.count,
            "first": first,
            "detail": self.detail,
        }


class Validator:
    """Checks every chunk against the pinned schema; `finish` raises if any anomaly is an error."""

    def __init__(self, pinned: Schema, settings: ValidationConfig) -> None:
        self.pinned = pinned
        self.settings = settings
        self.types = {f.name: f.type for f in pinned.features} | {pinned.label.name: pinned.label.type}
        self.anomalies: dict[tuple[str, str], Anomaly] = {}

    def _record(self, kind: AnomalyKind, column: str, count: int, first: Sighting | None, detail: str) -> None:
        severity = self.settings.severity_of(kind)
        if severity == "ignore" or count == 0:
            return
        known = self.anomalies.get((kind, column))
        if known:
            known.count += count
        else:
            self.anomalies[(kind, column)] = Anomaly(kind, column, severity, count, first, detail)

    def check_columns(self, names: list[str], origin: str) -> list[str]:
        """Record missing and new columns; return the data columns to keep (the pinned ones)."""
        for name in self.types:
            if name not in names:
                self._record("missing_column", name, 1, Sighting(origin, 1, None), "pinned column absent from data")
        for name in names:
            if name not in self.types:
                self._record("new_column", name, 1, Sighting(origin, 1, None), "column not in the pinned schema")
        return [name for name in names if name in self.types]

    def conform(self, name: str, array: pa.Array, chunk: Chunk) -> pa.Array:
        """The column cast to its pinned type, or recorded as a type change (and its values left out)."""
        pinned = self.types[name]
        actual = kind_of(array.type)
        if actual == pinned:
            return array
        if (actual, pinned) in _COMPATIBLE:
            return pc.cast(array, arrow_type(pinned))
        # Text where a number is pinned, or fractions where an integer is: a type change, and those values
        # are left out (missing) of the Examples so a lenient severity still writes well-typed records.
        values = array.to_pylist()
        bad = np.array([v is not None and not _fits(v, pinned) for v in values], dtype=bool)
        self._record(
            "type_change",
            name,
            int(bad.sum()),
            first_true(bad, chunk, values),
            f"pinned type {pinned}, data has {actual}",
        )
        kept = [
            None if v is None or not _fits(v, pinned) else (int(float(v)) if pinned == "int" else float(v))
            for v in values
        ]
        return pa.array(kept, arrow_type(pinned))

    def check(self, batch: pa.RecordBatch, chunk: Chunk) -> None:
        for name in batch.schema.names:
            array = batch.column(name)
            if name == self.pinned.label.name:
                self._check_label(array, chunk)
                continue
            feature = self.pinned.feature(name)
            if feature.type == "string":
                if feature.vocabulary:
                    unseen = pc.and_(
                        pc.is_valid(array), pc.invert(pc.is_in(array, value_set=pa.array(feature.vocabulary)))
                    ).to_numpy(zero_copy_only=False)
                    self._record(
                        "unseen_category",
                        name,
                        int(unseen.sum()),
                        first_true(unseen, chunk, array),
                        f"not among the pinned {len(feature.vocabulary)} values",
                    )
                continue
            values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
            present = array.is_valid().to_numpy(zero_copy_only=False)
            bad = ~np.isfinite(values) & present
            self._record("nan_or_inf", name, int(bad.sum()), first_true(bad, chunk, values), "NaN or infinite")
            with np.errstate(invalid="ignore"):
                outside = present & np.isfinite(values) & ((values < feature.min) | (values > feature.max))
            self._record(
                "out_of_range",
                name,
                int(outside.sum()),
                first_true(outside, chunk, values),
                f"outside the pinned range [{feature.min:g}, {feature.max:g}]",
            )

    def _check_label(self, array: pa.Array, chunk: Chunk) -> None:
        label = self.pinned.label
        if label.kind != "classification":
            return
        as_text = pc.cast(array, pa.string())
        unknown = pc.and_(pc.is_valid(as_text), pc.invert(pc.is_in(as_text, value_set=pa.array(label.classes))))
        mask = unknown.to_numpy(zero_copy_only=False)
        self._record(
            "unknown_label",
            label.name,
            int(mask.sum()),
            first_true(mask, chunk, as_text),
            f"not one of the classes {label.classes}",
        )

    def finish(self, columns: dict[str, ColumnStats]) -> list[dict]:
        """Record too-many-missing anomalies, log warnings, raise DataError listing every error anomaly."""
        for feature in self.pinned.features:
            stats = columns.get(feature.name)
            if stats is None or not stats.rows:
                continue
            pinned_fraction = feature.missing / self.pinned.rows if self.pinned.rows else 0.0
            fraction = stats.missing / stats.rows
            if fraction > pinned_fraction + self.settings.max_missing_increase:
                self._record(
                    "too_many_missing",
                    feature.name,
                    stats.missing,
                    stats.first_missing,
                    f"{fraction:.1%} missing, pinned schema had {pinned_fraction:.1%}",
                )
        anomalies = list(self.anomalies.values())
        for anomaly in anomalies:
            if anomaly.severity == "warning":
                log.warning("prepare: %s", anomaly.line())
        errors = [a for a in anomalies if a.severity == "error"]
        if errors:
            raise DataError(
                f"data does not match the pinned schema ({len(errors)} error anomalies):\n"
                + "\n".join(a.line() for a in errors)
            )
        return [a.as_json() for a in anomalies]


def _fits(value: Any, kind: str) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return kind == "float" or number.is_integer()
