"""The public Python API (``import edgeconv``): each function builds its request once and hands it to the layer that
does the work: ``--precision auto`` to the strategy above the pipeline, every other conversion to the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import artifacts, auto, pipeline
from .model import Model
from .records import Result
from .request import ConversionRequest, profiles
from .stages import importing

# Keywords of convert() that steer --precision auto rather than describe the conversion.
AUTO_KEYWORDS = ("precisions", "fallback", "search_runtime", "tune")


def convert(source: Any, target: str = "onnxruntime", *, status: Callable[[str], None] | None = None,
            **kwargs: Any) -> Result:
    """Convert ``source`` for ``target``, verify the artifact against the source, report.

    Keywords are the fields of ``edgeconv.request.ConversionRequest`` (``precision``, ``calibration``, ``data``,
    ``input_shapes``, ``output``, ``force``, ``options``, ``budgets``, ``thresholds``, ``verify``, ``runs``,
    ``threads``, ``seed``, ``source_options``, ``keep_float``, ``task``, ``state``, ``place``, ...). Returns a
    ``Result`` (report, artifact folder, exit code: 0 pass, 1 verification or a budget failed); bad input, a missing
    or failing toolchain raise ``EdgeconvError`` subclasses (exit 2, 3, 4).

    ``precision="auto"`` builds every precision the target offers, verifies and times each, and keeps the fastest
    that meets every budget (docs/auto.md); ``precisions=``, ``fallback=``, ``search_runtime=`` steer it.
    """
    steer = {k: kwargs.pop(k) for k in AUTO_KEYWORDS if k in kwargs}
    return run(ConversionRequest.build(source, target, **kwargs), status=status, **steer)


def run(req: ConversionRequest, *, status: Callable[[str], None] | None = None, **steer: Any) -> Result:
    """Carry out a request built once (``ConversionRequest.build``): the CLI, auto and the matrix come here."""
    if req.auto:  # the layer fallback traces the int8 artifact first (the strategies do not import each other)
        from .debug.ranking import rank_by_trace

        return auto.convert_auto(req, status=status, trace_ranking=rank_by_trace, **steer)
    if steer:
        raise TypeError(f"convert() got {sorted(steer)[0]!r}, which only applies with precision='auto'")
    return pipeline.run(req, status)


def verify(source: Any, artifact: str | Path, *, places: list[str] | None = None, **kwargs: Any) -> Result:
    """Verify an existing artifact (an output folder or a model file) against its source; ``place=`` runs it on a
    board; ``places=[A, B, ...]`` verifies it at each place and compares the places side by side ("local" is this
    host)."""
    if places and len(places) > 1:
        return artifacts.verify_places(source, artifact, list(places), **kwargs)
    if places:
        kwargs["place"] = artifacts._place(places[0])
    return artifacts.verify(source, artifact, **kwargs)


def bench(model: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Latency and peak memory of a model or an artifact folder on its runner."""
    return artifacts.bench(model, **kwargs)


def load(source: Any, *, input_shapes: Any = None, source_form: str | None = None,
         options: dict[str, Any] | None = None) -> Model:
    """Import a model (any form an importer accepts) and read its IO contract."""
    return importing.load(source, profiles=profiles(input_shapes), source_form=source_form, options=options)
