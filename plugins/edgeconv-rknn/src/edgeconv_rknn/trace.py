"""The rknn tracer (``edgeconv debug layers`` on a .rknn; docs/debug.md): every tensor the toolkit's simulator
computes, dumped by rknn-toolkit2's own ``accuracy_analysis``, matched to the reference (ONNX) tensors.

The simulator runs only a model built in its own process, so ``bridge.py trace`` (in the rknn toolchain environment,
through the core's worker: no shell, a timeout) rebuilds the model from the recipe the exporter kept beside the
artifact, as the runner does (same size as the artifact, or it stops), then calls ``accuracy_analysis(inputs=[one
.npy per input], output_dir=a<i>, target=None)`` once per sample. rknn-toolkit2 2.5.0 writes there:

    a<i>/map_name_to_file.txt      layer_name -> file_name (the toolkit's tensor names; '/' and such made '_')
    a<i>/error_analysis.txt        per layer: [OpType] name, entire and single cosine / euclidean against its golden
    a<i>/simulator/npy/<file>.npy  the simulator's value of each tensor, float32 (dequantized by the toolkit),
                                   in the ONNX layout (NCHW) on the models run here
    a<i>/golden/...                the toolkit's own float run of the ONNX it built (not used: edgeconv's reference is
                                   the source, run by the core)

The toolkit names a tensor after the ONNX tensor it computes (``/blk/r1/out_0``, ``logits``), and adds tensors of its
own (``input_int8``, ``gap_2conv0``, ``logits_mm``: conversions and the ops it rewrote an ONNX op into); a reference
tensor is matched by name. A tensor the toolkit computes inside a fused op (int8: a Conv fused with the Relu after
it) is still dumped, but the toolkit prints no figure for it in ``error_analysis.txt`` ("[Conv] c1" with an empty
row): it is not the chip's value, so it is left unmatched and its node is listed with the tensor that ends its
group. Everything is *simulated*: the toolkit's simulator on this host's CPU, not a Rockchip NPU. The toolkit cannot
feed one layer edgeconv's reference tensors (its own "single" figures feed its own golden run of the artifact's
ONNX, not the source's): no isolated trace.

Imports only ``edgeconv.plugin`` from edgeconv; ``rknn`` is never imported in edgeconv's process.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

MAP_FILE = "map_name_to_file.txt"
TABLE_FILE = "error_analysis.txt"
_CHANNELS_LAST = {3: (0, 2, 1), 4: (0, 3, 1, 2), 5: (0, 4, 1, 2, 3)}


def name_map(text: str) -> dict[str, str]:
    """``map_name_to_file.txt`` -> {the toolkit's tensor name: its file's stem} (rows after the dashed line; the file
    name is the last column, so a name with a space keeps it)."""
    out: dict[str, str] = {}
    inside = False
    for line in text.splitlines():
        if not inside:
            inside = line.strip().startswith("---")
            continue
        parts = line.strip().rsplit(None, 1)
        if len(parts) == 2:
            out[parts[0]] = re.sub(r"\.txt$", "", parts[1])
    return out


def fused_away(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The toolkit's tensors without a figure in ``error_analysis.txt`` (``bridge.parse_analysis`` rows whose
    ``entire_cos`` is None: computed inside a fused op) -> the next tensor with one (the one that ends the group)."""
    out: dict[str, str] = {}
    pending: list[str] = []
    for row in rows:
        if row.get("entire_cos") is None:
            pending.append(row["layer"])
            continue
        for name in pending:
            out[name] = row["layer"]
        pending = []
    return out


def match(reference: Any, names: dict[str, str], rows: list[dict[str, Any]],
          shapes: dict[str, list[int]] | None = None, dumped: dict[str, list[int]] | None = None
          ) -> dict[str, dict[str, Any]]:
    """Reference tensor -> the dumped tensor that is it (``{"name", "op", "fused", "layout", "file"}``): by name,
    leaving out the toolkit's tensors inside a fused op (their nodes listed in ``fused`` of the tensor that ends the
    group). ``shapes`` (reference) and ``dumped`` (the dump's, by toolkit name) decide the layout: NCHW as dumped, or
    channels-last when only that fits."""
    kinds = {r["layer"]: r["kind"] for r in rows}
    inside = fused_away(rows)
    shapes, dumped = shapes or {}, dumped or {}
    producer = {t: n for n in reference.graph.node for t in n.output if t}
    out: dict[str, dict[str, Any]] = {}
    for node in reference.graph.node:
        for tensor in node.output:
            if not tensor or tensor not in names or tensor in inside:
                continue
            fused = [producer[t].name or producer[t].op_type for t, end in inside.items()
                     if end == tensor and t in producer]
            out[tensor] = {"name": tensor, "op": kinds.get(tensor, ""), "fused": fused,
                           "layout": _layout(shapes.get(tensor), dumped.get(tensor)), "file": names[tensor]}
    return out


def _layout(want: list[int] | None, have: list[int] | None) -> str | None:
    if want is None or have is None or list(have) == list(want):
        return None
    perm = _CHANNELS_LAST.get(len(have))
    return "channels_last" if perm is not None and [have[p] for p in perm] == list(want) else None


def _shapes(reference: Any) -> dict[str, list[int]]:
    """Static shapes of the reference's tensors (shape inference on a copy; unknown ones left out)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(reference)
    except Exception:  # noqa: BLE001 - shapes only help with the layout, never a reason to fail
        return {}
    out = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            out[vi.name] = [int(d.dim_value) for d in dims]
    return out


def _recipe(model: Any, options: dict[str, Any] | None) -> Path:
    from .runner import recipe_path

    return recipe_path(Path(model.path), (options or {}).get("recipe"))


class RknnTracer:
    name = "rknn-toolkit2 simulator (accuracy_analysis)"
    isolated = False

    def unavailable(self, model: Any, options: dict[str, Any] | None = None) -> str | None:
        from edgeconv.plugin import BadInput, EdgeconvError, resolve_toolchain

        from .toolchain import RKNN

        try:
            _recipe(model, options)
        except BadInput as exc:
            return exc.cause
        try:
            resolve_toolchain(RKNN)
        except EdgeconvError as exc:
            return f"the .rknn's tensors are dumped by rknn-toolkit2's simulator in its own environment: {exc.cause}"
        return None

    def trace(self, model: Any, reference: Any, feeds: list[dict[str, Any]], *, options: dict[str, Any] | None = None,
              threads: int | None = None, golden: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        from edgeconv.plugin import BadInput, resolve_toolchain

        from .toolchain import RKNN

        if golden is not None:
            raise BadInput("rknn-toolkit2's simulator cannot run a layer on the reference's inputs (no isolated "
                           "trace)", stage="debug")
        recipe = _recipe(model, options)
        env = resolve_toolchain(RKNN)
        inputs = [t.name for t in model.io.inputs]
        with tempfile.TemporaryDirectory(prefix="edgeconv-rknn-trace-") as tmp:
            result, names, rows, dumps = _dump(env, Path(model.path), recipe, inputs, feeds, Path(tmp))
        shapes = _shapes(reference)
        mapping = match(reference, names, rows, shapes, {k: list(v.shape) for k, v in (dumps[0] if dumps else {}
                                                                                        ).items()})
        opts = dict(options or {})
        what = " ".join(str(opts[k]) for k in ("platform", "precision") if opts.get(k)) or "Rockchip NPU"
        rebuilt = result.get("rebuilt") or {}
        fused = sum(1 for n in names if n in fused_away(rows))
        return {"runtime": f"rknn-toolkit2 {result.get('toolkit') or '?'} simulator, {what} (simulated: the "
                           "toolkit's accuracy_analysis dump)",
                "tensors": [{ref: d[ref] for ref in mapping if ref in d} for d in dumps],
                "map": {ref: {k: v for k, v in e.items() if k != "file"} for ref, e in mapping.items()},
                "notes": [f"{len(mapping)} of the {len(names)} tensors rknn-toolkit2's accuracy_analysis dumped are "
                          f"reference tensors by name ({fused} computed inside a fused op, with no figure of the "
                          "toolkit's, left out; the rest: the toolkit's own conversions and rewritten ops)",
                          "the values are the toolkit simulator's on this host's CPU, dequantized by the toolkit, not "
                          "a Rockchip NPU's; the model was rebuilt from rknn_build/recipe.json (same size as the "
                          f"artifact, {rebuilt.get('differing_bytes')} of {rebuilt.get('size')} bytes differ: host "
                          "addresses the compiler writes)"]}


def _dump(env: Any, artifact: Path, recipe: Path, inputs: list[str], feeds: list[dict[str, Any]], tmp: Path
          ) -> tuple[dict[str, Any], dict[str, str], list[dict[str, Any]], list[dict[str, Any]]]:
    """``bridge.py trace`` on ``feeds``: (its result, the toolkit's name -> file map, its analysis rows, per sample
    {toolkit name: array})."""
    import numpy as np

    from edgeconv.plugin import ToolchainFailed

    from .bridge import parse_analysis
    from .export import first_error

    samples = []
    for i, feed in enumerate(feeds):
        files = []
        for k, name in enumerate(inputs):
            arr = np.asarray(feed[name])
            np.save(tmp / f"s{i}_{k}.npy", arr.astype(np.float32) if arr.dtype.kind in "fu" else arr)
            files.append(f"s{i}_{k}.npy")
        samples.append(files)
    (tmp / "request.json").write_text(json.dumps({"samples": samples, "result": "result.json"}))
    shutil.copyfile(Path(__file__).with_name("bridge.py"), tmp / "bridge.py")
    res = env.run([str(tmp / "bridge.py"), "trace", str(recipe), str(artifact.resolve()), str(tmp / "request.json")],
                  cwd=tmp, timeout=900 + 120 * len(feeds), log=tmp / "trace.log")
    try:
        result = json.loads((tmp / "result.json").read_text())
    except (OSError, ValueError):
        result = {"ok": False, "error": "the bridge wrote no result"}
    if not (res["ok"] and result.get("ok")):
        raise ToolchainFailed(f"rknn-toolkit2's accuracy_analysis could not dump the .rknn's tensors: "
                              f"{result.get('error') or 'exit ' + str(res['returncode'])}: {first_error(res['output'])}",
                              file=artifact, stage="debug")
    if not result.get("samples"):
        return result, {}, [], []
    first = tmp / result["samples"][0]
    names = name_map((first / MAP_FILE).read_text(encoding="utf-8", errors="replace"))
    rows = parse_analysis((first / TABLE_FILE).read_text(encoding="utf-8", errors="replace"))
    dumps = []
    for sample in result["samples"]:
        folder = tmp / sample / "simulator" / "npy"
        got = {}
        for name, stem in names.items():
            file = folder / f"{stem}.npy"
            if file.is_file():
                got[name] = np.asarray(np.load(file, allow_pickle=False), dtype=np.float32)
        dumps.append(got)
    return result, names, rows, dumps


TRACER = RknnTracer()
