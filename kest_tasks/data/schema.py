"""The dataset schema prepare infers and every later stage reads (schema.json in the data folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kest_tasks.core.files import read_json
from kest_tasks.core.results import PrepareResult

FeatureType = Literal["int", "float", "string"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeatureSchema(_Frozen):
    """One feature. Its statistics are the training split's: what the model normalises and imputes with."""

    name: str = Field(..., description="The column's name in the data and in the TFRecords' tf.Examples.")
    tf_name: str | None = Field(
        None,
        description="The feature's TensorFlow-safe name (kest_tasks.data.feature_names): "
        "Keras inputs, feature columns, serving_default inputs.",
    )
    type: FeatureType
    missing: int = Field(0, description="Rows where the value is missing (all splits).")
    infinite: int = Field(0, description="Rows holding ±inf (kept under dataset.non_finite: clip).")
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    median: float | None = None
    fill: float | str | None = Field(
        None,
        description="What a missing value becomes in training, evaluation and "
        "serving (dataset.missing's statistic of the training split, or the token).",
    )
    vocabulary: list[str] | None = Field(None, description="Most frequent values of a string feature.")

    @property
    def key(self) -> str:
        """The name models and signatures know the feature by."""
        return self.tf_name or self.name


class LabelSchema(_Frozen):
    name: str
    kind: Literal["classification", "regression"]
    type: FeatureType = Field("string", description="How the label is stored in the Examples.")
    classes: list[str] | None = Field(None, description="Class names; readers map a stored label to its index.")
    mean: float | None = Field(
        None,
        description="Regression: the training split's label mean (targets are "
        "standardised with it and std for training; predictions are in label units).",
    )
    std: float | None = None
    class_counts: list[int] | None = Field(None, description="Training-split rows per class (classification).")


class Schema(_Frozen):
    features: list[FeatureSchema]
    label: LabelSchema
    rows: int

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def numeric_feature_names(self) -> list[str]:
        return [f.name for f in self.features if f.type != "string"]

    @property
    def feature_keys(self) -> list[str]:
        """The features' TensorFlow-safe names, in schema order."""
        return [feature.key for feature in self.features]

    def feature(self, name: str) -> FeatureSchema:
        """The feature called `name` in the data, or by its TensorFlow-safe name."""
        found = next((feature for feature in self.features if feature.name == name), None)
        return found or next(feature for feature in self.features if feature.key == name)

    def has_feature(self, name: str) -> bool:
        return any(name in (feature.name, feature.key) for feature in self.features)

    @property
    def renamed(self) -> dict[str, str]:
        """Original name → TensorFlow-safe name, for the features whose names differ."""
        return {f.name: f.key for f in self.features if f.key != f.name}

    @property
    def num_classes(self) -> int:
        return len(self.label.classes or [])

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        return cls.model_validate(read_json(path))

    @classmethod
    def of(cls, prepared: PrepareResult) -> Schema:
        """The schema the prepare stage inferred (or pinned) for its run."""
        return cls.load(prepared.schema_uri)
