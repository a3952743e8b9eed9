"""ATC: edgeconv options -> the ``atc`` command line, running it (never through a shell), its error codes, and the
kit that rebuilds the .om on a CANN host (``atc.json``, ``atc.sh``).

The parameters and their documented forms (ATC guide, CANN 8.0-9.0, "ATC parameters"):

- ``--framework=5`` (ONNX), ``--model=<file>.onnx``, ``--output=<path without .om>``, ``--soc_version=Ascend<Name>``;
- ``--input_shape="name:n,c,h,w;name2:..."``, ``--input_format`` NCHW / NHWC / ND (NCDHW / NDHWC);
- one of ``--dynamic_batch_size="1,2,4,8"``, ``--dynamic_image_size="h,w;h,w"``, ``--dynamic_dims="d,d;d,d"``;
- ``--precision_mode`` (force_fp16 is the inference default; must_keep_origin_dtype keeps fp32, allow_mix_precision
  mixes; force_fp32 = cube_fp16in_fp32out; allow_fp32_to_fp16) or, not together with it, ``--precision_mode_v2``
  (fp16, origin, mixed_float16, cube_fp16in_fp32out, mixed_bfloat16);
- ``--insert_op_conf=aipp.cfg`` (AIPP), ``--out_nodes="node:0;node:1"``, ``--log`` debug/info/warning/error/null;
- ``--mode=3`` with ``--check_report=<file>``: pre-check only.

The guide's "enclose the value in double quotes" is shell quoting: edgeconv passes each ``--name=value`` as one
argument to the ``atc`` process (the core's worker: an argument list, no shell, a timeout), so spaces, quotes and
``;`` in paths, input names or extra arguments arrive literally.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, ToolchainFailed, ToolchainMissing

from .hooks import INSTALL_HINT, V1_MODES, V2_MODES
from .socs import SOCS

KIT_SCHEMA = "edgeconv.ascend.atc/1"

# -p -> precision mode, per flag. int8: the AMCT-quantised layers are int8, the rest fp16 (ATC's default).
PRECISION = {
    "v1": {"fp16": "force_fp16", "int8": "force_fp16", "origin": "must_keep_origin_dtype",
           "mixed": "allow_mix_precision", "cube_fp16in_fp32out": "force_fp32", "fp32_to_fp16": "allow_fp32_to_fp16"},
    "v2": {"fp16": "fp16", "int8": "fp16", "origin": "origin", "mixed": "mixed_float16",
           "cube_fp16in_fp32out": "cube_fp16in_fp32out", "fp32_to_fp16": None},
}

# Parameters edgeconv sets itself (an extra argument may not repeat them).
MANAGED = {"framework", "model", "weight", "output", "soc_version", "input_shape", "input_format",
           "dynamic_batch_size", "dynamic_image_size", "dynamic_dims", "precision_mode", "precision_mode_v2",
           "insert_op_conf", "out_nodes", "log", "mode", "check_report"}
# Further ATC parameters seen documented (ATC guide / MindStudio ATC tuning page / precision_mode related parameters).
EXTRA_ALLOWED = ("output_type", "input_fp16_nodes", "op_select_implmode", "optypelist_for_implmode",
                 "enable_small_channel", "fusion_switch_file", "keep_dtype", "modify_mixlist", "op_precision_mode",
                 "customize_dtypes", "op_debug_level", "buffer_optimize", "compression_optimize_conf",
                 "is_input_adjust_hw_layout", "is_output_adjust_hw_layout")

# ATC error codes with what they mean and the fix (ATC troubleshooting pages, "GE Errors"; ait analyze).
CODES = {
    "E10003": "an ATC argument value is invalid",
    "E10013": "an ATC argument value is out of range",
    "E10014": "an ATC argument value is invalid",
    "E10015": "an ATC argument value is invalid",
    "E10054": "a required ATC argument is empty",
    "E19010": "no ONNX parser is registered for an operator at this opset",
    "EZ0501": "an operator's IR is not registered in this CANN",
    "EZ3002": "an operator type is not supported by the ops kernel",
    "EZ3003": "no ops kernel / engine supports an operator on this SoC",
}


def code_hint(codes: list[str]) -> str:
    if any(c in ("E19010", "EZ0501", "EZ3002", "EZ3003") for c in codes):
        return ("an operator this CANN / SoC does not support: check the pre-check warnings and "
                "docs/targets/ascend.md (re-export at another opset, replace the op); the ATC log names the node")
    if any(c.startswith("E10") for c in codes):
        return "ATC rejected an argument: atc.json in the output holds the command line; see `atc --help`"
    return "the ATC log has the details; ATC's error codes are explained in CANN's troubleshooting guide"


def soc_required() -> BadInput:
    return BadInput("ATC needs the SoC to build for: -O soc_version=Ascend<Name> with <Name> from `npu-smi info` on "
                    f"the device (e.g. {', '.join(('Ascend310B4', 'Ascend310P3', 'Ascend910B3'))}); known: "
                    f"{', '.join(SOCS)}", stage="options")


def no_atc(opts: dict[str, Any]) -> ToolchainMissing:
    """Why ATC cannot run here (exit 3), with CANN's set-up step when it is installed but not sourced."""
    if opts.get("atc"):
        return ToolchainMissing(f"-O atc={opts['atc']} is not an executable file", stage="export", hint=INSTALL_HINT)
    from . import cann

    info = cann.find_cann()
    why = "atc is not on PATH"
    if info["set_env"] and not info["environment_set"]:
        why += f"; CANN is installed but not set up in this shell: source {info['set_env'][0]}"
    elif info["home"]:
        why += f" nor under {info['home']}"
    return ToolchainMissing(f"target 'ascend' cannot run ATC here: {why}", stage="export", hint=INSTALL_HINT)


@dataclass
class AtcSettings:
    soc_version: str
    input_shape: str
    input_format: str
    dynamic: tuple[str, str] | None
    precision_flag: str  # "precision_mode" | "precision_mode_v2"
    precision_value: str
    log: str = "error"
    insert_op_conf: str | None = None
    out_nodes: str = ""
    extra: list[str] = field(default_factory=list)
    keep_float: list[str] = field(default_factory=list)  # ONNX node names: --keep_dtype file (KEEP_DTYPE_FILE)
    keep_dtype: str | None = None  # where that file is for this command line

    def argv(self, model: str, output: str, atc: str = "atc", mode: int | None = None,
             check_report: str | None = None) -> list[str]:
        argv = [atc]
        if mode is not None:
            argv.append(f"--mode={mode}")
        argv += ["--framework=5", f"--model={model}", f"--output={output}", f"--soc_version={self.soc_version}"]
        if self.input_shape:
            argv.append(f"--input_shape={self.input_shape}")
        argv.append(f"--input_format={self.input_format}")
        if self.dynamic:
            argv.append(f"--{self.dynamic[0]}={self.dynamic[1]}")
        argv.append(f"--{self.precision_flag}={self.precision_value}")
        if self.insert_op_conf:
            argv.append(f"--insert_op_conf={self.insert_op_conf}")
        if self.out_nodes:
            argv.append(f"--out_nodes={self.out_nodes}")
        if self.keep_dtype:
            argv.append(f"--keep_dtype={self.keep_dtype}")
        argv.append(f"--log={self.log}")
        if check_report:
            argv.append(f"--check_report={check_report}")
        return argv + list(self.extra)

    def to_dict(self) -> dict[str, Any]:
        return {"soc_version": self.soc_version, "input_shape": self.input_shape, "input_format": self.input_format,
                "dynamic": dict([self.dynamic]) if self.dynamic else None,
                self.precision_flag: self.precision_value, "insert_op_conf": self.insert_op_conf,
                "out_nodes": self.out_nodes or None, "log": self.log, "extra_args": list(self.extra),
                **({"keep_float": list(self.keep_float), "keep_dtype": self.keep_dtype} if self.keep_float else {})}


def precision_setting(precision: str, options: dict[str, Any]) -> tuple[str, str]:
    flag = str(options.get("precision_flag") or "v1")
    name = "precision_mode" if flag == "v1" else "precision_mode_v2"
    explicit = str(options.get("precision_mode") or "")
    if explicit:
        allowed = V1_MODES if flag == "v1" else V2_MODES
        if explicit not in allowed:
            raise BadInput(f"-O precision_mode={explicit} is not a --{name} value (they are: {', '.join(allowed)}); "
                           f"{'-O precision_flag=v2' if flag == 'v1' else '-O precision_flag=v1'} selects the other "
                           "parameter", stage="options")
        return name, explicit
    key = precision if precision in ("fp16", "int8") else str(options.get("fp32_mode") or "origin")
    value = PRECISION[flag][key]
    if value is None:
        raise BadInput(f"-O fp32_mode={key} (allow_fp32_to_fp16) has no --precision_mode_v2 equivalent: use "
                       "-O precision_flag=v1", stage="options")
    return name, value


def parse_extra(text: str) -> list[str]:
    """``-O extra_args``: a JSON list of strings (taken exactly), else shell-style words; each ``--name[=value]``."""
    text = str(text or "").strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            words = json.loads(text)
        except ValueError as exc:
            raise BadInput(f"-O extra_args is not a JSON list of strings ({exc})", stage="options") from None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise BadInput("-O extra_args must be a JSON list of strings", stage="options")
    else:
        try:
            words = shlex.split(text)
        except ValueError as exc:
            raise BadInput(f"-O extra_args: {exc}", stage="options") from None
    from edgeconv.plugin import did_you_mean

    for w in words:
        m = re.match(r"^--([a-z0-9_]+)(=.*)?$", w, re.S)
        if not m:
            raise BadInput(f"-O extra_args: {w!r} is not an ATC argument (--name or --name=value)", stage="options")
        name = m.group(1)
        if name in MANAGED:
            raise BadInput(f"-O extra_args: --{name} is set by edgeconv from its options (see docs/targets/ascend.md)",
                           stage="options")
        if name not in EXTRA_ALLOWED:
            raise BadInput(f"-O extra_args: --{name} is not among the ATC parameters edgeconv passes through "
                           f"({', '.join(EXTRA_ALLOWED)}){did_you_mean(name, EXTRA_ALLOWED)}", stage="options")
    return words


def check_out_nodes(text: str, proto) -> str:
    text = str(text or "").strip()
    if not text:
        return ""
    from edgeconv.plugin import did_you_mean

    names = {n.name for n in proto.graph.node if n.name}
    for part in text.split(";"):
        node, sep, index = part.rpartition(":")
        if not sep or not node or not index.isdigit():
            raise BadInput(f"-O out_nodes={text!r}: 'node:index;node:index' (ATC)", stage="options")
        if names and node not in names:
            raise BadInput(f"-O out_nodes: the graph has no node {node!r}{did_you_mean(node, names)}", stage="options")
    return text


KEEP_DTYPE_FILE = "keep_dtype.cfg"


def keep_dtype_text(names: list[str]) -> str:
    """ATC's --keep_dtype file: one operator name per line (``OpType::`` lines would name types)."""
    return "".join(f"{n}\n" for n in names)


def check_keep_float(opts: dict[str, Any], proto, extra: list[str]) -> list[str]:
    """``-O keep_float``: ONNX node names (ATC names the operators of an ONNX model after its nodes)."""
    from edgeconv.plugin import did_you_mean, keep_float_option

    names = keep_float_option(opts)
    if not names:
        return []
    if any(w.startswith("--keep_dtype") for w in extra):
        raise BadInput("-O keep_float writes ATC's --keep_dtype file; do not also pass --keep_dtype in -O extra_args",
                       stage="options")
    have = {n.name for n in proto.graph.node if n.name}
    for name in names:
        if have and name not in have:
            raise BadInput(f"keep_float: the graph has no node {name!r}{did_you_mean(name, have)}", stage="options")
    return names


def settings_from(job, shapes, proto, aipp_conf: str | None) -> AtcSettings:
    opts = job.options
    soc = str(opts.get("soc_version") or "")
    if not soc:
        raise soc_required()
    flag, value = precision_setting(job.precision, opts)
    extra = parse_extra(opts.get("extra_args"))
    keep = check_keep_float(opts, proto, extra)
    return AtcSettings(
        soc_version=soc, input_shape=shapes.input_shape_arg(), input_format=shapes.input_format,
        dynamic=shapes.dynamic, precision_flag=flag, precision_value=value, log=str(opts.get("log") or "error"),
        insert_op_conf=aipp_conf, out_nodes=check_out_nodes(opts.get("out_nodes"), proto), extra=extra,
        keep_float=keep, keep_dtype=str(Path(job.workdir) / KEEP_DTYPE_FILE) if keep else None,
    )


# -- running ATC ------------------------------------------------------------------------------------------------
_CODE = re.compile(r"\b(E[0-9A-Z]\d{4})\b")


def error_codes(text: str) -> list[str]:
    return list(dict.fromkeys(_CODE.findall(text)))


def first_error(text: str, codes: list[str]) -> str:
    for line in text.splitlines():
        s = line.strip()
        if codes and s.startswith(codes[0]):
            return " ".join(s.split())[:300]
    for line in text.splitlines():
        if "error" in line.lower() or "failed" in line.lower():
            return " ".join(line.split())[:300]
    tail = [line.strip() for line in text.strip().splitlines()[-3:] if line.strip()]
    return " | ".join(tail)[:300] or "no output"


def run(argv: list[str], log_path: Path, *, cwd: Path, timeout: float | None = None,
        keep_log_at: Path | None = None) -> dict[str, Any]:
    """Run ATC (argv as given, no shell, the core's worker: the caller's environment without ``PYTHON*`` except
    CANN's own ``PYTHONPATH`` entries, ``children.cann_env``); log stdout+stderr to ``log_path``. On failure the log
    is also copied to ``keep_log_at`` (beside the output folder), since the output's staging folder is removed."""
    from .children import cann_env, run_child

    try:
        done = run_child(argv, timeout=timeout, cwd=cwd, env=cann_env(), what="ATC", log=log_path)
    except ToolchainMissing as exc:
        raise ToolchainMissing(f"atc cannot run ({exc.cause})", stage="export") from None
    except ToolchainFailed:
        kept = _write_log(log_path, None, None, keep_log_at)
        raise ToolchainFailed(f"ATC did not finish within {timeout:g} s (stopped; log: {kept})", stage="export") from None
    codes = error_codes(done.output)
    ok = done.returncode == 0 and not codes
    kept = _write_log(log_path, argv, done.output, None if ok else keep_log_at)
    return {"ok": ok, "returncode": done.returncode, "codes": codes, "output": done.output, "log": str(kept),
            "seconds": done.seconds}


def _write_log(log_path: Path, argv: list[str] | None, text: str | None, keep_at: Path | None) -> Path:
    """Write the log (``argv`` None: it is there already, the worker wrote it) and copy it to ``keep_at``."""
    if argv is not None:
        log_path.write_text("# " + shlex.join(argv) + "\n" + (text or ""))
    if keep_at is not None:
        try:
            keep_at.write_text(log_path.read_text(errors="replace") if log_path.is_file() else "")
            return keep_at
        except OSError:
            pass
    return log_path


def failure_message(what: str, result: dict[str, Any]) -> str:
    codes = result["codes"]
    known = "; ".join(f"{c}: {CODES[c]}" for c in codes if c in CODES)
    code_text = ", ".join(codes) if codes else "no error code"
    return (f"{what} failed (exit {result['returncode']}; {code_text}{' -- ' + known if known else ''}): "
            f"{first_error(result['output'], codes)} (log: {result['log']})")


def failed_log_path(job, name: str = "atc") -> Path | None:
    """``<output>.atc.log`` beside the output folder: kept when ATC fails (the staging folder is removed)."""
    out = getattr(job, "output", None)
    if out is None:
        return None
    out = Path(out)
    return out.parent / f"{out.name}.{name}.log"


# -- the kit -------------------------------------------------------------------------------------------------------
def write_kit(folder: Path, onnx_name: str, om_stem: str, settings: AtcSettings,
              extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """``atc.json`` and ``atc.sh`` (and ``keep_dtype.cfg`` for keep_float): the conversion, reproducible on a
    CANN host from this folder."""
    kept: dict[str, Path] = {}
    if settings.keep_float:
        cfg = folder / KEEP_DTYPE_FILE
        cfg.write_text(keep_dtype_text(settings.keep_float))
        kept[KEEP_DTYPE_FILE] = cfg
        settings = AtcSettings(**{**settings.__dict__, "keep_dtype": KEEP_DTYPE_FILE})
    argv = settings.argv(onnx_name, om_stem)
    doc = {"schema": KIT_SCHEMA, "onnx": onnx_name, "om": f"{om_stem}.om", "settings": settings.to_dict(),
           "atc": {"argv": argv, "command": shlex.join(argv), "note": "run in this folder after sourcing CANN's "
                   "set_env.sh; each argument is one argv element (no shell quoting needed)"},
           **(extra or {})}
    kit_json = folder / "atc.json"
    kit_json.write_text(json.dumps(doc, indent=2) + "\n")
    script = folder / "atc.sh"
    script.write_text(
        "#!/usr/bin/env sh\n"
        "# Rebuild the .om on a host with Huawei's CANN toolkit (written by edgeconv; see atc.json).\n"
        "# First: source /usr/local/Ascend/ascend-toolkit/set_env.sh (CANN 8.5+: /usr/local/Ascend/cann/set_env.sh)\n"
        "set -e\ncd \"$(dirname \"$0\")\"\n"
        "ATC=\"${ATC:-atc}\"\n"
        f"\"$ATC\" {shlex.join(argv[1:])}\n"
    )
    script.chmod(0o755)
    return {"atc.json": kit_json, "atc.sh": script, **kept}


def final_folder(workdir: Path) -> str:
    """The output folder the core renames ``workdir`` to (``.NAME.tmp-XXXX`` -> ``NAME``)."""
    m = re.match(r"^\.(.+)\.tmp-[^/]+$", workdir.name)
    return str(workdir.parent / m.group(1)) if m else str(workdir)


def find_om(output_prefix: Path) -> Path | None:
    """ATC writes ``<--output>.om``; accept ``<--output>*.om`` too (some hosts append a platform suffix)."""
    exact = output_prefix.with_name(output_prefix.name + ".om")
    if exact.is_file():
        return exact
    found = sorted(output_prefix.parent.glob(output_prefix.name + "*.om"))
    return found[0] if found else None
