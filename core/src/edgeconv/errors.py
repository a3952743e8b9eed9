"""Errors with an exit code, and the one-line message the CLI prints for them.

Exit codes (DESIGN.md): 0 success, 1 verification or a budget failed, 2 bad usage or
bad input, 3 a toolchain is missing, 4 the toolchain failed during conversion.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_MISSING = 3
EXIT_TOOLCHAIN = 4


class EdgeconvError(Exception):
    """An error the user can act on: it names the file, the stage and the cause."""

    exit_code = EXIT_BAD_INPUT

    def __init__(
        self,
        cause: str,
        *,
        file: str | Path | None = None,
        stage: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(cause)
        self.cause = cause
        self.file = str(file) if file is not None else None
        self.stage = stage
        self.hint = hint

    def one_line(self) -> str:
        parts = [p for p in (self.file, self.stage) if p]
        text = " ".join(self.cause.split())  # never more than one line
        if self.hint:
            text += f" (hint: {' '.join(self.hint.split())})"
        return ": ".join([*parts, text])


class BadInput(EdgeconvError):
    """The model, data or options given are wrong (exit 2)."""

    exit_code = EXIT_BAD_INPUT


class ToolchainMissing(EdgeconvError):
    """A package or binary the target needs is not installed (exit 3)."""

    exit_code = EXIT_MISSING


class ToolchainFailed(EdgeconvError):
    """The vendor toolchain (or a pass) failed while converting (exit 4)."""

    exit_code = EXIT_TOOLCHAIN


class UnsupportedOperators(ToolchainFailed):
    """The target's pre-check found operators it cannot run (exit 4)."""

    def __init__(self, target: str, nodes: list[tuple[str, str]], **kwargs) -> None:
        shown = ", ".join(f"{name} ({op})" for name, op in nodes[:8])
        more = f" and {len(nodes) - 8} more" if len(nodes) > 8 else ""
        super().__init__(
            f"target {target!r} cannot run {len(nodes)} node(s): {shown}{more}", **kwargs
        )
        self.nodes = nodes
