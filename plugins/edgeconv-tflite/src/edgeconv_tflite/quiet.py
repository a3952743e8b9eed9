"""Keep native chatter off the user's terminal.

The TFLite converter writes C++ log lines to stderr and its calibrator prints
``fully_quantize: 0, ...`` to *stdout* (which would corrupt ``edgeconv convert --json``);
LiteRT announces its XNNPACK delegate on stderr. Those come from C++, below ``sys.stdout``, so
file descriptors 1 and 2 are pointed at a log file while such code runs (not with
``EDGECONV_DEBUG``). The log's tail goes into error messages.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def native_output(log: Path | None = None, *, stdout: bool = True) -> Iterator[Path | None]:
    """Send fd 2 (and fd 1 when ``stdout``) to ``log`` (a temporary file if None) for the block."""
    if os.environ.get("EDGECONV_DEBUG"):
        yield None
        return
    own = log is None
    if own:
        fd, name = tempfile.mkstemp(prefix="edgeconv-tflite-", suffix=".log")
        os.close(fd)
        log = Path(name)
    fds = (1, 2) if stdout else (2,)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    try:
        with open(log, "ab") as sink, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for fd in fds:
                os.dup2(sink.fileno(), fd)
            try:
                yield log
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                for fd, copy in saved.items():
                    os.dup2(copy, fd)
    finally:
        for copy in saved.values():
            os.close(copy)
        if own:
            with contextlib.suppress(OSError):
                log.unlink()
