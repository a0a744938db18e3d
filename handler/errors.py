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
    │   ├── PromptInterrupted          INTERRUPTED           someone else interrupted ComfyUI
    │   ├── JobTimeout                 TIMEOUT               ran past its time limit
    │   └── OutputError                OUTPUT_ERROR          an output cannot be read or delivered
    │       └── OutputTooLarge         OUTPUT_TOO_LARGE      too big for the result, no bucket
    └── WorkerError                                          the worker (retry, or RunPod replaces it)
        ├── ComfyCrashed               COMFY_CRASHED         ComfyUI died mid-job
        ├── ComfyStartFailed           COMFY_START_FAILED    ComfyUI did not come up
        ├── ComfyUnreachable           COMFY_UNREACHABLE     ComfyUI stopped answering
        └── InternalError              INTERNAL_ERROR        a bug in the worker

Cancellation is not an error here: the SDK cancels the job's task and the handler re-raises
``asyncio.CancelledError`` after interrupting ComfyUI (logged with code ``CANCELLED``).

Each code belongs to exactly one class (callers match on the class, never on ``code``).
``error_payload`` renders any of them as ``{code, message, details[], diagnostics}``, the shape
``custom_node/job_error.schema.json`` declares for every runtime that reads it; ``details`` are
the dataclasses of ``handler.error_details``. The handler returns it JSON-encoded under
``error``, the SDK's convention for a failed job.
This module only uses the standard library (the supervisor imports it before ``runpod``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from handler.error_details import Detail


class HandlerError(Exception):
    """Base class: a failure with a stable ``code`` and structured ``details``."""

    #: The payload's ``code``; each concrete class below sets its own.
    code = "ERROR"
    #: When true the worker asks RunPod to replace it after this job (``refresh_worker``).
    refresh_worker = False

    def __init__(
        self,
        message: str,
        details: Iterable[Detail] = (),
        *,
        diagnostics: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)
        self.diagnostics = dict(diagnostics or {})


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


class PromptInterrupted(WorkflowFailed):
    """ComfyUI's ``/interrupt`` stopped the prompt, and this worker did not ask for it."""

    code = "INTERRUPTED"


class JobTimeout(WorkflowFailed):
    code = "TIMEOUT"


class OutputError(WorkflowFailed):
    code = "OUTPUT_ERROR"


class OutputTooLarge(OutputError):
    """The outputs are too big to return in the result and there is no bucket to upload to."""

    code = "OUTPUT_TOO_LARGE"


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


class Redactor:
    """Replaces known secret values (API keys, bucket credentials) in anything we emit."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = {s for s in secrets if len(s) >= 4}
        self._pattern: re.Pattern[str] | None = None
        self._compile()

    def add(self, *secrets: str | None) -> None:
        new = {s for s in secrets if s and len(s) >= 4} - self._secrets
        if new:
            self._secrets |= new
            self._compile()

    def _compile(self) -> None:
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def text(self, value: str) -> str:
        return self._pattern.sub("***", value) if self._pattern else value

    def deep(self, value: Any) -> Any:
        """Redact every string inside a JSON-like structure."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.deep(k): self.deep(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.deep(v) for v in value]
        return value


def error_payload(error: HandlerError, redactor: Redactor | None = None) -> dict[str, Any]:
    """The structured error of a failed job: ``{code, message, details, diagnostics}``."""
    payload = {
        "code": error.code,
        "message": error.message,
        "details": [detail.to_json() for detail in error.details],
        "diagnostics": error.diagnostics,
    }
    return redactor.deep(payload) if redactor else payload


def error_result(error: HandlerError, redactor: Redactor | None = None) -> dict[str, Any]:
    """The handler's return value for a failed job (the SDK fails the job on ``error``)."""
    result: dict[str, Any] = {"error": json.dumps(error_payload(error, redactor), default=str)}
    if error.refresh_worker:
        result["refresh_worker"] = True
    return result
