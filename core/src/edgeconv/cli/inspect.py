"""``edgeconv inspect``: a model's IO contract, operators, the task check that fits it, and target support."""

from typing import Annotated, Any

import typer

from .common import SOURCE, Opt, emit_json, guard, source_options, with_options
from .render import render_inspect

JSON = (Opt("as_json", Annotated[bool, typer.Option("--json", help="Print JSON.")], False),)


def register(app: typer.Typer) -> None:
    @app.command()
    @with_options(SOURCE, JSON)
    def inspect(model: Annotated[str, typer.Argument(help="The model.")], opts: dict[str, Any]) -> None:
        """Show a model's IO contract, operator histogram, the task check that fits it and which targets run its ops."""
        with guard():
            from ..inspect import inspect_model

            info = inspect_model(model, input_shapes=opts["input_shape"], source_form=opts["source_form"],
                                 options=source_options(opts))
        if opts["as_json"]:
            emit_json(info)
            return
        render_inspect(info)
