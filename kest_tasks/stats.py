"""Streaming statistics per column and the schema inferred from them (schema.json, stats.json)."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kest_tasks.schema import FeatureSchema, LabelSchema, Schema
from kest_tasks.sources import Chunk, DataError

_NUMBER = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$|^\s*[-+]?(inf|nan|Infinity|NaN)\s*$"
_MAX_TRACKED_VALUES = 20_000
MAX_CLASSES = 100


@dataclass
class Sighting:
    """Where a value was first seen: enough for an error line that names file, row and value."""

    origin: str
    row: int
    value: object

    def where(self, column: str) -> str:
        return f"{self.origin} row {self.row} column {column!r}"


def kind_of(arrow_type: pa.DataType) -> str:
    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type):
        return "float"
    return "string"


def first_true(mask: np.ndarray, chunk: Chunk, values) -> Sighting | None:
    hits = np.flatnonzero(mask)
    if not len(hits):
        return None
    index = int(hits[0])
    value = values[index]
    return Sighting(chunk.origin, chunk.first_row + index, value.as_py() if hasattr(value, "as_py") else value)


class ColumnStats:
    """Counts, moments and top values of one column, updated chunk by chunk in constant memory."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.kind = "int"
        self.rows = 0
        self.missing = 0
        self.first_missing: Sighting | None = None
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.low = math.inf
        self.high = -math.inf
        self.nan_or_inf = 0
        self.first_nan_or_inf: Sighting | None = None
        self.values: Counter = Counter()
        self.truncated = False
        self.numeric_looking = 0
        self.first_text: Sighting | None = None

    def add(self, array: pa.Array, chunk: Chunk) -> None:
        self.kind = kind_of(array.type)
        self.rows += len(array)
        if array.null_count:
            self.missing += array.null_count
            if self.first_missing is None:
                self.first_missing = first_true(array.is_null().to_numpy(zero_copy_only=False), chunk, array)
        if self.kind == "string":
            self._add_strings(array, chunk)
        else:
            self._add_numbers(array, chunk)

    def _add_numbers(self, array: pa.Array, chunk: Chunk) -> None:
        values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
        present = ~array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None
        finite = np.isfinite(values)
        bad = ~finite if present is None else (~finite & present)
        if bad.any():
            self.nan_or_inf += int(bad.sum())
            if self.first_nan_or_inf is None:
                self.first_nan_or_inf = first_true(bad, chunk, values)
        good = values[finite]
        if len(good):
            self.count += len(good)
            self.total += float(good.sum())
            self.total_sq += float(np.dot(good, good))
            self.low = min(self.low, float(good.min()))
            self.high = max(self.high, float(good.max()))
        if self.kind == "int" and not self.truncated:
            self._count_values(array)

    def _add_strings(self, array: pa.Array, chunk: Chunk) -> None:
        present = array.drop_null()
        self.count += len(present)
        looks_numeric = pc.match_substring_regex(array, _NUMBER)
        self.numeric_looking += pc.sum(looks_numeric).as_py() or 0
        if self.first_text is None:
            text = pc.and_(pc.invert(looks_numeric), pc.is_valid(array)).to_numpy(zero_copy_only=False)
            self.first_text = first_true(text, chunk, array)
        self._count_values(present)

    def _count_values(self, array: pa.Array) -> None:
        counts = pc.value_counts(array.drop_null())
        for value, count in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()):
            self.values[str(value)] += count
        if len(self.values) > _MAX_TRACKED_VALUES:
            # Beyond this many distinct values only approximate top-K counts are kept, in constant memory.
            self.truncated = True
            self.values = Counter(dict(self.values.most_common(_MAX_TRACKED_VALUES // 2)))

    def check_numeric_text(self, forced: bool) -> None:
        """A text column whose values are nearly all numbers has a typo, not a category: say where."""
        if self.kind != "string" or forced or self.first_text is None or not self.count:
            return
        fraction = self.numeric_looking / self.count
        if fraction >= 0.9:
            raise DataError(
                f"{self.first_text.where(self.name)}: {self.first_text.value!r} is not a number, but "
                f"{fraction:.1%} of the column is numeric; fix the value, or set "
                f"dataset.column_types.{self.name}: string if the column is text"
            )

    def feature_schema(self, vocabulary_size: int) -> FeatureSchema:
        common = dict(name=self.name, type=self.kind, missing=self.missing)
        if self.kind == "string":
            return FeatureSchema(**common, vocabulary=[v for v, _ in self.values.most_common(vocabulary_size)])
        if not self.count:
            return FeatureSchema(**common, min=0.0, max=0.0, mean=0.0, std=0.0)
        mean = self.total / self.count
        return FeatureSchema(
            **common, min=self.low, max=self.high, mean=mean,
            std=math.sqrt(max(self.total_sq / self.count - mean * mean, 0.0)),
        )

    def stats(self, vocabulary_size: int) -> dict:
        top = [{"value": v, "count": c} for v, c in self.values.most_common(vocabulary_size)]
        summary = {
            "type": self.kind, "rows": self.rows, "missing": self.missing,
            "missing_fraction": self.missing / self.rows if self.rows else 0.0,
            "distinct_values": None if self.truncated else len(self.values),
        }
        if self.kind == "string":
            return {**summary, "top_values": top}
        feature = self.feature_schema(vocabulary_size)
        return {**summary, "min": feature.min, "max": feature.max, "mean": feature.mean, "std": feature.std,
                "nan_or_inf": self.nan_or_inf, **({"top_values": top} if self.kind == "int" else {})}

    def label_schema(self) -> LabelSchema:
        if self.first_missing is not None:
            raise DataError(f"{self.first_missing.where(self.name)}: label is missing ({self.missing} rows in all)")
        if self.kind == "float" or (self.kind == "int" and (self.truncated or len(self.values) > MAX_CLASSES)):
            return LabelSchema(name=self.name, kind="regression", type=self.kind)
        if self.truncated or len(self.values) > MAX_CLASSES:
            raise DataError(f"column {self.name!r}: label has over {MAX_CLASSES} distinct text values; "
                            "a classification label needs at most that many classes")
        classes = sorted(self.values, key=int) if self.kind == "int" else sorted(self.values)
        if len(classes) < 2:
            raise DataError(f"column {self.name!r}: label has a single class {classes}; nothing to learn")
        return LabelSchema(name=self.name, kind="classification", type=self.kind, classes=classes)


def infer_schema(columns: dict[str, ColumnStats], label: str, vocabulary_size: int, rows: int) -> Schema:
    features = [stats.feature_schema(vocabulary_size) for name, stats in columns.items() if name != label]
    return Schema(features=features, label=columns[label].label_schema(), rows=rows)
