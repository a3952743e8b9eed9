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


def quiet_onnxruntime() -> None:
    """onnxruntime's own log lines (coloured warnings from its C++ logger: graph transformers, unused initializers,
    the quantizer's calibration sessions) below errors go nowhere unless ``--debug``."""
    if os.environ.get("EDGECONV_DEBUG"):
        return
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)


def log_file() -> str:
    """The debug log of the last run: third-party warnings land here instead of the terminal."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "edgeconv", "last-run.log")


def route_library_logs(debug: bool) -> None:
    """Where the libraries' noise goes: with ``--debug`` to stderr (everything, edgeconv's own debug lines too);
    otherwise Python warnings (torch's on every ``.pt2``, Pillow's ``DecompressionBombWarning``) and library log
    records (tf2onnx, onnxruntime's quantizer, absl) to the debug log file, and TensorFlow's C++ start-up lines off.
    edgeconv's own messages are printed by the CLI, not logged, so nothing the user needs is lost."""
    import logging
    import warnings

    if debug:
        os.environ["EDGECONV_DEBUG"] = "1"
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
        logging.captureWarnings(True)
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "2")
    root = logging.getLogger()
    try:
        os.makedirs(os.path.dirname(log_file()), exist_ok=True)
        handler: logging.Handler = logging.FileHandler(log_file(), mode="w", encoding="utf-8", delay=True)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    except OSError:
        handler = logging.NullHandler()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
