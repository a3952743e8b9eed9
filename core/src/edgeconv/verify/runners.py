"""The runner contract (Polygraphy's shape): activate / infer / deactivate.

A runner loads a model of one form and runs a feed dict of numpy arrays to a dict of
numpy arrays keyed by output name. ``info`` says where and how it ran (host, device,
precision hint, threads), and goes into the report as ``runtime``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ToolchainMissing
from ..targets import load_ref

if TYPE_CHECKING:
    import numpy as np

    from ..model import Model


class Runner:
    """Base class for runners; subclasses implement ``activate`` and ``infer``."""

    name = "runner"

    def __init__(self, model: Model, **options: Any) -> None:
        self.model = model
        self.options = options
        self.info: dict[str, Any] = {}

    def activate(self) -> None:
        """Load the model and get ready to run (compile, allocate)."""

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def deactivate(self) -> None:
        """Free what ``activate`` took."""

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()


def make_runner(model: Model, **options: Any) -> Runner:
    """The registered runner for ``model.form``."""
    from ..plugins import registry

    spec = registry().runners.get(model.form)
    if spec is None:
        raise ToolchainMissing(
            f"no runner is installed for {model.form!r} models",
            file=model.path,
            stage="verify",
        )
    missing = [r for r in spec.requirements if not r.satisfied()]
    if missing:
        raise ToolchainMissing(
            f"running {model.form!r} models needs {missing[0].what}",
            file=model.path,
            stage="verify",
            hint=missing[0].hint,
        )
    return load_ref(spec.factory)(model, **options)
