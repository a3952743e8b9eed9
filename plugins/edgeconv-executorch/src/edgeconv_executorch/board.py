"""The board half of the ExecuTorch runner: load a ``.pte`` and run numpy arrays through it.

SELF-CONTAINED: this file is shipped to a board that has no edgeconv (docs/boards.md) and imported there by the
board agent; the host runner (``runner.PteRunner``) uses it too, so both run a program the same way. It needs
only numpy and the ExecuTorch Python runtime (``pip install executorch``; its bindings load libtorch, so torch
comes with them), and is written for Python >= 3.8. Importing it has no side effect.

The board agent's contract: ``MODULES`` (imported before the memory baseline), ``load(path, options) -> session``,
``session.infer({name: array}) -> {name: array}``, ``session.info`` and ``session.close()``. Options (the
artifact's manifest ``runner_options``): ``input_names`` / ``output_names`` (a .pte has no tensor names: the
program takes its inputs and returns its outputs by position, in this order) and ``num_threads`` (the XNNPACK
thread pool; the runtime's default is one thread per core). The runtime has one thread pool per process: each
session sets the count it wants before it runs.

Run by hand on a board: ``python board.py model.pte inputs.npz outputs.npz [threads]`` (the .npz keys in the
program's input order) prints the session's info as JSON and writes the outputs.
"""

# This file runs on a board's Python (>= 3.8): no zip(strict=), and the agent's %-formatting style.
# ruff: noqa: UP031, B905

import json
import sys
import time

MODULES = ("torch", "executorch.runtime")

# ExecuTorch ScalarType codes (c10 numbering) -> numpy dtype names
_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
           11: "bool"}


class LoadError(Exception):
    """The runtime refused the program (not a .pte, a backend this runtime lacks, a damaged file)."""


class RunError(Exception):
    """The inputs do not fit the program, or the runtime failed on them."""


class PteSession:
    """One loaded program's ``forward`` method."""

    def __init__(self, path, num_threads=None, input_names=None, output_names=None):
        import torch  # noqa: F401  (the executorch bindings need libtorch loaded first)

        with _quiet_stderr():  # torchao's start-up warnings, the runtime's cpuinfo probe (C++ log lines)
            from executorch.runtime import Runtime

            runtime = Runtime.get()
            self.threads = int(num_threads) if num_threads else _default_threads()
            _use_threads(self.threads)
        try:
            self.program = runtime.load_program(str(path))  # verification: InternalConsistency (the default)
            if "forward" not in self.program.method_names:
                raise LoadError("the program has no 'forward' method (methods: %s)"
                                % ", ".join(sorted(self.program.method_names)))
            meta = self.program.metadata("forward")
            self.inputs = [_tensor_meta(meta.input_tensor_meta(i)) for i in range(meta.num_inputs())]
            self.outputs = [_tensor_meta(meta.output_tensor_meta(i)) for i in range(meta.num_outputs())]
            self.method = self.program.load_method("forward")
        except LoadError:
            raise
        except Exception as exc:
            raise LoadError("the ExecuTorch runtime cannot load the program: %s"
                            % " ".join(str(exc).split())[:300]) from None
        self.input_names = list(input_names or ["input_%d" % i for i in range(len(self.inputs))])
        self.output_names = list(output_names or ["output_%d" % i for i in range(len(self.outputs))])
        if len(self.input_names) != len(self.inputs) or len(self.output_names) != len(self.outputs):
            raise LoadError("the program takes %d inputs and returns %d outputs, the names given are %d and %d"
                            % (len(self.inputs), len(self.outputs), len(self.input_names), len(self.output_names)))
        self.info = self._info(runtime)

    def _info(self, runtime):
        from executorch.extension.pybindings import portable_lib

        backends = list(runtime.backend_registry.registered_backend_names)
        return {
            "runtime": "executorch %s" % _version(),
            "device": "cpu",
            "threads": int(portable_lib._threadpool_get_thread_count()),
            "backends": backends,
            "xnnpack": "XnnpackBackend" in backends,
        }

    def run(self, arrays):
        """Positional numpy arrays in, positional numpy arrays out."""
        import numpy as np
        import torch

        _use_threads(self.threads)

        if len(arrays) != len(self.inputs):
            raise RunError("the program takes %d inputs, got %d" % (len(self.inputs), len(arrays)))
        tensors = []
        for i, (a, (shape, dtype)) in enumerate(zip(arrays, self.inputs)):
            a = np.ascontiguousarray(a)
            if tuple(a.shape) != shape or (dtype is not None and a.dtype.name != dtype):
                raise RunError("input %s is %s %s; the program was built for %s %s"
                               % (self.input_names[i], a.dtype.name, list(a.shape), dtype, list(shape)))
            tensors.append(torch.from_numpy(a))
        try:
            outs = self.method.execute(tensors)
        except Exception as exc:
            raise RunError("the ExecuTorch runtime failed: %s" % " ".join(str(exc).split())[:300]) from None
        # the runtime copies its outputs out on every call: these tensors are ours
        return [o.detach().numpy() if hasattr(o, "detach") else np.asarray(o) for o in outs]

    def infer(self, feed):
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise RunError("no array for input(s) %s (given: %s)" % (", ".join(missing), ", ".join(feed)))
        return dict(zip(self.output_names, self.run([feed[n] for n in self.input_names])))

    def time_runs(self, feed, runs=50, warmup=5, max_seconds=10.0):
        """Milliseconds per inference, timed here (``edgeconv.verification.bench.latency``'s loop)."""
        arrays = [feed[n] for n in self.input_names]
        for _ in range(warmup):
            self.run(arrays)
        times, deadline = [], time.perf_counter() + max_seconds
        for _ in range(max(1, runs)):
            t0 = time.perf_counter()
            self.run(arrays)
            times.append((time.perf_counter() - t0) * 1000.0)
            if time.perf_counter() > deadline and len(times) >= 5:
                break
        return times

    def close(self):
        self.method = None
        self.program = None


_THREADS = {}  # "default": the runtime's own thread count, read before any session changes it; "current": the last set


def _default_threads():
    from executorch.extension.pybindings import portable_lib

    if "default" not in _THREADS:
        _THREADS["default"] = int(portable_lib._threadpool_get_thread_count())
    return _THREADS["default"]


def _use_threads(n):
    """The runtime has ONE thread pool per process (the bindings' only knob resets it): a session sets its count
    before it runs, so that sessions with different counts in one process (a timing tournament) each get theirs."""
    if _THREADS.get("current") == n:  # a dict lookup per inference, not a call into the bindings
        return
    from executorch.extension.pybindings import portable_lib

    if int(portable_lib._threadpool_get_thread_count()) != n:
        with _quiet_stderr():  # "[threadpool.cpp:66] Resetting threadpool to n threads."
            portable_lib._unsafe_reset_threadpool(n)
    _THREADS["current"] = n


class _quiet_stderr:
    """File descriptor 2 to /dev/null for a moment: the runtime's C++ log lines (ET_LOG) and torchao's import-time
    warnings are not the user's business, and would break one-line errors. Errors still raise. Off with
    EDGECONV_DEBUG set."""

    def __enter__(self):
        import os

        self.saved = None
        if os.environ.get("EDGECONV_DEBUG"):
            return self
        try:
            sys.stderr.flush()
            self.saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        except OSError:
            self.saved = None
        return self

    def __exit__(self, *exc):
        import os

        if self.saved is not None:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(self.saved, 2)
            os.close(self.saved)
        return False


def _version():
    try:
        from executorch.version import __version__
    except ImportError:
        return "?"
    return str(__version__).split("+")[0]


def _tensor_meta(meta):
    return tuple(int(d) for d in meta.sizes()), _DTYPES.get(int(meta.dtype()))


def load(path, options):
    """The board agent's entry point."""
    options = dict(options or {})
    return PteSession(path, num_threads=options.get("num_threads"), input_names=options.get("input_names"),
                      output_names=options.get("output_names"))


def main(argv=None):
    import numpy as np

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (3, 4):
        sys.stderr.write("usage: python board.py model.pte inputs.npz outputs.npz [threads]\n")
        return 2
    with np.load(args[1], allow_pickle=False) as z:
        names = list(z.files)
        arrays = [z[k] for k in names]
    session = PteSession(args[0], num_threads=int(args[3]) if len(args) == 4 else None, input_names=names)
    np.savez(args[2], **session.infer(dict(zip(names, arrays))))
    print(json.dumps(session.info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
