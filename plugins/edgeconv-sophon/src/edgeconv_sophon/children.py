"""Child processes (bmrt_test on a Sophon host): the core's one worker mechanism, imported in this one place.

``run_child(argv, timeout=..., cwd=None, env=None, what=...)`` runs without a shell in a scratch working folder
(unless ``cwd``), with the caller's environment minus ``PYTHON*``/``LD_PRELOAD`` plus ``env``; a missing executable
is ``ToolchainMissing`` (exit 3), a timeout ``ToolchainFailed`` (exit 4), both one line. ``python_argv`` makes a
Python child isolated (``-I``).
"""

from __future__ import annotations

from edgeconv.plugin import child_env, python_argv, run_child

__all__ = ["child_env", "python_argv", "run_child"]
