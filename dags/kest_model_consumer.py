"""
### kest model consumer (example)

Scheduled on the `kest://<model_name>` Asset that `kest_pipeline`'s publish task emits: it runs once for every
newly published model and receives its URI, version and whether it became champion. Replace the task with
what should follow a new model (deploy it, score a batch, notify a team).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, dag, task

from kest_tasks.orchestration.assets import default_config_path, model_asset_uri

MODEL_ASSET = Asset(model_asset_uri(default_config_path()))


@dag(
    dag_id="kest_model_consumer",
    schedule=[MODEL_ASSET],
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["kest", "example"],
    default_args={"owner": "kest"},
)
def kest_model_consumer():
    @task
    def announce(triggering_asset_events=None) -> list[dict]:
        """Log each newly published model: where it is, its version, whether it is champion."""
        import logging

        models = [dict(event.extra) for events in (triggering_asset_events or {}).values() for event in events]
        for model in models:
            logging.getLogger("kest").info(
                "new model %s at %s (champion: %s)", model.get("version"), model.get("model_uri"), model.get("champion")
            )
        return models

    announce()


kest_model_consumer()
