"""The conversion matrix: models x targets x precisions (x boards), each cell one ordinary conversion.

``edgeconv matrix SPEC.yaml -o OUT/`` runs every cell through the public API (``edgeconv.convert``) in a local
process pool, or unchanged on a Ray cluster (``--cluster``); ``edgeconv fleet ...`` manages the hosts and boards of
that cluster. See docs/matrix.md and docs/fleet.md.

Layers: this package is a *strategy*: it imports the public API, records, errors and the report, never the CLI.
Ray is imported only inside the functions that need it (``edgeconv[fleet]``).
"""

from __future__ import annotations

__all__ = ["load_spec", "run_matrix"]


def load_spec(path, **kwargs):
    """Read and check a matrix spec; see ``edgeconv.matrix.spec.load_spec``."""
    from .spec import load_spec as _load

    return _load(path, **kwargs)


def run_matrix(spec, out, **kwargs):
    """Run a matrix; see ``edgeconv.matrix.runner.run_matrix``."""
    from .runner import run_matrix as _run

    return _run(spec, out, **kwargs)
