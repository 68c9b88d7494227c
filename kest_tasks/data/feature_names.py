"""TensorFlow-safe names for dataset columns.

A column may be called anything a CSV header, a Parquet field or a tf.Example key can hold (`sepal length (cm)`,
`größe`, `1st phenols`, `a-b` beside `a_b`), but Keras layer and input names, TensorFlow name scopes, feature
columns and SavedModel signature keys need plain identifiers. prepare derives one TensorFlow name per feature,
once and deterministically, and stores it in schema.json; the TFRecords keep the original names, and the
readers rename features when they parse them (kest_tasks.data.tfdata).
"""

from __future__ import annotations

import re
import unicodedata

# What kest keeps as is: an identifier (valid as a Keras layer, a name scope, a feature column, an HDF5 group and a
# signature key, and as a Python keyword argument for signature calls).
TF_SAFE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# Letters NFKD does not decompose into ASCII.
_TRANSLITERATE = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "œ": "oe",
        "Œ": "OE",
        "đ": "d",
        "Đ": "D",
        "ł": "l",
        "Ł": "L",
        "þ": "th",
        "Þ": "TH",
    }
)
# Keys kest adds to the feature dictionaries it feeds models; a feature may not take them.
RESERVED_NAMES = frozenset({"kest_sample_weight", "examples"})


def _sanitise(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name.translate(_TRANSLITERATE)).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9]+", "_", ascii_name).strip("_")[:60].rstrip("_")
    if not cleaned:
        return "feature"
    return cleaned if cleaned[0].isalpha() else f"f_{cleaned}"


def tf_names(columns: list[str]) -> dict[str, str]:
    """Original column name → TensorFlow-safe name, for every column, all distinct.

    A name that is already an identifier (`TF_SAFE_NAME`) keeps itself; others are transliterated to ASCII, runs of
    other characters become `_`, a leading digit gets `f_`; a collision takes the first free `_2`, `_3`, …
    suffix, in column order. The same columns always give the same names.
    """
    taken = {name for name in columns if TF_SAFE_NAME.match(name) and name not in RESERVED_NAMES}
    names: dict[str, str] = {}
    for column in columns:
        if column in taken and column not in names.values():
            names[column] = column
            continue
        base = _sanitise(column)
        candidate, suffix = base, 2
        while candidate in taken or candidate in RESERVED_NAMES:
            candidate, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(candidate)
        names[column] = candidate
    return names
