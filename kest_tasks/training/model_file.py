"""The Keras model build wrote (HDF5, what model_to_estimator accepts), loaded from a local or gs:// run folder."""

from __future__ import annotations

from typing import Any

from kest_tasks.core import files
from kest_tasks.core.results import BuildResult
from kest_tasks.core.tfenv import import_tensorflow


def load_built_model(built: BuildResult) -> Any:
    """The compiled Keras model in `built.model_uri` (h5py reads local files only: a gs:// one is downloaded)."""
    tf = import_tensorflow()
    with files.local_file(built.model_uri) as path:
        return tf.keras.models.load_model(path)
