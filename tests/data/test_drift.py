"""Drift (kest_tasks.data.drift): prepare compares the new data's training-split statistics with those the current
champion was trained on — Jensen-Shannon divergence for numbers, L-infinity distance for text — and records a
`drift` anomaly per feature beyond its threshold (a warning, or one line and no output when it is an error)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from kest_tasks.core import files, layout
from kest_tasks.core.config import load_config
from kest_tasks.data.drift import infinity_norm, jensen_shannon
from kest_tasks.data.prepare import DataError, prepare
from tests.helpers import IRIS_CONFIG, iris_overrides, publish_version


def _histogram(values) -> dict:
    counts, edges = np.histogram(values, bins=20)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def test_the_measures():
    rng = np.random.default_rng(0)
    same = rng.normal(size=20_000)
    assert jensen_shannon(_histogram(same), _histogram(same)) == 0.0
    assert jensen_shannon(_histogram(same), _histogram(rng.normal(size=20_000))) < 0.01  # another sample of it
    assert 0.1 < jensen_shannon(_histogram(same), _histogram(same + 1.0)) < 0.5  # shifted by one std
    assert jensen_shannon(_histogram(same), _histogram(same + 100)) == 1.0  # disjoint
    constant: dict[str, list] = {"edges": [4.999999999, 5.000000001], "counts": [10]}
    other: dict[str, list] = {"edges": [5.999999999, 6.000000001], "counts": [10]}
    assert jensen_shannon(constant, constant) == 0.0 and jensen_shannon(constant, other) == 1.0

    def column(counts: dict[str, int], missing: int = 0) -> dict:
        top = [{"value": v, "count": c} for v, c in counts.items()]
        return {"rows": sum(counts.values()) + missing, "missing": missing, "top_values": top}

    assert infinity_norm(column({"a": 50, "b": 50}), column({"a": 50, "b": 50}, missing=30)) == 0.0
    assert infinity_norm(column({"a": 50, "b": 50}), column({"a": 80, "b": 20})) == pytest.approx(0.3)
    assert infinity_norm(column({"a": 100}), column({"c": 100})) == 1.0


def _flowers(path: Path, shift: float = 0.0, colour: str = "blue") -> Path:
    """Iris with a text column; `shift` moves petal_length (cm), `colour` is every flower's colour but a tenth."""
    with open(IRIS_CONFIG.parent / "iris.csv") as handle:
        header, *rows = list(csv.reader(handle))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*header[:-1], "colour", header[-1]])
        for index, row in enumerate(rows):
            row[2] = f"{float(row[2]) + shift:.2f}"
            writer.writerow([*row[:-1], colour if index % 10 else "white", row[-1]])
    return path


@pytest.fixture
def champion_trained_on_blue(tmp_path):
    """A champion whose published training statistics are those of the unshifted, blue data."""
    config = load_config(IRIS_CONFIG, iris_overrides(tmp_path, dataset={"path": str(_flowers(tmp_path / "a.csv"))}))
    first = prepare(config, str(tmp_path / "runs" / "first"))
    version = "20261101T000000Z-aaaaaaaa"
    publish_version(config, tmp_path, version, {"accuracy": 0.95}, None)
    stats = files.read_json(first.stats_uri)
    assert stats["drift"] == {"baseline": None, "features": []}  # the first run: nothing to compare with
    files.write_json(files.join(config.export.root, layout.version_key("iris", version), layout.STATS_FILE), stats)
    return config, version


def _with_data(config, path: Path, **validation):
    settings = {**config.dataset.validation.model_dump(), **validation}
    return load_config(
        IRIS_CONFIG,
        iris_overrides(Path(config.artifact_root).parent, dataset={"path": str(path), "validation": settings}),
    )


def test_drift_against_the_champion_is_a_warning(champion_trained_on_blue, tmp_path, caplog):
    config, version = champion_trained_on_blue
    shifted = _with_data(config, _flowers(tmp_path / "b.csv", shift=2.0, colour="red"))
    with caplog.at_level(logging.INFO, logger="kest.prepare"):
        result = prepare(shifted, str(tmp_path / "runs" / "second"))
    anomalies = json.loads(Path(result.data_uri, layout.ANOMALIES_FILE).read_text())
    drifted = {a["column"]: a for a in anomalies if a["kind"] == "drift"}
    assert sorted(drifted) == ["colour", "petal_length"]  # the other three features did not move
    assert drifted["colour"]["statistic"] == "infinity_norm" and drifted["colour"]["distance"] == 0.9
    assert drifted["petal_length"]["statistic"] == "jensen_shannon" and drifted["petal_length"]["distance"] > 0.3
    assert drifted["colour"]["severity"] == "warning" and drifted["colour"]["baseline"] == version
    assert drifted["colour"]["detail"] == f"infinity_norm 0.9 > 0.1 from the training data of champion {version}"
    assert result.anomalies == 2
    stats = files.read_json(result.stats_uri)["drift"]
    assert stats["baseline"] == version and len(stats["features"]) == 5
    assert "prepare: warning drift: column 'colour' (infinity_norm 0.9 > 0.1 from the training data of champion " in (
        caplog.text
    )

    # Thresholds per feature (null: not checked), and the same data again: no drift.
    relaxed = _with_data(config, tmp_path / "b.csv", drift={"features": {"colour": None, "petal_length": 0.9}})
    assert prepare(relaxed, str(tmp_path / "runs" / "third")).anomalies == 0
    same = _with_data(config, _flowers(tmp_path / "c.csv"))
    assert prepare(same, str(tmp_path / "runs" / "fourth")).anomalies == 0


def test_drift_as_an_error_fails_prepare_in_one_line(champion_trained_on_blue, tmp_path):
    config, version = champion_trained_on_blue
    strict = _with_data(config, _flowers(tmp_path / "b.csv", colour="red"), severity={"drift": "error"})
    with pytest.raises(DataError) as raised:
        prepare(strict, str(tmp_path / "runs" / "strict"))
    assert str(raised.value) == (
        "data drifted from the champion's training data: error drift: column 'colour' "
        f"(infinity_norm 0.9 > 0.1 from the training data of champion {version})"
    )
    assert not (tmp_path / "runs" / "strict" / "prepare").exists()
    with pytest.raises(Exception, match="colour: threshold 2.0 is outside 0..1"):
        _with_data(config, tmp_path / "b.csv", drift={"features": {"colour": 2.0}})
