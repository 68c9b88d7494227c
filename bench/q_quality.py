"""Q1–Q3: model quality on data with a known answer, each kest model against a scikit-learn baseline fitted on the
same train split and scored on the same test split, in the same run.

- Q1 linear data (make_regression): kest's tabular pipeline R² vs ordinary least squares R² (target ≥ OLS − 0.02).
- Q2 Friedman #1 (make_friedman1, nonlinear): kest R² vs OLS R² (target ≥ OLS + 0.10).
- Q3 imbalanced classes (make_classification, 10 % minority) with trainer.class_weight: balanced: minority-class
  recall vs LogisticRegression(class_weight="balanced") (target ≥ baseline − 0.05); Q3-unweighted shows kest
  without class weights against the same baseline.

kest runs its default pipeline (the bundled iris.yaml's trainer: 500 steps of 32 rows, Adam 0.01) with the `tabular`
builder; the baselines see the very rows kest's prepare put in each split, read back from its TFRecords.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import yaml

from bench.common import entry
from kest_tasks.orchestration.assets import bundled_config

ROWS = 3000


def _datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import make_classification, make_friedman1, make_regression

    linear_x, linear_y = make_regression(n_samples=ROWS, n_features=10, n_informative=8, noise=60, random_state=0)
    friedman_x, friedman_y = make_friedman1(n_samples=ROWS, n_features=10, noise=1.0, random_state=0)
    skewed_x, skewed_y = make_classification(
        n_samples=ROWS, n_features=10, n_informative=5, weights=[0.9], flip_y=0.02, class_sep=0.7, random_state=0
    )
    return {"Q1": (linear_x, linear_y + 150), "Q2": (friedman_x, friedman_y), "Q3": (skewed_x, skewed_y)}


def _write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    header = ",".join([f"x{i}" for i in range(x.shape[1])] + ["y"])
    label_format = "%d" if y.dtype.kind in "iu" else "%.6g"
    np.savetxt(
        path,
        np.column_stack([x, y]),
        delimiter=",",
        header=header,
        comments="",
        fmt=["%.6g"] * x.shape[1] + [label_format],
    )


def _run_kest(work: Path, name: str, data: Path, trainer: dict) -> Path:
    from kest_tasks.orchestration.runner import run_pipeline

    config = yaml.safe_load(bundled_config().read_text())
    config.update(
        {
            "model_name": name.lower(),
            "artifact_root": str(work / "artifacts"),
            "gate": {"mode": "always_bless"},
            "export": {"root": str(work / "models")},
        }
    )
    config["dataset"].update({"path": str(data), "label": "y"})
    config["model"]["builder"] = "tabular"
    config["trainer"].update(trainer)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return Path(run_pipeline(path, None, name.lower())["run_uri"])


def _split(run: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from kest_tasks.core.stages import PREPARE
    from kest_tasks.data.schema import Schema
    from kest_tasks.data.tfdata import read_examples

    prepared = PREPARE.load(str(run))
    schema = Schema.of(prepared)
    xs, ys = [], []
    for features, labels in read_examples(prepared.files[split], schema, prepared.compression, 10_000):
        xs.append(np.stack([features[key].numpy() for key in schema.feature_keys], axis=1))
        ys.append(labels.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def _r2(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(1 - ((predicted - truth) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())


def _kest_metrics(run: Path) -> dict[str, float]:
    from kest_tasks.core.stages import EVALUATE

    return json.loads(Path(EVALUATE.load(str(run)).metrics_uri).read_text())["metrics"]


def measure() -> dict[str, dict]:
    from sklearn.linear_model import LinearRegression, LogisticRegression

    results = {}
    with tempfile.TemporaryDirectory(prefix="kest-bench-q-") as folder:
        work = Path(folder)
        for name, (x, y) in _datasets().items():
            data = work / f"{name}.csv"
            _write_csv(data, x, y)
            runs = {"": _run_kest(work, name, data, {"class_weight": "balanced"} if name == "Q3" else {})}
            if name == "Q3":
                runs["-unweighted"] = _run_kest(work, f"{name}-unweighted", data, {})
            train_x, train_y = _split(runs[""], "train")
            test_x, test_y = _split(runs[""], "test")
            if name == "Q3":
                predicted = LogisticRegression(class_weight="balanced", max_iter=2000).fit(train_x, train_y)
                baseline = float(((predicted.predict(test_x) == 1) & (test_y == 1)).sum() / (test_y == 1).sum())
                for suffix, run in runs.items():
                    recall = _kest_metrics(run)["recall/1"]
                    results[name + suffix] = {
                        **entry(
                            f"minority-class recall on {len(test_y)} test rows (10 % minority), kest tabular "
                            f"{'with class_weight balanced' if not suffix else 'unweighted'} vs "
                            "LogisticRegression(class_weight='balanced')",
                            recall,
                            baseline,
                            "recall",
                        ),
                        "difference": round(recall - baseline, 4),
                        "target": ">= -0.05" if not suffix else None,
                    }
            else:
                baseline = _r2(test_y, LinearRegression().fit(train_x, train_y).predict(test_x))
                r2 = _kest_metrics(runs[""])["r2"]
                target = ">= -0.02" if name == "Q1" else ">= +0.10"
                what = "linear data (make_regression)" if name == "Q1" else "Friedman #1 (make_friedman1)"
                results[name] = {
                    **entry(
                        f"test R² on {what}, {len(test_y)} test rows: kest tabular pipeline vs "
                        "ordinary least squares on the same split",
                        r2,
                        baseline,
                        "R²",
                    ),
                    "difference": round(r2 - baseline, 4),
                    "target": target,
                }
    return results
