"""Run a ``.pte`` with the ExecuTorch Python runtime on this host (``executorch.runtime``), through the board half.

The program's inputs and outputs are positional: names come from the artifact's IO contract (or the manifest's
``runner_options``), in the order ``torch.export`` gave them. ``info`` says which runtime ran it, with how many
threads, and whether the runtime has the XNNPACK backend the program's delegates need.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, IOContract, Model, Runner, TensorSpec


class PteRunner(Runner):
    """A ``.pte`` program on the local ExecuTorch runtime."""

    name = "executorch"
    modules = ("torch", "executorch.runtime")  # imported before the peak-memory baseline

    def __init__(self, model: Model, threads: int | None = None, num_threads: int | None = None,
                 input_names: list[str] | None = None, output_names: list[str] | None = None,
                 **options: Any) -> None:
        super().__init__(model, **options)
        self.threads = threads or num_threads  # --threads of this run wins over the artifact's stored setting
        io = model.io
        self.input_names = [t.name for t in io.inputs] or list(input_names or []) or None
        self.output_names = [t.name for t in io.outputs] or list(output_names or []) or None
        self.session = None

    def activate(self) -> None:
        from .board import LoadError, PteSession

        try:
            self.session = PteSession(self.model.path, num_threads=self.threads, input_names=self.input_names,
                                      output_names=self.output_names)
        except LoadError as exc:
            raise BadInput(str(exc), file=self.model.path, stage="verify") from None
        self.info = {**self.session.info, "host": "local"}

    def infer(self, feed):
        names = self.session.input_names
        if self.input_names is None:  # no names known (a bare .pte in the peak-memory probe): the feed's order
            names = list(feed)
        return dict(zip(self.session.output_names, self.session.run([feed[n] for n in names]), strict=True))

    def deactivate(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session = None


def load_pte(source: Any, *, input_shapes: dict[str, tuple[int, ...]] | None = None,
             options: dict | None = None) -> Model:
    """A ``.pte`` on disk as a ``Model`` of form ``pte``: shapes and dtypes from its ``forward`` method, positional
    names (``input_0``, ``output_0``: the program has none)."""
    from .board import LoadError, PteSession

    path = Path(source)
    if not path.is_file():
        raise BadInput("no such file", file=path, stage="import")
    try:
        session = PteSession(path)
    except LoadError as exc:
        raise BadInput(str(exc), file=path, stage="import") from None
    def specs(names: list[str], metas: list[tuple]) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(n, shape, dtype or "unknown") for n, (shape, dtype) in zip(names, metas, strict=True))

    io = IOContract(specs(session.input_names, session.inputs), specs(session.output_names, session.outputs))
    session.close()
    if input_shapes:
        io = io.pinned(input_shapes, file=str(path))
    return Model(form="pte", io=io, path=path, meta={"executorch": session.info["runtime"]})


def tuning(threads: int | None = None) -> list[dict[str, Any]]:
    """The settings ``--precision auto`` may time for a .pte (the first: its own): the thread pool's size, searched
    only when the user gave none and there is more than one core (XNNPACK's only runtime knob here)."""
    out: list[dict[str, Any]] = [{}]
    if threads is None and (os.cpu_count() or 1) > 1:
        out.append({"num_threads": 1})
    return out
