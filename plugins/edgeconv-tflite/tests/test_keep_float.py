"""keep_float on tflite: refused with the reason (no honest route from ONNX node names to TFLite's
selective quantization yet; docs/auto.md), and --precision auto then stops its layer search at once."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgeconv.errors import BadInput
from edgeconv.pipeline import convert, supports_keep_float
from edgeconv.plugins import registry


def test_the_exporter_refuses_before_any_work():
    from edgeconv_tflite.export import export

    job = SimpleNamespace(options={"keep_float": ("conv2",)}, precision="int8")
    with pytest.raises(BadInput, match="keep_float is not supported by the tflite target") as err:
        export(SimpleNamespace(form="onnx"), job)
    assert "denylisted_nodes" in str(err.value) and "\n" not in str(err.value)


def test_the_option_is_declared_so_the_error_is_ours():
    assert supports_keep_float(registry().target("tflite"))


@pytest.mark.slow
def test_keep_float_is_refused_through_convert(tmp_path, digits):
    with pytest.raises(BadInput, match="keep_float is not supported by the tflite target"):
        convert(str(digits["model"]), "tflite", precision="int8", calibration=str(digits["calib"]),
                output=tmp_path / "o", options={"keep_float": "conv2"}, verify=False)
    assert not (tmp_path / "o").exists()
