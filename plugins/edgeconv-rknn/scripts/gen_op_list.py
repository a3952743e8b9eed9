"""Generate ``src/edgeconv_rknn/data/onnx_ops.json``, the operator list the ``rknn`` pre-check reads.

Two steps, both recorded in the file:

1. ``parse DOC.md``: the ONNX table of Rockchip's ``doc/RKNNToolKit2_OP_Support-<version>.md`` (airockchip/
   rknn-toolkit2; the newest the repository publishes is 2.3.2, commit 42aa1d4, while the wheel on PyPI is 2.5.0):
   every operator with the document's remark; "Not Supported" marks it unsupported.
2. ``probe`` (run with the rknn toolchain environment's Python, which has rknn-toolkit2 and onnx): every operator
   the document marks unsupported is tried on the installed toolkit with the ONNX backend node tests that ship in
   the ``onnx`` wheel (``onnx/backend/test/data/node/test_*``: a one-node model with its inputs and expected
   outputs). For each operator up to three tests: ``config(target_platform='rk3588') -> load_onnx -> build(fp16)
   -> init_runtime() (simulator) -> inference``, the outputs compared with the test's expected ones (|err| <= 1e-2 +
   1e-2 |expected|), and the toolkit's placement table (its verbose build log) says whether it put the operator on
   the NPU or the CPU; a test model of a newer opset is labelled opset 19 (the newest the toolkit reads; the
   operators' schemas since 19 added types, not semantics). An operator with a test that builds and matches is recorded as supported by the probe, with
   the test's name; the pre-check then lets it through (the document is older than the toolkit).

    python scripts/gen_op_list.py parse DOC.md > ops.json
    ~/.cache/edgeconv/toolchains/rknn/bin/python scripts/gen_op_list.py probe ops.json > src/edgeconv_rknn/data/onnx_ops.json
    (resumable: each test's result is kept in ops.json.probe-cache.json as it is measured)
"""

from __future__ import annotations

import json
import os
import re
import sys

MAX_OPSET = 19
DOC_SOURCE = ("https://github.com/airockchip/rknn-toolkit2/blob/42aa1d426c0a9e0869b6374edba009f7208a1926/doc/"
              "RKNNToolKit2_OP_Support-2.3.2.md")


def parse(text: str) -> dict:
    start = text.index("## ONNX OPs supported by RKNN Toolkit2")
    end = text.index("## ", start + 5)
    ops = {}
    for line in text[start:end].splitlines():
        m = re.match(r"^\|\s*([A-Za-z][A-Za-z0-9]*)\s*\|\s*(.*?)\s*\|\s*$", line)
        if not m or m.group(1) == "Operators":
            continue
        remark = re.sub(r"<br\s*/?>", "; ", m.group(2)).strip()
        supported = remark.lower() != "not supported"
        ops[m.group(1)] = {"supported": supported, "doc": remark or None}
    return {"schema": "edgeconv.rknn.onnx_ops/1", "doc": {"source": DOC_SOURCE, "version": "2.3.2",
                                                          "opset": 19}, "ops": ops}


def _probe_one(test_dir: str) -> tuple[str, str]:
    import glob
    import os
    import tempfile

    import numpy as np
    import onnx
    from onnx import numpy_helper
    from rknn.api import RKNN

    model = onnx.load(os.path.join(test_dir, "model.onnx"))
    for o in model.opset_import:  # the toolkit reads opset <= 19 ("Unsupport onnx opset 22, need <= 19")
        if o.domain in ("", "ai.onnx") and o.version > MAX_OPSET:
            o.version = MAX_OPSET
    data = sorted(glob.glob(os.path.join(test_dir, "test_data_set_0", "*.pb")))
    ins = [numpy_helper.to_array(onnx.load_tensor(f)) for f in data if os.path.basename(f).startswith("input")]
    outs = [numpy_helper.to_array(onnx.load_tensor(f)) for f in data if os.path.basename(f).startswith("output")]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.onnx")
        onnx.save(model, path)
        os.chdir(d)  # the toolkit writes its check*.onnx files into the working folder
        r = RKNN(verbose=True)  # prints the placement table (ID OpType DataType Target ...) on stdout
        try:
            if r.config(target_platform="rk3588") or r.load_onnx(path):
                return "fails", "load_onnx"
            if r.build(do_quantization=False):
                return "fails", "build"
            if r.init_runtime():
                return "fails", "init_runtime"
            got = r.inference(inputs=ins, data_format=["nchw"] * len(ins))
        except Exception as exc:  # noqa: BLE001 - the toolkit raises for some models
            return "fails", f"{type(exc).__name__}"
        finally:
            r.release()
    if got is None or len(got) != len(outs):
        return "fails", "inference"
    for g, e in zip(got, outs, strict=True):
        g = np.asarray(g, dtype=np.float64).reshape(-1)
        e = np.asarray(e, dtype=np.float64).reshape(-1)
        if g.shape != e.shape or not np.all(np.abs(g - e) <= 1e-2 + 1e-2 * np.abs(e)):
            return "mismatch", "outputs differ"
    return "matches", ""


def placement(text: str) -> list[tuple[str, str, str]]:
    """(op type, target, name) per row of the toolkit's placement table: the plugin's own parser (bridge.py is
    standard library only, so this script imports it from the source tree)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "edgeconv_rknn"))
    from bridge import placement as parse

    return [(r["op"], r["target"], r["name"]) for r in parse(text)]


def _probe_isolated(test_dir: str) -> tuple[str, str]:
    """One test in its own process (the toolkit crashes on some models: a crash is a failure, not the end)."""
    import subprocess

    try:
        proc = subprocess.run([sys.executable, __file__, "one", test_dir], capture_output=True, text=True,
                              errors="replace", timeout=300, check=False)
    except subprocess.TimeoutExpired:
        return "fails", "timeout"
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            got = json.loads(line)
            where = sorted({t for op, t, _ in placement(proc.stdout) if op not in ("InputOperator", "OutputOperator")})
            if got["result"] == "matches" and where:
                return got["result"], "on " + "+".join(where)
            return got["result"], got["why"]
    return "fails", f"crashed (exit {proc.returncode})"


def probe(doc: dict, cache_file: str | None = None) -> dict:
    import glob
    import os
    from importlib.metadata import version

    import onnx

    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    by_op: dict[str, list[str]] = {}
    for d in sorted(glob.glob(os.path.join(root, "test_*"))):
        try:
            m = onnx.load(os.path.join(d, "model.onnx"))
        except Exception:  # noqa: BLE001
            continue
        types = {n.op_type for n in m.graph.node}
        if len(types) == 1 and all(n.domain in ("", "ai.onnx") for n in m.graph.node):
            by_op.setdefault(types.pop(), []).append(d)
    done: dict[str, list[str]] = {}
    if cache_file and os.path.exists(cache_file):
        with open(cache_file, encoding="utf-8") as f:
            done = json.load(f)
    for op, rec in doc["ops"].items():
        if rec["supported"]:
            continue
        tried = []
        for d in by_op.get(op, [])[:3]:
            name = os.path.basename(d)
            if name not in done:
                done[name] = _probe_isolated(d)
                if cache_file:  # resumable: a long run that stops keeps what it measured
                    with open(cache_file, "w", encoding="utf-8") as f:
                        json.dump(done, f)
            res, why = done[name]
            tried.append({"test": name, "result": res, **({"why": why} if why else {})})
            print(op, tried[-1], file=sys.stderr, flush=True)
            if res == "matches":
                rec["supported"] = True
                break
        rec["probe"] = tried or "no single-operator node test"
    doc["probe"] = {"toolkit": version("rknn-toolkit2"), "onnx": version("onnx"),
                    "method": "one-node ONNX backend tests (opset labelled <= 19), fp16 build for rk3588, simulator vs expected "
                              "outputs"}
    return doc


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "parse":
        with open(argv[1], encoding="utf-8") as f:
            print(json.dumps(parse(f.read()), indent=1))
        return 0
    if len(argv) == 2 and argv[0] == "one":
        res, why = _probe_one(argv[1])
        print(json.dumps({"result": res, "why": why}))
        return 0
    if len(argv) == 2 and argv[0] == "probe":
        with open(argv[1], encoding="utf-8") as f:
            doc = json.load(f)
        print(json.dumps(probe(doc, argv[1] + ".probe-cache.json"), indent=1))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
