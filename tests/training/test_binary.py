"""Binary classification through every trainer kind: a two-class label, served with both classes' names and
probabilities (a premade binary head's single logit included)."""

from pathlib import Path

import pytest

from kest_tasks.serving.infra_validation import query_in_fresh_process
from tests.helpers import binary_csv, run_iris

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "trainer, model",
    [
        ({"kind": "keras"}, {"builder": "tabular"}),
        ({"kind": "native"}, {"builder": "tabular"}),
        ({"kind": "premade", "premade": {"type": "linear"}}, {}),
        ({"kind": "premade", "premade": {"type": "dnn"}}, {}),
    ],
    ids=["keras", "native", "premade-linear", "premade-dnn"],
)
def test_binary_classification(tmp_path, trainer, model):
    data = binary_csv(tmp_path / "loans.csv")
    summary = run_iris(
        tmp_path,
        dataset={"path": str(data), "label": "approved"},
        model={"learning_rate": 0.05, **model},
        trainer={"steps": 600, **trainer},
        thresholds={"accuracy": {"lower": 0.85}},
    )
    assert summary["blessed"], summary["gate"]
    rows: dict[str, list] = {"income": [95.0, 5.0], "debt": [1.0, 45.0], "region": ["east", "west"]}
    answer = query_in_fresh_process(Path(summary["published_model"]), rows)["outputs"]["serving_default"]
    assert answer["classes"] == ["yes", "no"]
    assert all(len(p) == 2 and abs(sum(p) - 1) < 1e-5 for p in answer["probabilities"])
    assert answer["probabilities"][0][answer["class_ids"][0]] > 0.5
