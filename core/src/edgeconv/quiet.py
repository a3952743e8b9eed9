"""Quiet imports of noisy frameworks: their start-up lines would break edgeconv's one-line errors."""

from __future__ import annotations

import os
import sys


def quiet_tensorflow() -> None:
    """Import TensorFlow without its start-up log lines on stderr.

    TF 2.21 prints absl lines ("Could not find cuda drivers", oneDNN notes) from C++ before
    ``TF_CPP_MIN_LOG_LEVEL`` applies; they would break edgeconv's one-line errors, so file
    descriptor 2 is pointed at /dev/null while the module loads (not with EDGECONV_DEBUG).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or os.environ.get("EDGECONV_DEBUG"):
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
