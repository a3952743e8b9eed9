"""The exporter: ExportedProgram -> ``to_edge_transform_and_lower`` (XNNPACK partitioner) -> ``to_executorch`` ->
``<stem>.pte``. It lowers and serializes only: the program it lowers is the precision pass's (fp16, int8) or the
pre-check's capture of the source (fp32).

What ran where is in ``artifact.details.delegation``: every operator of the lowered program, counted inside
XNNPACK's delegated subgraphs and outside them (those run on ExecuTorch's portable kernels), from executorch's
``get_delegation_info``. Tuple plumbing (``getitem``) is not counted; quantize/dequantize nodes are counted apart
(``quant_ops``), because inside a delegate they are folded into XNNPACK's int8 kernels rather than computed.
A program with no operator in XNNPACK runs entirely on the portable kernels -- reference C++ loops, many times
slower (benchmarks: docs/benchmarks-executorch.md) -- and says so in a warning; so does a weighted operator
(convolution, linear, matmul) left outside XNNPACK.
"""

from __future__ import annotations

import importlib.metadata
import time
from pathlib import Path
from typing import Any

from edgeconv.plugin import Artifact, IOContract, Model, TensorSpec, ToolchainFailed, brief, to_debug_log

from . import capture

_PLUMBING = {"getitem"}
# What the .pte stores. fp16: executorch 1.5.1's XNNPACK serializer writes convolution weights as float32 whatever
# their dtype (op_conv2d.py: force_fp32=True; XNNPACK converts them when the program loads), so an fp16 CNN is
# not smaller than its fp32 program; linear weights are stored in float16.
WEIGHTS = {"fp32": "float32",
           "fp16": "float16 compute; convolution weights stored float32 (XNNPACK converts them at load), linear "
                   "weights float16",
           "int8": "int8 (PT2E, XNNPACKQuantizer) where quantized, float32 elsewhere"}
_HEAVY = ("convolution", "conv", "linear", "addmm", "mm", "bmm", "matmul", "baddbmm")


def export(model: Model, job: Any) -> Artifact:
    import warnings

    with to_debug_log("torch"):  # executorch.exir imports torchao, which logs on torch's loggers at import
        from executorch.exir import to_edge_transform_and_lower

    obj = model.obj or {}
    precision = obj.get("precision") or "fp32"
    ep = obj["module"] if obj.get("precision") else capture.exported(model, job)
    delegate = job.options.get("delegate") or "xnnpack"
    partitioners = []
    if delegate == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioners = [XnnpackPartitioner()]
    job.status(f"to_edge_transform_and_lower ({delegate})")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        edge = to_edge_transform_and_lower(ep, partitioner=partitioners)
        lowered = time.perf_counter()
        delegation = delegation_report(edge.exported_program().graph_module)
        job.status("to_executorch")
        try:
            program = edge.to_executorch()
        except RuntimeError as exc:
            if "Missing out variants" not in str(exc):
                raise
            raise ToolchainFailed(f"{brief(exc)}: operators outside XNNPACK that ExecuTorch's portable kernels do "
                                  "not have (quantize/dequantize outside a delegate need the quantized kernels "
                                  "library, which the pip runtime does not include)", stage="export") from None
    pte = Path(job.workdir) / f"{job.stem}.pte"
    pte.write_bytes(program.buffer)
    done = time.perf_counter()
    _warn_delegation(job, delegation, delegate)
    io = artifact_io(model, ep)
    details: dict[str, Any] = {
        "precision": precision,
        "weights": WEIGHTS[precision],
        "delegate": delegate,
        "delegation": delegation,
        "lower_seconds": round(lowered - t0, 3),
        "serialize_seconds": round(done - lowered, 3),
        "pte_bytes": pte.stat().st_size,
    }
    from .precision import SHARE

    if precision == "int8" and isinstance(job.state.get(SHARE), dict):  # the verdict reads it (exit 1 under half)
        details["precision_share"] = job.state[SHARE]
    runner_options: dict[str, Any] = {"input_names": [t.name for t in io.inputs],
                                      "output_names": [t.name for t in io.outputs]}
    if job.options.get("threads"):
        runner_options["num_threads"] = int(job.options["threads"])
    here, why = _runtime_ready(delegation)
    return Artifact(path=pte, form="pte", io=io, files=[pte], tools=tools(), details=details,
                    runner_options=runner_options, runnable=here, not_runnable_reason=why)


def delegation_report(graph_module: Any) -> dict[str, Any]:
    """Operators inside XNNPACK's subgraphs and outside them (portable kernels), by operator."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    by_op: dict[str, dict[str, int]] = {}
    delegated = portable = quant = 0
    for op, b in sorted(info.delegation_by_operator.items()):
        if op in _PLUMBING:
            continue
        by_op[op] = {"xnnpack": int(b.delegated), "portable": int(b.non_delegated)}
        if op.startswith("quantized_decomposed_"):
            quant += int(b.delegated) + int(b.non_delegated)
            continue
        delegated += int(b.delegated)
        portable += int(b.non_delegated)
    total = delegated + portable
    return {
        "subgraphs": int(info.num_delegated_subgraphs),
        "delegated_ops": delegated,
        "portable_ops": portable,
        "quant_ops": quant,
        "delegated_share": round(delegated / total, 4) if total else None,
        "portable": {op: c["portable"] for op, c in by_op.items() if c["portable"]},
        "by_operator": by_op,
    }


def _warn_delegation(job: Any, d: dict[str, Any], delegate: str) -> None:
    if not d["delegated_ops"]:
        why = "delegate=none" if delegate == "none" else "XNNPACK took no operator"
        job.warn(f"{why}: the whole program runs on ExecuTorch's portable kernels (reference implementations, "
                 "typically many times slower than XNNPACK)")
        return
    heavy = {op: n for op, n in d["portable"].items() if any(h in op for h in _HEAVY)}
    if heavy:
        job.warn("weighted operators outside XNNPACK run on the portable kernels (slow): "
                 + ", ".join(f"{op} x{n}" for op, n in heavy.items()))


def artifact_io(model: Model, ep: Any) -> IOContract:
    """The source's names, layouts and dtypes, at the program's fixed shapes (read from the exported graph)."""
    shapes_in = [tuple(int(d) for d in x.shape) for x in capture.example_of(model)]
    outs = _output_shapes(ep)
    inputs = tuple(TensorSpec(t.name, shape, t.dtype, t.layout)
                   for t, shape in zip(model.io.inputs, shapes_in, strict=True))
    outputs = tuple(TensorSpec(t.name, outs[i] if i < len(outs) else t.shape, t.dtype, t.layout)
                    for i, t in enumerate(model.io.outputs))
    return IOContract(inputs, outputs, model.io.preprocessing)


def _output_shapes(ep: Any) -> list[tuple[int, ...]]:
    node = next(n for n in ep.graph.nodes if n.op == "output")
    found: list[tuple[int, ...]] = []

    def walk(x: Any) -> None:
        if isinstance(x, (list, tuple)):
            for y in x:
                walk(y)
        elif hasattr(x, "meta") and hasattr(x.meta.get("val"), "shape"):
            found.append(tuple(int(d) for d in x.meta["val"].shape))

    walk(node.args[0])
    return found


def _runtime_ready(delegation: dict[str, Any]) -> tuple[bool, str]:
    """This host's ExecuTorch runtime must have the XNNPACK backend to run a program with XNNPACK delegates."""
    if not delegation["subgraphs"]:
        return True, ""
    from executorch.runtime import Runtime

    if Runtime.get().backend_registry.is_available("XnnpackBackend"):
        return True, ""
    return False, "this host's ExecuTorch runtime has no XNNPACK backend; the .pte was built but not verified"


def tools() -> dict[str, str]:
    out = {}
    for dist in ("executorch", "torchao", "torch"):
        try:
            out[dist] = importlib.metadata.version(dist).split("+")[0]
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def doctor() -> dict[str, Any]:
    """The deep check: versions, the runtime's backends and thread pool."""
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    rt = Runtime.get()
    backends = list(rt.backend_registry.registered_backend_names)
    return {**tools(), "backends": backends, "xnnpack": "XnnpackBackend" in backends,
            "threads": int(portable_lib._threadpool_get_thread_count()),
            "operators": len(rt.operator_registry.operator_names)}
