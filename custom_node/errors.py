"""The errors of this node's endpoint client, each with the ``code`` a job gets when it ends on it.

::

    EndpointError             ENDPOINT_ERROR   base class
    ├── EndpointConfigError                    no endpoint id / URL configured
    ├── EndpointRequestError                   the API could not be reached (after retries)
    ├── EndpointHTTPError                      the API answered 4xx/5xx (``status``, ``body``)
    ├── UnusableJobId                          the API answered a job id that is no folder name
    ├── WorkflowFileError                      a workflow or input file cannot be used
    ├── JobWaitTimeout        WAIT_TIMEOUT     the job did not end in time (also a TimeoutError)
    ├── OutputSaveError       SAVE_FAILED      an output could not be fetched or written
    └── JobFailed             (the job's)      the job ended FAILED / CANCELLED / TIMED_OUT

``job_error_of`` is the one place an exception becomes a :class:`JobError` for the browser;
the codes here are declared in ``job_error.schema.json`` (``clientCode``) with the worker's.
"""

from __future__ import annotations

from typing import Any

from .job_error import JobError

#: The code of a job whose follow-up failed on something unexpected (a bug in this node).
UNEXPECTED = "INTERNAL"


class EndpointError(Exception):
    """Base class of the endpoint client's errors."""

    code = "ENDPOINT_ERROR"


class EndpointConfigError(EndpointError):
    """The endpoint is not configured (no id, no URL)."""


class EndpointRequestError(EndpointError):
    """The job API could not be reached."""


class EndpointHTTPError(EndpointError):
    """The job API answered with an error status."""

    def __init__(self, operation: str, status: int, body: Any) -> None:
        detail = body.get("error") if isinstance(body, dict) else body
        super().__init__(f"{operation} answered HTTP {status}: {str(detail)[:300]}")
        self.operation = operation
        self.status = status
        self.body = body


class UnusableJobId(EndpointError):
    """The endpoint answered a job id this client will not use as a folder name."""


class WorkflowFileError(EndpointError):
    """A workflow file or an input file given on the command line cannot be used."""


class JobWaitTimeout(EndpointError, TimeoutError):
    """The job was still queued or running when the wait ran out (it may still finish)."""

    code = "WAIT_TIMEOUT"


class OutputSaveError(EndpointError):
    """An output of a completed job could not be downloaded, decoded or written."""

    code = "SAVE_FAILED"


class JobFailed(EndpointError):
    """The job ended without completing; ``error`` is its structured error."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.error = JobError.of_job(job)
        super().__init__(f"job {job.get('id')} {job.get('status')}: {self.error.message}")


def job_error_of(exc: BaseException) -> JobError:
    """The error a job shows when following it ended on ``exc``."""
    if isinstance(exc, JobFailed):
        return exc.error
    if isinstance(exc, EndpointError):
        return JobError(exc.code, str(exc))
    return JobError(UNEXPECTED, repr(exc))
