"""The pipeline's configuration: one validated pydantic model, loaded from YAML/JSON.

Relative paths in a config file are resolved against the file's own folder, so a config means the same
thing whatever the working directory of the process that reads it (an Airflow worker, the CLI, a test).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from kest_tasks.core.errors import ConfigError
from kest_tasks.core.layout import check_safe_name

# Trainer kinds that train the Keras model the build stage makes (the others build an Estimator in train).
KERAS_KINDS = ("keras", "native")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(_Section):
    """Deterministic hash split: each row goes to the split its key's hash falls in."""

    train: float = Field(70, ge=0, description="Relative weight of the training split.")
    eval: float = Field(15, ge=0, description="Relative weight of the evaluation split used during training.")
    test: float = Field(15, ge=0, description="Relative weight of the held-out test split.")
    key: list[str] | None = Field(
        None, description="Columns whose values form the hashed key; none means the whole row."
    )

    @model_validator(mode="after")
    def _every_split_used(self) -> SplitConfig:
        for name in ("train", "eval", "test"):
            if getattr(self, name) <= 0:
                raise ValueError(f"split weight {name!r} must be greater than 0")
        return self

    def fractions(self) -> dict[str, float]:
        total = self.train + self.eval + self.test
        return {"train": self.train / total, "eval": self.eval / total, "test": self.test / total}


SplitName = Literal["train", "eval", "test"]
AnomalyKind = Literal[
    "missing_column",
    "new_column",
    "type_change",
    "out_of_range",
    "unseen_category",
    "unknown_label",
    "nan_or_inf",
    "too_many_missing",
    "drift",
]
DEFAULT_SEVERITY: dict[str, str] = {
    "missing_column": "error",
    "new_column": "warning",
    "type_change": "error",
    "out_of_range": "warning",
    "unseen_category": "warning",
    "unknown_label": "error",
    "nan_or_inf": "error",
    "too_many_missing": "warning",
    "drift": "warning",
}


class TfdsConfig(_Section):
    name: str = Field(..., description="TFDS dataset name (optionally name/config:version).")
    split: str = Field("train", description="TFDS split to read, e.g. 'train' or 'train[:80%]'.")
    data_dir: str = Field(..., description="Local TFDS data_dir holding the prepared dataset (never downloaded).")


class DriftConfig(_Section):
    """How far the new data's distribution may move from the data the champion was trained on (TFDV's measures)."""

    jensen_shannon: float | None = Field(
        0.1,
        ge=0,
        le=1,
        description="Number features: the largest Jensen-Shannon divergence (base 2, 0-1) between the training "
        "split's histogram and the champion's; null: numbers are not checked.",
    )
    infinity_norm: float | None = Field(
        0.1,
        ge=0,
        le=1,
        description="Text features: the largest L-infinity distance (the biggest change of any value's frequency) "
        "from the champion's training data; null: text is not checked.",
    )
    features: dict[str, float | None] = Field(
        default_factory=dict,
        description="Feature name → its own threshold (in its kind's measure); null: that feature is not checked.",
    )

    @field_validator("features")
    @classmethod
    def _thresholds_in_range(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        for name, threshold in value.items():
            if threshold is not None and not 0 <= threshold <= 1:
                raise ValueError(f"{name}: threshold {threshold} is outside 0..1")
        return value


class ValidationConfig(_Section):
    drift: DriftConfig = Field(
        default_factory=DriftConfig,
        description="Drift from the champion's training data (anomaly kind `drift`; a warning unless severity "
        "says error).",
    )
    severity: dict[AnomalyKind, Literal["error", "warning", "ignore"]] = Field(
        default_factory=dict, description="Override the severity of an anomaly kind."
    )
    max_missing_increase: float = Field(
        0.05, ge=0, le=1, description="Missing fraction allowed above the pinned schema's before it is an anomaly."
    )

    def severity_of(self, kind: AnomalyKind) -> str:
        return self.severity.get(kind, DEFAULT_SEVERITY[kind])


# Cells that mean "no value", as pandas reads them (an empty cell is always missing).
# File name endings → the source `source: auto` picks (a trailing .gz is skipped: gzip TFRecords); anything else
# is read as CSV.
SOURCE_BY_SUFFIX = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".tfrecord": "tfrecord",
    ".tfrecords": "tfrecord",
    ".npz": "npz",
}


def source_of(path: str) -> str | None:
    """The source a file name says (SOURCE_BY_SUFFIX), None when it says none."""
    name = path.rstrip("/").rsplit("/", 1)[-1].lower().removesuffix(".gz")
    return SOURCE_BY_SUFFIX.get("." + name.rsplit(".", 1)[-1]) if "." in name else None


DEFAULT_NA_VALUES = ["", "nan", "NaN", "NAN", "-nan", "NA", "N/A", "n/a", "#N/A", "null", "NULL", "None"]


class MissingConfig(_Section):
    """What a missing value becomes, per kind of column; the same in training, evaluation and serving."""

    numeric: Literal["mean", "median", "zero", "error"] = Field(
        "mean",
        description="Missing numbers: the training split's mean or median, zero, or an error naming the "
        "first missing cell.",
    )
    string: Literal["token", "error"] = Field(
        "token",
        description="Missing text: the empty-string token (a category of its own when the training split "
        "has missing values), or an error naming the first missing cell.",
    )


class DatasetConfig(_Section):
    source: Literal["auto", "csv", "parquet", "tfrecord", "tfds", "npz"] = Field(
        "auto",
        description="Kind of input data. auto: from the file names (.parquet/.pq, .tfrecord(s)[.gz], .npz; "
        "anything else is CSV), or tfds when only a tfds section is given.",
    )
    path: str | None = Field(
        None,
        description="CSV, Parquet, TFRecord or .npz file, or a glob of them; may hold {SPAN} (relative to the "
        "config file).",
    )
    splits: dict[SplitName, str] | None = Field(
        None, description="Pre-split inputs: one path or glob per split, instead of `path` and hash splitting."
    )
    span: int | None = Field(None, ge=0, description="Span to read when the path holds {SPAN}; default the latest.")
    tfds: TfdsConfig | None = Field(None, description="TensorFlow Datasets source (source: tfds).")
    label: str = Field(..., description="Name of the label column.")
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field delimiter.")
    column_types: dict[str, Literal["int", "float", "string"]] = Field(
        default_factory=dict, description="Force a column's type instead of inferring it."
    )
    label_kind: Literal["auto", "classification", "regression"] = Field(
        "auto", description="auto: text or few distinct whole numbers → classification, other numbers → regression."
    )
    missing: MissingConfig = Field(default_factory=MissingConfig)
    na_values: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NA_VALUES), description="CSV cells read as missing values."
    )
    non_finite: Literal["error", "clip"] = Field(
        "error",
        description="inf, -inf and numbers beyond float32: an error naming file, row and column, or clip: "
        "kept and clipped to the column's min/max.",
    )
    skip_repeated_headers: bool = Field(
        False, description="CSV: skip lines that repeat the header (files joined with cat) instead of failing."
    )
    schema_file: str | None = Field(None, description="Pinned schema.json to validate new data against.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    vocabulary_size: int = Field(100, ge=1, le=100_000, description="Top-K values kept per string feature.")
    split: SplitConfig = Field(default_factory=SplitConfig)
    shards: int = Field(1, ge=1, le=1024, description="TFRecord shards per split (rows dealt round-robin).")
    rows_per_shard: int | None = Field(
        None, ge=1, description="Instead of `shards`: start a new shard every N rows of a split."
    )
    compression: Literal["GZIP", "NONE"] = Field("GZIP", description="TFRecord compression.")
    # Measured on 79 MB of 20-float records: level 1 compresses at 94 MB/s to 36 % of the size, 6 (zlib's
    # default) at 24 MB/s to 30 %, 9 at 3 MB/s to 29 %; TensorFlow reads every level.
    compression_level: int = Field(
        1, ge=1, le=9, description="GZIP level: 1 is 4x faster to write than 6 for about 18 % more bytes."
    )

    @model_validator(mode="after")
    def _source_is_complete(self) -> DatasetConfig:
        if self.source == "auto":
            self.source = self._source_from_names()
        if self.source == "tfds":
            if self.tfds is None:
                raise ValueError("source 'tfds' needs a 'tfds' section (name, data_dir)")
        elif (self.path is None) == (self.splits is None):
            raise ValueError(f"source {self.source!r} needs exactly one of 'path' or 'splits'")
        if self.splits is not None and set(self.splits) != {"train", "eval", "test"}:
            raise ValueError("'splits' needs a path for each of train, eval and test")
        return self

    def _source_from_names(self) -> Any:
        if self.path is None and self.splits is None and self.tfds is not None:
            return "tfds"
        paths = [self.path] if self.path is not None else sorted((self.splits or {}).values())
        found = {source_of(path) or "csv" for path in paths}
        if len(found) > 1:
            raise ValueError(f"source 'auto': the splits' files are of different kinds ({', '.join(sorted(found))})")
        return found.pop() if found else "csv"


class ModelConfig(_Section):
    builder: str = Field(
        "iris", description="Registered builder (iris, tabular) or your own as module:function from code_dir."
    )
    code_dir: str | None = Field(None, description="Folder holding your builder or model_fn modules.")
    learning_rate: float = Field(0.001, gt=0, le=10, description="Adam learning rate.")
    params: dict[str, Any] = Field(default_factory=dict, description="Extra keyword arguments for the builder.")


class EarlyStoppingConfig(_Section):
    metric: str = Field("loss", description="Evaluation metric to watch (loss, accuracy, mae).")
    mode: Literal["min", "max"] = Field("min", description="Whether the metric should decrease or increase.")
    patience_steps: int = Field(..., ge=1, description="Stop when the metric has not improved for this many steps.")
    min_steps: int = Field(0, ge=0, description="Never stop before this global step.")


class PremadeConfig(_Section):
    type: Literal["linear", "dnn", "dnn_linear", "boosted_trees"] = Field("dnn", description="Canned Estimator.")
    hidden_units: list[int] = Field(default_factory=lambda: [32, 16], description="DNN layer widths.")
    embedding_dim: int = Field(8, ge=1, description="Embedding width of string features in DNNs.")


class ClusterConfig(_Section):
    """Training on N workers of a Ray cluster as one MultiWorkerMirrored job (kest_tasks.training.ray_cluster)."""

    engine: Literal["ray"] = Field("ray", description="The distributed engine that starts the workers.")
    workers: int = Field(2, ge=1, le=4096, description="Training workers (processes), one TF_CONFIG task each.")
    cpus_per_worker: float = Field(1, gt=0, le=1024, description="CPUs Ray reserves for each worker.")
    gpus_per_worker: float = Field(0, ge=0, le=64, description="GPUs Ray gives each worker (CUDA_VISIBLE_DEVICES).")
    address: str | None = Field(
        None,
        description="Ray cluster to run on (host:port of its head, or ray://host:10001); else RAY_ADDRESS; "
        "neither: a Ray started on this machine for the task and stopped after it.",
    )
    max_failures: int = Field(
        2, ge=0, le=100, description="Times Ray restarts the workers after one dies; they resume from the checkpoint."
    )
    shared_filesystem: bool = Field(
        False,
        description="With a remote address: artifact_root is a folder every Ray node mounts at the same path "
        "(else it must be gs://).",
    )


class TrainerConfig(_Section):
    kind: Literal["keras", "premade", "model_fn", "native"] = Field(
        "keras",
        description="keras: model_to_estimator on the built model; premade: a canned Estimator with "
        "feature columns from the schema; model_fn: your own model_fn (module:function); native: the built Keras "
        "model trained with model.fit under the tf.distribute strategy, same data, checkpoints and export.",
    )
    premade: PremadeConfig = Field(default_factory=PremadeConfig)
    model_fn: str | None = Field(None, description="module:function of a custom model_fn (kind: model_fn).")
    steps: int = Field(500, ge=1, description="Total training steps (global_step to reach).")
    epochs: float | None = Field(
        None,
        gt=0,
        description="Train for this many passes over the train split instead: steps = ceil(epochs × "
        "train rows / batch_size), computed when training starts (takes precedence over steps).",
    )
    batch_size: int = Field(32, ge=1, le=1_000_000, description="Examples per training step.")
    shuffle_buffer: int = Field(1000, ge=1, description="Examples held in the shuffle buffer.")
    checkpoint_steps: int = Field(100, ge=1, description="Save a checkpoint (and evaluate) every N steps.")
    checkpoint_secs: int | None = Field(
        None,
        ge=1,
        description="Save a checkpoint (and evaluate) every N seconds instead of every checkpoint_steps "
        "(Estimator kinds).",
    )
    keep_checkpoint_max: int = Field(3, ge=1, description="Checkpoints to keep.")
    log_steps: int = Field(100, ge=1, description="Log step, loss and steps/s every N steps.")
    eval_throttle_secs: int = Field(0, ge=0, description="Minimum seconds between evaluations in training.")
    distribution: Literal["none", "mirrored", "multi_worker", "parameter_server"] = Field(
        "none",
        description="tf.distribute strategy for training: mirrored uses every visible GPU of this machine; "
        "multi_worker and parameter_server read the cluster from TF_CONFIG.",
    )
    cluster: ClusterConfig | None = Field(
        None,
        description="Train on several workers started by Ray (a MultiWorkerMirrored job); none: this process.",
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        None, description="Stop training when an evaluation metric stops improving (evaluated at each checkpoint)."
    )
    class_weight: Literal["none", "balanced"] | dict[str, float] = Field(
        "none",
        description="Weigh each training example's loss by its class: balanced (train rows / (classes × rows "
        "of the class)) or a mapping class name → weight (others 1).",
    )
    warm_start: Literal["none", "champion"] = Field(
        "none",
        description="champion: start from the trainable weights of the model currently published as "
        "champion (same architecture required); none: from the builder's initial weights.",
    )

    @field_validator("class_weight", mode="before")
    @classmethod
    def _class_weight_is_known(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for name, weight in value.items():
                if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                    raise ValueError(f"class {name!r}: weight {weight!r} is not a number greater than 0")
        elif value not in ("none", "balanced"):
            raise ValueError(f"{value!r}: expected none, balanced, or a mapping class name → weight")
        return value


class Threshold(_Section):
    lower: float | None = Field(None, description="The metric must be at least this.")
    upper: float | None = Field(None, description="The metric must be at most this.")

    @model_validator(mode="after")
    def _has_a_bound(self) -> Threshold:
        if self.lower is None and self.upper is None:
            raise ValueError("a threshold needs 'lower', 'upper' or both")
        return self


class ChangeThreshold(_Section):
    """How the candidate must compare with the champion on one metric (both scored on this run's test split)."""

    direction: Literal["higher", "lower"] = Field(..., description="Which way the metric is better.")
    absolute: float | None = Field(
        None,
        description="The candidate must beat the champion by at least this much (0: no worse; negative: "
        "may be this much worse).",
    )
    relative: float | None = Field(
        None,
        description="The same as a fraction of the champion's value (0.01: at least 1 % better).",
    )

    @model_validator(mode="after")
    def _has_a_bound(self) -> ChangeThreshold:
        if self.absolute is None and self.relative is None:
            raise ValueError("a change threshold needs 'absolute', 'relative' or both")
        return self


class GateConfig(_Section):
    mode: Literal["thresholds", "always_bless"] = Field(
        "thresholds",
        description="thresholds: bless only when every threshold holds; always_bless: bless every "
        "model (checks are still computed and recorded).",
    )
    thresholds: dict[str, Threshold] = Field(
        default_factory=dict,
        description="Metric name → bounds the candidate must meet to be blessed.",
    )
    change: dict[str, ChangeThreshold] = Field(
        default_factory=dict,
        description="Metric name → how the candidate must compare with the current champion "
        "(skipped when there is no champion yet).",
    )

    @model_validator(mode="after")
    def _has_a_criterion(self) -> GateConfig:
        if self.mode == "thresholds" and not self.thresholds and not self.change:
            raise ValueError(
                "no thresholds: set gate.thresholds and/or gate.change, or gate.mode: always_bless to bless every model"
            )
        return self


class EvaluateConfig(_Section):
    batch_size: int = Field(1024, ge=1, le=1_000_000, description="Examples per evaluation batch.")
    slice_by: list[str] = Field(
        default_factory=list,
        description="Features to report metrics by value (those with at most 50 distinct values in the test split).",
    )


class ExportConfig(_Section):
    root: str = Field(
        "",
        description="Where blessed models are published: a local folder or gs://bucket/prefix "
        "(default: <artifact_root>/models).",
    )
    query_rows: int = Field(16, ge=1, description="Test rows sent to the exported model to check it answers.")
    gcs_retry_seconds: float = Field(
        120.0,
        gt=0,
        description="How long google-cloud-storage retries transient errors before publish fails.",
    )


class PipelineConfig(_Section):
    model_name: str = Field(..., description="Name the model is published under.")
    seed: int = Field(42, description="Random seed for model initialisation and training.")
    artifact_root: str = Field(
        "artifacts",
        description="Folder holding every run's artifacts (default: "
        "artifacts/ in the folder kest runs from; a relative path in a config file is "
        "relative to that file).",
    )
    dataset: DatasetConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)

    @model_validator(mode="after")
    def _trainer_is_consistent(self) -> PipelineConfig:
        if self.trainer.kind == "model_fn" and not self.trainer.model_fn:
            raise ValueError("trainer.kind 'model_fn' needs trainer.model_fn: module:function")
        if self.trainer.kind == "native" and self.trainer.distribution == "parameter_server":
            # Keras' parameter-server training needs a coordinator process and DatasetCreator inputs.
            raise ValueError(
                "trainer.distribution 'parameter_server' is not supported with trainer.kind 'native'; "
                "use none, mirrored or multi_worker, or an Estimator kind (keras, premade, model_fn)"
            )
        if self.trainer.cluster is not None and self.trainer.distribution not in ("none", "multi_worker"):
            raise ValueError(
                f"trainer.cluster runs one MultiWorkerMirrored job; trainer.distribution "
                f"{self.trainer.distribution!r} cannot be combined with it (leave it none)"
            )
        if self.trainer.kind == "native" and self.trainer.checkpoint_secs is not None:
            raise ValueError(
                "trainer.checkpoint_secs is not supported with trainer.kind 'native' (it checkpoints "
                "every checkpoint_steps); remove it or use an Estimator kind"
            )
        return self

    @field_validator("model_name")
    @classmethod
    def _model_name_is_safe(cls, value: str) -> str:
        return check_safe_name(value, "model_name")

    @model_validator(mode="after")
    def _export_root_defaults_to_artifacts(self) -> PipelineConfig:
        if not self.export.root:
            self.export.root = default_export_root(self.artifact_root)
        return self

    def resolve_paths(self, base: Path, explicit: frozenset[str] = frozenset()) -> PipelineConfig:
        """Return a copy whose relative local paths are made absolute against `base` (the config file's folder).
        A default artifact root (not in `explicit`) is the working directory's `artifacts/`, and a default export
        root is `<artifact_root>/models`."""
        resolved = self.model_copy(deep=True)
        resolved.artifact_root = _resolve(
            self.artifact_root, base if "artifact_root" in explicit else Path.cwd(), "artifact_root"
        )
        dataset = resolved.dataset
        if dataset.path is not None:
            dataset.path = _resolve(dataset.path, base, "dataset.path")
        if dataset.splits is not None:
            dataset.splits = {
                name: _resolve(path, base, f"dataset.splits.{name}") for name, path in dataset.splits.items()
            }
        if dataset.tfds is not None:
            dataset.tfds.data_dir = _resolve(dataset.tfds.data_dir, base)
        if resolved.model.code_dir is not None:
            resolved.model.code_dir = _resolve(resolved.model.code_dir, base)
        if dataset.schema_file is not None:
            dataset.schema_file = _resolve(dataset.schema_file, base)
        if "export.root" in explicit:
            resolved.export.root = _resolve(self.export.root, base, "export.root")
        else:
            resolved.export.root = default_export_root(resolved.artifact_root)
        return resolved


def default_export_root(artifact_root: str) -> str:
    """Where published models go when the config names no export.root."""
    return f"{artifact_root.rstrip('/')}/models"


_GCS_URI = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")


def _resolve(path: str, base: Path, key: str = "") -> str:
    """An absolute local path (relative ones against `base`; file:// URIs as their path), or a gs:// URI as it is.
    With `key`, other schemes and malformed gs:// URIs are a ConfigError naming it."""
    if key and path.startswith("gs://"):
        if not _GCS_URI.match(path) or "//" in path[len("gs://") :]:
            raise ConfigError(f"{key}: {path!r} is not a gs://bucket/path URI")
        return path.rstrip("/") if path.count("/") > 2 else path
    if key and path.startswith("file://"):
        path = path[len("file://") :]
    if "://" in path:
        if key:
            raise ConfigError(
                f"{key}: {path.split('://')[0]}:// is not supported; use a local path or gs://bucket/path"
            )
        return path
    return str((base / Path(path).expanduser()).resolve())


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")


def key_text(part: Any) -> str:
    """A config key as an error line shows it: plain keys as they are, anything else (control characters, unicode,
    a huge key) quoted and cut short, so the message stays one readable line."""
    text = str(part)
    if _PLAIN_KEY.fullmatch(text):
        return text
    quoted = repr(text)
    return quoted if len(quoted) <= 66 else quoted[:60] + "…'"


def _format_validation_error(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(key_text(part) for part in item["loc"]) or "(top level)"
        message = " ".join(str(item["msg"]).split())
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{key}: {message}")
    return f"invalid config {source}: " + "; ".join(problems)


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_config(data: dict[str, Any], source: str, base: Path) -> PipelineConfig:
    """Validate a config mapping; raise ConfigError with one line naming every bad key."""
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None
    export = data.get("export")
    explicit = frozenset(
        ({"artifact_root"} if data.get("artifact_root") else set())
        | ({"export.root"} if isinstance(export, dict) and export.get("root") else set())
    )
    return config.resolve_paths(base, explicit)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Load a YAML/JSON config file, apply nested `overrides` (e.g. a DAG run's conf) and validate it.

    Raises ConfigError (one line naming the file and key) for unreadable files or invalid values.
    """
    path = Path(path)
    shown = str(path) if str(path).isprintable() else repr(str(path))  # one line whatever the name
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read config {shown}: {error.strerror}") from None
    except ValueError:  # a NUL in the name
        raise ConfigError(f"cannot read config {shown}: not a file name") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config {shown} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {shown} must be a mapping of sections, got {type(data).__name__}")
    if overrides:
        data = deep_merge(data, overrides)
    return parse_config(data, shown, path.resolve().parent)


def config_to_json(config: PipelineConfig) -> str:
    return json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True)
