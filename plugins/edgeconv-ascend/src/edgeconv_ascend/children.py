"""Child processes (ATC, AMCT in another interpreter, ais_bench per inference): the core's one worker mechanism,
imported in this one place.

``run_child(argv, timeout=..., cwd=None, env=None, what=...)`` runs without a shell in a scratch working folder
(unless ``cwd``), with the caller's environment minus ``PYTHON*``/``LD_PRELOAD`` plus ``env``; a missing executable
is ``ToolchainMissing`` (exit 3), a timeout ``ToolchainFailed`` (exit 4), both one line. ``python_argv`` makes a
Python child isolated (``-I``).

ATC is a vendor binary that compiles operators with CANN's own Python packages, which CANN's ``set_env.sh`` puts on
``PYTHONPATH``: ``cann_env()`` passes those (absolute) entries on explicitly, and nothing else of ``PYTHON*``.
"""

from __future__ import annotations

import os

from edgeconv.plugin import child_env, python_argv, run_child

__all__ = ["cann_env", "child_env", "python_argv", "run_child"]


def cann_env() -> dict[str, str]:
    """What ATC needs of the caller's ``PYTHON*`` variables: the absolute ``PYTHONPATH`` entries CANN's
    ``set_env.sh`` exports (``<toolkit>/python/site-packages``, ``<toolkit>/opp/built-in/op_impl/ai_core/tbe``);
    relative and empty entries (which would resolve against a working folder) are dropped."""
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.isabs(p)]
    return {"PYTHONPATH": os.pathsep.join(kept)} if kept else {}
