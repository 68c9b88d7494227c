"""kest_tasks.evaluation.metrics against hand-worked cases and TensorFlow's own metrics."""

import numpy as np
import pytest

from kest_tasks.evaluation.metrics import (
    class_probabilities,
    classification_metrics,
    regression_metrics,
    roc_auc,
    sliced_scores,
)


def test_auc_by_hand_and_with_ties():
    assert roc_auc(np.array([False, False, True, True]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert roc_auc(np.array([False, True, False, True]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert roc_auc(np.array([True, True]), np.array([0.2, 0.3])) is None


def test_classification_metrics_match_tensorflow():
    from kest_tasks.core.tfenv import import_tensorflow

    tf = import_tensorflow()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 500)
    logits = rng.normal(size=(500, 3)) + np.eye(3)[labels] * 1.5
    metrics, confusion = classification_metrics(labels, logits, ["a", "b", "c"])
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits).numpy()
    assert metrics["loss"] == pytest.approx(float(loss), rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(float(np.mean(logits.argmax(1) == labels)))
    assert np.sum(confusion) == 500 and np.trace(confusion) == round(metrics["accuracy"] * 500)
    probabilities = class_probabilities(logits)
    for index, name in enumerate("abc"):
        auc = tf.keras.metrics.AUC(num_thresholds=20001)
        auc.update_state(labels == index, probabilities[:, index])
        assert metrics[f"auc/{name}"] == pytest.approx(float(auc.result()), abs=1e-3)
        recall = tf.keras.metrics.Recall()
        recall.update_state(labels == index, logits.argmax(1) == index)
        assert metrics[f"recall/{name}"] == pytest.approx(float(recall.result()), rel=1e-5)
    assert metrics["auc"] == pytest.approx(np.mean([metrics[f"auc/{n}"] for n in "abc"]))


def test_confusion_matrix_precision_recall_f1_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    metrics, confusion = classification_metrics(labels, np.eye(3)[predicted] * 10, ["x", "y", "z"])
    assert confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert metrics["precision/y"] == 0.5 and metrics["recall/x"] == pytest.approx(2 / 3)
    assert metrics["f1/z"] == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert metrics["accuracy"] == pytest.approx(4 / 6)


def test_a_binary_head_with_one_logit():
    labels = np.array([0, 1, 1, 0])
    metrics, confusion = classification_metrics(labels, np.array([[-2.0], [3.0], [-1.0], [-0.5]]), ["no", "yes"])
    assert confusion == [[2, 0], [1, 1]]
    assert metrics["auc"] == metrics["auc/yes"] == 0.75
    assert metrics["loss"] == pytest.approx(np.mean(np.log1p(np.exp([-2.0, -3.0, 1.0, -0.5]))))


def test_regression_metrics():
    metrics = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 4.0]))
    assert metrics["loss"] == pytest.approx((0.25 + 1.0) / 4)
    assert metrics["mae"] == pytest.approx(1.5 / 4)
    assert metrics["rmse"] == pytest.approx(np.sqrt(1.25 / 4))
    assert metrics["r2"] == pytest.approx(1 - 1.25 / 5.0)
    assert regression_metrics(np.array([2.0, 2.0]), np.array([2.0, 2.0]))["r2"] == 0.0


def test_slices_by_feature_value():
    labels = np.array([0, 1, 0, 1])
    outputs = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [0.0, 2.0]])
    slices = sliced_scores(
        labels,
        outputs,
        ["a", "b"],
        {"city": np.array([b"x", b"x", b"y", b"y"]), "id": np.arange(4)},
        ["city", "id"],
        max_values=3,
    )
    assert set(slices) == {"city=x", "city=y"}
    assert slices["city=x"]["metrics"]["accuracy"] == 1.0 and slices["city=y"]["metrics"]["accuracy"] == 0.5
    assert slices["city=y"]["examples"] == 2
