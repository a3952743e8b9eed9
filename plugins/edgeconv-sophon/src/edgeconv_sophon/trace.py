"""The sophon tracer (``edgeconv debug layers`` on a .bmodel; docs/debug.md): every tensor the bmodel computes,
dumped by tpu-mlir's own debugger in the cmodel simulator, matched to the reference (ONNX) tensors.

tpu-mlir's debugger (``tdb``, ``tpu_mlir/python/tools/tdb.py``) decodes the bmodel back into its commands and runs
them one by one in the cmodel; its ``data-dump`` plugin reads each op's result from the simulated memory after the
command that completes it, dequantized (``(q - zero_point) * scale``), keyed by the op's name in ``final.mlir``. It
needs the bmodel with ``final.mlir`` and ``tensor_location.json`` (where each tensor lives), which model_deploy writes
into its context folder and the exporter keeps in ``bmrt_context/``. (tpu-mlir's ``bmodel_dumper.py`` wraps the same
plugin but does not start in 1.30.2: it passes ``ddr_size``, which ``TdbCmdBackend`` no longer takes; DUMP_MAIN
calls the debugger the way ``bmodel_dumper.py`` means to.)

tpu-mlir names an op after the ONNX tensor it computes and the ONNX op type (``relu1_Relu``, ``logits_Gemm``): a
reference tensor is matched to ``<tensor>_<op_type>``, else to ``<tensor>``. A Conv fused with the Relu after it has
no tensor of its own (``relu1_Relu`` is a ``tpu.Conv2D`` with ``do_relu``); the core groups it with the Relu. The
dump runs in the sophon toolchain environment through the core's worker (isolated, no shell, a timeout); files cross
the boundary (one ``.npz`` per sample each way, read without pickle). Everything is *simulated*: the cmodel's values
(bit-accurate to the chip, per Sophgo), not a device's. tdb cannot feed an op the reference's inputs: no isolated
trace.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

# Runs in the toolchain environment: ``python -I -c DUMP_MAIN CONTEXT_DIR N`` in a folder holding in0.npz ... in{N-1}
# .npz; writes out0.npz ... (every tensor tdb's data-dump plugin reads, float32, keyed by its final.mlir name).
DUMP_MAIN = """\
import os, sys
context, count = sys.argv[1], int(sys.argv[2])
os.dup2(1, 2)
import tpu_mlir
sys.path.insert(0, os.path.join(os.path.dirname(tpu_mlir.__file__), "python", "tools"))
from tdb import TdbInterface, parse_args
from debugger.plugins.data_dump import DataDump
tdb = TdbInterface(bmodel_file=os.path.join(context, "compilation.bmodel"),
                   final_mlir_fn=os.path.join(context, "final.mlir"),
                   tensor_loc_file=os.path.join(context, "tensor_location.json"), input_data_fn="in0.npz",
                   extra_plugins=["data-dump"], args=parse_args([context, "--inputs", "in0.npz"]))
dump = tdb.get_plugin(DataDump)
for i in range(count):
    tdb.input_data_fn, dump.output = f"in{i}.npz", f"out{i}.npz"
    tdb.do_run("")
    dump.out_tensors.close()
    if tdb.status.name != "END":
        sys.exit(f"tdb stopped before the end of sample {i} ({tdb.status.name})")
    print(f"edgeconv: sample {i} dumped", flush=True)
"""

CONTEXT = ("final.mlir", "tensor_location.json")  # beside the bmodel in bmrt_context/ (export.CONTEXT_DEBUG)
_OP = re.compile(r'"(tpu\.\w+)"\(.*\sloc\((#loc\d+)\)\s*$')
_LOC = re.compile(r'^(#loc\d+) = loc\("([^"]+)"\)')


def context_files(bmodel: Path) -> dict[str, Path]:
    return {name: bmodel.parent / "bmrt_context" / name for name in CONTEXT}


_MOVES = ("tpu.Yield", "tpu.Load", "tpu.Store")  # data movement in a layer group: not the op that computes a tensor


def mlir_ops(final_mlir: str) -> dict[str, str]:
    """final.mlir's op names -> the tpu op that computes each (``relu1_Relu`` -> ``tpu.Conv2D``), from the ops'
    ``loc``; a layer group's Yield, Load and Store carry the name of what they move, so they count only when
    nothing else does."""
    locs, ops = {}, []
    for line in final_mlir.splitlines():
        m = _LOC.match(line)
        if m:
            locs[m.group(1)] = m.group(2)
            continue
        m = _OP.search(line)
        if m:
            ops.append((m.group(2), m.group(1)))
    out: dict[str, str] = {}
    for loc, op in ops:
        if loc in locs and (locs[loc] not in out or out[locs[loc]] in _MOVES):
            out[locs[loc]] = op
    return out


def match(reference: Any, names: set[str] | list[str], ops: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Reference tensor -> the dumped tensor that is it (``<tensor>_<op_type>``, else ``<tensor>``)."""
    names, ops = set(names), ops or {}
    out: dict[str, dict[str, Any]] = {}
    for node in reference.graph.node:
        for tensor in node.output:
            name = next((c for c in (f"{tensor}_{node.op_type}", tensor) if tensor and c in names), None)
            if name is not None:
                out[tensor] = {"name": name, "op": ops.get(name, "")}
    return out


class SophonTracer:
    name = "tpu-mlir cmodel (tdb)"
    isolated = False

    def unavailable(self, model: Any, options: dict[str, Any] | None = None) -> str | None:
        from edgeconv.plugin import EdgeconvError, resolve_toolchain

        from .toolchain import SOPHON

        missing = [n for n, p in context_files(Path(model.path)).items() if not p.is_file()]
        if missing:
            return (f"the output folder has no bmrt_context/{' or '.join(missing)}, which tpu-mlir's debugger needs to "
                    "find the bmodel's tensors (edgeconv-sophon keeps them since the tracer was added: convert again)")
        try:
            resolve_toolchain(SOPHON)
        except EdgeconvError as exc:
            return f"the bmodel's tensors are dumped by tpu-mlir in its own environment: {exc.cause}"
        return None

    def trace(self, model: Any, reference: Any, feeds: list[dict[str, Any]], *, options: dict[str, Any] | None = None,
              threads: int | None = None, golden: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        from edgeconv.plugin import BadInput, resolve_toolchain

        from .toolchain import SOPHON

        if golden is not None:
            raise BadInput("tpu-mlir's debugger cannot run an op on the reference's inputs (no isolated trace)",
                           stage="debug")
        env = resolve_toolchain(SOPHON)
        files = context_files(Path(model.path))
        ops = mlir_ops(files["final.mlir"].read_text(encoding="utf-8", errors="replace"))
        with tempfile.TemporaryDirectory(prefix="edgeconv-sophon-trace-") as tmp:
            dumps = _dump(env, Path(model.path), files, feeds, Path(tmp))
        dumped = {k for d in dumps for k in d}
        mapping = match(reference, dumped, ops)
        opts = dict(options or {})
        chip = " ".join(str(opts[k]) for k in ("chip", "quantize") if opts.get(k)) or "Sophon"
        return {"runtime": f"tpu-mlir {opts.get('tpu_mlir') or '?'} cmodel, {chip} (simulated: tpu-mlir's debugger "
                           "tdb, command by command)",
                "tensors": [{ref: d[e["name"]] for ref, e in mapping.items() if e["name"] in d} for d in dumps],
                "map": mapping,
                "notes": [f"{len(mapping)} of the {len(dumped)} tensors tpu-mlir's debugger dumped are reference "
                          "tensors (the rest: loads, casts, reordered weights); the values are the cmodel "
                          "simulator's, dequantized by tpu-mlir, not a device's"]}


def _dump(env: Any, bmodel: Path, files: dict[str, Path], feeds: list[dict[str, Any]], tmp: Path) -> list[dict]:
    """Run DUMP_MAIN on ``feeds`` in the toolchain environment; every dumped tensor per sample."""
    import numpy as np

    from edgeconv.plugin import ToolchainFailed

    from .tpumlir import first_error

    context = tmp / "context"
    context.mkdir()
    shutil.copyfile(bmodel, context / "compilation.bmodel")
    for name, path in files.items():
        shutil.copyfile(path, context / name)
    for i, feed in enumerate(feeds):
        np.savez(tmp / f"in{i}.npz", **{k: np.ascontiguousarray(v) for k, v in feed.items()})
    res = env.run(["-c", DUMP_MAIN, str(context), str(len(feeds))], cwd=tmp, timeout=600 + 120 * len(feeds),
                  log=tmp / "tdb.log")
    if not res["ok"]:
        raise ToolchainFailed(f"tpu-mlir's debugger could not dump the bmodel's tensors: {first_error(res['output'])}",
                              file=bmodel, stage="debug")
    dumps = []
    for i in range(len(feeds)):
        with np.load(tmp / f"out{i}.npz", allow_pickle=False) as data:
            dumps.append({k: np.asarray(data[k], dtype=np.float32) for k in data.files})
    return dumps


TRACER = SophonTracer()
