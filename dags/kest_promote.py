"""
### kest promote: make a published version champion (a promotion, or a rollback)

Fill in the model, the published version (`python -m kest_tasks champion show MODEL` lists them) and why. The
champion pointer moves by compare-and-swap against the current champion, as publish does; the change is appended
to the model's champion history with the reason and this run; a version that is not published, or not whole, is
refused in one line. A change is announced on the model's Asset (`kest://<model>`), so DAGs scheduled on it (the
example `kest_model_consumer`) see rollbacks too. Making the champion champion again changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging

from airflow.sdk import Asset, AssetAlias, Param, dag, task

from kest_tasks.orchestration.assets import default_config_path, model_asset_uri

DEFAULT_CONFIG = default_config_path()
# The model's Asset is known only from the form: events go out through this alias to `kest://<model>`.
CHAMPION_CHANGES = AssetAlias("kest-champion-changes")


@dag(
    dag_id="kest_promote",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["kest", "ml"],
    default_args={"owner": "kest", "retries": 0},
    params={
        "model": Param(
            model_asset_uri(DEFAULT_CONFIG).removeprefix("kest://"),
            type="string",
            minLength=1,
            title="Model",
            description="The model's name under the config's export.root.",
        ),
        "version": Param(
            "", type="string", minLength=1, title="Version", description="The published version to make champion."
        ),
        "reason": Param(
            "", type="string", minLength=1, title="Reason", description="Why: kept in the champion history."
        ),
        "config_path": Param(
            DEFAULT_CONFIG, type="string", title="Config file", description="Whose export.root holds the model."
        ),
        "overrides": Param({}, type="object", title="Config overrides", description='e.g. {"export": {"root": …}}'),
    },
)
def kest_promote():
    @task(outlets=[CHAMPION_CHANGES])
    def promote(params=None, run_id=None, dag_run=None, outlet_events=None) -> dict:
        """Make the version champion; announce the change on the model's Asset."""
        from airflow.sdk.exceptions import AirflowFailException

        from kest_tasks.core.errors import KestError
        from kest_tasks.orchestration.runner import model_config_from_form
        from kest_tasks.registry.promotion import set_champion

        user = getattr(dag_run, "triggering_user_name", None)
        by = f"{user} via kest_promote run {run_id}" if user else f"kest_promote run {run_id}"
        try:
            config = model_config_from_form(params)
            change = set_champion(config, params["version"], params["reason"], by)
        except KestError as error:  # bad input: fail at once with its one line, no retry
            raise AirflowFailException(str(error)) from None
        if change["changed"] and outlet_events is not None:
            extra = {key: change[key] for key in ("version", "model_uri", "previous", "reason")}
            outlet_events[CHAMPION_CHANGES].add(Asset(f"kest://{config.model_name}"), extra={**extra, "champion": True})
        logging.getLogger("kest").info("promote: %s", change)
        return change

    promote()


kest_promote()
