"""The board half of the rknn runner (docs/boards.md): runs a ``.rknn`` artifact on a Rockchip board's NPU.

SELF-CONTAINED: shipped to the board by edgeconv's board agent and imported there from the board's cache; needs only
Python >= 3.8, numpy and rknn-toolkit-lite2 (``pip install rknn-toolkit-lite2``: aarch64 wheels for Python 3.7-3.12,
with Rockchip's ``librknnrt.so`` runtime installed on the board). No edgeconv import. Written from rknn-toolkit-lite2
2.5.0 (``rknnlite/api/rknn_lite.py``: ``RKNNLite().load_rknn(path)``, ``init_runtime(core_mask=...)``,
``inference(inputs=[...], data_format=[...])``, ``release()``) and Rockchip's examples; never run on a board here.

Settings (the manifest's ``runner_options``): ``core_mask`` (``auto``, ``0``, ``1``, ``2``, ``0_1``, ``0_1_2``,
``all``: RKNNLite.NPU_CORE_*; more than one core only on RK3588 and RK3576), ``output_names`` (the source's output
names, in the .rknn's order) and ``input_formats`` (``nchw`` for a 4-D input in the source's layout). Inputs are fed
in the order of the feed's keys as the host sends them (the artifact's input order).

The board-half contract (``edgeconv.places.agent``): ``MODULES``, ``load(path, options) -> session`` with
``session.info``, ``session.infer(feed)`` and ``session.close()``.
"""

# ruff: noqa: UP004, UP031, UP036, B905  (runs on the board's Python >= 3.8: no f-string-only idioms, no zip(strict=))

MODULES = ("rknnlite.api",)
CORE_MASKS = {"auto": "NPU_CORE_AUTO", "0": "NPU_CORE_0", "1": "NPU_CORE_1", "2": "NPU_CORE_2",
              "0_1": "NPU_CORE_0_1", "0_1_2": "NPU_CORE_0_1_2", "all": "NPU_CORE_ALL"}
SETTINGS = ("core_mask", "output_names", "input_formats", "platform", "precision", "toolkit", "recipe")


def _version(dist):
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # Python 3.7
        return "unknown"
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


class Session(object):
    def __init__(self, path, options):
        from rknnlite.api import RKNNLite

        mask = str(options.get("core_mask") or "auto")
        if mask not in CORE_MASKS:
            raise ValueError("core_mask must be one of %s, not %r" % (", ".join(CORE_MASKS), mask))
        self.output_names = [str(n) for n in (options.get("output_names") or [])]
        self.formats = [f or None for f in (options.get("input_formats") or [])]
        self.rknn = RKNNLite(verbose=False)
        if self.rknn.load_rknn(path) != 0:
            raise RuntimeError("RKNNLite.load_rknn failed for %s (see the runtime's log above)" % path)
        if self.rknn.init_runtime(core_mask=getattr(RKNNLite, CORE_MASKS[mask])) != 0:
            self.rknn.release()
            raise RuntimeError("RKNNLite.init_runtime(core_mask=%s) failed: no NPU driver, or a core this SoC lacks"
                               % CORE_MASKS[mask])
        runtime = getattr(RKNNLite, "EDGECONV_STAND_IN", None)
        self.info = {
            "runtime": runtime or "rknn-toolkit-lite2 %s" % _version("rknn-toolkit-lite2"),
            "device": "stand-in (not an NPU)" if runtime else "Rockchip NPU",
            "core_mask": mask,
            "ignored_options": sorted(k for k in options if k not in SETTINGS),
        }

    def infer(self, feed):
        import numpy as np

        inputs = [np.ascontiguousarray(v) for v in feed.values()]
        fmt = None
        if self.formats and any(self.formats):
            fmt = [self.formats[i] if i < len(self.formats) else None for i in range(len(inputs))]
        outs = self.rknn.inference(inputs=inputs, data_format=fmt)
        if outs is None:
            raise RuntimeError("RKNNLite.inference failed (see the runtime's log above)")
        names = self.output_names or ["output_%d" % i for i in range(len(outs))]
        if len(names) != len(outs):
            raise RuntimeError("the .rknn gave %d outputs, the model has %d" % (len(outs), len(names)))
        return dict((n, np.asarray(o)) for n, o in zip(names, outs))

    def close(self):
        if self.rknn is not None:
            self.rknn.release()
            self.rknn = None


def load(path, options):
    return Session(path, options)
