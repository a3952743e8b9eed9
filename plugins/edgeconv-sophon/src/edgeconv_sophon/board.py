"""The board half of the bmodel runner (docs/boards.md): runs a ``.bmodel`` on a Sophon device (SE7/BM1684X, BM1688...).

SELF-CONTAINED: shipped to the board by edgeconv's board agent and imported there from the board's cache; needs only
Python >= 3.8, numpy and Sophgo's SAIL (``sophon.sail``: the ``sophon_arm`` wheel on an SoC such as the SE7, the
``sophon`` wheel on a PCIe host, built for the board's libsophon / sophon-mw). No edgeconv import. Written from
SAIL's documented Python API (sophgo/sophon-sail ``docs``: ``sail.Engine(bmodel_path, tpu_id, sail.IOMode.SYSIO)``,
``get_graph_names()``, ``get_input_names(graph)`` / ``get_output_names(graph)``, ``process(graph, {name: array}) ->
{name: array}``); never run on a Sophon device here.

Settings (the manifest's ``runner_options``, those of ``edgeconv_sophon.runner.CmodelRunner``): ``output_names`` (the
contract's names: tpu-mlir renames the bmodel's outputs, e.g. ``logits`` -> ``logits_Gemm``, so outputs are named by
the bmodel's order), ``chip``, ``quantize`` and ``tpu_mlir`` (reported). ``device`` (the TPU id, default 0) is a
board-side setting the host runner does not have. Inputs are fed by the bmodel's input names when the feed carries
them, else in the feed's order (the artifact's input order).

The board-half contract (``edgeconv.places.agent``): ``MODULES``, ``load(path, options) -> session`` with
``session.info``, ``session.infer(feed)`` and ``session.close()``.
"""

# ruff: noqa: UP004, UP031, UP036, B905  (runs on the board's Python >= 3.8: no f-string-only idioms, no zip(strict=))

MODULES = ("sophon.sail",)
SETTINGS = ("chip", "quantize", "tpu_mlir", "output_names", "device")
NEED = ("Sophgo's SAIL (sophon.sail: pip install the sophon_arm wheel on an SoC, the sophon wheel on a PCIe host, "
        "matching the board's libsophon)")


def _version(dists):
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # Python 3.7
        return "unknown"
    for dist in dists:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "unknown"


def _sail():
    try:
        import sophon.sail as sail
    except ImportError as exc:
        error = ImportError("the board has no 'sophon.sail' module: %s (%s: %s)" % (NEED, type(exc).__name__, exc))
        error.name = "sophon.sail"
        raise error from None
    return sail


class Session(object):
    def __init__(self, path, options):
        sail = _sail()
        self.device = int(options.get("device") or 0)
        self.output_names = [str(n) for n in (options.get("output_names") or [])]
        self.engine = sail.Engine(path, self.device, sail.IOMode.SYSIO)
        graphs = list(self.engine.get_graph_names())
        if not graphs:
            raise RuntimeError("SAIL found no graph in %s" % path)
        self.graph = graphs[0]
        self.bmodel_inputs = list(self.engine.get_input_names(self.graph))
        self.bmodel_outputs = list(self.engine.get_output_names(self.graph))
        if self.output_names and len(self.output_names) != len(self.bmodel_outputs):
            raise RuntimeError("the bmodel has %d outputs (%s), the model %d" % (
                len(self.bmodel_outputs), ", ".join(self.bmodel_outputs), len(self.output_names)))
        runtime = getattr(sail, "EDGECONV_STAND_IN", None)
        chip = str(options.get("chip") or "")
        self.info = {
            "runtime": runtime or "sophon.sail %s" % _version(("sophon", "sophon_arm", "sophon-arm")),
            "device": "stand-in (not a TPU)" if runtime else "tpu:%d" % self.device + (" " + chip if chip else ""),
            "graph": self.graph,
            "bmodel_outputs": self.bmodel_outputs,
            "quantize": options.get("quantize") or None,
            "ignored_options": sorted(k for k in options if k not in SETTINGS),
        }

    def infer(self, feed):
        import numpy as np

        if all(n in feed for n in self.bmodel_inputs):
            values = [feed[n] for n in self.bmodel_inputs]
        elif len(feed) == len(self.bmodel_inputs):
            values = list(feed.values())
        else:
            raise KeyError("the bmodel takes %d input(s) (%s); the feed has %d (%s)" % (
                len(self.bmodel_inputs), ", ".join(self.bmodel_inputs), len(feed), ", ".join(feed)))
        inputs = dict((n, np.ascontiguousarray(v)) for n, v in zip(self.bmodel_inputs, values))
        outs = self.engine.process(self.graph, inputs)
        missing = [n for n in self.bmodel_outputs if n not in outs]
        if missing:
            raise RuntimeError("SAIL returned no output %s" % ", ".join(missing))
        names = self.output_names or self.bmodel_outputs
        return dict((name, np.asarray(outs[b])) for name, b in zip(names, self.bmodel_outputs))

    def close(self):
        self.engine = None  # SAIL frees the bmodel and its device memory with the Engine


def load(path, options):
    return Session(path, options)
