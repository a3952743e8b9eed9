"""The board half of the ais_bench runner (docs/boards.md): runs an ``.om`` on an Ascend board (Atlas 200I DK A2...).

SELF-CONTAINED: shipped to the board by edgeconv's board agent and imported there from the board's cache; needs only
Python >= 3.8, numpy and Huawei's ais_bench with its aclruntime wheel (Ascend/tools, ``ais-bench_workload/tool/
ais_bench``: ``pip install aclruntime-*.whl ais_bench-*.whl``), with CANN's runtime set up on the board (``source
/usr/local/Ascend/ascend-toolkit/set_env.sh`` before the agent's Python starts). No edgeconv import. Written from
ais_bench's Python API (``ais_bench.infer.interface.InferSession(device_id, model_path)``, ``get_inputs()`` /
``get_outputs()``, ``infer(feeds, mode='static'|'dymdims')``, ``set_dynamic_batchsize`` / ``set_dynamic_hw`` for
gears, ``free_resource()``); never run on an Ascend board here.

Settings (the manifest's ``runner_options``, those of ``edgeconv_ascend.runner.AisBenchRunner``): ``device`` (the NPU),
``input_names`` / ``output_names`` (the contract's names: ATC renames the .om's tensors, so inputs are fed and outputs
named by order), ``dynamic`` and ``input_layouts`` (the gear to set for a feed), ``soc_version`` (reported).
``runner`` chooses how the host calls ais_bench; the board half always calls it in-process (said in ``info``).
``prepared_only`` / ``command``: an ATC kit, nothing to run. An ``aipp`` record is refused: the host runner builds the
.om's camera buffer from uint8 pixels (``aipp.om_input``), which this half does not carry yet.

The board-half contract (``edgeconv.places.agent``): ``MODULES``, ``load(path, options) -> session`` with
``session.info``, ``session.infer(feed)`` and ``session.close()``.
"""

# ruff: noqa: UP004, UP031, UP036, B905  (runs on the board's Python >= 3.8: no f-string-only idioms, no zip(strict=))

MODULES = ("ais_bench.infer.interface",)
SETTINGS = ("device", "runner", "soc_version", "input_names", "output_names", "input_layouts", "dynamic",
            "prepared_only", "command", "aipp")
NEED = ("ais_bench with aclruntime (Ascend/tools ais-bench_workload: pip install aclruntime-*.whl ais_bench-*.whl) "
        "and CANN's set_env.sh sourced before the board's Python starts")


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


def _infer_session():
    try:
        from ais_bench.infer.interface import InferSession
    except ImportError as exc:
        error = ImportError("the board has no 'ais_bench.infer.interface' module: %s (%s: %s)"
                            % (NEED, type(exc).__name__, exc))
        error.name = "ais_bench"
        raise error from None
    return InferSession


class Session(object):
    def __init__(self, path, options):
        if options.get("prepared_only") or path.endswith(".json"):
            raise RuntimeError("%s is an ATC kit, not an .om: build it on a host with CANN first (%s)"
                               % (path, options.get("command") or "sh atc.sh"))
        if options.get("aipp"):
            raise RuntimeError("this .om takes an AIPP camera buffer; the board half does not build it from pixels "
                               "yet: verify it on the Ascend host (edgeconv verify without --on)")
        InferSession = _infer_session()
        self.device = int(options.get("device") or 0)
        self.input_names = [str(n) for n in (options.get("input_names") or [])]
        self.output_names = [str(n) for n in (options.get("output_names") or [])]
        self.dynamic = dict(options.get("dynamic") or {})
        self.layouts = list(options.get("input_layouts") or [])
        self.session = InferSession(self.device, path)
        soc = str(options.get("soc_version") or "")
        runtime = getattr(InferSession, "EDGECONV_STAND_IN", None)
        self.info = {
            "runtime": runtime or "ais_bench %s (aclruntime %s), InferSession in-process"
                       % (_version(("ais_bench", "ais-bench")), _version(("aclruntime",))),
            "device": "stand-in (not an NPU)" if runtime else ("npu:%d" % self.device + (" " + soc if soc else "")),
            "runner": "python",
            "ignored_options": sorted(k for k in options if k not in SETTINGS),
        }
        if (options.get("runner") or "auto") == "cli":
            self.info["runner_note"] = "the manifest asks for ais_bench's CLI; on the board the half runs in-process"

    def _arrays(self, feed):
        import numpy as np

        names = self.input_names or list(feed)
        missing = [n for n in names if n not in feed]
        if missing:
            raise KeyError("the .om needs input(s) %s; the feed has %s" % (", ".join(missing), ", ".join(feed)))
        return [np.ascontiguousarray(feed[n]) for n in names]

    def _set_gear(self, arrays):
        if not self.dynamic:
            return "static"
        kind = next(iter(self.dynamic))
        first = arrays[0]
        if kind == "dynamic_batch_size":
            self.session.set_dynamic_batchsize(int(first.shape[0]))
            return "static"
        if kind == "dynamic_image_size":
            nhwc = self.layouts[:1] == ["NHWC"]
            h, w = (first.shape[1], first.shape[2]) if nhwc else (first.shape[2], first.shape[3])
            self.session.set_dynamic_hw(int(w), int(h))
            return "static"
        return "dymdims"

    def infer(self, feed):
        import numpy as np

        arrays = self._arrays(feed)
        mode = self._set_gear(arrays)
        outs = list(self.session.infer(arrays, mode=mode))
        names = self.output_names or ["output_%d" % i for i in range(len(outs))]
        if len(outs) < len(names):
            raise RuntimeError("the .om returned %d output(s); the contract names %d" % (len(outs), len(names)))
        return dict((n, np.asarray(outs[i])) for i, n in enumerate(names))

    def close(self):
        session, self.session = self.session, None
        if session is not None:
            for name in ("free_resource", "finalize"):
                fn = getattr(session, name, None)
                if fn is not None:
                    fn()
                    break


def load(path, options):
    return Session(path, options)
