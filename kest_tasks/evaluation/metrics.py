"""Model quality metrics computed with NumPy from a model's raw outputs on a whole split.

The candidate (any trainer kind, in process) and the champion (through its exported SavedModel) are scored by
the same code on the same rows, so the gate compares like with like.
"""

from __future__ import annotations

import numpy as np

SLICE_SEPARATOR = "="


def headline(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics without the per-class ones (`precision/<class>` …): what travels through XCom and summaries."""
    return {key: value for key, value in metrics.items() if "/" not in key}


def class_probabilities(outputs: np.ndarray) -> np.ndarray:
    """Softmax over logits; a single logit column (a binary head) is the positive class's."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 1 or outputs.shape[-1] == 1:
        positive = 1.0 / (1.0 + np.exp(-outputs.reshape(-1)))
        return np.stack([1.0 - positive, positive], axis=1)
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties averaged); None when a side has no examples."""
    positives = int(positive.sum())
    negatives = len(positive) - positives
    if positives == 0 or negatives == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based rank of each distinct score
    ranks = average_rank[inverse]
    return float((ranks[positive].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def classification_metrics(labels: np.ndarray, outputs: np.ndarray, classes: list[str]) -> tuple[dict, list]:
    """(scalar metrics, confusion matrix rows=true cols=predicted) for class-index `labels` and raw `outputs`.

    Scalars: loss (mean cross-entropy), accuracy, auc (binary; macro one-vs-rest for more classes),
    precision/recall/f1 macro-averaged, and per class as `precision/<class>`, `recall/<class>`, `f1/<class>`,
    `auc/<class>`.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    probabilities = class_probabilities(outputs)
    count = len(classes)
    predicted = probabilities.argmax(axis=1)
    picked = probabilities[np.arange(len(labels)), labels]
    metrics: dict[str, float] = {
        "loss": float(-np.log(np.clip(picked, 1e-12, 1.0)).mean()),
        "accuracy": float((predicted == labels).mean()),
    }
    confusion = np.zeros((count, count), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class: dict[str, list[float]] = {"precision": [], "recall": [], "f1": [], "auc": []}
    for index, name in enumerate(classes):
        true_positive = confusion[index, index]
        precision = _ratio(true_positive, confusion[:, index].sum())
        recall = _ratio(true_positive, confusion[index, :].sum())
        f1 = _ratio(2 * precision * recall, precision + recall)
        auc = roc_auc(labels == index, probabilities[:, index])
        for key, value in (("precision", precision), ("recall", recall), ("f1", f1), ("auc", auc)):
            if value is not None:
                metrics[f"{key}/{name}"] = value
                per_class[key].append(value)
    for key in ("precision", "recall", "f1"):
        metrics[f"{key}_macro"] = float(np.mean(per_class[key]))
    if count == 2 and "auc/" + classes[1] in metrics:
        metrics["auc"] = metrics["auc/" + classes[1]]
    elif per_class["auc"]:
        metrics["auc"] = float(np.mean(per_class["auc"]))
    return metrics, confusion.tolist()


def regression_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """loss (mean squared error), mae, rmse and r2 (1 − SSE/SST; 0 when the labels are constant)."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    errors = np.asarray(predictions, dtype=np.float64).reshape(-1) - labels
    mse = float((errors**2).mean())
    total = float(((labels - labels.mean()) ** 2).sum())
    return {
        "loss": mse,
        "mae": float(np.abs(errors).mean()),
        "rmse": float(np.sqrt(mse)),
        "r2": 1.0 - float((errors**2).sum()) / total if total else 0.0,
    }


def score(labels: np.ndarray, outputs: np.ndarray, classes: list[str] | None) -> dict:
    """{"metrics": scalars, "examples": n, and for classifiers "confusion_matrix"} for one set of rows."""
    if classes:
        metrics, confusion = classification_metrics(labels, outputs, classes)
        return {"metrics": metrics, "examples": len(labels), "confusion_matrix": confusion}
    return {"metrics": regression_metrics(labels, outputs), "examples": len(labels)}


def sliced_scores(
    labels: np.ndarray,
    outputs: np.ndarray,
    classes: list[str] | None,
    features: dict[str, np.ndarray],
    slice_by: list[str],
    max_values: int = 50,
) -> dict[str, dict]:
    """Scores per value of each `slice_by` feature (`feature=value`), for features with at most `max_values`
    distinct values in these rows."""
    slices = {}
    for name in slice_by:
        column = np.asarray(features[name]).reshape(-1)
        values = np.unique(column)
        if len(values) > max_values:
            continue
        for value in values:
            rows = column == value
            shown = value.decode() if isinstance(value, bytes) else (value.item() if hasattr(value, "item") else value)
            if isinstance(shown, float) and shown.is_integer():
                shown = int(shown)  # numbers reach models as float32: an int feature's 3 is shown as 3
            slices[f"{name}{SLICE_SEPARATOR}{shown}"] = score(labels[rows], outputs[rows], classes)
    return slices
