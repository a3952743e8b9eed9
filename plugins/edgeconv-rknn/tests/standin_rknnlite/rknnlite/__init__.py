"""STAND-IN for rknn-toolkit-lite2, used only by edgeconv-rknn's tests (no Rockchip board is reachable here).

It is NOT an NPU runtime: ``RKNNLite`` mimics the API of ``rknnlite.api.RKNNLite`` (load_rknn, init_runtime with
core_mask, inference with data_format, release) and runs the *ONNX original* the exporter kept beside the .rknn
(``rknn_build/model.onnx``) with onnxruntime. It proves the board half's plumbing (loading, core mask, input order,
output names, errors), never the .rknn's numbers.
"""
