"""The stages of a conversion, each a small module the pipeline calls in order: import (``importing``), route
(``routing``), pre-check and optimize (``optimizing``), export (``exporting``). Verification is ``edgeconv.verification``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..plugins import pm
from ..records import StageCall


def run_stage(stage: str, fn: Callable[[], Any], timings: dict[str, float]) -> Any:
    """Run one stage through the ``run_stage`` hook (timed and logged by the core's implementation, wrappable by
    plugins); when no implementation ran it (the built-in one disabled), it runs here, untimed."""
    call = StageCall(stage, fn, timings)
    result = pm.hook.run_stage(stage=stage, call=call)
    return result if call.ran else call.run()
