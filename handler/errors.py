"""The worker's error tree, and the one place an error becomes a job payload.

Errors are grouped by who can fix them, so a caller can tell their own mistake from a worker
failure at a glance::

    HandlerError                       code                  who fixes it
    ├── CallerError                                          the caller, by changing the job
    │   ├── InvalidInput               INVALID_INPUT         a malformed job input
    │   ├── InputFileError             INPUT_FILE_ERROR      an input file that cannot be used
    │   └── WorkflowInvalid            VALIDATION_FAILED     the workflow fails validation
    ├── WorkflowFailed                                       the workflow, at run time
    │   ├── ExecutionFailed            EXECUTION_ERROR       a node raised
    │   ├── JobTimeout                 TIMEOUT               ran past its time limit
    │   └── OutputError                OUTPUT_ERROR / OUTPUT_TOO_LARGE
    └── WorkerError                                          the worker (retry, or RunPod replaces it)
        ├── ComfyCrashed               COMFY_CRASHED         ComfyUI died mid-job
        ├── ComfyStartFailed           COMFY_START_FAILED    ComfyUI did not come up
        ├── ComfyUnreachable           COMFY_UNREACHABLE     ComfyUI stopped answering
        └── InternalError              INTERNAL_ERROR        a bug in the worker

Cancellation is not an error here: the SDK cancels the job's task and the handler re-raises
``asyncio.CancelledError`` after interrupting ComfyUI (logged with code ``CANCELLED``).

``error_payload`` renders any of them as ``{code, message, details[], diagnostics}``; the
handler returns it JSON-encoded under ``error``, the SDK's convention for a failed job.
This module only uses the standard library (the supervisor imports it before ``runpod``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from handler.redaction import Redactor


class HandlerError(Exception):
    """Base class: a failure with a stable ``code`` and structured ``details``."""

    code = "ERROR"
    #: When true the worker asks RunPod to replace it after this job (``refresh_worker``).
    refresh_worker = False

    def __init__(
        self,
        message: str,
        details: Iterable[dict[str, Any]] = (),
        *,
        diagnostics: dict[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)
        self.diagnostics = dict(diagnostics or {})
        if code:
            self.code = code


class CallerError(HandlerError):
    """The job itself is wrong; the same job will fail again until the caller changes it."""


class InvalidInput(CallerError):
    code = "INVALID_INPUT"


class InputFileError(CallerError):
    code = "INPUT_FILE_ERROR"


class WorkflowInvalid(CallerError):
    code = "VALIDATION_FAILED"


class WorkflowFailed(HandlerError):
    """The workflow was accepted but failed while running."""


class ExecutionFailed(WorkflowFailed):
    code = "EXECUTION_ERROR"


class JobTimeout(WorkflowFailed):
    code = "TIMEOUT"


class OutputError(WorkflowFailed):
    code = "OUTPUT_ERROR"


class WorkerError(HandlerError):
    """The worker failed; the job may succeed on a retry or on another worker."""


class ComfyCrashed(WorkerError):
    code = "COMFY_CRASHED"


class ComfyStartFailed(WorkerError):
    code = "COMFY_START_FAILED"

    def __init__(self, message: str, *, refresh_worker: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.refresh_worker = refresh_worker


class ComfyUnreachable(WorkerError):
    code = "COMFY_UNREACHABLE"


class InternalError(WorkerError):
    code = "INTERNAL_ERROR"


def error_payload(error: HandlerError, redactor: Redactor | None = None) -> dict[str, Any]:
    """The structured error of a failed job: ``{code, message, details, diagnostics}``."""
    payload = {
        "code": error.code,
        "message": error.message,
        "details": error.details,
        "diagnostics": error.diagnostics,
    }
    return redactor.deep(payload) if redactor else payload


def error_result(error: HandlerError, redactor: Redactor | None = None) -> dict[str, Any]:
    """The handler's return value for a failed job (the SDK fails the job on ``error``)."""
    result: dict[str, Any] = {"error": json.dumps(error_payload(error, redactor), default=str)}
    if error.refresh_worker:
        result["refresh_worker"] = True
    return result
