"""Building the engine: options -> builder settings, the Python builder API, ``trtexec``, build.json.

``BuildSettings`` is plain data computed from the target options, the precision, the target
TensorRT version and the profiles. The same settings give

- the TensorRT Python builder calls (``apply`` / ``build_with_python``), as documented for
  TensorRT 8.5-10.x: ``trt.Builder``, ``create_network(flags)``, ``trt.OnnxParser.parse_from_file``,
  ``create_builder_config``, ``set_flag(BuilderFlag.FP16|INT8|VERSION_COMPATIBLE|...)``,
  ``set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)``, ``create_optimization_profile`` /
  ``set_shape(name, min, opt, max)`` / ``add_optimization_profile``, ``hardware_compatibility_level``,
  ``create_timing_cache`` / ``set_timing_cache`` / ``get_timing_cache().serialize()``,
  ``build_serialized_network``;
- the equivalent ``trtexec`` command line (``trtexec_argv``), with the flags of ``trtexec --help``
  of TensorRT 8.6 and 10.x (``--onnx --saveEngine --skipInference --fp16 --int8 --noTF32
  --stronglyTyped --minShapes/--optShapes/--maxShapes --memPoolSize=workspace:N --timingCacheFile
  --versionCompatible --excludeLeanRuntime --hardwareCompatibilityLevel=ampere+
  --builderOptimizationLevel --device``);
- ``build.json`` and ``trtexec.sh`` beside the prepared ONNX, which reproduce the build on the
  device: ``bash trtexec.sh``, or ``python -m edgeconv_tensorrt.build build.json``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, ToolchainFailed, ToolchainMissing, keep_float_option

from .prepare import Profile
from .versions import TrtVersion

BUILD_SCHEMA = "edgeconv.tensorrt.build/1"
HW_LEVELS = {"none": None, "ampere+": "AMPERE_PLUS"}


@dataclass
class BuildSettings:
    precision: str
    trt: TrtVersion
    profiles: dict[str, Profile] = field(default_factory=dict)
    workspace_mib: int = 0
    tf32: bool = False
    allow_fp16: bool = False
    strongly_typed: bool = False
    version_compatible: bool = False
    exclude_lean_runtime: bool = False
    hardware_compatibility: str = "none"
    opt_level: int = -1
    timing_cache: str | None = None
    device: int = 0
    keep_float: tuple[str, ...] = ()  # ONNX node names whose layers stay float32 (precision constraints)

    @classmethod
    def from_options(cls, precision: str, options: dict[str, Any], trt: TrtVersion,
                     profiles: dict[str, Profile], *, jetson: bool = False) -> BuildSettings:
        hw = str(options.get("hardware_compatibility") or "none")
        s = cls(
            precision=precision,
            trt=trt,
            profiles=dict(profiles),
            workspace_mib=int(options.get("workspace_mib") or 0),
            tf32=bool(options.get("tf32", False)),
            allow_fp16=bool(options.get("allow_fp16", False)),
            strongly_typed=bool(options.get("strongly_typed", False)) or trt.always_strongly_typed,
            version_compatible=bool(options.get("version_compatible", False)),
            exclude_lean_runtime=bool(options.get("exclude_lean_runtime", False)),
            hardware_compatibility=hw,
            opt_level=int(options.get("opt_level", -1) if options.get("opt_level") is not None else -1),
            device=int(options.get("device") or 0),
            keep_float=tuple(keep_float_option(options)),
        )
        s.validate(jetson=jetson)
        return s

    def validate(self, *, jetson: bool = False) -> None:
        def bad(msg: str) -> None:
            raise BadInput(msg, stage="options")

        if self.hardware_compatibility not in HW_LEVELS:
            bad(f"-O hardware_compatibility={self.hardware_compatibility!r} must be one of: {', '.join(HW_LEVELS)}")
        if (self.version_compatible or self.hardware_compatibility != "none") and not self.trt.has_compatibility_modes:
            bad(f"version- and hardware-compatible engines need TensorRT 8.6 or newer (target: {self.trt.short})")
        if self.hardware_compatibility != "none" and jetson:
            bad("-O hardware_compatibility=ampere+ is for discrete GPUs: TensorRT does not support hardware "
                "compatibility on Jetson/JetPack")
        if self.exclude_lean_runtime and not self.version_compatible:
            bad("-O exclude_lean_runtime=true needs -O version_compatible=true")
        if self.strongly_typed and not self.trt.has_strongly_typed:
            bad(f"-O strongly_typed=true needs TensorRT 10 or newer (target: {self.trt.short})")
        if self.strongly_typed and self.allow_fp16:
            bad("-O allow_fp16 sets a precision flag, which a strongly typed network does not take")
        if self.opt_level != -1 and not (0 <= self.opt_level <= 5):
            bad(f"-O opt_level={self.opt_level} must be 0..5 (TensorRT's builder optimization level; -1 = default)")
        if self.opt_level != -1 and not self.trt.has_compatibility_modes:
            bad(f"-O opt_level needs TensorRT 8.6 or newer (target: {self.trt.short})")
        if self.workspace_mib < 0:
            bad("-O workspace_mib must be >= 0 (0 = TensorRT's default: the device memory)")

    # -- what gets set ----------------------------------------------------------------
    def network_flags(self) -> list[str]:
        flags = []
        if self.trt.explicit_batch_flag:
            flags.append("EXPLICIT_BATCH")
        if self.strongly_typed and not self.trt.always_strongly_typed:
            flags.append("STRONGLY_TYPED")
        return flags

    def builder_flags(self) -> list[str]:
        """``trt.BuilderFlag`` members to set (precision flags only where the network is weakly typed)."""
        flags = []
        if self.trt.precision_flags and not self.strongly_typed:
            if self.precision == "fp16" or (self.precision == "int8" and self.allow_fp16):
                flags.append("FP16")
            if self.precision == "int8":
                flags.append("INT8")  # explicit quantization: the network's Q/DQ nodes give the scales
        if self.version_compatible:
            flags.append("VERSION_COMPATIBLE")
        if self.exclude_lean_runtime:
            flags.append("EXCLUDE_LEAN_RUNTIME")
        if self.layer_constraints():
            flags.append("OBEY_PRECISION_CONSTRAINTS")  # otherwise the builder may still pick a faster precision
        return flags

    def layer_constraints(self) -> bool:
        """keep_float becomes per-layer precisions on a weakly typed network with a reduced precision; a
        strongly typed network takes each layer's type from the ONNX (no Q/DQ = float), and fp32 has none."""
        return bool(self.keep_float) and not self.strongly_typed and self.trt.precision_flags \
            and self.precision in ("fp16", "int8")

    def cleared_flags(self) -> list[str]:
        return [] if self.tf32 or not self.trt.precision_flags else ["TF32"]

    def parser_flags(self) -> list[str]:
        # Polygraphy's CreateConfig: version/hardware compatibility needs the native InstanceNorm,
        # which 8.6 must be asked for (TensorRT 10 has it on by default).
        if (self.version_compatible or self.hardware_compatibility != "none") and not self.trt.native_instancenorm_default:
            return ["NATIVE_INSTANCENORM"]
        return []

    def dynamic_profiles(self) -> dict[str, Profile]:
        return {k: p for k, p in self.profiles.items() if p.dynamic}

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "tensorrt": self.trt.short,
            "network_flags": self.network_flags(),
            "builder_flags": self.builder_flags(),
            "cleared_flags": self.cleared_flags(),
            "parser_flags": self.parser_flags(),
            "strongly_typed": self.strongly_typed,
            "profiles": {k: p.to_dict() for k, p in self.profiles.items()},
            "workspace_mib": self.workspace_mib or None,
            "version_compatible": self.version_compatible,
            "exclude_lean_runtime": self.exclude_lean_runtime,
            "hardware_compatibility": self.hardware_compatibility,
            "builder_optimization_level": None if self.opt_level == -1 else self.opt_level,
            "timing_cache": self.timing_cache,
            "device": self.device,
            "keep_float": list(self.keep_float),
        }

    # -- trtexec ----------------------------------------------------------------------
    def trtexec_argv(self, onnx: str, plan: str, trtexec: str = "trtexec") -> list[str]:
        argv = [trtexec, f"--onnx={onnx}", f"--saveEngine={plan}", "--skipInference"]
        if self.trt.precision_flags and not self.strongly_typed:
            if "FP16" in self.builder_flags():
                argv.append("--fp16")
            if "INT8" in self.builder_flags():
                argv.append("--int8")
        if self.strongly_typed and not self.trt.always_strongly_typed:
            argv.append("--stronglyTyped")
        if self.cleared_flags():
            argv.append("--noTF32")
        dyn = self.dynamic_profiles()
        if dyn:
            for which, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
                spec = ",".join(f"{_quote_name(name)}:{'x'.join(map(str, getattr(p, which)))}" for name, p in dyn.items())
                argv.append(f"{flag}={spec}")
        if self.workspace_mib:
            argv.append(f"--memPoolSize=workspace:{self.workspace_mib}")
        if self.timing_cache:
            argv.append(f"--timingCacheFile={self.timing_cache}")
        if self.version_compatible:
            argv.append("--versionCompatible")
        if self.exclude_lean_runtime:
            argv.append("--excludeLeanRuntime")
        if self.hardware_compatibility != "none":
            argv.append(f"--hardwareCompatibilityLevel={self.hardware_compatibility}")
        if self.opt_level != -1:
            argv.append(f"--builderOptimizationLevel={self.opt_level}")
        if self.device:
            argv.append(f"--device={self.device}")
        if self.layer_constraints():
            # trtexec's per-layer precision flags (TensorRT 8.4+): layer names = the ONNX node names
            spec = ",".join(f"{_quote_name(n)}:fp32" for n in self.keep_float)
            argv += ["--precisionConstraints=obey", f"--layerPrecisions={spec}", f"--layerOutputTypes={spec}"]
        return argv

    # -- the Python builder API ------------------------------------------------------
    def apply(self, trt: Any, builder: Any, network: Any, config: Any) -> list[str]:
        """Configure ``config`` for ``network``; returns the calls made, for the build log."""
        calls = []
        for name in self.builder_flags():
            config.set_flag(getattr(trt.BuilderFlag, name))
            calls.append(f"config.set_flag(BuilderFlag.{name})")
        for name in self.cleared_flags():
            config.clear_flag(getattr(trt.BuilderFlag, name))
            calls.append(f"config.clear_flag(BuilderFlag.{name})")
        if self.workspace_mib:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_mib << 20)
            calls.append(f"config.set_memory_pool_limit(MemoryPoolType.WORKSPACE, {self.workspace_mib << 20})")
        dyn = self.dynamic_profiles()
        if dyn:
            profile = builder.create_optimization_profile()
            for name, p in dyn.items():
                profile.set_shape(name, p.min, p.opt, p.max)
                calls.append(f"profile.set_shape({name!r}, {p.min}, {p.opt}, {p.max})")
            config.add_optimization_profile(profile)
            calls.append("config.add_optimization_profile(profile)")
        level = HW_LEVELS[self.hardware_compatibility]
        if level:
            config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, level)
            calls.append(f"config.hardware_compatibility_level = HardwareCompatibilityLevel.{level}")
        if self.opt_level != -1:
            config.builder_optimization_level = self.opt_level
            calls.append(f"config.builder_optimization_level = {self.opt_level}")
        if self.layer_constraints():
            calls += keep_layers_float(trt, network, self.keep_float)
        return calls

    def network_flag_bits(self, trt: Any) -> int:
        bits = 0
        for name in self.network_flags():
            bits |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
        return bits


def _layer_node(layer: Any) -> str:
    """The ONNX node a parsed layer came from: TensorRT 10 records it in the layer's metadata
    (``[ONNX Layer: name]``); the ONNX parser also names the node's main layer after it."""
    meta = str(getattr(layer, "metadata", "") or "")
    m = re.search(r"\[ONNX Layer: ([^\]]+)\]", meta)
    return m.group(1) if m else layer.name


def keep_layers_float(trt: Any, network: Any, nodes: tuple[str, ...]) -> list[str]:
    """``layer.precision = float32`` and ``set_output_type(i, float32)`` on every layer of the kept
    ONNX nodes (with ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS`` set by ``builder_flags``)."""
    wanted = set(nodes)
    calls, found = [], set()
    floats = {getattr(trt.DataType, n, None) for n in ("FLOAT", "HALF", "BF16")} - {None}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        node = _layer_node(layer)
        if node not in wanted:
            continue
        found.add(node)
        layer.precision = trt.DataType.FLOAT
        calls.append(f"network.get_layer({i}).precision = DataType.FLOAT  # {layer.name}")
        for k in range(layer.num_outputs):
            if layer.get_output(k).dtype in floats:
                layer.set_output_type(k, trt.DataType.FLOAT)
                calls.append(f"network.get_layer({i}).set_output_type({k}, DataType.FLOAT)")
    missing = [n for n in nodes if n not in found]
    if missing:
        raise ToolchainFailed(f"keep_float: the TensorRT network has no layer from ONNX node(s) {', '.join(missing)}",
                              stage="export")
    return calls


def _quote_name(name: str) -> str:
    # trtexec: "Input names can be wrapped with escaped single quotes (ex: 'Input:0')".
    return f"'{name}'" if (":" in name or "," in name) else name


class _Log:
    def __init__(self, path: Path | None) -> None:
        self.lines: list[str] = []
        self.path = path

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def tail(self, n: int = 6) -> str:
        return " | ".join(line.strip() for line in self.lines[-n:] if line.strip())

    def save(self) -> None:
        if self.path is not None:
            self.path.write_text("\n".join(self.lines) + "\n")


def build_with_python(onnx_path: Path, plan_path: Path, settings: BuildSettings, log_path: Path | None = None,
                      trt: Any = None) -> dict[str, Any]:
    """Build ``plan_path`` from ``onnx_path`` with the TensorRT Python builder API."""
    if trt is None:
        import tensorrt as trt  # noqa: PLC0415 (the one place the builder imports TensorRT)
    log = _Log(log_path)
    verbose = getattr(getattr(trt.ILogger, "Severity", None), "VERBOSE", None)

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg):  # noqa: A003 (TensorRT's interface)
            if severity != verbose:  # the builder's verbose stream is thousands of lines
                log(f"[{getattr(severity, 'name', severity)}] {msg}")

    logger = Logger()
    started = time.perf_counter()
    builder = trt.Builder(logger)
    network = builder.create_network(settings.network_flag_bits(trt))
    parser = trt.OnnxParser(network, logger)
    for name in settings.parser_flags():
        parser.set_flag(getattr(trt.OnnxParserFlag, name))
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        log.save()
        raise ToolchainFailed(f"TensorRT's ONNX parser rejected {onnx_path.name}: {'; '.join(errors)[:400]}",
                              stage="export")
    config = builder.create_builder_config()
    calls = settings.apply(trt, builder, network, config)
    cache_bytes = b""
    if settings.timing_cache and os.path.isfile(settings.timing_cache):
        cache_bytes = Path(settings.timing_cache).read_bytes()
    if settings.timing_cache:
        cache = config.create_timing_cache(cache_bytes)
        config.set_timing_cache(cache, ignore_mismatch=False)
        calls.append(f"config.set_timing_cache(create_timing_cache({len(cache_bytes)} bytes))")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        log.save()
        raise ToolchainFailed(f"TensorRT failed to build the engine: {log.tail() or 'no log'}", stage="export")
    plan_path.write_bytes(bytes(serialized))
    if settings.timing_cache:
        Path(settings.timing_cache).write_bytes(bytes(config.get_timing_cache().serialize()))
    log.save()
    return {"builder": "python", "tensorrt": str(trt.__version__), "calls": calls,
            "seconds": round(time.perf_counter() - started, 3), "log": str(log_path) if log_path else None}


def build_with_trtexec(trtexec: str, onnx_path: Path, plan_path: Path, settings: BuildSettings,
                       log_path: Path | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Build ``plan_path`` with ``trtexec`` (when the Python module is absent): no shell, a scratch working folder,
    an explicit environment (the core's worker); a missing trtexec is exit 3, a timeout or a failure exit 4."""
    from .children import run_child
    from .doctor import _BANNER

    argv = settings.trtexec_argv(str(onnx_path), str(plan_path), trtexec)
    started = time.perf_counter()
    try:
        done = run_child(argv, timeout=timeout, what="trtexec", log=log_path)
    except ToolchainMissing as exc:
        raise ToolchainMissing(f"trtexec not found at {trtexec} ({exc.cause})", stage="export") from None
    except ToolchainFailed as exc:
        raise ToolchainFailed(exc.cause, stage="export") from None
    if done.returncode != 0 or not plan_path.is_file():
        raise ToolchainFailed(f"trtexec failed (exit {done.returncode}): {done.tail(6, 600)}", stage="export")
    m = _BANNER.search(done.output)
    version = str(TrtVersion.from_banner(int(m.group(1)))) if m else None
    return {"builder": "trtexec", "tensorrt": version, "argv": argv,
            "seconds": round(time.perf_counter() - started, 3), "log": str(log_path) if log_path else None}


def write_build_kit(folder: Path, onnx_name: str, plan_name: str, settings: BuildSettings,
                    extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """``build.json`` and ``trtexec.sh``: the build, reproducible on the device from this folder."""
    cache = "timing.cache" if settings.timing_cache else None
    local = BuildSettings(**{**settings.__dict__, "timing_cache": cache})
    argv = local.trtexec_argv(onnx_name, plan_name)
    doc = {
        "schema": BUILD_SCHEMA,
        "onnx": onnx_name,
        "plan": plan_name,
        "settings": local.to_dict(),
        "trtexec": {"argv": argv, "command": shlex.join(argv),
                    "note": f"flags of trtexec from TensorRT {settings.trt.short}; run in this folder"},
        "python": {"command": "python -m edgeconv_tensorrt.build build.json",
                   "note": "the same build with the TensorRT Python API (needs edgeconv-tensorrt on the device)"},
        **(extra or {}),
    }
    build_json = folder / "build.json"
    build_json.write_text(json.dumps(doc, indent=2) + "\n")
    script = folder / "trtexec.sh"
    script.write_text(
        "#!/usr/bin/env sh\n"
        "# Rebuild the TensorRT engine on the device (written by edgeconv; see build.json).\n"
        "set -e\ncd \"$(dirname \"$0\")\"\n"
        f"TRTEXEC=\"${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}\"\n"
        f"\"$TRTEXEC\" {shlex.join(argv[1:])}\n"
    )
    script.chmod(0o755)
    return {"build.json": build_json, "trtexec.sh": script}


def settings_from_build_json(doc: dict[str, Any]) -> BuildSettings:
    s = doc["settings"]
    profiles = {k: Profile(k, tuple(v["min"]), tuple(v["opt"]), tuple(v["max"])) for k, v in s["profiles"].items()}
    return BuildSettings(
        precision=s["precision"], trt=TrtVersion.parse(s["tensorrt"]), profiles=profiles,
        workspace_mib=int(s.get("workspace_mib") or 0), tf32="TF32" not in s.get("cleared_flags", []),
        allow_fp16=s["precision"] == "int8" and "FP16" in s.get("builder_flags", []),
        strongly_typed=bool(s.get("strongly_typed")), version_compatible=bool(s.get("version_compatible")),
        exclude_lean_runtime=bool(s.get("exclude_lean_runtime")),
        hardware_compatibility=s.get("hardware_compatibility") or "none",
        opt_level=-1 if s.get("builder_optimization_level") is None else int(s["builder_optimization_level"]),
        timing_cache=s.get("timing_cache"), device=int(s.get("device") or 0),
        keep_float=tuple(s.get("keep_float") or ()),
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m edgeconv_tensorrt.build build.json``: build the plan described by a build kit."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m edgeconv_tensorrt.build", description=main.__doc__)
    ap.add_argument("build_json", type=Path)
    args = ap.parse_args(argv)
    folder = args.build_json.parent
    doc = json.loads(args.build_json.read_text())
    settings = settings_from_build_json(doc)
    import tensorrt as trt

    installed = TrtVersion.parse(trt.__version__)
    if (installed.major, installed.minor) != (settings.trt.major, settings.trt.minor):
        print(f"note: prepared for TensorRT {settings.trt.short}, building with {installed}")
        settings.trt = installed
    if settings.timing_cache:
        settings.timing_cache = str(folder / settings.timing_cache)
    info = build_with_python(folder / doc["onnx"], folder / doc["plan"], settings, folder / "build.log")
    print(f"wrote {folder / doc['plan']} in {info['seconds']} s (TensorRT {info['tensorrt']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
