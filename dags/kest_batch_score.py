"""
### kest batch score: a dataset scored by a published model

Scores a CSV, Parquet or TFRecord file (or glob; local or gs://) with the model's champion — or a pinned version —
into a Parquet file of predictions: the input's key columns, the outputs (`prediction`, `probability_<class>`) and
`model_version`. Rows the model's schema rejects (text in a number column) go to `<output>.rejects.parquet` with the
row and the reason; the task's result counts them. Progress is in the task log.

When it runs is the deployment's choice (KEST_SCORE_SCHEDULE): unset, by hand from the form; a cron expression or
preset (`@daily`), on that schedule; `@model`, every time the model's Asset (`kest://<model>`) announces a new
version or a champion change. Scheduled runs take the form's defaults: KEST_SCORE_INPUT and KEST_SCORE_OUTPUT.
`{run_id}` and `{version}` in the output are filled in, so each run writes its own file; a retry rewrites it whole.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import Asset, Param, dag, task

from kest_tasks.orchestration.assets import default_config_path, model_asset_uri

DEFAULT_CONFIG = default_config_path()
MODEL_ASSET_URI = model_asset_uri(DEFAULT_CONFIG)


def _schedule(setting: str | None) -> object:
    if not setting:
        return None
    if not os.environ.get("KEST_SCORE_INPUT"):
        # Airflow refuses a schedule whose runs would start without a valid form; say which setting is missing.
        raise ValueError(
            f"KEST_SCORE_SCHEDULE={setting!r} needs KEST_SCORE_INPUT: the file or glob scheduled runs score"
        )
    if setting == "@model":
        return [Asset(MODEL_ASSET_URI)]
    return setting


@dag(
    dag_id="kest_batch_score",
    schedule=_schedule(os.environ.get("KEST_SCORE_SCHEDULE")),
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["kest", "ml"],
    default_args={"owner": "kest", "retries": 1, "retry_delay": dt.timedelta(seconds=30)},
    params={
        "model": Param(MODEL_ASSET_URI.removeprefix("kest://"), type="string", minLength=1, title="Model"),
        "version": Param("", type="string", title="Version", description="A published version; empty: the champion."),
        "input": Param(
            os.environ.get("KEST_SCORE_INPUT", ""),
            type="string",
            minLength=1,
            title="Input",
            description="CSV, Parquet or TFRecord file or glob, local or gs://.",
        ),
        "output": Param(
            os.environ.get("KEST_SCORE_OUTPUT", ""),
            type="string",
            title="Output",
            description="The predictions' .parquet file ({run_id}, {version} filled in); empty: "
            "<artifact_root>/scores/<run>/predictions.parquet.",
        ),
        "keys": Param(
            "",
            type="string",
            title="Key columns",
            description="Comma-separated columns copied to every prediction; empty: those the model does not read.",
        ),
        "config_path": Param(DEFAULT_CONFIG, type="string", title="Config file"),
        "overrides": Param({}, type="object", title="Config overrides", description='e.g. {"export": {"root": …}}'),
    },
)
def kest_batch_score():
    @task
    def score(params=None, run_id=None) -> dict:
        """Score the input with the model; the result names the version, the files and the counts."""
        from airflow.sdk.exceptions import AirflowFailException

        from kest_tasks.core.errors import KestError
        from kest_tasks.core.files import StorageError
        from kest_tasks.orchestration.runner import scoring_request
        from kest_tasks.serving.batch_score import batch_score

        try:
            result = batch_score(**scoring_request(params, run_id))
        except StorageError as error:
            if error.retryable:  # the store or bucket was unavailable: a retry may succeed
                raise RuntimeError(str(error)) from None
            raise AirflowFailException(str(error)) from None
        except KestError as error:  # bad input: fail at once with its one line, no retry
            raise AirflowFailException(str(error)) from None
        return result.model_dump(mode="json")

    score()


kest_batch_score()
