"""Framework noise goes to edgeconv's debug log, not to the user's terminal (one-line errors stay one line).

torch installs its own stderr handlers on ``torch`` and ~40 ``torch.*`` loggers (``torch.export`` logs a
traceback when ``load_pt2`` fails, ``torch._export.serde`` a warning per legacy payload); TensorFlow one on
``tensorflow``; tf2onnx and absl log through the root logger (Python's last-resort handler prints their
warnings). While :func:`to_debug_log` is active, the records of the named logger families and every Python
warning are re-emitted at DEBUG on the ``edgeconv`` logger, and nothing of theirs reaches stderr. With
``EDGECONV_DEBUG`` set nothing is redirected: the user sees the frameworks' own output.

TODO(lead): this belongs next to ``quiet_tensorflow`` in ``edgeconv/quiet.py`` (exported by ``edgeconv.plugin``);
it lives here until then because built-ins import only ``edgeconv.plugin``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

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
