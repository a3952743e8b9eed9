"""Runs *inside* the rknn toolchain environment (Python 3.11, rknn-toolkit2): builds a .rknn, and serves the simulator.

    python bridge.py build RECIPE.json RESULT.json
    python bridge.py serve RECIPE.json ARTIFACT.rknn
    python bridge.py trace RECIPE.json ARTIFACT.rknn REQUEST.json

Only the standard library, numpy and ``rknn.api`` are imported: edgeconv is not installed here. The recipe (written
by ``export.py``, kept in the output folder as ``rknn_build/recipe.json``) names, relative to its own folder, the ONNX
the toolkit reads, the ``rknn.config`` arguments, the dataset list (int8), the float16 layers (hybrid quantization)
and the test sample of the per-layer accuracy analysis. Every toolkit call returns 0 or -1; a -1 ends the script with
the step's name and the toolkit's last error lines on stderr (the caller makes that a one-line error, exit 4).

``build`` runs ``config -> load_onnx -> build`` (or, with float16 layers, ``hybrid_quantization_step1 -> the
quantization.cfg edited -> hybrid_quantization_step2``) ``-> export_rknn [-> accuracy_analysis]`` and writes RESULT.

``serve``: the toolkit's simulator cannot run a .rknn read back with ``load_rknn`` ("RKNN model that loaded by
'load_rknn' not support inference on the simulator"), so the model is rebuilt from the same recipe in this process
(same toolkit, ONNX, configuration and dataset), compared with the artifact (size, differing bytes: the compiler
writes host addresses into the file, so two builds are never byte-identical), and ``init_runtime(target=None)`` starts
the simulator. It then answers one JSON line per request on stdin: ``{"input": "in.npz", "output": "out.npz"}`` runs
the inputs (``i0, i1, ...`` in the model's input order) and writes ``o0, o1, ...``; ``{"op": "quit"}`` ends it.
"""

import json
import os
import re
import sys
import time


class StepFailed(Exception):
    pass


def _call(steps, name, fn, *args, **kwargs):
    started = time.perf_counter()
    code = fn(*args, **kwargs)
    steps.append({"step": name, "returncode": code, "seconds": round(time.perf_counter() - started, 3)})
    if code != 0:
        raise StepFailed(f"rknn.{name} returned {code}")


def _load(rk, recipe, steps):
    cfg = dict(recipe["config"])
    _call(steps, "config", rk.config, **cfg)
    kwargs = {}
    if recipe.get("input_size_list"):
        kwargs = {"inputs": recipe["inputs"], "input_size_list": recipe["input_size_list"]}
    _call(steps, "load_onnx", rk.load_onnx, recipe["onnx"], **kwargs)


def _hybrid(rk, recipe, steps, verbose=False):
    """hybrid_quantization_step1 -> custom_quantize_layers in the generated cfg -> step2 (in a new RKNN object, as
    the toolkit requires). Returns the RKNN object and what was kept: a node's own output tensors when the cfg
    lists them, else the first tensor of its consumer chain it lists (the toolkit fused the node into it)."""
    from rknn.api import RKNN

    stem = os.path.splitext(os.path.basename(recipe["onnx"]))[0]
    _call(steps, "hybrid_quantization_step1", rk.hybrid_quantization_step1, dataset=recipe["dataset"])
    cfg_file = f"{stem}.quantization.cfg"
    with open(cfg_file, encoding="utf-8") as f:
        text = f.read()
    known = {k.strip("'\"") for k in re.findall(r"^    (\S.*):\s*$", text, flags=re.M)}
    kept, missing = {}, []
    for node, where in recipe["hybrid"]["nodes"].items():
        hit = [t for t in where["own"] if t in known] or [t for t in where["chain"] if t in known][:1]
        if hit:
            kept[node] = hit
        else:
            missing.append(node)
    block = "custom_quantize_layers:\n" + "".join(
        f"    {json.dumps(t)}: float16\n" for ts in kept.values() for t in ts)
    if "custom_quantize_layers: {}" not in text:
        raise StepFailed(f"{cfg_file} has no empty 'custom_quantize_layers: {{}}' line (another toolkit version?)")
    with open(cfg_file, "w", encoding="utf-8") as f:
        f.write(text.replace("custom_quantize_layers: {}\n", block, 1) if kept else text)
    rk.release()
    rk = RKNN(verbose=verbose)
    _call(steps, "hybrid_quantization_step2", rk.hybrid_quantization_step2, model_input=f"{stem}.model",
          data_input=f"{stem}.data", model_quantization_cfg=cfg_file)
    return rk, {"kept": kept, "not_found": missing, "cfg": cfg_file, "known_tensors": len(known)}


def build(recipe, steps, verbose=False):
    """The model, built as the recipe says, in a new RKNN object: (rk, info). ``verbose``: the toolkit prints its
    debug log, with the operators' placement table, on stdout."""
    from rknn.api import RKNN

    rk = RKNN(verbose=verbose)
    try:
        _load(rk, recipe, steps)
        info = {}
        if recipe.get("hybrid") and recipe["hybrid"].get("nodes"):
            rk, info["hybrid"] = _hybrid(rk, recipe, steps, verbose)
        else:
            _call(steps, "build", rk.build, do_quantization=bool(recipe["quantize"]),
                  dataset=recipe.get("dataset") if recipe["quantize"] else None)
    except BaseException:
        rk.release()
        raise
    return rk, info


def placement(text):
    """The last placement table of the toolkit's verbose build output (``ID OpType DataType Target ... FullName``,
    printed on stdout): one ``{"op", "target", "name"}`` per row (target ``NPU`` or ``CPU``)."""
    tables, rows, inside = [], [], False
    for line in text.splitlines():
        body = line.split("] ", 1)[-1] if line.startswith("D RKNN:") else line.strip()
        if body.startswith("ID ") and "OpType" in body and "Target" in body:
            inside, rows = True, []
            continue
        if not inside:
            continue
        if body.startswith("---"):
            if rows:
                tables.append(rows)
                inside = False
            continue
        parts = body.split()
        if len(parts) >= 5 and parts[0].isdigit():
            rows.append({"op": parts[1], "target": parts[3], "name": parts[-1]})
    return tables[-1] if tables else []


_ROW = re.compile(r"^\[(?P<kind>[^\]]+)\]\s+(?P<name>\S+)\s*(?P<rest>.*)$")


def parse_analysis(text):
    """error_analysis.txt -> rows {layer, kind, entire_cos, entire_euc, single_cos, single_euc} (None when the toolkit
    printed no value: a layer fused into the next one)."""
    rows = []
    for line in text.splitlines():
        m = _ROW.match(line.strip())
        if not m:
            continue
        nums = re.findall(r"[-+]?(?:\d+\.\d*|\d+|inf|nan)", m.group("rest"))
        vals = [float(v) for v in nums[:4]] + [None] * (4 - len(nums[:4]))
        rows.append({"layer": m.group("name"), "kind": m.group("kind"), "entire_cos": vals[0], "entire_euc": vals[1],
                     "single_cos": vals[2], "single_euc": vals[3]})
    return rows


def cmd_build(recipe_path, result_path):
    with open(recipe_path, encoding="utf-8") as f:
        recipe = json.load(f)
    os.chdir(os.path.dirname(os.path.abspath(recipe_path)))
    steps = []
    result = {"ok": False, "steps": steps}
    rk = None
    try:
        rk, info = build(recipe, steps, verbose=True)
        result.update(info)
        _call(steps, "export_rknn", rk.export_rknn, recipe["rknn"])
        analysis = recipe.get("analysis")
        if analysis:
            try:
                _call(steps, "accuracy_analysis", rk.accuracy_analysis, inputs=analysis["inputs"],
                      output_dir=analysis["output_dir"], target=None)
                with open(os.path.join(analysis["output_dir"], "error_analysis.txt"), encoding="utf-8") as f:
                    result["analysis"] = {"rows": parse_analysis(f.read())}
            except (StepFailed, OSError) as exc:  # the artifact stands; the analysis is a diagnostic
                result["analysis"] = {"error": str(exc)}
        result["ok"] = True
    except StepFailed as exc:
        result["error"] = str(exc)
    finally:
        if rk is not None:
            rk.release()
    result["toolkit"] = _version()
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    return 0 if result["ok"] else 1


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rknn-toolkit2")
    except PackageNotFoundError:
        return "unknown"


def compare_files(a, b):
    import numpy as np

    x, y = np.fromfile(a, dtype=np.uint8), np.fromfile(b, dtype=np.uint8)
    diff = int((x != y).sum()) if len(x) == len(y) else None
    return {"size": len(x), "artifact_size": len(y), "same_size": len(x) == len(y), "differing_bytes": diff}


def rebuild(recipe, artifact, work, steps):
    """The model built again from the recipe in this process (the simulator runs nothing else), exported and compared
    with the artifact: (rk, comparison)."""
    rk, _info = build(dict(recipe, analysis=None), steps)
    rebuilt = os.path.join(work, "rebuilt.rknn")
    try:
        _call(steps, "export_rknn", rk.export_rknn, rebuilt)
    except BaseException:
        rk.release()
        raise
    return rk, compare_files(rebuilt, artifact)


def cmd_serve(recipe_path, artifact):
    import shutil
    import tempfile

    import numpy as np

    proto = os.fdopen(os.dup(1), "w")  # the protocol gets the original stdout; the toolkit's prints go to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with open(recipe_path, encoding="utf-8") as f:
        recipe = json.load(f)
    artifact = os.path.abspath(artifact)
    here = os.getcwd()  # the runner's scratch folder: request files are relative to it
    # rebuilt in a copy of the recipe's folder: the hybrid steps write files beside the ONNX, never in the output
    work = tempfile.mkdtemp(prefix="edgeconv-rknn-sim-")
    shutil.copytree(os.path.dirname(os.path.abspath(recipe_path)), os.path.join(work, "recipe"))
    os.chdir(os.path.join(work, "recipe"))
    steps = []
    try:
        rk, same = rebuild(recipe, artifact, work, steps)
        _call(steps, "init_runtime", rk.init_runtime, target=None)
    except (StepFailed, OSError) as exc:
        proto.write(json.dumps({"ready": False, "error": str(exc), "steps": steps}) + "\n")
        proto.flush()
        return 1
    proto.write(json.dumps({"ready": True, "pid": os.getpid(), "toolkit": _version(), "rebuilt": same,
                            "steps": steps}) + "\n")
    proto.flush()
    formats = recipe.get("input_formats") or []
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        if req.get("op") == "quit":
            break
        started = time.perf_counter()
        try:
            with np.load(os.path.join(here, req["input"])) as data:
                inputs = [data[f"i{i}"] for i in range(len(data.files))]
            fmt = [f or None for f in formats] if formats and any(formats) else None
            outs = rk.inference(inputs=inputs, data_format=fmt)
            if outs is None:
                raise RuntimeError("rknn.inference returned None (see the simulator's log)")
            np.savez(os.path.join(here, req["output"]), **{f"o{i}": np.asarray(o) for i, o in enumerate(outs)})
            reply = {"ok": True, "n": len(outs), "seconds": round(time.perf_counter() - started, 6)}
        except Exception as exc:  # noqa: BLE001 - reported to the runner
            reply = {"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
        proto.write(json.dumps(reply) + "\n")
        proto.flush()
    rk.release()
    shutil.rmtree(work, ignore_errors=True)
    return 0


def cmd_trace(recipe_path, artifact, request_path):
    """The model rebuilt as ``serve`` does, then ``accuracy_analysis(target=None)`` once per sample of the request
    (``{"samples": [[.npy per input], ...], "result": "trace.json"}``, relative to the request's folder), each into
    its own ``a<i>/`` there: the simulator's dump of every tensor is left for the caller (``trace.py``) to read."""
    import shutil
    import tempfile

    here = os.path.dirname(os.path.abspath(request_path))
    with open(request_path, encoding="utf-8") as f:
        req = json.load(f)
    with open(recipe_path, encoding="utf-8") as f:
        recipe = json.load(f)
    artifact = os.path.abspath(artifact)
    work = tempfile.mkdtemp(prefix="edgeconv-rknn-trace-")
    shutil.copytree(os.path.dirname(os.path.abspath(recipe_path)), os.path.join(work, "recipe"))
    os.chdir(os.path.join(work, "recipe"))
    steps = []
    result = {"ok": False, "steps": steps, "toolkit": _version(), "samples": []}
    rk = None
    try:
        rk, result["rebuilt"] = rebuild(recipe, artifact, work, steps)
        if not result["rebuilt"]["same_size"]:
            raise StepFailed(f"the model rebuilt from the recipe ({result['rebuilt']['size']} bytes) is not the "
                             f"artifact ({result['rebuilt']['artifact_size']} bytes): another toolkit, or a changed "
                             "recipe")
        for i, files in enumerate(req["samples"]):
            out = os.path.join(here, f"a{i}")
            _call(steps, "accuracy_analysis", rk.accuracy_analysis, inputs=[os.path.join(here, f) for f in files],
                  output_dir=out, target=None)
            # only the simulator's .npy and the two tables are read: the golden run and the text copies go
            shutil.rmtree(os.path.join(out, "golden"), ignore_errors=True)
            sim = os.path.join(out, "simulator")
            for name in os.listdir(sim) if os.path.isdir(sim) else ():
                if name.endswith(".txt"):
                    os.unlink(os.path.join(sim, name))
            result["samples"].append(f"a{i}")
            print(f"edgeconv: sample {i} analysed", flush=True)
        result["ok"] = True
    except (StepFailed, OSError) as exc:
        result["error"] = str(exc)
    finally:
        if rk is not None:
            rk.release()
        os.chdir(here)
        shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(here, req["result"]), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    return 0 if result["ok"] else 1


USAGE = ("usage: python bridge.py build RECIPE.json RESULT.json | serve RECIPE.json ARTIFACT.rknn | "
         "trace RECIPE.json ARTIFACT.rknn REQUEST.json")


def main(argv):
    commands = {"build": (cmd_build, 3), "serve": (cmd_serve, 3), "trace": (cmd_trace, 4)}
    if not argv or argv[0] not in commands or len(argv) != commands[argv[0]][1]:
        print(USAGE, file=sys.stderr)
        return 2
    return commands[argv[0]][0](*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
