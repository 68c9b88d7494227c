"""Batch scoring with a published model (kest_tasks.serving.batch_score): CSV, Parquet and TFRecord inputs, local
and gs://, the champion or a pinned version; rejected rows with their reasons; one line for what cannot be scored;
the `score` CLI and the kest_batch_score DAG."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kest_tasks.core import files, layout
from kest_tasks.core.config import load_config
from kest_tasks.core.stages import PREPARE
from kest_tasks.registry.catalog import CatalogError
from kest_tasks.serving.batch_score import batch_score
from tests.helpers import IRIS_CONFIG, REPO, task_states

pytestmark = pytest.mark.slow

CLASSES = ["setosa", "versicolor", "virginica"]


def _iris_rows() -> list[list[str]]:
    with open(REPO / "kest_tasks" / "configs" / "iris.csv") as handle:
        return list(csv.reader(handle))


def _scoring_csv(path: Path, bad: dict[int, tuple[int, str]] | None = None) -> Path:
    """Iris with an `id` column first and the label last; `bad`: data row index → (feature index, cell)."""
    header, *rows = _iris_rows()
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *header])
        for index, row in enumerate(rows):
            cells = list(row)
            if bad and index in bad:
                cells[bad[index][0]] = bad[index][1]
            writer.writerow([f"flower-{index}", *cells])
    return path


@pytest.fixture
def config(iris_run):
    return iris_run["config"]


def test_csv_scored_by_the_champion_with_rejected_rows_aside(config, tmp_path):
    source = _scoring_csv(tmp_path / "flowers.csv", bad={3: (1, "abc"), 7: (0, "1,5"), 9: (2, "")})
    output = tmp_path / "out" / "predictions.parquet"
    result = batch_score(config, str(source), str(output), block_rows=64)
    champion = files.read_json(files.join(config.export.root, layout.champion_key("iris")))
    assert (result.version, result.rows, result.scored, result.rejected) == (champion["version"], 150, 148, 2)

    predictions = pq.read_table(output)
    assert predictions.column_names == [
        "id",
        "prediction",
        *(f"probability_{name}" for name in CLASSES),
        "model_version",
    ]
    assert set(predictions.column("model_version").to_pylist()) == {champion["version"]}
    ids = predictions.column("id").to_pylist()
    assert "flower-3" not in ids and "flower-7" not in ids and "flower-9" in ids  # a missing value is scored
    labels = {f"flower-{i}": row[-1] for i, row in enumerate(_iris_rows()[1:])}
    accuracy = np.mean([labels[i] == p for i, p in zip(ids, predictions.column("prediction").to_pylist())])
    assert accuracy > 0.9
    probabilities = np.stack([predictions.column(f"probability_{name}").to_numpy() for name in CLASSES], axis=1)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)

    rejects = pq.read_table(result.rejects_uri).to_pylist()
    assert rejects == [
        {
            "id": "flower-3",
            "source_file": str(source),
            "source_row": 5,  # the CSV line: header is line 1
            "reason": "column 'sepal_width': 'abc' is not a number",
        },
        {
            "id": "flower-7",
            "source_file": str(source),
            "source_row": 9,
            "reason": "column 'sepal_length': '1,5' is not a number",
        },
    ]
    assert sorted(p.name for p in output.parent.iterdir()) == ["predictions.parquet", "predictions.rejects.parquet"]


def test_parquet_and_tfrecord_inputs_and_a_pinned_version(config, iris_run, tmp_path):
    header, *rows = _iris_rows()
    table = pa.table({name: [float(r[i]) for r in rows] for i, name in enumerate(header[:-1])})
    table = table.append_column("flower", pa.array(np.arange(len(rows)) * 10))
    pq.write_table(table, tmp_path / "flowers.parquet")
    version = files.read_json(files.join(config.export.root, layout.champion_key("iris")))["version"]
    result = batch_score(config, str(tmp_path / "flowers.parquet"), str(tmp_path / "p.parquet"), version, ["flower"])
    scored = pq.read_table(tmp_path / "p.parquet")
    assert result.scored == 150 and scored.column("flower").to_pylist()[:3] == [0, 10, 20]
    assert scored.schema.field("flower").type == pa.int64()  # keys keep their type

    # The run's own test split, as TFRecords (GZIP): no key columns but the label, so the file and record number.
    test_shards = files.join(iris_run["summary"]["run_uri"], "prepare", "test-*")
    result = batch_score(config, test_shards, str(tmp_path / "t.parquet"))
    scored = pq.read_table(tmp_path / "t.parquet")
    assert scored.column_names[:2] == ["source_file", "source_row"] and result.rejected == 0
    assert (
        scored.column("source_row").to_pylist()[:2] == [1, 2]
        and result.rows == PREPARE.load(iris_run["summary"]["run_uri"]).split_rows["test"]
    )


def test_inputs_and_outputs_in_object_storage(config, tf_gcs, tmp_path):
    files.put_file(_scoring_csv(tmp_path / "flowers.csv"), "gs://kest-models/scoring/in/flowers.csv")
    result = batch_score(config, "gs://kest-models/scoring/in/*.csv", "gs://kest-models/scoring/out/p.parquet")
    assert result.inputs == ["gs://kest-models/scoring/in/flowers.csv"] and result.scored == 150
    local = tmp_path / "p.parquet"
    local.write_bytes(files.read_bytes("gs://kest-models/scoring/out/p.parquet"))
    assert pq.read_table(local).num_rows == 150
    assert files.exists("gs://kest-models/scoring/out/p.rejects.parquet")

    # A store that cannot be read: one line naming it, for scoring and on the Models page's list.
    unreadable = load_config(IRIS_CONFIG, {"export": {"root": "gs://no-such-bucket/models"}})
    with pytest.raises(files.StorageError) as raised:
        batch_score(unreadable, str(tmp_path / "flowers.csv"), str(tmp_path / "q.parquet"))
    assert "gs://no-such-bucket" in str(raised.value) and "\n" not in str(raised.value)
    from kest_tasks.orchestration import models_view

    roots = f"{config.export.root},gs://no-such-bucket/models"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(models_view.MODEL_ROOTS_SETTING, roots)
        local, missing = models_view.listing()
    assert [m["model"] for m in local["models"]] == ["iris"] and "error" not in local
    assert missing["error"].startswith("cannot read gs://no-such-bucket/models: ") and not missing["models"]


def test_what_cannot_be_scored_is_one_line(config, tmp_path, iris_run):
    good = _scoring_csv(tmp_path / "flowers.csv")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,sepal_length,petal_length\n1,5.1,1.4\n")
    collides = tmp_path / "collides.csv"
    collides.write_text("prediction,sepal_length,sepal_width,petal_length,petal_width\nx,5.1,3.5,1.4,0.2\n")
    root = config.export.root
    refusals: list[tuple[dict[str, Any], str]] = [
        (
            dict(input_uri=str(wrong)),
            f"{wrong}: no column 'sepal_width', 'petal_width' that the model needs (it reads "
            "sepal_length, sepal_width, petal_length, petal_width; the file has 3 columns)",
        ),
        (dict(version="20990101T000000Z-00000000"), "iris has no published version '20990101T000000Z-00000000' in"),
        (dict(version="../etc"), "version '../etc' is not a safe name"),
        (dict(keys=["ssn"]), f"{good}: no key column 'ssn' among the file's 6 columns"),
        (dict(output_uri=str(tmp_path / "p.csv")), f"{tmp_path / 'p.csv'}: predictions are written as Parquet"),
        (dict(input_uri=str(collides)), f"{collides}: key column 'prediction' would collide with an output column"),
        (dict(input_uri=str(tmp_path / "none.csv")), f"{tmp_path / 'none.csv'}"),
        (dict(input_uri=str(tmp_path / "flowers.xlsx")), "cannot tell the format from the name"),
    ]
    for change, message in refusals:
        arguments: dict[str, Any] = {"input_uri": str(good), "output_uri": str(tmp_path / "p.parquet"), **change}
        with pytest.raises(Exception) as raised:
            batch_score(config, **arguments)
        assert message in str(raised.value) and "\n" not in str(raised.value), (change, str(raised.value))
    assert not (tmp_path / "p.parquet").exists()  # nothing half-written
    unknown = load_config(IRIS_CONFIG, {"export": {"root": root}, "model_name": "tulips"})
    with pytest.raises(CatalogError, match=f"^tulips has no champion in {root}; publish one first$"):
        batch_score(unknown, str(good), str(tmp_path / "p.parquet"))

    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "kest_tasks",
            "score",
            "iris",
            str(wrong),
            str(tmp_path / "p.parquet"),
            "--set",
            f"export.root={root}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 2 and cli.stderr.strip().splitlines()[-1].startswith(f"kest: error: {wrong}: no column")
    assert "Traceback" not in cli.stderr


def test_the_batch_score_dag_scores_with_the_champion(airflow_db, config, tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "kest_batch_score.py"))
    assert bag.import_errors == {}
    dag = bag.get_dag("kest_batch_score")
    source = _scoring_csv(tmp_path / "flowers.csv", bad={0: (3, "n/a?")})
    conf = {
        "input": str(source),
        "output": str(tmp_path / "scores" / "{run_id}-{version}.parquet"),
        "overrides": {"export": {"root": config.export.root}},
    }
    run = dag.test(run_conf=conf)
    assert run.state == "success", task_states(run)
    (written,) = (tmp_path / "scores").glob("*.rejects.parquet")
    assert pq.read_table(written).column("reason").to_pylist() == ["column 'petal_width': 'n/a?' is not a number"]
    refused = dag.test(run_conf={**conf, "input": str(tmp_path / "missing.csv")})
    assert refused.state == "failed" and task_states(refused) == {"score": "failed"}
