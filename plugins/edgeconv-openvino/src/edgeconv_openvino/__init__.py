"""edgeconv-openvino: the ``openvino`` target (OpenVINO IR, INT8 with NNCF) for edgeconv.

Nothing heavy is imported here or in ``hooks``: openvino and nncf load only inside the
functions that use them (``convert``, ``precheck``, ``quantize``, ``export``, ``runner``).
"""

__version__ = "0.1.0"
