"""``edgeconv doctor``: the deep environment check (imports toolchains, reads versions)."""

from __future__ import annotations

import os
import platform
from typing import Any

from .plugins import plugins, registry
from .records import load_ref


def cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def toolchain_states(deep: bool = False) -> dict[str, dict[str, Any]]:
    """Every declared toolchain environment: missing / ready / broken (``deep`` runs its check)."""
    reg = registry()
    states: dict[str, dict[str, Any]] = {}
    if reg.toolchains:
        from .toolchain import status

        for name, tc in sorted(reg.toolchains.items()):
            states[name] = status(tc, deep=deep)
    for name, who in sorted(reg.toolchain_conflicts.items()):
        states[name] = {"name": name, "state": "broken", "reason": f"declared by more than one plugin: "
                        f"{' and '.join(who)}; disable one with EDGECONV_DISABLE_PLUGINS"}
    return states


def _brief(st: dict[str, Any]) -> dict[str, Any]:
    keys = ("state", "reason", "hint", "source", "path", "command", "python", "size_bytes", "versions", "check")
    return {k: st[k] for k in keys if st.get(k) is not None}


def run_doctor() -> dict[str, Any]:
    from ._version import __version__

    host = {
        "edgeconv": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_features": " ".join(cpu_flags()) or "unknown",
    }
    out: dict[str, Any] = {"schema": "edgeconv.doctor/1", "host": host, "targets": {}, "toolchains": {},
                           "broken_plugins": []}
    out["toolchains"] = toolchains = toolchain_states(deep=True)
    for name, t in sorted(registry().targets.items()):
        miss = t.missing()
        entry: dict[str, Any] = {"status": "ready"}
        if miss:
            entry = {"status": "missing", "hint": "; ".join(f"{m.what}: {m.hint}" for m in miss)}
        if t.doctor is not None:  # also for a missing target: it says what is there and what is not
            try:
                entry["details"] = load_ref(t.doctor)()
            except Exception as exc:  # a deep check that fails is the finding
                entry = {"status": "broken", "error": f"{type(exc).__name__}: {exc}"}
        needs = [tc.name for r in t.requirements for tc in r.toolchains if tc.name in toolchains]
        if needs:  # the environment the target runs its toolchain in, as `edgeconv toolchain list` shows it
            details = entry.setdefault("details", {})
            if isinstance(details, dict):
                details["toolchains"] = {tc: _brief(toolchains[tc]) for tc in needs}
            bad = [tc for tc in needs if toolchains[tc]["state"] == "broken"]
            if bad and entry["status"] != "broken":
                st = toolchains[bad[0]]
                entry.update(status="broken", error=f"toolchain {bad[0]}: {st.get('reason')} ({st.get('hint')})")
        out["targets"][name] = entry
    out["broken_plugins"] = [f"{p.name} ({p.dist} {p.version}) at {p.stage}: {p.error}" for p in plugins() if p.broken]
    return out
