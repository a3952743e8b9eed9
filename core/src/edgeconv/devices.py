"""Device profiles: the catalogues plugins register (``register_devices``: a TOML file each plugin ships; the
built-in one is ``data/devices.toml``) and ``--device NAME``.

A profile names the target that converts for a device, the target options and precisions to
use there (e.g. the Ascend ``soc_version``, the TensorRT version a Jetson's JetPack ships,
the Sophon chip) and default budgets; every figure carries its source. ``resolve`` fills what
the user did not give explicitly (explicit values always win) and says which values came
from the device. Reading the catalogue imports nothing heavy (``edgeconv devices`` starts
as fast as ``edgeconv targets``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import BadInput, ToolchainMissing

SCHEMA = "edgeconv.devices/1"
BUDGET_KEYS = ("max_size", "max_latency", "max_accuracy_drop")
# Precisions that cannot run without calibration data (chosen from a profile only with --calib).
NEEDS_CALIBRATION = ("int8",)

__all__ = ["SCHEMA", "Device", "Resolved", "catalogue", "get", "resolve"]


@dataclass(frozen=True)
class Device:
    """One device profile (from a registered catalogue)."""

    name: str
    title: str
    vendor: str
    target: str
    precisions: tuple[str, ...]
    options: dict[str, Any]
    budgets: dict[str, str]
    budgets_reason: str
    note: str = ""
    also: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    facts: dict[str, dict[str, str]] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()
    provider: str = ""  # the plugin whose catalogue holds it

    def fact(self, key: str) -> str | None:
        f = self.facts.get(key)
        return f.get("value") if f else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "aliases": list(self.aliases), "title": self.title, "vendor": self.vendor, "target": self.target,
                "also": list(self.also), "precisions": list(self.precisions), "options": dict(self.options),
                "budgets": dict(self.budgets), "budgets_reason": self.budgets_reason, "note": self.note,
                "memory": self.fact("memory"), "storage": self.fact("storage"), "unknown": list(self.unknown),
                "facts": {k: dict(v) for k, v in self.facts.items()}, "provider": self.provider}


def _toml(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise ToolchainMissing("reading device profiles needs tomllib (Python 3.11+) or tomli",
                                   stage="devices", hint="pip install tomli") from None
    return tomllib.loads(text)


def _read(package: str, resource: str) -> dict[str, Any]:
    from importlib.resources import files

    where = f"{package}:{resource}"
    try:
        doc = _toml((files(package) / resource).read_text(encoding="utf-8"))
    except (OSError, ModuleNotFoundError, ValueError) as exc:
        raise BadInput(f"the device profiles {where} cannot be read ({' '.join(str(exc).split())[:200]})",
                       stage="devices") from None
    if doc.get("schema") != SCHEMA:
        raise BadInput(f"the device profiles {where} have schema {doc.get('schema')!r}, not {SCHEMA!r}", stage="devices")
    return doc


def _device(name: str, d: dict[str, Any], provider: str) -> Device:
    return Device(
        name=name, title=d["title"], vendor=d.get("vendor", ""), target=d["target"],
        precisions=tuple(d.get("precisions", ())), options=dict(d.get("options", {})),
        budgets={k: str(v) for k, v in d.get("budgets", {}).items()}, budgets_reason=d.get("budgets_reason", ""),
        note=d.get("note", ""), also=tuple(d.get("also", ())), aliases=tuple(d.get("aliases", ())),
        facts=dict(d.get("facts", {})), unknown=tuple(d.get("unknown", ())), provider=provider,
    )


_CACHE: dict[int, dict[str, Device]] = {}


def catalogue() -> dict[str, Device]:
    """Every profile of every registered catalogue, by name; the first catalogue to name a device wins (built-ins
    load first). Read once per plugin registry."""
    from .plugins import registry

    reg = registry()
    if id(reg) in _CACHE:
        return _CACHE[id(reg)]
    out: dict[str, Device] = {}
    for cat in reg.devices.values():
        for name, d in _read(cat.package, cat.resource).get("devices", {}).items():
            out.setdefault(name, _device(name, d, cat.plugin or cat.package))
    _CACHE.clear()
    _CACHE[id(reg)] = out
    return out


def _key(text: str) -> str:
    return "-".join(text.lower().replace("_", " ").replace("-", " ").split())


def get(name: str) -> Device:
    """The profile called ``name`` or one of its aliases (case, ``_`` and spaces forgiven); unknown:
    BadInput with a suggestion."""
    from .records import did_you_mean

    devices = catalogue()
    key = _key(name)
    if key in devices:
        return devices[key]
    for dev in devices.values():
        if key in dev.aliases:
            return dev
    names = [*devices, *(a for d in devices.values() for a in d.aliases)]
    raise BadInput(f"unknown device {name!r}{did_you_mean(key, names) or ''} (see `edgeconv devices`)",
                   stage="devices")


@dataclass
class Resolved:
    """What ``--device`` filled in: the values to use, and which of them came from the device."""

    device: Device
    target: str
    precision: str | None
    options: dict[str, Any]
    budgets: dict[str, str | None]
    from_device: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """The ``device`` entry of a report: the profile, and the values it filled."""
        return {"name": self.device.name, "title": self.device.title, "from_device": dict(self.from_device),
                "notes": list(self.notes)}


def resolve(name: str, *, target: str | None = None, precision: str | None = None,
            options: dict[str, Any] | None = None, budgets: dict[str, str | None] | None = None,
            calibration: Any = None, target_precisions: tuple[str, ...] | None = None,
            target_options: tuple[str, ...] | None = None) -> Resolved:
    """Fill target, options, precision and budgets from the profile where the user gave none.

    Explicit values win, one by one (an explicit ``-O key=value`` overrides only that key).
    The profile's options apply only when the device's target is the one used. The precision
    is the profile's first preferred one the target supports; ``int8`` only with calibration
    data (without ``--calib`` the next preferred one, and a note says so).
    ``target_precisions`` / ``target_options``: what the installed target declares, when known.
    """
    dev = get(name)
    given = dict(options or {})
    budgets = dict(budgets or {})
    out_target = target or dev.target
    filled: dict[str, Any] = {}
    notes: list[str] = []
    if target is None:
        filled["target"] = dev.target
    elif target != dev.target:
        notes.append(f"--to {target} overrides the device's target {dev.target}: the device's options "
                     f"({', '.join(dev.options) or 'none'}) and precisions are not applied")
    opts = dict(given)
    out_precision = precision
    if out_target == dev.target:
        for key, value in dev.options.items():
            if target_options is not None and key not in target_options:
                notes.append(f"the installed {out_target} target has no option {key!r}: not applied")
                continue
            if key.replace("-", "_") not in {k.replace("-", "_") for k in given}:
                opts[key] = value
                filled[f"options.{key}"] = value
        if precision is None:
            usable = [p for p in dev.precisions if target_precisions is None or p in target_precisions]
            pick = next((p for p in usable if calibration is not None or p not in NEEDS_CALIBRATION), None)
            if pick is not None:
                out_precision = pick
                filled["precision"] = pick
                skipped = usable[:usable.index(pick)]
                if skipped:
                    notes.append(f"the device prefers {', '.join(skipped)}, which needs calibration data: "
                                 f"used {pick} (give --calib for {skipped[0]})")
    for key in BUDGET_KEYS:
        if budgets.get(key) is None and key in dev.budgets:
            budgets[key] = dev.budgets[key]
            filled[key] = dev.budgets[key]
    return Resolved(dev, out_target, out_precision, opts, budgets, filled, notes)
