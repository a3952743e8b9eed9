"""The hooks a plugin may implement.

Hooks *register objects* and the objects do the work: a hook receives a ``register``
callable and calls it with records (``Importer``, ``Pass``, ``Target``, ``RunnerSpec``
from ``edgeconv.targets``). Registering must be cheap: never import a vendor SDK or a
framework in a hook, only name the functions that will (``"pkg.module:function"``).

A plugin is a module with ``@edgeconv.hookimpl`` functions, exposed through the
``edgeconv`` entry-point group::

    [project.entry-points.edgeconv]
    mytarget = "edgeconv_mytarget.hooks"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import typer

    from .records import Comparator, DeviceCatalogue, Importer, Metric, Pass, RunnerSpec, StageCall, Target
    from .toolchain import Toolchain

hookspec = pluggy.HookspecMarker("edgeconv")
hookimpl = pluggy.HookimplMarker("edgeconv")


# -- import -------------------------------------------------------------------------------
@hookspec
def register_importers(register: Callable[[Importer], None]) -> None:
    """Register the sources this plugin can load: call ``register(Importer(...))``.

    Called once when plugins load. An importer recognises a source by suffix, by its
    ``matches`` function (folders, in-memory objects) or by ``--from NAME``.
    """


# -- optimize -----------------------------------------------------------------------------
@hookspec
def register_passes(register: Callable[[Pass], None]) -> None:
    """Register model transformations: call ``register(Pass(...))``.

    Generic passes run for every target that takes their form; precision passes run when
    a target names them; convert passes (``to_form`` set) are the routes between forms.
    """


# -- export -------------------------------------------------------------------------------
@hookspec
def register_targets(register: Callable[[Target], None]) -> None:
    """Register export targets: call ``register(Target(...))``.

    Two plugins registering one target name is an error that names both; neither is
    used until one is disabled.
    """


# -- verify -------------------------------------------------------------------------------
@hookspec
def register_runners(register: Callable[[RunnerSpec], None]) -> None:
    """Register runners: call ``register(RunnerSpec(form=..., ...))``.

    A runner loads a model of one form and runs numpy inputs to outputs; verification
    runs the source model's runner and the artifact's runner on the same inputs.
    """


@hookspec
def register_metrics(register: Callable[[Metric], None]) -> None:
    """Register rows of the metric table: call ``register(Metric(...))``.

    A metric is one number the fidelity contract computes for every output (and every slice of it): its name,
    whether higher or lower is better, its threshold per precision and its format. The table drives the
    comparison, ``--threshold NAME=VALUE`` and both reports (docs/fidelity.md).
    """


@hookspec
def register_comparators(register: Callable[[Comparator], None]) -> None:
    """Register task checks: call ``register(Comparator(...))``.

    A comparator decodes the outputs of the source and of the artifact the way a deployment reads them
    (classification top-k, detection boxes after NMS, CTC strings, segmentation masks) and compares the answers;
    ``--task NAME`` chooses one, ``edgeconv inspect`` suggests one from the output shapes.
    """


@hookspec
def register_devices(register: Callable[[DeviceCatalogue], None]) -> None:
    """Register device profiles: call ``register(DeviceCatalogue(package, resource))`` for a TOML file the plugin
    ships (every fact with its source, docs/devices.md). ``--device NAME`` fills a conversion's target, options,
    precision and budgets from a profile.
    """


# -- toolchain environments --------------------------------------------------------------
@hookspec
def register_toolchains(register: Callable[[Toolchain], None]) -> None:
    """Declare isolated toolchain environments: call ``register(Toolchain(...))``.

    Called once when plugins load. A toolchain is a virtual environment of its own (a
    Python version, pinned requirements, post-install fixes, a check) that the user
    builds with ``edgeconv toolchain install NAME``; nothing is installed implicitly. The
    plugin runs its vendor steps there as subprocesses (``edgeconv.toolchain.resolve``).
    """


# -- the command line ---------------------------------------------------------------------
@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add sub-commands to the ``edgeconv`` CLI (``@app.command()`` or ``app.add_typer``).

    Called while the CLI is built, after every plugin has loaded. Import heavy modules
    inside the command function, not here.
    """


# -- around every stage -------------------------------------------------------------------
@hookspec(firstresult=True)
def run_stage(stage: str, call: StageCall) -> Any:
    """Run one stage of a conversion (``import``, ``route``, ``precheck``, ``optimize``,
    ``export``, ``verify``): the first result wins.

    The core's own implementation runs ``call.run()``; a plugin adds cross-cutting work
    (timing, logging, tracing) with a wrapper::

        @hookimpl(wrapper=True)
        def run_stage(stage, call):
            started = time.perf_counter()
            result = yield
            print(stage, time.perf_counter() - started)
            return result
    """
