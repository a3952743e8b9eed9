"""``edgeconv fleet submit SPEC.yaml``: the matrix as a Ray job, for CI (Ray's Job Submission API).

The spec is checked here first (a bad spec never reaches the cluster: exit 2). The spec's folder is shipped as
the job's working folder (so every file the spec names must be inside it), without anything Python could import
(``*.py``, ``*.so``, ``*.pth``...: Ray puts the working folder on its workers' ``sys.path``); the job runs
``python -I -m edgeconv matrix SPEC -o edgeconv-matrix-out --cluster auto --jsonl`` on the head, which
prints each cell's record as one JSON line as it finishes. This side follows the job's log, keeps those lines
(once per cell key) in ``OUT/results.jsonl`` or prints them, and exits with the job's exit code: the worst
cell's. Ctrl-C or the timeout stops the job.

Ray runs an entry point through a shell on the head; the one here is built with ``shlex.join`` from fixed words,
the spec's file name and the ``--python`` given, so no name can become shell syntax.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import EXIT_TOOLCHAIN, BadInput, ToolchainFailed, ToolchainMissing
from .cells import CELL_SCHEMA
from .results import ResultsFile

REMOTE_OUT = "edgeconv-matrix-out"
# Ray puts a job's working folder on its workers' sys.path: never ship anything Python could import from there.
NEVER_SHIPPED = ["*.py", "*.pyc", "*.pyd", "*.so", "*.pth", "__pycache__/", ".git/"]
POLL_SECONDS = 1.0


def entrypoint(spec_name: str, python: str = "python") -> str:
    return shlex.join([python, "-I", "-m", "edgeconv", "matrix", spec_name, "-o", REMOTE_OUT,
                       "--cluster", "auto", "--jsonl"])


def records_in(text: str) -> list[dict[str, Any]]:
    """The cell records among a job log's complete lines (everything else the job printed is ignored)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("schema") == CELL_SCHEMA and isinstance(rec.get("key"), str):
            out.append(rec)
    return out


def submit_matrix(spec_path: Path, *, address: str, output: Path | None, python: str = "python",
                  timeout: float = 86400.0) -> int:
    from .fleet import import_ray
    from .spec import load_spec

    spec = load_spec(spec_path)  # inside its folder by construction (no --allow-outside here)
    if not address:
        raise BadInput("give --address http://HEAD:8265 (the head's dashboard) or set RAY_ADDRESS", stage="fleet")
    import_ray()
    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(address)
    except Exception as exc:
        raise ToolchainMissing(f"cannot reach the Job Submission API at {address}: "
                               f"{' '.join(str(exc).split())[:200]}", stage="fleet") from None
    folder = spec.path.parent
    excludes = [REMOTE_OUT, *NEVER_SHIPPED]
    if output is not None and folder in Path(output).absolute().parents:
        excludes.append(Path(output).absolute().relative_to(folder).as_posix())
    job = client.submit_job(entrypoint=entrypoint(spec.path.name, python),
                            runtime_env={"working_dir": str(folder), "excludes": excludes},
                            metadata={"edgeconv": "matrix", "spec": spec.path.name[:100]})
    results = ResultsFile(Path(output) / "results.jsonl") if output is not None else None
    if results is not None:
        results.begin([])
    try:
        return _follow(client, job, results, timeout)
    except BaseException:
        _stop(client, job)
        raise
    finally:
        if results is not None:
            results.close()


def _follow(client: Any, job: str, results: ResultsFile | None, timeout: float) -> int:
    from ray.job_submission import JobStatus

    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        status = client.get_job_status(job)
        done = status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)
        logs = client.get_job_logs(job)
        complete = logs if done else logs[: logs.rfind("\n") + 1]
        for rec in records_in(complete):
            if rec["key"] in seen:
                continue
            seen.add(rec["key"])
            if results is not None:
                results.append(rec)
            else:
                print(json.dumps(rec, default=str), flush=True)
        if done:
            info = client.get_job_info(job)
            code = getattr(info, "driver_exit_code", None)
            if code is None:
                code = 0 if status == JobStatus.SUCCEEDED else EXIT_TOOLCHAIN
            if status != JobStatus.SUCCEEDED and not seen:
                tail = " | ".join(line for line in logs.strip().splitlines()[-3:])
                print(f"edgeconv: job {job} {status}: {tail[:500]}", file=sys.stderr)
            return int(code)
        if time.monotonic() > deadline:
            raise ToolchainFailed(f"job {job} did not finish within {timeout:g} s", stage="fleet")
        time.sleep(POLL_SECONDS)


def _stop(client: Any, job: str) -> None:
    try:
        client.stop_job(job)
    except Exception:  # noqa: S110 (already finished, or the head is gone)
        pass
