"""Streaming statistics per column and the schema inferred from them (schema.json, stats.json)."""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kest_tasks.core.config import DatasetConfig, MissingConfig
from kest_tasks.core.errors import quoted
from kest_tasks.data.feature_names import tf_names
from kest_tasks.data.schema import FeatureSchema, FeatureType, LabelSchema, Schema
from kest_tasks.data.sources import Chunk, DataError, kind_of

_NUMBER = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$|^\s*[-+]?(inf|nan|Infinity|NaN)\s*$"
_MAX_TRACKED_VALUES = 20_000
MAX_CLASSES = 100

log = logging.getLogger("kest.prepare")


@dataclass
class Sighting:
    """Where a value was first seen: enough for an error line that names file, row and value."""

    origin: str
    row: int
    value: object

    def where(self, column: str) -> str:
        return f"{self.origin} row {self.row} column {column!r}"


def first_true(mask: np.ndarray, chunk: Chunk, values: Any) -> Sighting | None:
    hits = np.flatnonzero(mask)
    if not len(hits):
        return None
    index = int(hits[0])
    value = values[index]
    return Sighting(chunk.origin, chunk.first_row + index, value.as_py() if hasattr(value, "as_py") else value)


MEDIAN_SAMPLE = 32_768  # training values kept per numeric column for its median (exact up to twice this many)
HISTOGRAM_BINS = 20  # of a numeric column's training sample, kept in stats.json for drift checks
CLASS_LIKE_SHARE = 0.9  # a float label this often whole-numbered, with few values, may be classes with typos


@dataclass
class Moments:
    """Count, sum, sum of squares, min and max of finite values, updated batch by batch."""

    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, values: np.ndarray) -> None:
        if len(values):
            self.count += len(values)
            self.total += float(values.sum())
            # einsum's own loop, not BLAS: OpenBLAS's helper threads spin after a call and took a core from
            # prepare's encoding threads (measured: 2-4 s of system time per 1M rows).
            self.total_sq += float(np.einsum("i,i->", values, values))
            self.low = min(self.low, float(values.min()))
            self.high = max(self.high, float(values.max()))

    @property
    def mean(self) -> float:
        return self.total / self.count

    @property
    def std(self) -> float:
        mean = self.mean
        return math.sqrt(max(self.total_sq / self.count - mean * mean, 0.0))


class ColumnStats:
    """Counts, moments and top values of one column, updated chunk by chunk in constant memory.

    Besides the whole column's statistics it keeps the training split's (moments, a sample for the median,
    missing count, and for the label its class counts): models normalise and impute with those.
    """

    def __init__(self, name: str, is_label: bool = False) -> None:
        self.name = name
        self.is_label = is_label
        self.kind: FeatureType = "int"
        self.rows = 0
        self.missing = 0
        self.train_missing = 0
        self.first_missing: Sighting | None = None
        self.all = Moments()
        self.train = Moments()
        self.nan_or_inf = 0
        self.first_nan_or_inf: Sighting | None = None
        self.values: Counter = Counter()
        self.train_values: Counter = Counter()  # the label's, per class
        self.truncated = False
        self.numeric_looking = 0
        self.first_text: Sighting | None = None
        self.fractional = 0  # the label's values that are not whole numbers
        self.first_fractional: Sighting | None = None
        self.sample_parts: list[np.ndarray] = []
        self.sample_size = 0
        self.sample_stride = 1
        self.sample_seen = 0

    def add(self, array: pa.Array, chunk: Chunk, train: np.ndarray) -> None:
        """Add one chunk's values; `train` marks the rows of the training split."""
        self.kind = kind_of(array.type)
        self.rows += len(array)
        if array.null_count:
            self.missing += array.null_count
            nulls = array.is_null().to_numpy(zero_copy_only=False)
            self.train_missing += int((nulls & train).sum())
            if self.first_missing is None:
                self.first_missing = first_true(nulls, chunk, array)
        if self.kind == "string":
            self._add_strings(array, chunk)
        else:
            self._add_numbers(array, chunk, train)
        if self.is_label and self.kind != "float":
            self._count(self.train_values, array.filter(pa.array(train)))

    def _add_numbers(self, array: pa.Array, chunk: Chunk, train: np.ndarray) -> None:
        values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
        present = ~array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None
        finite = np.isfinite(values)
        bad = ~finite if present is None else (~finite & present)
        if bad.any():
            self.nan_or_inf += int(bad.sum())
            if self.first_nan_or_inf is None:
                self.first_nan_or_inf = first_true(bad, chunk, values)
        self.all.add(values[finite])
        training = values[finite & train]
        self.train.add(training)
        self._sample(training)
        if self.kind == "int" and not self.truncated:
            self._count_values(array)
        if self.is_label and self.kind == "float":
            self._add_float_label(values, finite, chunk, train)

    def _add_float_label(self, values: np.ndarray, finite: np.ndarray, chunk: Chunk, train: np.ndarray) -> None:
        whole = finite & (np.floor(values) == values)
        fractional = finite & ~whole
        if fractional.any():
            self.fractional += int(fractional.sum())
            if self.first_fractional is None:
                self.first_fractional = first_true(fractional, chunk, values)
        if len(self.values) <= MAX_CLASSES:
            self._count(self.values, pa.array(values[whole].astype(np.int64)))
            self._count(self.train_values, pa.array(values[whole & train].astype(np.int64)))

    def _sample(self, values: np.ndarray) -> None:
        """Keep every `sample_stride`-th training value, doubling the stride when the sample is full."""
        # A copy: a strided view would keep the whole chunk's array alive (measured: P6 memory grew with the input).
        picked = values[(-self.sample_seen) % self.sample_stride :: self.sample_stride].copy()
        self.sample_seen += len(values)
        if len(picked):
            self.sample_parts.append(picked)
            self.sample_size += len(picked)
        if self.sample_size > 2 * MEDIAN_SAMPLE:
            kept = np.concatenate(self.sample_parts)[::2]
            self.sample_parts, self.sample_size, self.sample_stride = [kept], len(kept), self.sample_stride * 2

    def histogram(self, bins: int = HISTOGRAM_BINS) -> dict | None:
        """Equal-width bins over the training sample's range: {edges, counts}; what drift checks compare."""
        if not self.sample_size:
            return None
        sample = np.concatenate(self.sample_parts)
        low, high = float(sample.min()), float(sample.max())
        if low == high:  # a constant: one narrow bin around it, so another constant does not share it
            width = 1e-9 * max(1.0, abs(low))
            return {"edges": [low - width, low + width], "counts": [len(sample)]}
        counts, edges = np.histogram(sample, bins=bins, range=(low, high))
        return {"edges": edges.tolist(), "counts": counts.tolist()}

    @property
    def median(self) -> float | None:
        return float(np.median(np.concatenate(self.sample_parts))) if self.sample_size else None

    def _add_strings(self, array: pa.Array, chunk: Chunk) -> None:
        present = array.drop_null()
        looks_numeric = pc.match_substring_regex(array, _NUMBER)
        self.numeric_looking += pc.sum(looks_numeric).as_py() or 0
        self.all.count += len(present)
        if self.first_text is None:
            text = pc.and_(pc.invert(looks_numeric), pc.is_valid(array)).to_numpy(zero_copy_only=False)
            self.first_text = first_true(text, chunk, array)
        self._count_values(present)

    @staticmethod
    def _count(counter: Counter, array: pa.Array) -> None:
        counts = pc.value_counts(array.drop_null())
        for value, count in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()):
            counter[str(value)] += count

    def _count_values(self, array: pa.Array) -> None:
        self._count(self.values, array)
        if len(self.values) > _MAX_TRACKED_VALUES:
            # Beyond this many distinct values only approximate top-K counts are kept, in constant memory.
            self.truncated = True
            self.values = Counter(dict(self.values.most_common(_MAX_TRACKED_VALUES // 2)))

    def check_numeric_text(self, forced: bool) -> None:
        """A text column whose values are nearly all numbers has a typo, not a category: say where."""
        if self.kind != "string" or forced or self.first_text is None or not self.all.count:
            return
        fraction = self.numeric_looking / self.all.count
        if fraction >= 0.9:
            raise DataError(
                f"{self.first_text.where(self.name)}: {quoted(self.first_text.value)} is not a number, but "
                f"{fraction:.1%} of the column is numeric; fix the value, or set "
                f"dataset.column_types.{self.name}: string if the column is text"
            )

    def check_missing(self, policy: MissingConfig) -> None:
        """Fail on a missing value when dataset.missing says so; otherwise warn how it will be filled."""
        if not self.missing:
            return
        setting = policy.string if self.kind == "string" else policy.numeric
        assert self.first_missing is not None  # set with the first missing value
        where = self.first_missing.where(self.name)
        if setting == "error":
            options = "token" if self.kind == "string" else "mean, median or zero"
            kind = "string" if self.kind == "string" else "numeric"
            raise DataError(
                f"{where}: missing value ({self.missing} missing in all); fill them, or set "
                f"dataset.missing.{kind} to {options}"
            )
        if self.kind == "string":
            fill = "the empty-string token"
        elif setting == "zero":
            fill = "0"
        else:
            fill = f"the training split's {setting} {self.fill(policy):g}"
        log.warning(
            "prepare: column %r: %d missing values (%d in the training split, first at %s) are filled with "
            "%s in training, evaluation and serving",
            self.name,
            self.missing,
            self.train_missing,
            where,
            fill,
        )

    def fill(self, policy: MissingConfig) -> float | str:
        """What a missing value of this column becomes (dataset.missing)."""
        if self.kind == "string":
            return ""
        if policy.numeric == "zero":
            return 0.0
        moments = self.train if self.train.count else self.all
        if policy.numeric == "median" and self.median is not None:
            return self.median
        return moments.mean if moments.count else 0.0

    def feature_schema(self, vocabulary_size: int, tf_name: str, policy: MissingConfig) -> FeatureSchema:
        common: dict[str, Any] = dict(
            name=self.name,
            tf_name=tf_name,
            type=self.kind,
            missing=self.missing,
            infinite=self.nan_or_inf,
            fill=self.fill(policy),
        )
        if self.kind == "string":
            counts = Counter(self.values)
            if self.train_missing:
                counts[""] += self.train_missing  # missing text is a category of its own (the fill token)
            return FeatureSchema(**common, vocabulary=[v for v, _ in counts.most_common(vocabulary_size)])
        moments = self.train if self.train.count else self.all
        if not moments.count:
            return FeatureSchema(**common, min=0.0, max=0.0, mean=0.0, std=0.0, median=0.0)
        # The range is the whole column's (pinned-schema validation and clipping use it), mean/std/median the
        # training split's (what models normalise and impute with).
        return FeatureSchema(
            **common,
            min=self.all.low,
            max=self.all.high,
            mean=moments.mean,
            std=moments.std,
            median=self.median if self.median is not None else moments.mean,
        )

    def stats(self, vocabulary_size: int) -> dict:
        top = [{"value": v, "count": c} for v, c in self.values.most_common(vocabulary_size)]
        summary = {
            "type": self.kind,
            "rows": self.rows,
            "missing": self.missing,
            "missing_fraction": self.missing / self.rows if self.rows else 0.0,
            "train_missing": self.train_missing,
            "distinct_values": None if self.truncated else len(self.values),
        }
        if self.kind == "string":
            return {**summary, "top_values": top}
        whole = self.all
        numbers = (
            {"min": whole.low, "max": whole.high, "mean": whole.mean, "std": whole.std}
            if whole.count
            else {"min": 0.0, "max": 0.0, "mean": 0.0, "std": 0.0}
        )
        return {
            **summary,
            **numbers,
            "train_median": self.median,
            "train_histogram": self.histogram(),
            "nan_or_inf": self.nan_or_inf,
            **({"top_values": top} if self.kind == "int" else {}),
        }

    def label_schema(self, label_kind: str = "auto") -> LabelSchema:
        """Classification or regression, from the values or dataset.label_kind; raise DataError when the label is
        missing somewhere, has one class, or looks like classes with a few fractional values."""
        if self.first_missing is not None:
            raise DataError(f"{self.first_missing.where(self.name)}: label is missing ({self.missing} rows in all)")
        if self.nan_or_inf and self.first_nan_or_inf is not None:
            raise DataError(
                f"{self.first_nan_or_inf.where(self.name)}: label {quoted(self.first_nan_or_inf.value)} is "
                "not a finite number"
            )
        kind = label_kind if label_kind != "auto" else self._guess_kind()
        if kind == "regression":
            if self.kind == "string":
                raise DataError(
                    f"{self.first_text.where(self.name) if self.first_text else repr(self.name)}: "
                    "dataset.label_kind is regression, but the label holds text"
                )
            moments = self.train if self.train.count else self.all
            return LabelSchema(
                name=self.name, kind="regression", type=self.kind, mean=moments.mean, std=moments.std or 1.0
            )
        if self.kind == "float" and self.fractional and self.first_fractional is not None:
            raise DataError(
                f"{self.first_fractional.where(self.name)}: label {quoted(self.first_fractional.value)} is not "
                "a whole number, so it cannot be a class; fix it, or set dataset.label_kind: regression"
            )
        if self.truncated or len(self.values) > MAX_CLASSES:
            raise DataError(
                f"column {self.name!r}: label has over {MAX_CLASSES} distinct values; a classification "
                "label needs at most that many classes (or set dataset.label_kind: regression)"
            )
        classes = sorted(self.values, key=int) if self.kind != "string" else sorted(self.values)
        if len(classes) < 2:
            raise DataError(f"column {self.name!r}: label has a single class {classes}; nothing to learn")
        return LabelSchema(
            name=self.name,
            kind="classification",
            type=self.kind,
            classes=classes,
            class_counts=[self.train_values.get(name, 0) for name in classes],
        )

    def _guess_kind(self) -> str:
        if self.kind == "string":
            return "classification"
        if self.kind == "int":
            return "regression" if self.truncated or len(self.values) > MAX_CLASSES else "classification"
        finite = self.all.count
        if (
            self.fractional
            and finite
            and len(self.values) <= MAX_CLASSES
            and (finite - self.fractional) / finite >= CLASS_LIKE_SHARE
        ):
            first = self.first_fractional
            assert first is not None  # set with the first fractional value
            raise DataError(
                f"{first.where(self.name)}: label {quoted(first.value)} is fractional, but "
                f"{(finite - self.fractional) / finite:.1%} of the label's values are whole numbers "
                f"({len(self.values)} distinct): classes with a typo, or a regression target? Fix the value, or set "
                "dataset.label_kind: classification or regression"
            )
        return "regression"


def infer_schema(columns: dict[str, ColumnStats], dataset: DatasetConfig, rows: int) -> Schema:
    """The schema from the columns' statistics: TensorFlow-safe names, training-split statistics, fill values."""
    label = dataset.label
    names = tf_names([name for name in columns if name != label])
    features = [
        stats.feature_schema(dataset.vocabulary_size, names[name], dataset.missing)
        for name, stats in columns.items()
        if name != label
    ]
    return Schema(features=features, label=columns[label].label_schema(dataset.label_kind), rows=rows)
