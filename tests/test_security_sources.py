"""Issue 16, classes 1-3 (and 15 for these sources): a model file is data, not code.

Every malicious artifact is built here, from a real export, and each one's payload would create a marker
file. For each: no marker (nothing ran), exit 2 with one line naming the file and the offending
global / operator / op, and the trust flag (``--trust-pickle`` / ``--trust-code``) gives back the old
behaviour (the payload runs: proof that the refusal, not a broken artifact, is what stopped it).
Legitimate models of every kind still load.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Tuple  # noqa: UP035 (TorchScript annotations)

import pytest
import torch

from edgeconv.testing import refnets

DIGITS_SHAPE = ["--input-shape", "input:1,1,8,8"]


def one_line_error(res: Any, *needles: str) -> str:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy a zip archive entry by entry; ``edit(name, data)`` returns the new bytes (None drops the entry)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info, data)
    return dst


class OpenForWriting:
    """Unpickling this calls open(marker, "w"): the file appears if and only if the pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def torch_save_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def edit_model_json(change):
    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("models/model.json"):
            doc = json.loads(data)
            change(doc)
            return json.dumps(doc).encode()
        return data

    return edit


def replace_expr_strs(doc: Any, payload: str) -> None:
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "expr_str":
                doc[key] = f"{payload} or {value}"
            else:
                replace_expr_strs(value, payload)
    elif isinstance(doc, list):
        for value in doc:
            replace_expr_strs(value, payload)


def setstate_archive(tmp: Path, marker: Path) -> Path:
    """A scripted module whose __setstate__ (run by torch.jit.load itself) maps ``marker`` with shared=True,
    which creates it: a file written by a plain ``edgeconv inspect``."""

    class Evil(torch.nn.Module):
        def __init__(self, p: str) -> None:
            super().__init__()
            self.p = p
            self.n = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1

        @torch.jit.export
        def __getstate__(self) -> Tuple[str, bool, int]:  # noqa: UP006
            return (self.p, self.training, self.n)

        @torch.jit.export
        def __setstate__(self, state: Tuple[str, bool, int]) -> None:  # noqa: UP006
            self.p = state[0]
            self.training = state[1]
            self.n = torch.from_file(self.p, True, 4).numel()

    path = tmp / "evil_setstate.pt"
    torch.jit.save(torch.jit.script(Evil(str(marker))), path)
    return path


# -- class 1: .pt2 (ExportedProgram) ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pt2(tmp_path_factory):
    d = tmp_path_factory.mktemp("pt2")
    model, x = refnets.build("digits")
    torch.export.save(torch.export.export(model, (x,)), d / "digits.pt2")
    batch = torch.export.Dim("batch", min=1, max=8)
    torch.export.save(torch.export.export(model, (torch.randn(2, 1, 8, 8),), dynamic_shapes=({0: batch},)),
                      d / "digits_dyn.pt2")
    return d


def _pt2_sample_inputs(d: Path, marker: Path) -> Path:
    # torch.export.load reads these with weights_only=True and, when that fails, again with weights_only=False
    return rewrite(d / "digits.pt2", d / "evil_inputs.pt2", lambda n, b: torch_save_bytes(OpenForWriting(marker))
                   if n.endswith("data/sample_inputs/model.pt") else b)


def _pt2_pickled_weight(d: Path, marker: Path) -> Path:
    def edit(name: str, data: bytes) -> bytes:  # the payload config says weight_0 is pickled: torch.load(weights_only=False)
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            return json.dumps(config).encode()
        return torch_save_bytes(OpenForWriting(marker)) if name.endswith("data/weights/weight_0") else data

    return rewrite(d / "digits.pt2", d / "evil_weight.pt2", edit)


def _pt2_torchscript_inputs(d: Path, marker: Path) -> Path:
    # torch.load hands a zip holding constants.pkl to torch.jit.load, which runs __setstate__
    blob = setstate_archive(d, marker).read_bytes()
    return rewrite(d / "digits.pt2", d / "evil_ts_inputs.pt2",
                   lambda n, b: blob if n.endswith("data/sample_inputs/model.pt") else b)


def _pt2_sympy_shape(d: Path, marker: Path) -> Path:
    # symbolic shapes are parsed with sympy.sympify, which eval()s them
    payload = f"__import__('pathlib').Path('{marker}').touch()"
    return rewrite(d / "digits_dyn.pt2", d / "evil_shape.pt2",
                   edit_model_json(lambda doc: replace_expr_strs(doc, payload)))


def _pt2_guard(d: Path, marker: Path) -> Path:
    # guards_code becomes Python source that ExportedProgram.module() exec()s and every call runs
    payload = f"__import__('pathlib').Path('{marker}').touch() is None"
    return rewrite(d / "digits.pt2", d / "evil_guard.pt2",
                   edit_model_json(lambda doc: doc.__setitem__("guards_code", [payload])))


PT2_CASES = {
    "sample-inputs-pickle": (_pt2_sample_inputs, ["data/sample_inputs/model.pt", "io.open"], "--trust-pickle"),
    "pickled-weight": (_pt2_pickled_weight, ["data/weights/weight_0", "io.open"], "--trust-pickle"),
    "torchscript-in-pickle": (_pt2_torchscript_inputs, ["data/sample_inputs/model.pt", "TorchScript"],
                              "--trust-pickle"),
    "sympy-shape": (_pt2_sympy_shape, ["models/model.json", "symbolic shape", "__import__"], "--trust-code"),
    "guard-code": (_pt2_guard, ["models/model.json", "guard", "__import__"], "--trust-code"),
}


@pytest.mark.parametrize("case", list(PT2_CASES))
def test_pt2_payload_is_refused_before_torch_runs_it(pt2, tmp_path, cli, case):
    build, needles, flag = PT2_CASES[case]
    marker = tmp_path / "pwned"
    evil = build(pt2, marker)
    line = one_line_error(cli("inspect", str(evil)), str(evil), *needles, flag)
    assert not marker.exists(), f"the payload ran: {line}"
    res = cli("convert", str(evil), "-o", str(tmp_path / "out"), "--runs", "2", "--no-memory")
    one_line_error(res, str(evil), *needles)
    assert not marker.exists() and not (tmp_path / "out").exists()
    cli("inspect", str(evil), flag)  # the flag gives back today's behaviour: torch runs the payload
    assert marker.exists(), f"{flag} did not restore torch's own loading"


def test_pt2_graph_target_outside_the_operators_is_refused(pt2, cli):
    def add_node(doc: dict) -> None:  # torch resolves any torch.* attribute path: torch.serialization.os.system
        doc["graph_module"]["graph"]["nodes"].insert(0, {
            "target": "torch.serialization.os.system", "outputs": [], "metadata": {},
            "inputs": [{"name": "command", "arg": {"as_string": "true"}, "kind": 1}]})

    evil = rewrite(pt2 / "digits.pt2", pt2 / "evil_target.pt2", edit_model_json(add_node))
    one_line_error(cli("inspect", str(evil)), str(evil), "torch.serialization.os.system", "--trust-code")


def test_pt2_compiled_code_is_refused(pt2, cli):
    evil = rewrite(pt2 / "digits.pt2", pt2 / "evil_aoti.pt2", lambda name, data: data)
    with zipfile.ZipFile(evil, "a") as z:
        z.writestr("digits/data/aotinductor/model/model.so", b"\x7fELF not really")
    one_line_error(cli("inspect", str(evil)), str(evil), "data/aotinductor/model/model.so", "--trust-code")


def test_legitimate_pt2_load_quietly(pt2, cli):
    for name in ("digits.pt2", "digits_dyn.pt2"):
        res = cli("inspect", str(pt2 / name), "--json")
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["form"] == "torch" and res.stderr == ""


# -- class 2: TorchScript --------------------------------------------------------------------------------------
def test_torchscript_that_writes_a_file_while_loading_is_refused(tmp_path, cli):
    marker = tmp_path / "pwned"
    evil = setstate_archive(tmp_path, marker)
    line = one_line_error(cli("inspect", str(evil), "--input-shape", "x:1,4"), str(evil), "from_file", "--trust-code")
    assert not marker.exists(), f"the archive's code ran: {line}"
    one_line_error(cli("convert", str(evil), "--input-shape", "x:1,4", "-o", str(tmp_path / "o")), str(evil))
    assert not marker.exists() and not (tmp_path / "o").exists()
    cli("inspect", str(evil), "--input-shape", "x:1,4", "--trust-code")
    assert marker.exists(), "--trust-code did not restore torch.jit.load"


def _edit_code(src: Path, dst: Path, old: str, new: str) -> Path:
    def edit(name: str, data: bytes) -> bytes:
        if name.endswith(".py") and old.encode() in data:
            return data.replace(old.encode(), new.encode(), 1)
        return data

    out = rewrite(src, dst, edit)
    assert out.read_bytes() != src.read_bytes()
    return out


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    d = tmp_path_factory.mktemp("ts")
    model, x = refnets.build("digits")
    torch.jit.save(torch.jit.script(model), d / "digits.pt")
    return d


@pytest.mark.parametrize(("old", "new", "needle"), [
    ("torch.relu(", "ops.mylib.relu(", "mylib::relu"),                 # a custom library's operator
    ("torch.relu(", "print(", "print"),                                # writes to the terminal
    ("torch.relu(", "ops.prim.PythonOp(", "PythonOp"),                 # Python code
    ("torch.relu(", "torch.save(", "save"),                            # aten::save writes a file
], ids=["custom-namespace", "print", "python-op", "save"])
def test_torchscript_code_outside_the_allow_list_is_refused(scripted, tmp_path, cli, old, new, needle):
    src = scripted / "digits.pt"
    with zipfile.ZipFile(src) as z:
        assert any(old.encode() in z.read(n) for n in z.namelist() if n.endswith(".py")), "the fixture changed"
    evil = _edit_code(src, tmp_path / "edited.pt", old, new)
    one_line_error(cli("inspect", str(evil), *DIGITS_SHAPE), str(evil), needle, "--trust-code")


def test_torchscript_scanner_does_not_trust_text_inside_strings():
    """TorchScript's lexer is not Python's: an operator name is refused wherever it appears in the source."""
    from edgeconv.builtins.pickle_scan import Refused
    from edgeconv.builtins.torchscript_scan import _check_source

    for src in ('def f(x: Tensor) -> Tensor:\n  _0 = "torch.from_file(p, True, 4)"\n  return x\n',
                "def f(x: Tensor) -> Tensor:\n  # ops.mylib.run(x)\n  return x\n",
                "def f(x: Tensor) -> Tensor:\n  return (x).from_file(x)\n"):
        with pytest.raises(Refused):
            _check_source(src, "code/__torch__.py")
    _check_source("def f(x: Tensor) -> Tensor:\n  _0 = \"relu of {}\"\n  return torch.relu(x)\n", "code/x.py")


def test_normal_torchscript_models_still_load(tmp_path, cli):
    import torch.nn as nn

    from edgeconv.builtins.torchscript_scan import check_torchscript

    class Misc(nn.Module):  # scripted torch.nn: LSTM, attention, interpolate, layer norm
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(8, 16, batch_first=True)
            self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
            self.ln = nn.LayerNorm(16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y, _ = self.lstm(x)
            y, _ = self.mha(y, y, y)
            return nn.functional.interpolate(self.ln(y).unsqueeze(1), scale_factor=2.0).mean()

    quantized = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)),
                                                      {nn.Linear}, dtype=torch.qint8)
    archives = {"misc_s.pt": torch.jit.script(Misc().eval()), "qdyn_s.pt": torch.jit.script(quantized)}
    for name in refnets.NAMES:
        model, x = refnets.build(name)
        archives[f"{name}_s.pt"] = torch.jit.script(model)
        archives[f"{name}_t.pt"] = torch.jit.trace(model, x)
    for name, module in archives.items():
        torch.jit.save(module, tmp_path / name)
        check_torchscript(tmp_path / name)  # raises on a refusal
    res = cli("inspect", str(tmp_path / "resnet18_s.pt"), "--input-shape", "input:1,3,224,224", "--json")
    assert res.exit_code == 0 and res.stderr == "", res.output
    assert json.loads(res.stdout)["io"]["outputs"][0]["shape"] == [1, 1000]


# -- class 3: TensorFlow SavedModel ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    d = tmp_path_factory.mktemp("tf")
    spec = tf.TensorSpec([None, 4], tf.float32, name="x")

    def save(module: Any, name: str) -> Path:
        tf.saved_model.save(module, str(d / name), signatures={"serving_default": module.__call__})
        return d / name

    class WithVariables(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(tf.ones((4, 3)))

        @tf.function(input_signature=[spec])
        def __call__(self, x):
            return {"y": tf.matmul(x, self.w)}

    class Initializer(tf.saved_model.experimental.TrackableResource):
        """A resource whose initializer, run by tf.saved_model.load itself, writes the marker file."""

        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="edgeconv_test")

        def _initialize(self):
            tf.io.write_file(str(d / "pwned_init"), "code ran")

    class WritesOnLoad(tf.Module):
        def __init__(self) -> None:
            self.r = Initializer()

        @tf.function(input_signature=[spec])
        def __call__(self, x):
            return {"y": x * 2}

    class WritesWhenServing(tf.Module):
        @tf.function(input_signature=[spec])
        def __call__(self, x):
            tf.io.write_file(str(d / "pwned_call"), "code ran")
            return {"y": x * 2}

    class SavesToAPath(tf.Module):
        @tf.function(input_signature=[spec])
        def __call__(self, x):
            tf.raw_ops.SaveV2(prefix=tf.constant(str(d / "pwned_save")), tensor_names=["x"], shape_and_slices=[""],
                              tensors=[x])
            return {"y": x * 2}

    @tf.function
    def save_to(prefix, x):
        tf.raw_ops.SaveV2(prefix=prefix, tensor_names=["x"], shape_and_slices=[""], tensors=[x])
        return x

    class SavesThroughACall(tf.Module):
        @tf.function(input_signature=[spec])
        def __call__(self, x):
            return {"y": save_to(tf.constant(str(d / "pwned_save2")), x) * 2}

    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((10, 8), name="seq")
    out = keras.layers.Dense(3)(keras.layers.GRU(8)(keras.layers.Conv1D(4, 3)(inp)))
    keras.Model(inp, out).export(str(d / "keras"), verbose=False)
    return {"variables": save(WithVariables(), "variables"), "keras": d / "keras",
            "init": save(WritesOnLoad(), "init"), "call": save(WritesWhenServing(), "call"),
            "save": save(SavesToAPath(), "save"), "save2": save(SavesThroughACall(), "save2")}


def test_savedmodel_initializer_that_writes_a_file_is_refused(saved_models, cli):
    path = saved_models["init"]
    marker = path.parent / "pwned_init"
    line = one_line_error(cli("inspect", str(path)), str(path), "WriteFile", "__inference__initializer", "--trust-code")
    assert not marker.exists(), f"the initializer ran: {line}"
    cli("inspect", str(path), "--trust-code")
    assert marker.exists(), "--trust-code did not restore tf.saved_model.load"


@pytest.mark.parametrize(("case", "needles"), [
    ("call", ["WriteFile", "__call__"]),
    ("save", ["SaveV2", "Const"]),              # a checkpoint written at a path the file chose
    ("save2", ["StatefulPartitionedCall", "Const"]),  # ... through a function call
])
def test_savedmodel_file_ops_in_the_signature_are_refused(saved_models, tmp_path, cli, case, needles):
    path = saved_models[case]
    marker = {"call": "pwned_call", "save": "pwned_save", "save2": "pwned_save2"}[case]
    res = cli("convert", str(path), "-o", str(tmp_path / "o"), "--runs", "2", "--no-memory")
    one_line_error(res, str(path), *needles, "--trust-code")
    assert not list(path.parent.glob(marker + "*")) and not (tmp_path / "o").exists()


def test_legitimate_savedmodels_still_load(saved_models, cli):
    for name in ("variables", "keras"):
        res = cli("inspect", str(saved_models[name]), "--json")
        assert res.exit_code == 0 and res.stderr == "", res.output
        assert json.loads(res.stdout)["form"] == "tf"


def test_checkpoint_ops_only_at_the_loaders_prefix(saved_models):
    """Every SavedModel carries SaveV2/RestoreV2 in its saver functions: allowed there (the prefix is the
    loader's), and a TF1 SavedModel's saver (fed through filename_tensor_name) too."""
    import tensorflow as tf

    from edgeconv.builtins.savedmodel_scan import check_saved_model

    folder = saved_models["variables"].parent / "tf1"
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.get_variable("w", [4, 2], initializer=tf.compat.v1.ones_initializer())
        y = tf.matmul(x, w, name="y")
        sess.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(str(folder))
        builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={
            "serving_default": tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})})
        builder.save()
    for path in (saved_models["variables"], saved_models["keras"], folder):
        check_saved_model(path)
        assert any(n.op == "SaveV2" for n in _all_nodes(path)), "the saver ops are there and were allowed"


def _all_nodes(path: Path):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    for meta in proto.meta_graphs:
        yield from meta.graph_def.node
        for fn in meta.graph_def.library.function:
            yield from fn.node_def


# -- class 15: framework noise stays out of the terminal -------------------------------------------------------
def test_torch_log_records_go_to_the_debug_log_not_the_terminal():
    code = ("import logging, torch\n"
            "from edgeconv.quiet import to_debug_log\n"
            "got = []\n"
            "h = logging.Handler(); h.emit = lambda r: got.append(r.getMessage())\n"
            "log = logging.getLogger('edgeconv'); log.addHandler(h); log.setLevel(logging.DEBUG)\n"
            "with to_debug_log('torch'):\n"
            "    logging.getLogger('torch.export').warning('NOISE-1')\n"
            "    logging.getLogger('torch.onnx._internal.exporter._registration').warning('NOISE-2')\n"
            "    import warnings; warnings.warn('NOISE-3')\n"
            "print(sorted(got))\n")
    env = {k: v for k, v in os.environ.items() if k != "EDGECONV_DEBUG"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "NOISE" not in done.stderr, done.stderr
    assert all(f"NOISE-{i}" in done.stdout for i in (1, 2, 3)), done.stdout
    debug = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                           env={**env, "EDGECONV_DEBUG": "1"})
    assert "NOISE-1" in debug.stderr, "with EDGECONV_DEBUG the frameworks' own output is kept"


def test_convert_of_a_pt2_prints_no_torch_noise(pt2, tmp_path):
    """The dynamo exporter logs lines such as 'torchvision is not installed. Skipping torchvision::nms'."""
    env = {k: v for k, v in os.environ.items() if k != "EDGECONV_DEBUG"}
    done = subprocess.run([sys.executable, "-c", "from edgeconv.cli import main; main()", "convert",
                           str(pt2 / "digits.pt2"), "-o", str(tmp_path / "o"), "--runs", "2", "--no-memory"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr
    noise = [ln for ln in done.stderr.splitlines() if ln[:1] in "WIE" and ln[1:5].isdigit() or "Warning" in ln]
    assert not noise, noise
