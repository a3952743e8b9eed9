"""edgeconv-ascend: the ``ascend`` target of edgeconv (``.om`` models for Huawei Ascend NPUs, built by ATC).

Registration lives in ``hooks`` (cheap); one module per job: ``cann`` (finding CANN, its version, the NPU,
ais_bench, AMCT; ``doctor``), ``socs`` (the SoC names ATC takes), ``atc`` (options -> the ATC command line, running
it, its error codes, the rebuild kit), ``shapes`` (--input_shape and dynamic gears from the IO contract), ``aipp``
(the aipp_op config and the changed input contract), ``precheck`` (+ ``data/onnx_operators.json``), ``passes``
(``ascend.amct``: INT8 through AMCT, the flow in ``amct``), ``export`` (the exporter: ATC), ``runner`` (ais_bench),
``children`` (child processes through the core's worker), ``devices.toml`` (device profiles).
"""

__version__ = "0.1.0"
