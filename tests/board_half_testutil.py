"""Run a runner's board half as the board agent would, in a child ``python -I`` with a temporary cwd (tests only).

The half is imported from its file (as ``edgeconv.places.agent.import_half`` does: no package, no edgeconv), its
``MODULES`` are imported (``agent_imports=False``: not, to see load()'s own error), then ``load(model, options)``, ``infer`` on each feed and ``close()``. Stand-in vendor
modules (tests' ``standin_*`` folders) go on the child's ``sys.path`` only. The child reports which top-level modules
the half's import brought in, whether anything named ``edgeconv*`` was ever imported, the load error if any, the
session's info, the outputs (``out<k>.npz``) and the stand-in's call log (its module's ``CALLS``).

Also the toy model the stand-ins run: a JSON file ``{"w": [[...]], "b": [...]}``; ``expected`` gives its outputs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

CHILD = r'''
import importlib, importlib.machinery, importlib.util, json, sys
args = json.loads(sys.argv[1])
sys.path[:0] = args["standins"]
before = set(m.split(".")[0] for m in sys.modules)
loader = importlib.machinery.SourceFileLoader("edgeconv_board_half_test", args["half"])
half = importlib.util.module_from_spec(importlib.util.spec_from_loader("edgeconv_board_half_test", loader))
loader.exec_module(half)
report = {"at_import": sorted(set(m.split(".")[0] for m in sys.modules) - before), "modules": list(half.MODULES),
          "stdlib": sorted(getattr(sys, "stdlib_module_names", ()))}
import numpy as np
try:
    for module in half.MODULES if args["agent_imports"] else ():
        __import__(module)  # as the agent does before load
    session = half.load(args["model"], args["options"])
except Exception as exc:
    report["error"] = {"type": type(exc).__name__, "message": str(exc), "name": getattr(exc, "name", None)}
else:
    report["info"] = session.info
    for k, path in enumerate(args["feeds"]):
        with np.load(path) as z:
            feed = dict((name, z[name]) for name in z.files)
        out = session.infer(feed)
        np.savez(args["out"] + "/out%d.npz" % k, **out)
        report.setdefault("out_names", []).append(list(out))
    session.close()
    log = args.get("log")
    report["calls"] = [list(c) for c in importlib.import_module(log).CALLS] if log else []
report["edgeconv_imported"] = sorted(m for m in sys.modules if m.startswith("edgeconv") and m != "edgeconv_board_half_test")
print("REPORT " + json.dumps(report, default=str))
'''


def run_half(half: Path, tmp: Path, *, model: Path | str, options: dict, feeds: list[dict[str, np.ndarray]] = (),
             standins: list[Path] = (), log: str = "", agent_imports: bool = True) -> tuple[dict, list[dict[str, np.ndarray]]]:
    """Run the board half ``half`` in a child ``python -I`` (cwd: a fresh folder under ``tmp``)."""
    cwd = tmp / "cwd"
    cwd.mkdir(exist_ok=True)
    paths = []
    for k, feed in enumerate(feeds):
        paths.append(str(tmp / f"feed{k}.npz"))
        np.savez(paths[-1], **feed)
    args = {"half": str(half), "model": str(model), "options": options, "feeds": paths, "out": str(tmp),
            "standins": [str(s) for s in standins], "log": log,
            "agent_imports": agent_imports}
    done = subprocess.run([sys.executable, "-I", "-c", CHILD, json.dumps(args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("REPORT ")][-1]
    report = json.loads(line[len("REPORT "):])
    outs = []
    for k in range(len(paths) if "error" not in report else 0):
        with np.load(tmp / f"out{k}.npz") as z:
            outs.append({n: z[n] for n in z.files})
    return report, outs


def assert_self_contained(report: dict) -> None:
    """The half brought in only stdlib modules at import, and edgeconv was never imported."""
    stdlib = set(report["stdlib"])
    assert stdlib, "needs Python >= 3.10 for sys.stdlib_module_names"
    extra = [m for m in report["at_import"] if m not in stdlib and m != "numpy"]
    assert not extra, f"the board half imports {extra} at module level"
    assert report["edgeconv_imported"] == [], report["edgeconv_imported"]


def toy_model(path: Path, n_in: int = 12, n_out: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n_in, n_out)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    path.write_text(json.dumps({"w": w.tolist(), "b": b.tolist()}))
    return {"w": w, "b": b}


def expected(weights: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The toy model's two outputs: ``logits = x.flat @ w + b`` and ``total = x.sum per sample``."""
    flat = x.reshape(x.shape[0], -1).astype(np.float32)
    return flat @ weights["w"] + weights["b"], flat.sum(axis=1, keepdims=True)
