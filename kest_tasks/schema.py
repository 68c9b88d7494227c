"""The dataset schema prepare infers and every later stage reads (schema.json in the data folder)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kest_tasks.storage import read_json

FeatureType = Literal["int", "float", "string"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeatureSchema(_Frozen):
    name: str
    type: FeatureType
    missing: int = Field(0, description="Rows where the value is missing.")
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    vocabulary: list[str] | None = Field(None, description="Most frequent values of a string feature.")


class LabelSchema(_Frozen):
    name: str
    kind: Literal["classification", "regression"]
    type: FeatureType = Field("string", description="How the label is stored in the Examples.")
    classes: list[str] | None = Field(None, description="Class names; readers map a stored label to its index.")


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

    def feature(self, name: str) -> FeatureSchema:
        return next(feature for feature in self.features if feature.name == name)

    @property
    def num_classes(self) -> int:
        return len(self.label.classes or [])

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        return cls.model_validate(read_json(Path(path)))
