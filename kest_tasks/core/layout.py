"""Every folder and file name of a run and of the model store, named once.

A run folder `<artifact_root>/runs/<run id>/` holds the frozen `config.json`, one folder per stage named after the
stage (`prepare/`, `build/`, `train/`, …) with its outputs and its `result.json`, and the run's `summary.json`.
Runs written before the stage folders took their stages' names (prepare → `data/`, build → `model/`, evaluate →
`eval/`) are still read: a stage folder that exists only under its old name is used as it is.

The model store under `export.root` holds `<model>/<version>/` (the SavedModel, its report and publish record),
`<model>/champion.json` naming the champion, `<model>/champions/<version>.json`, one per version that became
champion, and `<model>/champion-history/<UTC time>-<version>.json`, one event per champion change (who, why, from
which previous champion) — publish's and promotions' (rollbacks included).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from kest_tasks.core import files

RUNS_FOLDER = "runs"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
RESULT_FILE = "result.json"  # in every stage folder; written last, so its presence means the stage finished

# prepare
SCHEMA_FILE = "schema.json"
STATS_FILE = "stats.json"
ANOMALIES_FILE = "anomalies.json"
# build
KERAS_MODEL_FILE = "model.h5"
ESTIMATOR_FILE = "estimator.json"  # premade and model_fn kinds: what the Estimator will be
MODEL_SUMMARY_FILE = "summary.txt"
# train (the train folder is the model_dir: checkpoints and TensorBoard events)
WARM_START_RECORD = "warm_start.json"  # the champion a first attempt started from, kept for its retries
CHAMPION_COPY_FOLDER = "champion"  # a local copy of the champion's SavedModel (warm start, gate)
EVAL_EVENTS_FOLDER = "eval"  # Estimator evaluation events inside the model_dir
NATIVE_TRAIN_EVENTS_FOLDER, NATIVE_VALIDATION_EVENTS_FOLDER = "train", "validation"  # Keras' TensorBoard callback
ESTIMATOR_SCRATCH_FOLDER = "estimator"  # a throw-away model_dir for Estimator.predict/export in a stage's folder
CHECKPOINT_NAME = "model.ckpt"  # the Estimator's checkpoint prefix; the native trainer saves under the same
# evaluate
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.npz"  # labels and outputs, for the report's plots
# gate
BLESSING_FILE = "blessing.json"
# export
SAVED_MODEL_FOLDER = "saved_model"
SAVED_MODEL_FILE = "saved_model.pb"  # copied last when published: a version is complete when it is there
EXPORT_SCRATCH_FOLDER = "versions"
# report
REPORT_FILE = "report.html"

# The model store
CHAMPION_FILE = "champion.json"
CHAMPION_HISTORY_FOLDER = "champions"
CHAMPION_EVENTS_FOLDER = "champion-history"
PUBLISH_RECORD = "kest_publish.json"

# Names that become one path component (model names, run ids): no separators, no `..`.
SAFE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_SAFE_NAME = re.compile(SAFE_NAME_PATTERN)


def check_safe_name(value: str, what: str) -> str:
    """Return `value` if it can safely become one path component, else raise ValueError naming `what`."""
    if not _SAFE_NAME.match(value) or ".." in value:
        raise ValueError(
            f"{what} {value!r} is not a safe name: use letters, digits, '.', '_' or '-' "
            f"(starting with a letter or digit, no '..', at most 128 characters)"
        )
    return value


# Stage folders of runs written before stage folders took their stage's name.
LEGACY_STAGE_FOLDERS = {"prepare": "data", "build": "model", "evaluate": "eval"}


def safe_run_id(run_id: str) -> str:
    """Turn an Airflow run id (which may hold ':' and '+') into a safe folder name, reversibly enough."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", run_id)
    return check_safe_name(cleaned.lstrip("._-") or "run", "run id")


def runs_folder(artifact_root: str) -> str:
    return files.join(artifact_root, RUNS_FOLDER)


@dataclass(frozen=True)
class RunLayout:
    """The files of one run folder, as URIs (local paths or gs://)."""

    uri: str

    @classmethod
    def for_run(cls, artifact_root: str, run_id: str) -> RunLayout:
        return cls(files.join(runs_folder(artifact_root), safe_run_id(run_id)))

    @property
    def config_file(self) -> str:
        return files.join(self.uri, CONFIG_FILE)

    @property
    def summary_file(self) -> str:
        return files.join(self.uri, SUMMARY_FILE)

    def stage_dir(self, stage: str) -> str:
        """`<run>/<stage>/`, or the stage's folder under its old name in a local run written before the rename."""
        folder = files.join(self.uri, stage)
        legacy = LEGACY_STAGE_FOLDERS.get(stage)
        if legacy and not files.is_gcs(self.uri):
            old = files.local_path(self.uri) / legacy
            if not files.local_path(folder).exists() and old.exists():
                return str(old)
        return folder

    def result_file(self, stage: str) -> str:
        return files.join(self.stage_dir(stage), RESULT_FILE)

    def file(self, stage: str, name: str) -> str:
        """A named output of a stage, e.g. `file("evaluate", METRICS_FILE)`."""
        return files.join(self.stage_dir(stage), name)


def checkpoint_step(checkpoint: str) -> int:
    """The global step a checkpoint was saved at, from its `model.ckpt-<step>` name."""
    return int(checkpoint.rsplit("-", 1)[1])


def version_name(exported_at: str, run_uri: str) -> str:
    """A published version's folder: `<UTC export time>-<8 hex of the run>`: sortable, unique per run, the same
    on every retry."""
    stamp = dt.datetime.fromtimestamp(int(exported_at), tz=dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{hashlib.sha256(run_uri.encode()).hexdigest()[:8]}"


def version_key(model_name: str, version: str) -> str:
    """Where a published version's files live under the export root."""
    return f"{model_name}/{version}"


def champion_key(model_name: str) -> str:
    return f"{model_name}/{CHAMPION_FILE}"


def history_key(model_name: str, version: str) -> str:
    return f"{model_name}/{CHAMPION_HISTORY_FOLDER}/{version}.json"


def champion_event_key(model_name: str, at: dt.datetime, version: str) -> str:
    """One champion change: sortable by time (microseconds), then version."""
    return f"{model_name}/{CHAMPION_EVENTS_FOLDER}/{at.strftime('%Y%m%dT%H%M%S%fZ')}-{version}.json"
