"""onnxruntime's tools must not write into the user's folder (regression: sym_shape_infer_temp.onnx)."""

from __future__ import annotations

import os
from pathlib import Path

from edgeconv.builtins.onnx_passes import ort_tool_cwd


def test_a_tool_s_stray_files_land_in_a_throw_away_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with ort_tool_cwd():
        inside = Path.cwd()
        assert inside != tmp_path
        # what onnxruntime's SymbolicShapeInference does when it cannot infer every shape
        Path("sym_shape_infer_temp.onnx").write_bytes(b"x")
        Path("0cd68386-eac6-11f1-87f9-02fc00000001.data").write_bytes(b"x")
    assert Path.cwd() == tmp_path
    assert list(tmp_path.iterdir()) == []
    assert not inside.exists()


def test_the_folder_is_restored_when_the_tool_raises(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        with ort_tool_cwd():
            raise RuntimeError("Incomplete symbolic shape inference")
    except RuntimeError:
        pass
    assert os.getcwd() == str(tmp_path)
