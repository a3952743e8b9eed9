"""The plugin API: the one module a plugin imports (built-ins, the backends under ``plugins/`` and third parties).

Everything a backend needs to register its work and do it is named here; the rest of ``edgeconv`` is internal and
may change between releases without notice. This module is a versioned contract (docs/hooks.md):

- ``API_VERSION`` is ``"MAJOR.MINOR"``. A minor version adds names or optional fields; a major version removes or
  changes one. A plugin declares the version it was written against in its hooks module::

      EDGECONV_API = "1.0"

  and the plugin manager records a plugin whose major version differs from the core's (or whose minor version is
  newer than the core's) as *broken*, with a message naming both versions; every other plugin keeps working.
- Importing this module is cheap: no framework, no vendor SDK, no numpy (the records and helpers import what they
  need when they are called).

What is here, by the job it serves:

- hooks: ``hookimpl`` (see ``edgeconv.hookspecs`` for the hooks themselves);
- records a hook registers: ``Importer``, ``Pass``, ``Target`` (with ``Option``, ``Requirement``), ``RunnerSpec``,
  ``Toolchain`` (with its fixes ``MoveAside``, ``OptionalImport``), ``Metric``, ``Comparator``, ``DeviceCatalogue``;
- what a conversion hands a plugin and gets back: ``Model``, ``IOContract``, ``TensorSpec``, ``Job``, ``Artifact``,
  ``Unsupported`` (a pre-check's finding), ``Dataset``/``load_dataset`` (the calibration and verification reader);
- running a model: ``Runner`` (the base class of every runner);
- errors with their exit codes: ``EdgeconvError``, ``BadInput`` (2), ``ToolchainMissing`` (3), ``ToolchainFailed``
  (4), ``UnsupportedOperators`` (4);
- shared ONNX helpers: ``read_onnx``, ``from_proto``, ``io_contract``, ``pin_shapes``, ``save_onnx``, ``iter_nodes``,
  ``onnx_graphs``, ``ort_tool_cwd``, ``import_ort_tools``, ``float_inputs`` (keep_float: feed kept nodes
  their float inputs in a QDQ model);
- the self-check of an intermediate model (a QDQ or fake-quant ONNX against its float original on onnxruntime):
  ``check_models``;
- child processes, one way (``edgeconv.worker``): ``run_child`` (isolated, scratch folder, timeout, clean errors),
  ``python_argv`` (an isolated Python command line), ``child_env``, ``Worker`` (a long-lived child serving JSON-line
  requests), ``resolve_toolchain`` / ``ToolchainEnv`` (a vendor's isolated environment);
- precision honesty: ``precision_share`` (the share of nodes and MACs at a precision, subgraphs included),
  ``share_failure`` (the verdict rule on it), ``mixed_range_concats`` (outputs that concatenate ranges far apart);
- small helpers: ``did_you_mean``, ``keep_float_option``, ``brief``, ``format_shape``, ``guess_layout``,
  ``quiet_tensorflow``, ``quiet_onnxruntime``, ``to_debug_log`` (framework log records and warnings to the
  debug log while a model loads or exports).
"""

from __future__ import annotations

from ._version import API_VERSION
from .data import Dataset, Preprocess, guess_layout, load_dataset, random_dataset
from .errors import BadInput, EdgeconvError, ToolchainFailed, ToolchainMissing, UnsupportedOperators
from .hookspecs import hookimpl
from .model import IOContract, Model, TensorSpec, format_shape
from .onnx_tools import (
    brief,
    float_inputs,
    from_proto,
    import_ort_tools,
    io_contract,
    iter_nodes,
    ort_tool_cwd,
    pin_shapes,
    with_outputs,
)
from .onnx_tools import graphs as onnx_graphs
from .onnx_tools import read as read_onnx
from .onnx_tools import save as save_onnx
from .quiet import quiet_onnxruntime, quiet_tensorflow, to_debug_log
from .records import (
    Artifact,
    Comparator,
    DeviceCatalogue,
    Importer,
    Job,
    Metric,
    Option,
    Pass,
    Requirement,
    RunnerSpec,
    Target,
    Unsupported,
    did_you_mean,
    keep_float_option,
)
from .sensitivity import mixed_range_concats, precision_share, share_failure, share_record
from .request import check_ratio
from .toolchain import MoveAside, OptionalImport, Toolchain, ToolchainEnv
from .toolchain import resolve as resolve_toolchain
from .verification.fidelity import check_models
from .worker import Completed, Worker, child_env, python_argv
from .worker import run as run_child
from .runner import Runner


__all__ = [
    "API_VERSION",
    "Artifact",
    "BadInput",
    "Completed",
    "Comparator",
    "DeviceCatalogue",
    "Dataset",
    "EdgeconvError",
    "IOContract",
    "Importer",
    "Job",
    "Metric",
    "Model",
    "MoveAside",
    "Option",
    "OptionalImport",
    "Pass",
    "Preprocess",
    "Requirement",
    "Runner",
    "RunnerSpec",
    "Target",
    "TensorSpec",
    "Toolchain",
    "ToolchainEnv",
    "ToolchainFailed",
    "ToolchainMissing",
    "Unsupported",
    "UnsupportedOperators",
    "Worker",
    "brief",
    "check_models",
    "check_ratio",
    "child_env",
    "did_you_mean",
    "float_inputs",
    "format_shape",
    "from_proto",
    "guess_layout",
    "hookimpl",
    "import_ort_tools",
    "io_contract",
    "iter_nodes",
    "keep_float_option",
    "load_dataset",
    "mixed_range_concats",
    "onnx_graphs",
    "ort_tool_cwd",
    "pin_shapes",
    "precision_share",
    "python_argv",
    "quiet_onnxruntime",
    "quiet_tensorflow",
    "random_dataset",
    "read_onnx",
    "resolve_toolchain",
    "run_child",
    "save_onnx",
    "to_debug_log",
    "share_failure",
    "share_record",
    "with_outputs",
]
