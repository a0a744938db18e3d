"""A job as RunPod's job API shows it: statuses, the request that made it, its /status body.

The request parsing lives here (not in the routes) because ``/run``, ``/runsync`` and tests
all need the same validation of ``input``, ``webhook``, ``policy`` and ``s3Config``.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from handler.input_files import address_allowed
from local_endpoint.settings import EndpointSettings


class JobStatus(enum.StrEnum):
    """RunPod's job statuses (``RUNNING`` is documented but never returned, so not here)."""

    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def final(self) -> bool:
        return self not in (JobStatus.IN_QUEUE, JobStatus.IN_PROGRESS)


class RequestError(ValueError):
    """A public request RunPod would refuse; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class JobRequest:
    """The validated body of ``/run`` or ``/runsync``."""

    input: Any
    webhook: str | None = None
    s3_config: dict[str, Any] | None = None
    execution_timeout_ms: int | None = None
    ttl_ms: int | None = None
    low_priority: bool = False

    @classmethod
    def parse(cls, body: Any, settings: EndpointSettings) -> JobRequest:
        """Validate a request body; raises :class:`RequestError` with what to fix."""
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object with an 'input' key")
        if "input" not in body:
            raise RequestError("the request body has no 'input' key: send {\"input\": {...}}")
        webhook = body.get("webhook")
        if webhook is not None:
            check_webhook(webhook, allow_private=settings.allow_private_webhooks)
        s3_config = body.get("s3Config")
        if s3_config is not None and not isinstance(s3_config, dict):
            raise RequestError("'s3Config' must be an object")
        policy = body.get("policy") or {}
        if not isinstance(policy, dict):
            raise RequestError("'policy' must be an object")
        low_priority = policy.get("lowPriority", False)
        if not isinstance(low_priority, bool):
            raise RequestError("'policy.lowPriority' must be a boolean")
        return cls(
            input=body["input"],
            webhook=webhook,
            s3_config=s3_config,
            execution_timeout_ms=_policy_ms(policy, "executionTimeout", settings.execution_timeout_range_ms),
            ttl_ms=_policy_ms(policy, "ttl", settings.ttl_range_ms),
            low_priority=low_priority,
        )


def check_webhook(webhook: Any, *, allow_private: bool) -> None:
    """A webhook is an http(s) URL; an IP literal must be public unless ``allow_private``.

    Names are checked when the webhook is sent, on the addresses actually connected to
    (:class:`local_endpoint.webhooks.WebhookSender`).
    """
    if not isinstance(webhook, str) or not webhook.startswith(("http://", "https://")):
        raise RequestError("'webhook' must be an http(s) URL")
    try:
        host = (urlsplit(webhook).hostname or "").strip("[]")
    except ValueError:
        raise RequestError("'webhook' is not a valid URL") from None
    if not host:
        raise RequestError("'webhook' must be an http(s) URL with a host")
    if allow_private:
        return
    try:
        public = address_allowed(host)
    except ValueError:
        return  # a name
    if not public:
        raise RequestError(
            f"'webhook' points at {host}, which is not a public address; the local endpoint sends "
            "webhooks to public addresses only (start it with --allow-private-webhooks for a "
            "receiver on this machine or network)"
        )


def _policy_ms(policy: dict[str, Any], key: str, bounds: tuple[int, int]) -> int | None:
    value = policy.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise RequestError(f"'policy.{key}' must be an integer number of milliseconds")
    low, high = bounds
    if not low <= value <= high:
        raise RequestError(f"'policy.{key}' must be between {low} and {high} ms, got {int(value)}")
    return int(value)


def new_job_id(*, sync: bool) -> str:
    """Ids shaped like RunPod's: ``<uuid>-u1``, and ``sync-<uuid>-u1`` for ``/runsync``."""
    return f"{'sync-' if sync else ''}{uuid.uuid4()}-u1"


@dataclass(eq=False)
class Job:
    """One job and everything ``/status`` reports about it.

    Times are ``time.monotonic()`` seconds; ``queued_at`` restarts on a retry so
    ``delayTime`` is the wait of the current attempt. ``finished`` is set (and replaced on a
    retry) so ``/runsync`` can wait for the final status.
    """

    id: str
    request: JobRequest
    sync: bool
    submitted_at: float
    execution_timeout_s: float
    status: JobStatus = JobStatus.IN_QUEUE
    queued_at: float = 0.0
    worker_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    has_output: bool = False
    output: Any = None
    error: str | None = None
    has_progress: bool = False
    progress: Any = None
    stream: list[Any] = field(default_factory=list)
    stream_read: int = 0
    retries: int = 0
    stop_pod: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    request_bytes: int = 0  # the request body's size, as received
    result_bytes: int = 0  # the result and stream chunks' sizes, as the worker posted them

    def __post_init__(self) -> None:
        self.queued_at = self.queued_at or self.submitted_at

    def worker_payload(self) -> dict[str, Any]:
        """What job-take hands the worker: ``{"id", "input", "s3Config"?}``."""
        payload: dict[str, Any] = {"id": self.id, "input": self.request.input}
        if self.request.s3_config is not None:
            payload["s3Config"] = self.request.s3_config
        return payload

    def status_body(self) -> dict[str, Any]:
        """The ``/status`` body (also the webhook body and a finished ``/runsync`` answer)."""
        body: dict[str, Any] = {"id": self.id, "status": str(self.status)}
        if self.started_at is not None:
            body["delayTime"] = _ms(self.started_at - self.queued_at)
            if self.finished_at is not None:
                body["executionTime"] = _ms(self.finished_at - self.started_at)
        if self.status is JobStatus.IN_PROGRESS and self.has_progress:
            body["output"] = self.progress
        elif self.status.final and self.has_output:
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        if self.retries:
            body["retries"] = self.retries
        if self.worker_id is not None:
            body["workerId"] = self.worker_id
        return body

    def take_stream(self) -> list[dict[str, Any]]:
        """Stream chunks not yet returned by ``/stream`` (each call returns only new ones)."""
        chunks = self.stream[self.stream_read :]
        self.stream_read = len(self.stream)
        return [{"output": chunk} for chunk in chunks]


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
