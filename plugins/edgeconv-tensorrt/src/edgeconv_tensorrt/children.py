"""Child processes (trtexec, ModelOpt's interpreter): the core's one worker mechanism, imported in this one place.

``run_child(argv, timeout=..., cwd=None, env=None, what=...)`` runs without a shell in a scratch working folder
(unless ``cwd``), with the caller's environment minus ``PYTHON*``/``LD_PRELOAD`` plus ``env``; a missing executable
is ``ToolchainMissing`` (exit 3), a timeout ``ToolchainFailed`` (exit 4), both one line. ``python_argv`` makes a
Python child isolated (``-I``).
"""

from __future__ import annotations

try:
    from edgeconv.plugin import child_env, python_argv, run_child  # type: ignore[attr-defined]
except ImportError:  # plugin API: pending -- edgeconv.plugin does not export the worker API yet
    from edgeconv.worker import child_env, python_argv  # plugin API: pending
    from edgeconv.worker import run as run_child  # plugin API: pending

__all__ = ["child_env", "python_argv", "run_child"]
