"""The runner contract (Polygraphy's shape).

A runner loads a model of one form and runs a feed dict of numpy arrays to a dict of numpy arrays keyed by output
name. ``info`` says where and how it ran (host, device, precision hint, threads), and goes into the report as
``runtime``.

The base class is a template: a plugin implements the three steps ``activate()`` (load, compile, allocate),
``infer(feed)`` and ``deactivate()``; the core calls ``open()``, ``run(feed)`` and ``close()`` (or uses the runner
as a context manager), which add what every runner needs the same way: a runtime's own exception becomes a
one-line ``ToolchainFailed`` naming the runner, the model and the step (the traceback kept for ``--debug``), feeds
are numpy arrays, results are checked to be a dict of arrays, ``close()`` never raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import EdgeconvError, ToolchainFailed

if TYPE_CHECKING:
    import numpy as np

    from .model import Model


class Runner:
    """Base class for runners: subclasses implement ``activate``, ``infer`` and (when they hold resources)
    ``deactivate``; callers use ``open``, ``run`` and ``close``."""

    name = "runner"
    modules: tuple[str, ...] = ()  # the runtime's modules (imported before the peak-memory baseline)

    def __init__(self, model: Model, **options: Any) -> None:
        self.model = model
        self.options = options
        self.info: dict[str, Any] = {}

    # -- what a plugin implements ----------------------------------------------------------------------------------
    def activate(self) -> None:
        """Load the model and get ready to run (compile, allocate)."""

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def deactivate(self) -> None:
        """Free what ``activate`` took."""

    # -- what the core calls -----------------------------------------------------------------------------------------
    def _step(self, doing: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except EdgeconvError:
            raise
        except Exception as exc:
            text = " ".join(str(exc).split())
            text = (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)
            raise ToolchainFailed(f"{self.name} failed {doing} the {self.model.form} model: {text}",
                                  file=self.model.path, stage="verify") from exc

    def open(self) -> Runner:
        self._step("loading", self.activate)
        return self

    def run(self, feed: dict[str, Any]) -> dict[str, Any]:
        out = self._step("running", self.infer, _arrays(feed))
        if not isinstance(out, dict):
            raise ToolchainFailed(f"{self.name} returned a {type(out).__name__}, not the outputs by name",
                                  file=self.model.path, stage="verify")
        return out

    def close(self) -> None:
        try:
            self.deactivate()
        except Exception:  # noqa: BLE001 - releasing must not hide the result or the error being raised
            import logging

            logging.getLogger("edgeconv").debug("%s: deactivate failed", self.name, exc_info=True)

    def __enter__(self) -> Runner:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _arrays(feed: dict[str, Any]) -> dict[str, Any]:
    """Every value an ``ndarray``: a sample of a scalar input, taken from its dataset as ``arr[i]``, is a
    numpy scalar, which onnxruntime refuses ("Unable to handle object of type numpy.float32")."""
    import numpy as np

    if all(isinstance(v, np.ndarray) for v in feed.values()):
        return feed
    return {k: v if isinstance(v, np.ndarray) else np.asarray(v) for k, v in feed.items()}
