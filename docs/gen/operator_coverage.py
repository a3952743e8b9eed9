"""Operator coverage per target, from the ONNX backend node tests: writes docs/gen/operator-coverage.md.

    python docs/gen/operator_coverage.py            # about two minutes with every plugin installed
    python docs/gen/operator_coverage.py --limit 50 # a quick look (the page says it is partial)

The corpus is the ONNX backend node-test suite (one small model per operator case, with inputs and expected
outputs). onnx 1.22.0 is the last wheel that ships it: the wheel is fetched with ``pip download`` (pinned by
version and sha256) into ``~/.cache/edgeconv-corpus`` (``EDGECONV_CORPUS`` overrides) and never committed.

For each test (the ``_expanded`` variants, which test ONNX's function expansion, are left out):

- edgeconv's ONNX importer loads it (checker, shape inference): a model it refuses counts for no target;
- ``onnxruntime`` (the built-in target, which runs here) runs it on the test's inputs and its outputs are
  compared with the expected ones (rtol 1e-3, atol 1e-4): "runs" is a measured result;
- every other installed target that takes ONNX is asked by its own operator pre-check, as ``edgeconv
  inspect`` asks it: this is what the target says it can convert, not a conversion that was run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import os
import platform
import subprocess
import sys
import time
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "gen" / "operator-coverage.md"
WHEEL = "onnx-1.22.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
SHA256 = "1d0a2bdb15eb2b3cb65c438f3423d9620d14fdce32f92380e6bb1b2e09568ef5"
RTOL, ATOL = 1e-3, 1e-4


def corpus() -> Path:
    """The unpacked node tests (downloaded and checked once)."""
    cache = Path(os.environ.get("EDGECONV_CORPUS", Path.home() / ".cache" / "edgeconv-corpus"))
    nodes = cache / "onnx-1.22.0" / "node"
    if nodes.is_dir():
        return nodes
    wheel = cache / "dl" / WHEEL
    if not wheel.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "-d", str(wheel.parent),
                        "onnx==1.22.0"], check=True)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest} is not the pinned {SHA256}")
    prefix = "onnx/backend/test/data/node/"
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith(prefix) and not name.endswith("/"):
                target = nodes / name[len(prefix):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(name))
    return nodes


def tensors(folder: Path) -> tuple[list[Any], list[Any]] | None:
    """The first data set's inputs and outputs, or None when one is not a plain tensor."""
    import onnx
    from onnx import numpy_helper

    data = folder / "test_data_set_0"
    out: list[list[Any]] = [[], []]
    for k, kind in enumerate(("input", "output")):
        for f in sorted(data.glob(f"{kind}_*.pb"), key=lambda p: int(p.stem.split("_")[1])):
            t = onnx.TensorProto()
            try:
                t.ParseFromString(f.read_bytes())
                if not t.name and not t.dims and not t.raw_data and not t.float_data and not t.int64_data:
                    return None
                out[k].append(numpy_helper.to_array(t))
            except Exception:
                return None
    return out[0], out[1]


def run_ort(path: Path, inputs: list[Any], expected: list[Any]) -> str:
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        got = sess.run(None, dict(zip(names, inputs, strict=False)))
    except Exception:
        return "raises"
    for g, e in zip(got, expected, strict=False):
        g, e = np.asarray(g), np.asarray(e)
        if g.shape != e.shape:
            return "mismatch"
        if e.dtype.kind in "fc":
            if not np.allclose(g, e, rtol=RTOL, atol=ATOL, equal_nan=True):
                return "mismatch"
        elif not np.array_equal(g, e):
            return "mismatch"
    return "runs"


def ask(target: Any, model: Any) -> str:
    """``supported``, ``fallback``, ``refused``, or ``error``: what the target's pre-check says."""
    from edgeconv.errors import UnsupportedOperators
    from edgeconv.targets import load_ref

    try:
        found = load_ref(target.precheck)(model, None)
    except UnsupportedOperators:
        return "refused"
    except Exception:
        return "error"
    if any(not u.fallback for u in found):
        return "refused"
    return "fallback" if found else "supported"


def collect(limit: int | None) -> dict[str, Any]:
    import onnx
    import onnxruntime

    from edgeconv.pipeline import load
    from edgeconv.plugins import registry

    nodes = corpus()
    reg = registry()
    targets = {n: t for n, t in sorted(reg.targets.items())
               if n != "onnxruntime" and t.precheck is not None and "onnx" in t.accepts}
    tests = sorted(p for p in nodes.iterdir() if (p / "model.onnx").is_file() and not p.name.endswith("_expanded"))
    if limit:
        tests = tests[:limit]
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    skipped: list[str] = []
    started = time.perf_counter()
    for n, folder in enumerate(tests, 1):
        data = tensors(folder)
        if data is None:
            skipped.append(folder.name)
            continue
        proto = onnx.load(str(folder / "model.onnx"), load_external_data=False)
        ops = [nd.op_type if nd.domain in ("", "ai.onnx") else f"{nd.domain}::{nd.op_type}" for nd in proto.graph.node]
        op = max(set(ops), key=ops.count) if ops else "(none)"
        row = rows[op]
        row["tests"]["n"] += 1
        try:
            model = load(folder / "model.onnx")
        except Exception:
            row["import"]["refused"] += 1
            continue
        row["onnxruntime"][run_ort(folder / "model.onnx", *data)] += 1
        for name, target in targets.items():
            row[name][ask(target, model)] += 1
        if n % 200 == 0:
            print(f"{n}/{len(tests)} tests, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    versions = {"onnx (corpus)": "1.22.0", "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    for name, t in targets.items():
        versions[t.dist or name] = _dist_version(t.dist)
    return {"rows": rows, "targets": list(targets), "tests": len(tests), "skipped": skipped, "limit": limit,
            "seconds": time.perf_counter() - started, "versions": versions,
            "missing": {n: t.missing()[0].what for n, t in targets.items() if t.missing()}}


def _dist_version(dist: str) -> str:
    from edgeconv.plugins import plugins

    return next((p.version for p in plugins() if p.dist == dist), "?")


def _cell(counts: dict[str, int], total: int, good: tuple[str, ...]) -> str:
    ok = sum(counts.get(g, 0) for g in good)
    if total == 0:
        return "–"
    errors = f" ⚠{counts['error']}" if counts.get("error") else ""
    if ok == total:
        return "✓" if total == 1 else f"✓ {ok}"
    return ("✗" if ok == 0 else f"{ok}/{total}") + errors


def render(res: dict[str, Any]) -> str:
    rows, targets = res["rows"], res["targets"]
    cols = ["onnxruntime", *targets]
    lines = [
        "# Operator coverage",
        "",
        "Generated by `docs/gen/operator_coverage.py`; do not edit by hand. Corpus: the ONNX backend node tests",
        "(onnx 1.22.0 wheel, pinned by sha256; not committed).",
        "",
        f"- **Date (UTC):** {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M}",
        f"- **Machine:** {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "- **Versions:** " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()),
        f"- **Tests:** {res['tests']} node tests without the `_expanded` variants"
        + (f" (**partial run: the first {res['limit']}**)" if res["limit"] else "")
        + f"; {len(res['skipped'])} left out because their data are sequences or optionals; "
        f"{res['seconds']:.0f} s",
        "",
        "How to read: one row per operator (the test's node), one column per target; a cell counts that",
        "operator's tests. **onnxruntime** (built in, runs on this host): the test model was run by ONNX",
        f"Runtime's CPU execution provider and every output matched the expected one (rtol {RTOL:g}, atol {ATOL:g}):",
        "a measured result. **Every other column is the target's own operator pre-check** (what `edgeconv",
        "inspect` shows): the operators it says it converts (a fallback to another device counts), not a",
        "conversion that was run here. `✓ N`: all N tests; `k/N`: k of them; `✗`: none;"
        " `⚠k`: the pre-check raised an error on k tests; `import ✗`: edgeconv's ONNX importer (checker, shape",
        "inference) refused the test model.",
        "",
    ]
    if res["missing"]:
        lines += ["Pre-checks that ran without the target's toolchain (they need only the operator tables):",
                  ", ".join(f"`{n}` (no {w} here)" for n, w in res["missing"].items()) + ".", ""]
    # per-target summary
    lines += ["## Summary", "", "| target | operators: all tests | some | none | tests |", "|---|--:|--:|--:|--:|"]
    good_of = {"onnxruntime": ("runs",)}
    for col in cols:
        good = good_of.get(col, ("supported", "fallback"))
        full = part = none = tests_ok = tests = 0
        for row in rows.values():
            total = row["tests"]["n"] - row["import"].get("refused", 0)
            if total <= 0:
                continue
            ok = sum(row[col].get(g, 0) for g in good)
            tests += total
            tests_ok += ok
            full += ok == total
            part += 0 < ok < total
            none += ok == 0
        lines.append(f"| `{col}` | {full} | {part} | {none} | {tests_ok}/{tests} |")
    lines += ["", "## Per operator", "", "| operator | tests | " + " | ".join(f"`{c}`" for c in cols) + " |",
              "|---|--:|" + "|".join(":-:" for _ in cols) + "|"]
    for op in sorted(rows, key=str.lower):
        row = rows[op]
        n = row["tests"]["n"]
        refused = row["import"].get("refused", 0)
        cells = []
        for col in cols:
            good = good_of.get(col, ("supported", "fallback"))
            cells.append(_cell(row[col], n - refused, good) + (f" (import ✗ {refused})" if refused else ""))
        lines.append(f"| `{op}` | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N tests (a quick look)")
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args(argv)
    res = collect(args.limit)
    args.output.write_text(render(res), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
