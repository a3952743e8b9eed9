"""Export: the target's exporter writes the artifact into ``job.workdir`` and says what it is (``Artifact``)."""

from __future__ import annotations

import errno

from ..errors import EdgeconvError, ToolchainFailed
from ..model import Model
from ..records import Artifact, Job, Target, load_ref

# An OSError with one of these is the output's problem (disk full, read-only): reported as such, not as the toolchain's.
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def export(model: Model, target: Target, job: Job, where: str) -> Artifact:
    job.model = model
    try:
        return load_ref(target.exporter)(model, job)
    except EdgeconvError as exc:
        exc.file = exc.file or where
        raise
    except OSError as exc:
        if exc.errno in WRITE_ERRORS:
            raise  # reported as an output problem by the pipeline
        raise ToolchainFailed(f"{target.name} export failed: {exc}", file=where, stage="export") from exc
    except Exception as exc:  # the vendor's own error: one line, the traceback kept for --debug
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ToolchainFailed(f"{target.name} export failed: {text}", file=where, stage="export") from exc
