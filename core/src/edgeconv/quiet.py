"""Framework noise goes to edgeconv's debug log, not the user's terminal: one-line errors stay one line.

- ``quiet_tensorflow`` / ``quiet_onnxruntime``: imports and C++ loggers without their start-up lines;
- ``to_debug_log(*families)``: while a model loads or exports, the log records of the named logger families (torch
  installs its own stderr handlers on ``torch`` and ~40 ``torch.*`` loggers; TensorFlow on ``tensorflow``; tf2onnx
  and absl log through the root logger) and every Python warning are re-emitted at DEBUG on the ``edgeconv``
  logger;
- ``route_library_logs``: the CLI's choice, once per run: with ``--debug`` everything to stderr, else to the debug
  log file. With ``EDGECONV_DEBUG`` set nothing is redirected: the user sees the frameworks' own output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator


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


_LOG = logging.getLogger("edgeconv")


class _Forward(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            _LOG.debug("%s: %s", record.name, record.getMessage())
        except Exception:  # a record whose message cannot be formatted is dropped, never raised
            pass


@contextlib.contextmanager
def to_debug_log(*families: str) -> Iterator[None]:
    """Send the log records of ``families`` (``"torch"``: ``torch`` and ``torch.*``) and all warnings to the debug log."""
    if os.environ.get("EDGECONV_DEBUG"):
        yield
        return
    forward = _Forward()
    saved: list[tuple[logging.Logger, list[logging.Handler], bool]] = []
    loggers = [logging.getLogger(f) for f in families]
    loggers += [lg for name, lg in list(logging.root.manager.loggerDict.items())
                if isinstance(lg, logging.Logger) and lg.handlers and name.startswith(tuple(f + "." for f in families))]
    for lg in loggers:
        saved.append((lg, lg.handlers[:], lg.propagate))
        lg.handlers = [forward]
        lg.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                for w in caught:
                    _LOG.debug("%s: %s", w.category.__name__, w.message)
    finally:
        for lg, handlers, propagate in saved:
            lg.handlers = handlers
            lg.propagate = propagate
