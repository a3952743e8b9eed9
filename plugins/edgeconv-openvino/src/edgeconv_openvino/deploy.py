"""The runtime settings the IR was verified with, inside the IR where OpenVINO reads them, and the IR checked as a
plain ``core.compile_model(xml, device)`` runs it.

Why: each OpenVINO device picks its own compute precision for an f32 IR when no hint is given -- bf16 on a CPU with
AVX512-BF16 or AMX (this build host: AMD EPYC, avx512_bf16), f16 on GPUs and NPUs. edgeconv verifies with an
explicit ``INFERENCE_PRECISION_HINT`` (``runner.resolve_hint``); a user's plain ``compile_model`` then ran another
arithmetic than the one verified (91 % label agreement on a classifier, issue #17).

1. ``store_runtime_options``: the verified hint (and performance hint) go into the IR's ``rt_info`` under
   ``runtime_options``, the section a device plugin applies at ``compile_model`` time. Measured with OpenVINO
   2026.4 here: the CPU plugin applies only its KV-cache and dynamic-quantization options from that section
   (``Config::apply_rt_info`` in src/plugins/intel_cpu/src/config.cpp), not ``INFERENCE_PRECISION_HINT``: a plain
   load still computes in bf16 on this CPU. The options are written anyway -- they say what was verified, and a
   runtime that applies them gets the verified arithmetic -- and (2) checks what a plain load really does.
2. ``plain_load_check``: compile the IR as a plain load does (no properties); when the precision it picks differs
   from the verified one, verify that configuration too (the fidelity contract, against the source) and say which
   settings the deployment code must pass.
"""

from __future__ import annotations

from typing import Any

PLAIN_SAMPLES = 32  # samples the plain-load configuration is verified on (the main verification uses all)


def deploy_config(runner_options: dict[str, Any]) -> dict[str, str]:
    """The properties deployment code passes to ``core.compile_model(xml, device, config)`` to run what was
    verified (the precision hint decides the numbers; the performance hint only the speed)."""
    out = {"INFERENCE_PRECISION_HINT": str(runner_options.get("precision_hint") or "f32")}
    if runner_options.get("performance_hint"):
        out["PERFORMANCE_HINT"] = str(runner_options["performance_hint"]).upper()
    return out


def store_runtime_options(ov_model: Any, config: dict[str, str]) -> dict[str, str]:
    """Write ``config`` into the model's ``rt_info`` ``runtime_options`` (saved with the IR)."""
    for key, value in config.items():
        ov_model.set_rt_info(value, ["runtime_options", key])
    return dict(config)


def _plain_hint(xml: Any, device: str) -> str | None:
    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), device)
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    return hint.to_string() if hasattr(hint, "to_string") else str(hint)


def plain_gates(precision: str, hint: str | None) -> str:
    """The precision whose gates judge a plain load: a deployment that computes an f32/f16 IR in bf16 (the CPU's
    default with AVX512-BF16 or AMX) is a bf16 deployment and is held to bf16's gates, not fp32's; an f16 hint (GPU,
    NPU) to fp16's. An INT8 IR keeps its own (looser) gates."""
    if precision in ("fp32", "fp16") and hint == "bf16":
        return "bf16"
    if precision == "fp32" and hint == "f16":
        return "fp16"
    return precision


def _data(job: Any, io: Any) -> Any:
    """Up to PLAIN_SAMPLES samples of the verification data (else the calibration set, else seeded noise), without
    labels: the check compares the two runs' outputs, and a task's labels (boxes, sequences) are not a classifier's."""
    import numpy as np

    from edgeconv.plugin import load_dataset

    source = getattr(job, "data", None)
    if source is None and getattr(job, "calibration_source", None) not in (None, "random"):
        source = job.calibration_source
    if source is None:
        return None
    if isinstance(source, dict):
        source = {k: v for k, v in source.items() if k != "labels"}
    elif str(source).endswith(".npz"):
        with np.load(source, allow_pickle=False) as z:
            source = {k: z[k][:PLAIN_SAMPLES] for k in z.files if k != "labels"}
    ds = load_dataset(source, io, what="--data", limit=PLAIN_SAMPLES, seed=getattr(job, "seed", 0))
    return {k: v[:PLAIN_SAMPLES] for k, v in ds.arrays.items()}


def plain_load_check(source: Any, xml: Any, io: Any, job: Any, runner_options: dict[str, Any]) -> dict[str, Any]:
    """What a plain ``compile_model(xml, device)`` computes in, and (when it is not the verified precision) whether
    that configuration still passes the fidelity contract against ``source``. Returns ``{"pass", "reason",
    "precision_hint", "verified_hint", "deploy_config", ...}``."""
    from edgeconv.plugin import Model, check_models

    device = runner_options.get("device") or "CPU"
    verified = runner_options.get("precision_hint") or "f32"
    config = deploy_config(runner_options)
    hint = _plain_hint(xml, device)
    out: dict[str, Any] = {"device": device, "precision_hint": hint, "verified_hint": verified,
                           "deploy_config": config}
    if hint == verified:
        out.update({"pass": True, "same_as_verified": True, "reason": None})
        return out
    candidate = Model(form="openvino", io=io, path=xml)
    gates = plain_gates(job.precision, hint)
    out["gates"] = gates
    res = check_models(source, candidate, data=_data(job, source.io), precision=gates,
                       thresholds=dict(getattr(job, "thresholds", None) or {}) or None,
                       runner_options={**runner_options, "plain": True}, seed=getattr(job, "seed", 0))
    worst = [f for f in res["fidelity"] if not f.get("pass", True)]
    out.update({
        "same_as_verified": False,
        "pass": bool(res["pass"]),
        "samples": (res.get("data") or {}).get("samples"),
        "fidelity": [{k: f.get(k) for k in ("name", "cosine", "sqnr_db", "max_abs", "pass", "failures")}
                     for f in res["fidelity"]],
        "reason": None if res["pass"] else (
            f"a plain compile_model(xml, {device!r}) computes in {hint} on this host and fails the fidelity contract "
            f"at {gates}'s gates "
            f"({'; '.join(w['name'] + ': ' + '; '.join(w.get('failures') or []) for w in worst)[:300]}): deploy "
            f"with compile_model(xml, {device!r}, {config}) (-O plain_load=warn when your deployment does)"),
    })
    return out
