"""The core's own ``run_stage``: runs the stage, timed and logged.

Plugins wrap it with ``@hookimpl(wrapper=True) def run_stage(stage, call)`` to add
their own cross-cutting work (tracing, metrics); the first result wins.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from edgeconv.plugin import hookimpl

log = logging.getLogger("edgeconv")


@hookimpl(trylast=True)
def run_stage(stage: str, call: Any) -> Any:
    started = time.perf_counter()
    log.debug("stage %s: start", stage)
    try:
        return call.run()
    finally:
        elapsed = time.perf_counter() - started
        call.timings[stage] = round(call.timings.get(stage, 0.0) + elapsed, 4)
        log.debug("stage %s: done in %.3f s", stage, elapsed)
