"""The executorch plugin's registration, start-up cost and refusals (no lowering runs here)."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

HEAVY = ("torch", "executorch", "torchao", "numpy")


def test_target_passes_runner_and_importer_are_registered_by_the_distribution(fresh_plugins):
    import edgeconv_executorch.hooks as hooks

    from edgeconv.plugin import API_VERSION

    assert hooks.EDGECONV_API == API_VERSION
    reg = fresh_plugins.registry()
    t = reg.targets["executorch"]
    assert t.dist == "edgeconv-executorch" and t.plugin == "executorch"
    assert t.accepts == ("torch",) and t.artifact_form == "pte" and t.suffix == ".pte"
    assert t.precisions == ("fp32", "fp16", "int8")
    assert dict(t.precision_passes) == {"fp16": ("executorch.fp16",), "int8": ("executorch.quantize_pt2e",)}
    assert {"delegate", "per_channel", "calib_limit", "keep_float", "threads"} == {o.name for o in t.options}
    for name in ("executorch.fp16", "executorch.quantize_pt2e"):
        p = reg.passes[name]
        assert p.kind == "precision" and p.form == "torch" and p.plugin == "executorch"
    runner = reg.runners["pte"]
    assert runner.factory == "edgeconv_executorch.runner:PteRunner" and runner.board == "edgeconv_executorch.board"
    assert reg.importers["executorch"].suffixes == (".pte",)


def test_registering_the_plugin_imports_neither_torch_nor_executorch():
    code = (
        "import sys\nfrom edgeconv.cli import main\nsys.argv = ['edgeconv', 'targets', '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy = out.strip().splitlines()[-1]
    assert heavy == "HEAVY=", f"`edgeconv targets` imported {heavy[6:]}"
    rows = {r["name"]: r for r in json.loads(out[: out.rindex("HEAVY=")])["targets"]}
    assert rows["executorch"]["status"] == "ready" and rows["executorch"]["provider"] == "edgeconv-executorch"


def test_an_onnx_source_is_refused_in_one_line_before_anything_runs(cli, digits, tmp_path):
    out = tmp_path / "o"
    res = cli("convert", str(digits["model"]), "--to", "executorch", "-o", str(out))
    assert res.exit_code == 2, res.output
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert "no route from a 'onnx' model to target 'executorch'" in line and "accepts: torch" in line
    assert "Traceback" not in res.output and not out.exists()


def test_a_torchscript_source_is_refused_with_the_way_out(cli, tmp_path):
    from edgeconv.testing.refnets import digits_trained

    path = tmp_path / "digits.pt"
    torch.jit.save(torch.jit.trace(digits_trained(), torch.zeros(1, 1, 8, 8)), str(path))
    out = tmp_path / "o"
    res = cli("convert", str(path), "--to", "executorch", "--input-shape", "input:1,1,8,8", "-o", str(out))
    assert res.exit_code == 2, res.output
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert "TorchScript" in line and "torch.export.save" in line and "digits.pt" in line
    assert not out.exists()


def test_bad_option_values_are_refused(cli, tmp_path):
    res = cli("convert", "x.pt2", "--to", "executorch", "-O", "delegate=qnn", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "xnnpack, none" in res.stderr
    res = cli("convert", "x.pt2", "--to", "executorch", "-p", "bf16", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "fp32, fp16, int8" in res.stderr
