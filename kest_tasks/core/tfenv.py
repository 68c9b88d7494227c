"""Importing TensorFlow once, quietly, keeping the progress lines a user wants (step, loss, steps/s)."""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import re
import warnings
from collections.abc import Iterator
from types import ModuleType

from kest_tasks.core.files import RETRYABLE_MARK, StorageError, error_summary

_tf: ModuleType | None = None


class _TrainingProgressOnly(logging.Filter):
    """Let through Estimator progress and evaluation lines, drop TF's chatter about graphs and sessions."""

    KEEP = ("loss = ", "global_step/sec", "Saving dict for global step", "Loss for final step")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        message = record.getMessage()
        return any(marker in message for marker in self.KEEP)


def _freeze_long_lived_objects() -> None:
    """Move everything alive now (TensorFlow's and Airflow's modules: millions of objects) out of the cyclic
    garbage collector's reach, and do the same at exit. Without it every full collection walks them again, and
    the interpreter's last collection at exit took ~4 s of a pipeline run (~1 s of a process that only loads a
    SavedModel); they live until the process ends anyway."""
    gc.freeze()
    atexit.register(gc.freeze)


def import_tensorflow() -> ModuleType:
    """Import and return tensorflow with C++ logs silenced and Python logs reduced to progress lines."""
    global _tf
    if _tf is None:
        # Level 3: TF's C++ start-up "errors" (cuDNN/cuBLAS factories registered twice) are noise on every run.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        # Collections during the import only walk objects that all survive it (~0.3 s of a ~3.3 s import).
        collecting = gc.isenabled()
        gc.disable()
        try:
            import tensorflow as tf
            from tensorflow.python.util import deprecation
        finally:
            if collecting:
                gc.enable()

        # The Estimator API is deprecated as a whole; its per-call deprecation notices drown the progress.
        deprecation._PRINT_DEPRECATION_WARNINGS = False
        warnings.filterwarnings("ignore", module=r"keras\..*")
        warnings.filterwarnings("ignore", module=r"tensorflow_estimator\..*")

        logger = tf.get_logger()
        logger.setLevel(logging.INFO)
        logger.addFilter(_TrainingProgressOnly())
        _tf = tf
        _freeze_long_lived_objects()
    return _tf


_GCS_URI = re.compile(r"gs://[^\s?'\"]+")


@contextlib.contextmanager
def tensorflow_storage_errors() -> Iterator[None]:
    """Errors of the files TensorFlow reads and writes itself in gs:// (TFRecords, checkpoints, events, SavedModels):
    an object that is missing (e.g. deleted after it was listed), forbidden or unreachable becomes one StorageError
    line naming it, instead of TensorFlow's traceback. Other TensorFlow errors pass through."""
    tf = import_tensorflow()
    kinds = (
        (tf.errors.NotFoundError, "not found", False),
        (tf.errors.PermissionDeniedError, "permission denied", False),
        (tf.errors.UnavailableError, RETRYABLE_MARK, True),
        (tf.errors.DeadlineExceededError, RETRYABLE_MARK, True),
    )
    try:
        yield
    except tf.errors.OpError as error:
        found = _GCS_URI.search(error.message or "")
        kind = next(((what, retryable) for cls, what, retryable in kinds if isinstance(error, cls)), None)
        if found is None or kind is None:
            raise
        http = re.search(r"HTTP response code \d+", error.message)
        detail = http.group(0) if http else error_summary(error)
        raise StorageError(f"{found.group(0)}: {kind[0]} (TensorFlow: {detail})", retryable=kind[1]) from None
