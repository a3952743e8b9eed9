"""Runs *inside* the sophon toolchain environment (Python 3.10, tpu-mlir): a long-lived model_runner.

    python bridge.py MODEL.bmodel [--per-call]

The runner copies this file and the bmodel into its own temporary folder (model_runner writes a bmrt_test context
folder beside the bmodel it runs) and starts it with the environment's Python. It answers one JSON line per request
on stdin: ``{"input": "in.npz", "output": "out.npz"}`` runs the bmodel in tpu-mlir's cmodel simulator and writes the
outputs, in the bmodel's order, as ``o0, o1, ...`` with their names in the reply ``{"ok": true, "names": [...]}``;
``{"op": "quit"}`` ends it.

By default the bmodel is loaded once (``Session``: the steps of ``tools.model_runner._model_inference`` for a
static bmodel -- bind the chip's cmodel library, ``pyruntime_bm.Model``, ``lowering`` of each input,
``forward_dynamic``, outputs back to float32 -- with the model kept between calls); ``--per-call`` calls
``model_runner.model_inference`` itself for every request (what ``model_runner.py --model X.bmodel`` does: it loads
the bmodel every time, ~0.5 s). The toolchain test checks that both give the same outputs. Only the standard library,
numpy and tpu_mlir are imported: edgeconv is not installed here.
"""

import json
import os
import sys
import time

_MARK = "EDGECONV_SOPHON_BRIDGE"


class Session:
    """A bmodel loaded once in the cmodel (model_runner's bmodel path, the model kept between calls)."""

    def __init__(self, bmodel: str) -> None:
        import importlib
        import subprocess

        from tools import model_runner as mr

        def model_tool(flag: str) -> str:
            return subprocess.run(["model_tool", flag, bmodel], capture_output=True, text=True, check=True).stdout

        chip = model_tool("--chip").strip()
        is_rvti = model_tool("--kernel_mode").strip() == "1"
        name = "pyruntime_tpuv7" if chip in ("BM1690", "SG2262", "BM1690E") else "pyruntime_bm"
        with mr.FileLock("/tmp/cmodel_so.lock"):
            mr.link_cmodel_so(chip, is_rvti)
            mr.link_custom_so(chip)
            mr.link_bmlib_so(chip)
            lib = importlib.import_module(name)
            mr.bind_cmodel_so(chip, is_rvti)
        self.chip = chip
        self.model = lib.Model(bmodel, 0, "")
        self.net = self.model.Net(self.model.networks[0])
        self.lowering = mr.lowering
        self.bf16_to_fp32 = mr.bf16_to_fp32

    def run(self, inputs):
        import numpy as np

        net = self.net
        only_one = len(inputs) == 1
        if only_one and len(net.inputs) != 1:
            raise RuntimeError(f"the bmodel has {len(net.inputs)} inputs, the request 1")
        shapes = []
        for i in net.inputs:
            x = list(inputs.values())[0] if only_one else inputs[i.name]
            if int(np.prod(i.data.shape)) < int(np.prod(x.shape)):
                raise RuntimeError(f"input {i.name}: {list(x.shape)} is larger than the bmodel's {list(i.data.shape)}")
            shapes.append(x.shape if int(np.prod(i.data.shape)) > int(np.prod(x.shape)) else i.data.shape)
            if list(x.shape) == []:
                i.data[0] = x
            else:
                i.data.reshape(-1)[:int(np.prod(x.shape))] = self.lowering(
                    x, pdtype=i.dtype, pshape=x.shape, pzero_point=i.qzero_point, pscale=i.qscale).flatten()
        dyn = net.forward_dynamic(shapes)
        out = {}
        for k, o in enumerate(net.outputs):
            if o.data.dtype in (np.int8, np.uint8) and o.qscale != 0:
                y = (o.data.astype(np.float32) - o.qzero_point) * np.float32(o.qscale)
            elif o.dtype in ("u16", "f16"):
                y = o.data.astype(np.float32)
            elif o.dtype == "bf16":
                y = self.bf16_to_fp32(o.data)
            else:
                y = np.array(o.data)
            if list(y.shape) != list(dyn[k]):
                y = y.flatten()[: int(np.prod(dyn[k]))].reshape(*dyn[k])
            out[o.name] = np.array(y, copy=True)
        return out


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--per-call"]
    per_call = "--per-call" in sys.argv[1:]
    if len(args) != 1:
        print("usage: python bridge.py MODEL.bmodel [--per-call]", file=sys.stderr)
        return 2
    bmodel = os.path.abspath(args[0])
    if os.environ.get(_MARK) != "1":
        # tpu_mlir sets LD_LIBRARY_PATH (the cmodel libraries), which the loader reads only when a process starts.
        import tpu_mlir  # noqa: F401

        os.environ[_MARK] = "1"
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]])
    # The protocol gets the original stdout; everything tpu-mlir prints (Python or C) goes to stderr.
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        import numpy as np
        import tpu_mlir  # noqa: F401
        from tools.model_runner import model_inference

        session = None if per_call else Session(bmodel)
    except Exception as exc:  # noqa: BLE001 - reported to the runner, which makes it a one-line error
        proto.write(json.dumps({"ready": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        proto.flush()
        return 1
    proto.write(json.dumps({"ready": True, "pid": os.getpid(), "mode": "per-call" if per_call else "session",
                            "chip": getattr(session, "chip", None)}) + "\n")
    proto.flush()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        if req.get("op") == "quit":
            break
        started = time.perf_counter()
        try:
            with np.load(req["input"]) as data:
                inputs = {k: data[k] for k in data.files}
            res = model_inference(inputs, bmodel, dump_all=False) if per_call else session.run(inputs)
            names = list(res)
            np.savez(req["output"], **{f"o{i}": np.asarray(res[n]) for i, n in enumerate(names)})
            reply = {"ok": True, "names": names, "seconds": round(time.perf_counter() - started, 6)}
        except Exception as exc:  # noqa: BLE001
            reply = {"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
        proto.write(json.dumps(reply) + "\n")
        proto.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
