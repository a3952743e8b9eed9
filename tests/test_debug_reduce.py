"""``edgeconv debug reduce``: the smallest run of nodes that still fails, written as ONNX with its inputs; judged by a
real conversion or by a ``--check`` command that no shell ever interprets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from edgeconv import convert  # noqa: E402
from edgeconv.debug import reduce as debug_reduce  # noqa: E402
from test_debug_layers import chain  # noqa: E402
from test_sensitivity import outlier_files  # noqa: E402

EDGECONV = Path(sys.executable).parent / "edgeconv"


def test_search_finds_the_failing_run():
    """Failing when the run holds nodes 3..5: the prefix bisection finds 5, the suffix bisection 3."""
    calls = []

    def fails(lo, hi):
        calls.append((lo, hi))
        return lo <= 3 and hi >= 5

    assert debug_reduce.search(10, fails) == (3, 5)
    assert calls[0] == (0, 9) and len(calls) <= 2 + 2 * 4  # the whole model, then two bisections
    assert debug_reduce.search(10, lambda lo, hi: False) is None


def test_int8_failure_reduces_to_a_smaller_model_that_still_fails(tmp_path):
    f = outlier_files(tmp_path)  # INT8 breaks on relu1's outlier channel
    out = tmp_path / "reduced.onnx"
    doc = debug_reduce.reduce(str(f["model"]), "onnxruntime", precision="int8", calibration=str(f["calib"]),
                              data=str(f["test"]), output=out)
    source_nodes = len(onnx.load(str(f["model"])).graph.node)
    reduced = onnx.load(str(out))
    assert doc["fails"] and doc["model"] == str(out) and 0 < len(reduced.graph.node) < source_nodes
    assert doc["nodes"]["kept"] == len(reduced.graph.node) and doc["trials"][0]["nodes"] == [0, source_nodes - 1]
    assert all(t["fails"] for t in doc["trials"] if t["nodes"] == doc["nodes"]["range"])
    inputs = np.load(out.with_suffix(".npz"))
    assert sorted(inputs.files) == sorted(i.name for i in reduced.graph.input)
    # the written model, with the inputs written beside it, fails on its own: the repro a vendor needs
    again = convert(str(out), "onnxruntime", precision="int8", calibration=str(out.with_suffix(".npz")),
                    data=str(out.with_suffix(".npz")), output=tmp_path / "again", memory=False, runs=2)
    assert again.exit_code == 1, again.report["verdict"]


def _check_script(folder: Path) -> Path:
    """A stand-in for a vendor compiler that crashes on one layer: exits 1 when the candidate holds conv2's
    weights, and logs the arguments it was given (one JSON list per run)."""
    script = folder / "check.py"
    script.write_text(
        "import json, sys\n"
        f"with open({str(folder / 'argv.log')!r}, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "model = open(sys.argv[1], 'rb').read()\n"
        "sys.exit(1 if b'conv2.w' in model else 0)\n")
    return script


def test_check_command_runs_without_a_shell(tmp_path, cli):
    f = outlier_files(tmp_path)
    script = _check_script(tmp_path)
    pwned, pwned2 = tmp_path / "pwned", tmp_path / "pwned2"
    check = (f"{sys.executable} -I -S {script} {{}} ; touch {pwned} && echo $(touch {pwned2}) > {pwned2} | cat "
             "'quoted arg' `id`")
    out = tmp_path / "red" / "conv2.onnx"
    res = cli("debug", "reduce", str(f["model"]), "--to", "onnxruntime", "--check", check, "--data", str(f["test"]),
              "-o", str(out), "--json")
    assert res.exit_code == 1, res.output  # a reduced model that still fails was written
    doc = json.loads(res.stdout)
    assert doc["nodes"]["names"] == ["conv2"] and doc["inputs"] == ["r1"] and doc["outputs"] == ["c2"]
    assert [n.name for n in onnx.load(str(out)).graph.node] == ["conv2"]
    assert np.load(out.with_suffix(".npz"))["r1"].shape == (4, 1, 8, 16, 16)  # 4 samples of relu1's output
    assert not pwned.exists() and not pwned2.exists()
    runs = [json.loads(line) for line in (tmp_path / "argv.log").read_text().splitlines()]
    assert len(runs) == len(doc["trials"]) >= 3
    for argv in runs:  # every metacharacter reached the command as a plain argument
        assert argv[0].endswith(".onnx") and argv[1:] == [";", "touch", str(pwned), "&&", "echo", "$(touch",
                                                          f"{pwned2})", ">", str(pwned2), "|", "cat", "quoted arg",
                                                          "`id`"]


def test_check_without_braces_gets_the_path_appended(tmp_path):
    assert debug_reduce.candidate_argv(["tool", "--model"], Path("/x/c.onnx")) == ["tool", "--model", "/x/c.onnx"]
    assert debug_reduce.candidate_argv(["tool", "--in={}"], Path("/x/c.onnx")) == ["tool", "--in=/x/c.onnx"]
    assert debug_reduce.parse_check("./check.sh {}")[0] == str(Path.cwd() / "check.sh")


def test_a_model_that_passes_has_nothing_to_reduce(tmp_path, cli):
    src = tmp_path / "chain.onnx"
    onnx.save(chain(), str(src))
    out = tmp_path / "reduced.onnx"
    res = cli("debug", "reduce", str(src), "--to", "onnxruntime", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert "does not fail" in res.stdout and "nothing written" in res.stdout
    assert not out.exists() and not out.with_suffix(".npz").exists()


@pytest.mark.parametrize("args, words", [
    (["--check", "'unbalanced"], "not a command line"),
    (["--check", ""], "--check is empty"),
    (["-o", "reduced.txt"], "ending in .onnx"),
    (["--to", "no-such-target"], "unknown target"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, args, words):
    onnx.save(chain(), str(tmp_path / "chain.onnx"))
    argv = ["debug", "reduce", "chain.onnx", *(["--to", "onnxruntime"] if "--to" not in args else []), *args]
    env = {k: v for k, v in os.environ.items() if k != "EDGECONV_DEBUG"}
    proc = subprocess.run([str(EDGECONV), *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeconv: error:") and words in lines[0], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.onnx"]  # nothing written
