"""Helpers shared by the Ascend plugin tests (import after putting this folder on sys.path).

Nothing here is Huawei software. ``fake_atc`` is a STAND-IN for ATC: a small Python script the tests write into a
temporary folder, name ``atc`` and put first on PATH. It records every argument list it receives and writes a
placeholder ".om" (a byte copy of the ONNX it was given, plus a ``.fake_atc.json`` sidecar). It compiles nothing:
it exists so that the plugin's command line, process handling, logs and output folder can be tested; no test and
no document counts it as an ATC conversion. Likewise the stand-in ``ais_bench`` package runs the placeholder with
onnxruntime on the CPU, after emulating AIPP from the documented formulas -- it is not an NPU.
"""

from __future__ import annotations

import json
import stat
import sys
import textwrap
from pathlib import Path

import numpy as np

FAKE_ATC = r'''
"""fake_atc: a stand-in for Huawei's ATC written by edgeconv's tests (see ascend_testutil.py). Not ATC."""
import json, os, shutil, sys

args = sys.argv[1:]
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "fake_atc_calls.jsonl"), "a", encoding="utf-8") as f:
    f.write(json.dumps(args) + "\n")
opts = {}
for a in args:
    if a.startswith("--"):
        key, _, value = a[2:].partition("=")
        opts[key] = value
print("ATC start working now, please wait for a moment.")
if opts.get("mode") == "3":
    bad = os.environ.get("FAKE_ATC_PRECHECK_FAIL", "")
    ops = [{"name": "conv", "type": "Conv", "result": "success"}]
    if bad:
        name, kind = bad.split(":")
        ops.append({"name": name, "type": kind, "result": "failed", "reason": "not supported (fake_atc says so)"})
    with open(opts.get("check_report") or "check_result.json", "w", encoding="utf-8") as f:
        json.dump({"model_name": "m", "op": ops}, f)
    print("ATC run success, welcome to the next use.")
    sys.exit(0)
fail = os.environ.get("FAKE_ATC_FAIL", "")
if fail:
    print("ATC run failed, Please check the detail log, Try 'atc --help' for more information")
    print(fail + ": No parser is registered for Op [Conv_52, optype [ai.onnx::11::Convx]].")
    print("        Solution: Check the version of the installation package and reinstall the package.")
    print("        TraceBack (most recent call last):")
    print("        Model parse to graph failed, graph name:g.[FUNC:ModelParseToGraph][FILE:onnx_parser.cc][LINE:905]")
    sys.exit(1)
shutil.copyfile(opts["model"], opts["output"] + ".om")
aipp = None
if opts.get("insert_op_conf"):
    with open(opts["insert_op_conf"], encoding="utf-8") as f:
        aipp = f.read()
with open(opts["output"] + ".fake_atc.json", "w", encoding="utf-8") as f:
    json.dump({"argv": args, "aipp": aipp, "note": "placeholder written by fake_atc, a test stand-in"}, f)
print("ATC run success, welcome to the next use.")
'''


def write_fake_atc(bindir: Path) -> Path:
    path = bindir / "atc"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(FAKE_ATC))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_atc_calls(script: Path) -> list[list[str]]:
    f = script.parent / "fake_atc_calls.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


# -- AIPP emulation (from the CANN documentation's formulas; used by the tests and the stand-in ais_bench) -----------
def parse_aipp(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if ":" in line and not line.startswith("#") and not line.endswith("{"):
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    return out


def emulate_aipp(buf: np.ndarray, cfg: dict[str, str], layout: str = "NCHW") -> np.ndarray:
    """What AIPP does on the NPU, per the docs: crop -> CSC / swap -> (pixel - mean - min) * var_reci."""
    fmt = cfg["input_format"]
    w, h = int(cfg["src_image_size_w"]), int(cfg["src_image_size_h"])
    n = buf.shape[0]
    if fmt == "RGB888_U8":
        img = buf.reshape(n, h, w, 3).astype(np.float64)
    elif fmt == "YUV400_U8":
        img = buf.reshape(n, h, w, 1).astype(np.float64)
    elif fmt == "YUV420SP_U8":
        y = buf[:, :h, :].astype(np.float64)
        uv = buf[:, h:, :].reshape(n, h // 2, w // 2, 2).astype(np.float64)
        uv = uv.repeat(2, axis=1).repeat(2, axis=2)
        img = np.concatenate([y[..., None], uv], axis=-1)
    else:
        raise ValueError(fmt)
    if cfg.get("crop") == "true":
        x0, y0 = int(cfg["load_start_pos_w"]), int(cfg["load_start_pos_h"])
        cw, ch = int(cfg["crop_size_w"]), int(cfg["crop_size_h"])
        img = img[:, y0:y0 + ch, x0:x0 + cw]
    swap = cfg.get("rbuv_swap_switch") == "true"
    if cfg.get("csc_switch") == "true":
        if swap:
            img = img[..., [0, 2, 1]]
        m = np.array([[float(cfg[f"matrix_r{r}c{c}"]) for c in range(3)] for r in range(3)])
        bias = np.array([float(cfg[f"input_bias_{i}"]) for i in range(3)])
        img = np.clip(np.floor(((img - bias) @ m.T) / 256.0), 0, 255)
    elif swap:
        img = img[..., ::-1]
    channels = img.shape[-1]
    for i in range(channels):
        mean = float(cfg.get(f"mean_chn_{i}", 0))
        mn = float(cfg.get(f"min_chn_{i}", 0))
        var = float(cfg.get(f"var_reci_chn_{i}", 1))
        img[..., i] = (img[..., i] - mean - mn) * var
    img = img.astype(np.float32)
    return img.transpose(0, 3, 1, 2) if layout == "NCHW" else img


# -- the stand-in ais_bench package --------------------------------------------------------------------------------
_COMMON = r'''
"""Stand-in for Huawei's ais_bench, written by edgeconv's tests: runs the fake_atc placeholder (.om = ONNX bytes)
with onnxruntime on the CPU after emulating AIPP. Not ais_bench, not an NPU."""
import json, os, sys
import numpy as np
import onnxruntime as ort
sys.path.insert(0, os.environ["ASCEND_TESTUTIL_DIR"])
from ascend_testutil import emulate_aipp, parse_aipp

def log(entry):
    path = os.environ.get("AIS_BENCH_STANDIN_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

class Session:
    def __init__(self, model_path):
        self.sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        side = model_path[:-3] + ".fake_atc.json"
        self.cfg = None
        if os.path.exists(side):
            aipp = json.load(open(side, encoding="utf-8")).get("aipp")
            self.cfg = parse_aipp(aipp) if aipp else None

    def run(self, arrays):
        inputs = self.sess.get_inputs()
        feed = {}
        for i, (meta, x) in enumerate(zip(inputs, arrays)):
            if i == 0 and self.cfg:
                layout = "NCHW" if meta.shape[1] in (1, 3) else "NHWC"
                x = emulate_aipp(np.asarray(x), self.cfg, layout)
            feed[meta.name] = np.asarray(x).astype(np.float32) if "float" in meta.type else np.asarray(x)
        return self.sess.run(None, feed)
'''

_INTERFACE = r'''
from ais_bench._standin import Session, log

class _Meta:
    def __init__(self, name):
        self.name = name

class InferSession:
    def __init__(self, device_id, model_path, acl_json_path=None, debug=False, loop=1):
        log({"call": "InferSession", "device_id": device_id, "model_path": model_path})
        self._s = Session(model_path)

    def get_inputs(self):
        return [_Meta(i.name) for i in self._s.sess.get_inputs()]

    def get_outputs(self):
        return [_Meta(o.name) for o in self._s.sess.get_outputs()]

    def set_dynamic_batchsize(self, dym_batch):
        log({"call": "set_dynamic_batchsize", "value": dym_batch})

    def set_dynamic_hw(self, w, h):
        log({"call": "set_dynamic_hw", "w": w, "h": h})

    def infer(self, feeds, mode="static", custom_sizes=100000):
        log({"call": "infer", "mode": mode, "shapes": [list(x.shape) for x in feeds],
             "dtypes": [str(x.dtype) for x in feeds]})
        return self._s.run(feeds)

    def finalize(self):
        log({"call": "finalize"})
'''

_MAIN = r'''
import argparse, os, sys
import numpy as np
from ais_bench._standin import Session, log

p = argparse.ArgumentParser()
for name in ("--model", "--input", "--output", "--output_dirname", "--outfmt", "--device", "--loop",
             "--warmup_count", "--dymBatch", "--dymHW", "--dymDims"):
    p.add_argument(name)
a = p.parse_args()
log({"call": "cli", "argv": sys.argv[1:]})
files = a.input.split(",")
outs = Session(a.model).run([np.load(f) for f in files])
out_dir = os.path.join(a.output, a.output_dirname)
os.makedirs(out_dir, exist_ok=True)
stem = os.path.basename(files[0]).split(".")[0]
for i, y in enumerate(outs):
    np.save(os.path.join(out_dir, f"{stem}_{i}.npy"), y)
'''


def write_standin_ais_bench(root: Path) -> Path:
    pkg = root / "ais_bench"
    (pkg / "infer").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Stand-in for ais_bench (edgeconv tests). Not Huawei software."""\n')
    (pkg / "_standin.py").write_text(_COMMON)
    (pkg / "__main__.py").write_text(_MAIN)
    (pkg / "infer" / "__init__.py").write_text("")
    (pkg / "infer" / "interface.py").write_text(_INTERFACE)
    return pkg


def rgb_model(*, opset: int = 17, batch=1, hw: int = 8, seed: int = 0):
    """Conv(3->4) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(->5): a small RGB image model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "b"),
             numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32) * 0.1, "fc_b")]
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["scores"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "rgb", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                           [batch, 3, hw, hw])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgeconv-ascend-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
