"""Start-up stays light: no framework or vendor SDK (nor onnx/onnxruntime/numpy) is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "tensorflow", "openvino", "tensorrt", "nncf", "onnx2tf", "onnx", "onnxruntime", "numpy", "onnxslim", "matplotlib")

PROBE = """
import sys
{code}
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY=" + ",".join(heavy))
"""


@pytest.mark.parametrize(
    "code",
    [
        "import edgeconv",
        "from edgeconv.cli import main\nsys.argv = ['edgeconv', '--help']\ntry:\n    main()\nexcept SystemExit:\n    pass",
        "from edgeconv.cli import main\nsys.argv = ['edgeconv', 'targets']\ntry:\n    main()\nexcept SystemExit:\n    pass",
        "from edgeconv.cli import main\nsys.argv = ['edgeconv', 'plugins', '--all']\ntry:\n    main()\nexcept SystemExit:\n    pass",
        "from edgeconv.cli import main\nsys.argv = ['edgeconv', 'devices']\ntry:\n    main()\nexcept SystemExit:\n    pass",
        "from edgeconv.cli import main\nsys.argv = ['edgeconv', 'devices', 'jetson-orin-nano', '--json']\ntry:\n    main()\nexcept SystemExit:\n    pass",
    ],
    ids=["import", "--help", "targets", "plugins", "devices", "devices NAME"],
)
def test_start_up_imports_nothing_heavy(code):
    out = subprocess.run([sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)], capture_output=True,
                         text=True, check=True).stdout
    line = [l for l in out.splitlines() if l.startswith("HEAVY=")][-1]
    assert line == "HEAVY=", f"start-up imported {line[6:]}"


def test_console_script_runs():
    exe = Path(sys.executable).parent / "edgeconv"
    res = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("edgeconv ")
