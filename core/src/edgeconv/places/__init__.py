"""Places: where an artifact runs is a value (docs/boards.md). ``None`` is this host; a board name is a board of
the inventory (``edgeconv boards add``), reached over SSH, where the runner's board half runs the artifact.

Nothing here is imported by ``import edgeconv``: ``verify.runners.make_runner(model, place=...)`` imports it when
a place is given, and asyncssh only when a board is reached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ToolchainMissing

if TYPE_CHECKING:
    from ..model import Model
    from ..records import RunnerSpec
    from ..runner import Runner

def place_runner(place: str, model: Model, spec: RunnerSpec | None, options: dict[str, Any]) -> Runner:
    """The runner that runs ``model`` at ``place`` (a board name) through ``spec``'s board half."""
    from .board import BoardRunner
    from .inventory import get_board

    board = get_board(place)
    if spec is None:
        raise ToolchainMissing(f"no runner is installed for {model.form!r} models, so none can run on board "
                               f"{place!r}", file=model.path, stage="verify")
    half = spec.board
    if not half:
        raise ToolchainMissing(f"the {spec.name} runner has no board half: {model.form!r} models cannot run on a "
                               f"board yet (board {place!r})", file=model.path, stage="verify")
    return BoardRunner(model, board=board, runner=spec.name, half=half, **options)
