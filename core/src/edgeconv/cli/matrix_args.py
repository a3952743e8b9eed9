"""The arguments ``matrix`` and ``fleet submit`` share."""

from pathlib import Path
from typing import Annotated

import typer

SpecArg = Annotated[Path, typer.Argument(help="The matrix spec (YAML): models, targets, precisions, budgets, boards.",
                                         show_default=False)]
ClusterOpt = Annotated[str | None, typer.Option(
    "--cluster", help="Run on Ray: ray://HOST:10001 (Ray Client), auto (RAY_ADDRESS or the local cluster), local "
                      "(a Ray instance started for this run), or HOST:PORT (a cluster's GCS address).")]
