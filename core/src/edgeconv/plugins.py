"""The plugin manager: built-ins by import path, third parties by entry point.

Loading never crashes on one bad plugin. A plugin that fails to import, or whose
``register_*`` hook raises, is recorded as *broken* (distribution, version, error) and
every other plugin keeps working. Environment variables:

- ``EDGECONV_LOAD_PLUGINS``: comma-separated allow-list of entry-point plugins (by plugin
  or distribution name); set but empty loads none. Built-ins always load.
- ``EDGECONV_DISABLE_PLUGINS``: comma-separated plugins to block (built-ins included,
  e.g. ``edgeconv.builtins.onnxruntime``).
- ``EDGECONV_TRACE_PLUGINS=1``: print every hook call (pluggy's tracing).
- ``EDGECONV_PLUGIN_IMPORT_TIMEOUT``: seconds one plugin's import may take (default 20); a plugin that hangs
  longer is recorded as broken.

A plugin declares the plugin API version it was written against (``EDGECONV_API = "1.0"`` in its hooks module,
see ``edgeconv.plugin``); a plugin for another major version, or a newer minor one, is recorded as broken with
both versions named. What a plugin prints while it loads goes to stderr (stdout carries ``--json`` documents).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import BadInput, ToolchainMissing
from .records import (
    KNOWN_TARGETS,
    Comparator,
    DeviceCatalogue,
    Importer,
    Metric,
    Pass,
    RunnerSpec,
    Target,
    did_you_mean,
)
from .toolchain import Toolchain

ENTRY_POINT_GROUP = "edgeconv"

DEFAULT_PLUGINS = (
    "edgeconv.builtins.stages",
    "edgeconv.builtins.onnx",
    "edgeconv.builtins.onnxruntime",
    "edgeconv.builtins.torch",
    "edgeconv.builtins.tensorflow",
    "edgeconv.builtins.fidelity",
)

REGISTER_HOOKS = ("register_importers", "register_passes", "register_targets", "register_runners",
                  "register_toolchains", "register_metrics", "register_comparators", "register_devices")

# record type -> (registry slot, the field that names it). Names are unique per slot: for targets and toolchains
# two providers of one name are a conflict that makes the name unusable; for the others the first wins.
SLOTS: dict[type, tuple[str, str]] = {
    Importer: ("importers", "name"), Pass: ("passes", "name"), Target: ("targets", "name"),
    RunnerSpec: ("runners", "form"), Toolchain: ("toolchains", "name"), Metric: ("metrics", "name"),
    Comparator: ("comparators", "name"), DeviceCatalogue: ("devices", "package"),
}
UNIQUE = ("targets", "toolchains")


@dataclass
class PluginInfo:
    name: str
    dist: str
    version: str
    module: str
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    error: str | None = None  # set when broken
    stage: str | None = None  # "import" or the hook that raised

    @property
    def broken(self) -> bool:
        return self.error is not None


@dataclass
class Registry:
    importers: dict[str, Importer] = field(default_factory=dict)
    passes: dict[str, Pass] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)
    runners: dict[str, RunnerSpec] = field(default_factory=dict)
    toolchains: dict[str, Toolchain] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    comparators: dict[str, Comparator] = field(default_factory=dict)
    devices: dict[str, DeviceCatalogue] = field(default_factory=dict)
    # target name -> the plugins that all registered it (two or more: unusable)
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    # toolchain name -> the plugins that all declared it (two or more: unusable)
    toolchain_conflicts: dict[str, list[str]] = field(default_factory=dict)

    def target(self, name: str) -> Target:
        if name in self.conflicts:
            raise BadInput(
                f"target {name!r} is registered by more than one plugin: "
                f"{' and '.join(self.conflicts[name])}; disable one with EDGECONV_DISABLE_PLUGINS",
                stage="target",
            )
        try:
            return self.targets[name]
        except KeyError:
            if name in KNOWN_TARGETS:
                dist, title, hint = KNOWN_TARGETS[name]
                raise ToolchainMissing(f"target {name!r} ({title}) comes with the {dist} plugin, which is not "
                                       "installed", stage="target", hint=hint) from None
            known = sorted(set(self.targets) | set(self.conflicts) | set(KNOWN_TARGETS))
            raise BadInput(
                f"unknown target {name!r} (installed: {', '.join(known) or 'none'})"
                f"{did_you_mean(name, known)}",
                stage="target",
            ) from None


pm = pluggy.PluginManager("edgeconv")
pm.add_hookspecs(hookspecs)

_plugins: dict[str, PluginInfo] = {}
_blocked: set[str] = set()
_registry: Registry | None = None
_loaded = False


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {v.strip() for v in value.split(",") if v.strip()}


def _short_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text}"


def load_plugins() -> None:
    """Load built-ins and entry-point plugins, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    if os.environ.get("EDGECONV_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
        pm.enable_tracing()
    blocked = _env_list("EDGECONV_DISABLE_PLUGINS") or set()
    for name in blocked:
        pm.set_blocked(name)
        _blocked.add(name)
    from ._version import __version__

    for module in DEFAULT_PLUGINS:
        info = PluginInfo(module, "edgeconv", __version__, module, builtin=True)
        _import_and_register(info, lambda m=module: importlib.import_module(m), blocked)

    allow = _env_list("EDGECONV_LOAD_PLUGINS")
    for ep in entry_points(ENTRY_POINT_GROUP):
        if allow is not None and ep.name not in allow and ep.dist not in allow:
            continue
        info = PluginInfo(ep.name, ep.dist, ep.version, ep.value, builtin=False)
        _import_and_register(info, ep.load, blocked)


@dataclass
class EntryPoint:
    name: str
    value: str  # "package.module" or "package.module:attr"
    dist: str
    version: str

    def load(self) -> Any:
        from .records import load_ref

        return load_ref(self.value) if ":" in self.value else importlib.import_module(self.value)


def entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group`` of every installed distribution.

    Reads ``*.dist-info/entry_points.txt`` on ``sys.path`` directly: ``importlib.metadata``
    costs 50-60 ms to import (it parses e-mail headers), a third of ``edgeconv --help``.
    The first distribution of a name on ``sys.path`` wins, as with importlib.metadata.
    """
    import configparser

    found: list[EntryPoint] = []
    seen: set[str] = set()
    cwd = os.getcwd()
    for entry in sys.path:
        if not entry or entry == "." or os.path.abspath(entry) == cwd:
            continue  # the working folder is the user's, not an installation: no plugin is read from it
        try:
            names = os.listdir(entry)
        except OSError:
            continue
        for folder in names:
            if not folder.endswith(".dist-info"):
                continue
            dist, _, version = folder[: -len(".dist-info")].rpartition("-")
            key = dist.lower().replace("-", "_").replace(".", "_")
            if key in seen:
                continue
            seen.add(key)
            path = os.path.join(entry, folder, "entry_points.txt")
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            if f"[{group}]" not in text:  # most distributions: no need to parse
                continue
            parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
            parser.optionxform = str  # keep the names' case
            try:
                parser.read_string(text, source=path)
            except configparser.Error:
                continue
            if parser.has_section(group):
                name = _dist_name(os.path.join(entry, folder, "METADATA")) or dist
                for ep_name, value in parser.items(group):
                    found.append(EntryPoint(ep_name, value.strip(), name, version))
    return found


def _dist_name(metadata: str) -> str | None:
    try:
        with open(metadata, encoding="utf-8") as f:
            for line in f:
                if line.startswith("Name:"):
                    return line.split(":", 1)[1].strip()
                if not line.strip():
                    break
    except OSError:
        pass
    return None


class _ImportTimeout(Exception):
    pass


@contextlib.contextmanager
def _bounded(seconds: float) -> Iterator[None]:
    """Interrupt a plugin import that takes longer than ``seconds`` (main thread only; elsewhere unbounded)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def _expired(signum, frame):
        raise _ImportTimeout(f"its import did not finish within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_api(module: Any) -> str | None:
    """Why ``module`` cannot be used with this core's plugin API, or None (docs/hooks.md: the versioned contract)."""
    from ._version import API_VERSION

    declared = getattr(module, "EDGECONV_API", None)
    if declared is None:
        return None  # undeclared: taken as the current version (a plugin that predates the declaration)
    try:
        major, minor = (int(x) for x in str(declared).split(".")[:2])
        core_major, core_minor = (int(x) for x in API_VERSION.split(".")[:2])
    except ValueError:
        return f"EDGECONV_API = {declared!r} is not MAJOR.MINOR"
    if major != core_major or minor > core_minor:
        return (f"written for the plugin API {declared}; this edgeconv offers {API_VERSION} (install a version of "
                "the plugin made for it)")
    return None


def _import_and_register(info: PluginInfo, load: Callable[[], Any], blocked: set[str]) -> None:
    if info.name in blocked or info.dist in blocked:
        return
    if info.name in _plugins:
        info.error = f"plugin name {info.name!r} is already taken by {_plugins[info.name].dist}"
        info.stage = "register"
        _plugins[f"{info.name} ({info.dist})"] = info
        return
    _plugins[info.name] = info
    timeout = float(os.environ.get("EDGECONV_PLUGIN_IMPORT_TIMEOUT") or 20)
    try:  # one bad plugin must not take the CLI down: an error, an exit or an interrupt at import, or a hang
        with contextlib.redirect_stdout(sys.stderr), _bounded(timeout):
            module = load()
        why = check_api(module)
        if why:
            info.error, info.stage = why, "api"
            return
        pm.register(module, name=info.name)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # noqa: BLE001
        info.error, info.stage = _short_error(exc), "import"


def record_broken(name: str, stage: str, exc: BaseException) -> None:
    """Record that plugin ``name`` failed in ``stage`` (e.g. its ``register_commands``)."""
    info = _plugins.get(name)
    if info is not None:
        info.error, info.stage = _short_error(exc), stage


def register_plugin(obj: Any, name: str, *, dist: str = "<in-process>", version: str = "") -> None:
    """Register a plugin object in-process (tests, notebooks) and rebuild the registry."""
    load_plugins()
    pm.register(obj, name=name)
    _plugins[name] = PluginInfo(name, dist, version, repr(obj), builtin=False)
    refresh()


def unregister_plugin(name: str) -> None:
    if pm.get_plugin(name) is not None:
        pm.unregister(name=name)
    _plugins.pop(name, None)
    refresh()


def refresh() -> None:
    """Forget the collected registry; the next ``registry()`` asks the hooks again."""
    global _registry
    _registry = None
    for info in _plugins.values():
        if info.stage and info.stage not in ("import", "register", "api", "register_commands"):
            info.error = info.stage = None


def plugins() -> list[PluginInfo]:
    registry()  # hook errors are recorded while collecting
    for info in _plugins.values():
        plugin = pm.get_plugin(info.name)
        if plugin is not None:
            info.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    return list(_plugins.values())


def registry() -> Registry:
    """Everything the loaded plugins registered, collected once."""
    global _registry
    if _registry is not None:
        return _registry
    load_plugins()
    reg = Registry()
    providers: dict[tuple[str, str], list[str]] = {}
    for hook_name in REGISTER_HOOKS:
        caller = getattr(pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):  # registration order
            name = impl.plugin_name
            info = _plugins.get(name)
            label = f"{info.dist} ({name})" if info and not info.builtin else name
            collected: list[Any] = []
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    impl.function(register=collected.append)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - the plugin is broken, the others work
                if info is not None:
                    info.error, info.stage = _short_error(exc), hook_name
                continue
            for record in collected:
                slot = SLOTS.get(type(record))
                if slot is None:
                    if info is not None:
                        info.error, info.stage = f"{hook_name} registered a {type(record).__name__}, not a record", hook_name
                    continue
                extra = {"dist": info.dist if info else "?"} if hasattr(record, "dist") else {}
                record = dataclasses.replace(record, plugin=name, **extra)
                key = getattr(record, slot[1])
                providers.setdefault((slot[0], key), []).append(label)
                getattr(reg, slot[0]).setdefault(key, record)
    for (slot, key), who in providers.items():
        if slot in UNIQUE and len(who) > 1:
            (reg.conflicts if slot == "targets" else reg.toolchain_conflicts)[key] = who
            getattr(reg, slot).pop(key, None)
    _registry = reg
    return reg


def reset() -> None:
    """Unload every plugin and forget what was collected (tests)."""
    global _loaded, _registry
    for name, _plugin in list(pm.list_name_plugin()):
        if name is not None and pm.get_plugin(name) is not None:
            pm.unregister(name=name)
    for name in _blocked:
        pm.unblock(name)
    _blocked.clear()
    _plugins.clear()
    _registry = None
    _loaded = False
