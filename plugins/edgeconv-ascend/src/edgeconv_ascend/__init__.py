"""edgeconv-ascend: the ``ascend`` target of edgeconv (``.om`` models for Huawei Ascend NPUs, built by ATC).

Registration lives in ``hooks`` (cheap); one module per job: ``cann`` (finding CANN, its version, the NPU,
ais_bench, AMCT; ``doctor``), ``socs`` (the SoC names ATC takes), ``atc`` (options -> the ATC command line, running
it, its error codes, the rebuild kit), ``shapes`` (--input_shape and dynamic gears from the IO contract), ``aipp``
(the aipp_op config and the changed input contract), ``precheck`` (+ ``data/onnx_operators.json``), ``amct``
(INT8 through AMCT), ``export`` (the exporter), ``runner`` (ais_bench).
"""

__version__ = "0.1.0"
