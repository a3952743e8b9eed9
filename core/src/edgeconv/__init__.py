"""edgeconv: convert a trained model for an edge device, and prove the result.

The public API (heavy modules load only when a function is called)::

    import edgeconv
    result = edgeconv.convert("model.onnx", "onnxruntime", precision="int8", calibration="calib.npz")
    result.report["verdict"], result.artifact

Plugins implement hooks with ``@edgeconv.hookimpl`` (see ``edgeconv.hookspecs``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__  # noqa: E402
from .hookspecs import hookimpl  # noqa: E402  (pluggy only: cheap)

if TYPE_CHECKING:
    from .model import Model
    from .records import Result

__all__ = ["__version__", "bench", "convert", "hookimpl", "inspect", "load", "verify"]


def convert(source: Any, target: str = "onnxruntime", **kwargs: Any) -> Result:
    """Convert ``source`` for ``target`` and verify it; see ``edgeconv.api.convert``."""
    from .api import convert as _convert

    return _convert(source, target, **kwargs)


def verify(source: Any, artifact: Any, **kwargs: Any) -> Result:
    """Verify an existing artifact against its source; see ``edgeconv.api.verify``."""
    from .api import verify as _verify

    return _verify(source, artifact, **kwargs)


def bench(model: Any, **kwargs: Any) -> dict[str, Any]:
    """Latency and peak memory of a model or artifact; see ``edgeconv.api.bench``."""
    from .api import bench as _bench

    return _bench(model, **kwargs)


def load(source: Any, **kwargs: Any) -> Model:
    """Import a model and read its IO contract; see ``edgeconv.api.load``."""
    from .api import load as _load

    return _load(source, **kwargs)


def inspect(source: Any, **kwargs: Any) -> dict[str, Any]:
    """IO contract, operator histogram and per-target support; see ``edgeconv.inspect``."""
    from .inspect import inspect_model

    return inspect_model(source, **kwargs)
