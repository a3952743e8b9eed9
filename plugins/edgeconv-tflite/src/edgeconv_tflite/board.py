"""The board half of the LiteRT runner (docs/boards.md): runs a ``.tflite`` artifact on a board.

SELF-CONTAINED: shipped to the board by edgeconv's board agent and imported there from the board's cache; needs
only Python >= 3.8, numpy and a TFLite interpreter: ``ai_edge_litert`` (LiteRT, ``pip install ai-edge-litert``)
or, where no LiteRT wheel exists for the board's Python, ``tflite_runtime`` (``pip install tflite-runtime``). No
edgeconv import. It takes the same runner settings as ``edgeconv_tflite.runner.LiteRTRunner`` (``threads`` /
``num_threads``, ``xnnpack``, ``tensor_names``): inputs and outputs are found through the serving signature and
keyed by the source's names, and an input of another shape resizes the interpreter first.

The board-half contract (``edgeconv.places.agent``): ``MODULES``, ``load(path, options) -> session`` with
``session.info``, ``session.infer(feed)`` and ``session.close()``.
"""

# ruff: noqa: UP004, UP031, UP036, B905  (runs on the board's Python >= 3.8: no f-string-only idioms, no zip(strict=))

import os

SETTINGS = ("threads", "num_threads", "xnnpack", "tensor_names")


def _interpreter():
    """(Interpreter class, OpResolverType or None, runtime description)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        from ai_edge_litert import interpreter as mod

        dist = "ai-edge-litert"
    except ImportError:
        try:
            from tflite_runtime import interpreter as mod
        except ImportError:
            raise ImportError("no TFLite interpreter on this board: pip install ai-edge-litert (or tflite-runtime)",
                              name="ai_edge_litert") from None
        dist = "tflite-runtime"
    try:
        ver = version(dist)
    except PackageNotFoundError:
        ver = "unknown"
    return mod.Interpreter, getattr(mod, "OpResolverType", None), "%s %s" % (dist.replace("-", "_"), ver)


def _pick():
    """The interpreter module this board has (found without importing it)."""
    import importlib.util

    for name in ("ai_edge_litert", "tflite_runtime"):
        try:
            if importlib.util.find_spec(name) is not None:
                return (name,)
        except (ImportError, ValueError):
            continue
    return ("ai_edge_litert",)


MODULES = _pick()


class Session(object):
    def __init__(self, path, options):
        import numpy as np

        self._np = np
        Interpreter, resolvers, runtime = _interpreter()
        threads = int(options.get("threads") or options.get("num_threads") or os.cpu_count() or 1)
        xnnpack = bool(options.get("xnnpack", True))
        kwargs = {"model_path": path, "num_threads": threads}
        if resolvers is not None:
            kwargs["experimental_op_resolver_type"] = (
                resolvers.AUTO if xnnpack else resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp = Interpreter(**kwargs)
        interp.allocate_tensors()
        to_key = dict(options.get("tensor_names") or {})
        sigs = interp.get_signature_list()
        if sigs:
            key = "serving_default" if "serving_default" in sigs else next(iter(sigs))
            sr = interp.get_signature_runner(key)
            ins = dict((k, d["index"]) for k, d in sr.get_input_details().items())
            outs = dict((k, d["index"]) for k, d in sr.get_output_details().items())
            order = [k for k in sigs[key]["outputs"] if k in outs]
        else:
            ins = dict((d["name"], d["index"]) for d in interp.get_input_details())
            outs = dict((d["name"], d["index"]) for d in interp.get_output_details())
            order = list(outs)
        from_key = dict((k, n) for n, k in to_key.items())
        self.inputs = dict((from_key.get(k, k), idx) for k, idx in ins.items())
        self.outputs = [(from_key.get(k, k), outs[k]) for k in order]
        wanted = set(self.inputs.values())
        self.shapes = dict((d["index"], tuple(int(x) for x in d["shape"])) for d in interp.get_tensor_details()
                           if d["index"] in wanted)
        self.interp = interp
        self.info = {
            "runtime": "%s (LiteRT interpreter)" % runtime,
            "device": "cpu",
            "threads": threads,
            "delegate": ("XNNPACK (default)" if xnnpack else "none (builtin kernels)") if resolvers is not None
            else "runtime default",
            "ignored_options": sorted(k for k in options if k not in SETTINGS),
        }

    def infer(self, feed):
        interp = self.interp
        try:
            arrays = [(idx, feed[name]) for name, idx in self.inputs.items()]
        except KeyError as exc:
            raise KeyError("no input %r in the feed (it has: %s)" % (exc.args[0], ", ".join(feed))) from None
        shapes = self.shapes
        resized = False
        for idx, x in arrays:
            if x.shape != shapes[idx]:
                interp.resize_tensor_input(idx, x.shape)
                shapes[idx] = x.shape
                resized = True
        if resized:
            interp.allocate_tensors()
        for idx, x in arrays:
            interp.set_tensor(idx, x if x.flags.c_contiguous else self._np.ascontiguousarray(x))
        interp.invoke()
        get = interp.get_tensor
        return {name: get(idx) for name, idx in self.outputs}

    def close(self):
        self.interp = None


def load(path, options):
    return Session(path, options)
