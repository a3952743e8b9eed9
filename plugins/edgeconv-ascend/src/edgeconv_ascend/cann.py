"""What this host has of Huawei's CANN: ``atc``, the toolkit's home and version, the ``set_env.sh`` that sets it up,
the NPU (driver device nodes, ``npu-smi``), ``ais_bench`` and AMCT; and ``doctor()``, which says what is missing and
how to get it.

CANN's conventions (Huawei's install guides): the toolkit installs under ``/usr/local/Ascend`` (root) or
``$HOME/Ascend`` (non-root), as ``ascend-toolkit/latest`` up to CANN 8.3 and ``cann`` / ``cann-<version>`` from 8.5;
``source <that>/set_env.sh`` exports ``ASCEND_TOOLKIT_HOME`` / ``ASCEND_HOME_PATH`` and puts ``atc`` on PATH; the
version is the ``version=`` line of ``<home>/<arch>-linux/ascend_toolkit_install.info``.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import platform
import shutil
from pathlib import Path
from typing import Any

HOME_ENV = ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH")
INSTALL_ROOTS = ("/usr/local/Ascend", "~/Ascend")  # tests monkeypatch these
DEV_DIR = "/dev"
AIS_BENCH_ENV = "EDGECONV_AIS_BENCH_PYTHON"

FIX_CANN = ("install Huawei's Ascend-cann-toolkit package (hiascend.com, CANN download center) and run "
            "`source /usr/local/Ascend/ascend-toolkit/set_env.sh` (CANN 8.5+: /usr/local/Ascend/cann/set_env.sh; "
            "non-root installs: $HOME/Ascend/...) in the shell that runs edgeconv")
FIX_NPU = ("the .om runs on an Ascend device: an Atlas board or card with Huawei's driver and firmware installed "
           "(npu-smi info lists it); in a container pass --device /dev/davinci0 --device /dev/davinci_manager "
           "--device /dev/devmm_svm --device /dev/hisi_hdc")
FIX_AIS_BENCH = ("install ais_bench and its aclruntime from Huawei's Ascend/tools repository "
                 "(ais-bench_workload/tool/ais_bench) into this Python, or set EDGECONV_AIS_BENCH_PYTHON to the python3 "
                 "that has them")
FIX_AMCT = ("INT8 for Ascend is done by AMCT: pip install the amct_onnx wheel that ships with the CANN toolkit "
            "(toolkit tools/amct), or give -O amct_python=<python of an environment with amct_onnx>")


def _executable(path: str | Path) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def env_homes() -> list[tuple[str, str]]:
    return [(name, os.environ[name]) for name in HOME_ENV if os.environ.get(name)]


def find_atc(explicit: str | None = None) -> str | None:
    """``atc``: ``-O atc=PATH``, else PATH, else under ``$ASCEND_TOOLKIT_HOME`` / ``$ASCEND_HOME_PATH``."""
    if explicit:
        return explicit if _executable(explicit) else None
    found = shutil.which("atc")
    if found:
        return found
    for _, home in env_homes():
        for rel in ("bin/atc", "compiler/bin/atc", "atc/bin/atc"):
            candidate = Path(home) / rel
            if _executable(candidate):
                return str(candidate)
    return None


def set_env_scripts() -> list[str]:
    """Every ``set_env.sh`` at CANN's install locations (the script the user must source)."""
    found: list[str] = []
    for root in INSTALL_ROOTS:
        base = os.path.expanduser(root)
        for pattern in ("ascend-toolkit/set_env.sh", "cann/set_env.sh", "cann-*/set_env.sh"):
            found += sorted(glob.glob(os.path.join(base, pattern)))
    return list(dict.fromkeys(found))


def _install_info(home: Path) -> Path | None:
    for candidate in [home / f"{platform.machine()}-linux" / "ascend_toolkit_install.info",
                      home / "ascend_toolkit_install.info",
                      *sorted(home.glob("*-linux/ascend_toolkit_install.info")),
                      home / "latest" / f"{platform.machine()}-linux" / "ascend_toolkit_install.info",
                      *sorted(home.glob("latest/*-linux/ascend_toolkit_install.info"))]:
        if candidate.is_file():
            return candidate
    return None


def toolkit_version(home: str | Path | None) -> dict[str, Any] | None:
    """``{"version", "file"}`` from the toolkit's ``ascend_toolkit_install.info`` under ``home``."""
    if not home:
        return None
    info = _install_info(Path(home))
    if info is None:
        return None
    fields: dict[str, str] = {}
    try:
        for line in info.read_text(errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip()
    except OSError:
        return None
    return {"version": fields.get("version"), "file": str(info),
            **({"arch": fields["arch"]} if "arch" in fields else {})}


def home_from_atc(atc: str | None) -> Path | None:
    """The toolkit home an ``atc`` binary belongs to: the nearest parent holding the install info."""
    if not atc:
        return None
    here = Path(os.path.realpath(atc)).parent
    for parent in [here, *here.parents][:5]:
        if _install_info(parent) is not None:
            return parent
    return None


def find_cann(explicit_atc: str | None = None) -> dict[str, Any]:
    """Everything about the toolkit: atc, home (and how it was found), version, set_env.sh scripts."""
    atc = find_atc(explicit_atc)
    homes = env_homes()
    home, how = (homes[0][1], f"${homes[0][0]}") if homes else (None, None)
    if home is None and atc:
        found = home_from_atc(atc)
        home, how = (str(found), "beside atc") if found else (None, None)
    scripts = set_env_scripts()
    if home is None and scripts:
        base = Path(scripts[0]).parent
        home, how = (str(base / "latest") if (base / "latest").is_dir() else str(base)), f"{scripts[0]} (not sourced)"
    version = toolkit_version(home)
    return {"atc": atc, "home": home, "home_from": how, "version": (version or {}).get("version"),
            "version_file": (version or {}).get("file"), "set_env": scripts,
            "environment_set": bool(homes)}


def npu() -> dict[str, Any]:
    """The NPU driver's device nodes and ``npu-smi``: present means an Ascend device is usable here."""
    devices = sorted(p for p in glob.glob(os.path.join(DEV_DIR, "davinci*")) if os.path.basename(p)[7:].isdigit())
    manager = os.path.exists(os.path.join(DEV_DIR, "davinci_manager"))
    smi = shutil.which("npu-smi")
    return {"devices": devices, "davinci_manager": manager, "npu_smi": smi, "present": bool(devices and manager)}


def _module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def ais_bench() -> dict[str, Any]:
    return {"module": _module("ais_bench"), "python": os.environ.get(AIS_BENCH_ENV) or None}


def amct() -> dict[str, Any]:
    return {"module": _module("amct_onnx")}


def can_run_here(options: dict[str, Any] | None = None) -> tuple[bool, str]:
    """(True, "") when an .om can run on this host, else (False, why + fix). ``options``: the target's (``runner``)
    or ``{"cli": True}``: ais_bench runs as ``python3 -m ais_bench`` (``$EDGECONV_AIS_BENCH_PYTHON``, else python3)."""
    opts = options or {}
    cli = bool(opts.get("cli")) or opts.get("runner") == "cli"
    dev = npu()
    if not dev["present"]:
        what = "no /dev/davinci* device nodes" if not dev["devices"] else "no /dev/davinci_manager"
        return False, (f"this host has no Ascend NPU ({what}{', no npu-smi' if not dev['npu_smi'] else ''}): "
                       f"the .om cannot run here; {FIX_NPU}")
    bench = ais_bench()
    if not (bench["module"] or bench["python"] or cli):
        return False, f"this host has an Ascend NPU but no ais_bench to run the .om: {FIX_AIS_BENCH}"
    return True, ""


def doctor() -> dict[str, Any]:
    """The deep environment check for ``edgeconv doctor`` (runs even when CANN is missing)."""
    cann = find_cann()
    dev = npu()
    bench = ais_bench()
    out: dict[str, Any] = {
        "cann": cann,
        "npu": dev,
        "ais_bench": bench,
        "amct_onnx": amct(),
        "machine": platform.machine(),
    }
    missing = []
    if not cann["atc"]:
        if cann["set_env"] and not cann["environment_set"]:
            missing.append({"what": "CANN's environment (atc is not on PATH)",
                            "why": f"CANN is installed but not set up in this shell: {cann['set_env'][0]}",
                            "fix": f"source {cann['set_env'][0]}"})
        else:
            missing.append({"what": "the CANN toolkit (atc)", "why": "atc is not on PATH and no set_env.sh was found "
                            "under " + ", ".join(INSTALL_ROOTS), "fix": FIX_CANN})
    elif not cann["version"]:
        missing.append({"what": "the CANN version", "why": "no ascend_toolkit_install.info found near atc or in "
                        "$ASCEND_TOOLKIT_HOME", "fix": "source the toolkit's set_env.sh (it sets ASCEND_TOOLKIT_HOME)"})
    if not dev["present"]:
        missing.append({"what": "an Ascend NPU (only needed to run the .om: verify, bench)",
                        "why": "no /dev/davinci* device nodes" + ("" if dev["npu_smi"] else ", no npu-smi"),
                        "fix": FIX_NPU})
    if not (bench["module"] or bench["python"]):
        missing.append({"what": "ais_bench (runs the .om for verify and bench)", "fix": FIX_AIS_BENCH})
    if not out["amct_onnx"]["module"]:
        missing.append({"what": "AMCT (amct_onnx; only for -p int8)", "fix": FIX_AMCT})
    out["can_convert"] = bool(cann["atc"])
    out["can_run"] = bool(dev["present"] and (bench["module"] or bench["python"]))
    out["missing"] = missing
    return out
