"""What the RunPod GraphQL and REST v2 clients share: the exceptions, the httpx session, the retry loop.

Why one module: both clients (``infra.runpod_graphql``, ``infra.runpod_rest``) authenticate, time out, back
off and classify failures the same way; only the wire format differs. Each client subclasses
``RunPodHTTPClient``, names its URL and backoff environment variables, and supplies two hooks: how long a
429/5xx answer asks it to wait, and the message a final 429/5xx becomes.

Exception tree (catch the narrowest one that you can act on)::

    RunPodError                     base of everything the clients raise
    ├── RunPodTransportError        no usable answer: connection failed, timed out, HTTP 5xx/429 after the
    │                               retries, a body that is not JSON. ``maybe_applied`` is True when a write
    │                               may have reached RunPod (look before retrying it)
    └── RunPodAPIError              RunPod answered and rejected the operation (GraphQL ``errors``, HTTP 4xx)
        └── RunPodNotFoundError     the object does not exist; deletes treat it as success

Retry loop (``RunPodHTTPClient._send``): reads are retried on connection errors, timeouts, 429 and 5xx.
Writes are never re-sent once they may have been applied: they are retried only when the connection could not
be opened (nothing was sent) or on 429 (the rate limiter refuses before executing); a write that fails with a
5xx or a read timeout raises ``RunPodTransportError(maybe_applied=True)``. Delays come from the client's
``_retry_delay`` hook, else back off exponentially from ``backoff_s``, capped at ``MAX_BACKOFF_S``.

The API key travels only in the ``Authorization: Bearer`` header: never in the URL, in an error, in a log line
or in ``repr()``; it and any secret given as ``redact=`` are replaced by ``***`` in every error message.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import ClassVar, Final, Self

import httpx

from handler.redaction import Redactor

log = logging.getLogger(__name__)

USER_AGENT: Final = "comfy-runpod-infra/0.1 (+httpx)"
# Connect fast, but give RunPod's writes (which provision storage) time to answer.
DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)
DEFAULT_ATTEMPTS: Final = 4
DEFAULT_BACKOFF_S: Final = 1.0
MAX_BACKOFF_S: Final = 30.0


class RunPodError(Exception):
    """Base class: ``operation`` names the RunPod operation, ``status`` the HTTP status (if any)."""

    def __init__(self, operation: str, message: str, *, status: int | None = None) -> None:
        self.operation = operation
        self.message = message
        self.status = status
        where = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"RunPod {operation} failed{where}: {message}")


class RunPodTransportError(RunPodError):
    """No usable answer from RunPod; see ``maybe_applied`` before retrying a write yourself."""

    def __init__(
        self, operation: str, message: str, *, status: int | None = None, maybe_applied: bool = False
    ) -> None:
        super().__init__(operation, message, status=status)
        self.maybe_applied = maybe_applied


class RunPodAPIError(RunPodError):
    """RunPod answered and refused the operation (GraphQL errors, or HTTP 4xx)."""


class RunPodNotFoundError(RunPodAPIError):
    """RunPod says the object does not exist."""


def retry_after(response: httpx.Response) -> float | None:
    """The answer's ``Retry-After`` in seconds (never negative), or None when absent or not a number."""
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class RunPodHTTPClient:
    """The httpx session, context manager, backoff and retry loop of a RunPod API client.

    ``transport`` is handed to ``httpx.Client`` (tests pass ``httpx.MockTransport`` or use the real transport
    on loopback). ``sleep`` is injectable so tests need not wait for backoffs.
    """

    URL_ENV: ClassVar[str]
    DEFAULT_URL: ClassVar[str]
    BACKOFF_ENV: ClassVar[str]
    # Headers beyond Authorization and User-Agent (REST asks for problem+json errors).
    EXTRA_HEADERS: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        api_key: str,
        *,
        url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        redact: Iterable[str] = (),
    ) -> None:
        if not api_key:
            raise ValueError("a RunPod API key is required (stack config runpodApiKey or env RUNPOD_API_KEY)")
        self._secrets: tuple[str, ...] = (api_key, *redact)
        self._redactor = Redactor(self._secrets)
        self.url = self._normalise_url(url or os.environ.get(self.URL_ENV) or self.DEFAULT_URL)
        self.attempts = max(1, attempts)
        env_backoff = os.environ.get(self.BACKOFF_ENV)
        self.backoff_s = backoff_s if backoff_s is not None else float(env_backoff or DEFAULT_BACKOFF_S)
        self._sleep = sleep
        self._http = self._session(
            transport=transport,
            timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT, **self.EXTRA_HEADERS},
        )

    def _normalise_url(self, url: str) -> str:
        return url

    def _session(
        self, *, transport: httpx.BaseTransport | None, timeout: httpx.Timeout, headers: Mapping[str, str]
    ) -> httpx.Client:
        return httpx.Client(transport=transport, timeout=timeout, headers=dict(headers))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, api_key=***)"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- hooks ----------------------------------------------------------------------------------------------

    def _retry_delay(self, response: httpx.Response) -> float | None:
        """How long a 429/5xx answer asks to wait (None: back off exponentially)."""
        return retry_after(response)

    def _overload_message(self, response: httpx.Response, secrets: Iterable[str]) -> str:
        """The (redacted) message of a 429/5xx answer that ends the retries."""
        raise NotImplementedError

    # -- the retry loop -------------------------------------------------------------------------------------

    def _send(
        self,
        operation: str,
        request: Callable[[], httpx.Response],
        *,
        is_write: bool,
        secrets: Iterable[str] | None = None,
    ) -> httpx.Response:
        """``request()`` under the retry policy of the module docstring: the first answer that is neither a
        429 nor a 5xx, or a ``RunPodTransportError``. ``secrets`` (default: the client's) are redacted."""
        hidden = tuple(secrets) if secrets is not None else self._secrets
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            try:
                response = request()
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                if last:  # nothing reached RunPod: safe to retry even a write
                    raise self._transport_error(operation, exc, hidden, maybe_applied=False) from None
                self._backoff(operation, attempt, f"connection failed: {type(exc).__name__}")
                continue
            except httpx.TransportError as exc:
                # Sent (or partly sent): a write may have been applied.
                if is_write or last:
                    raise self._transport_error(operation, exc, hidden, maybe_applied=is_write) from None
                self._backoff(operation, attempt, f"transport error: {type(exc).__name__}")
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                if (status == 429 or not is_write) and not last:
                    self._backoff(operation, attempt, f"HTTP {status}", self._retry_delay(response))
                    continue
                raise RunPodTransportError(
                    operation,
                    self._overload_message(response, hidden),
                    status=status,
                    maybe_applied=is_write and status != 429,
                )
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, operation: str, attempt: int, why: str, delay: float | None = None) -> None:
        wait = min(MAX_BACKOFF_S, delay if delay is not None else self.backoff_s * 2 ** (attempt - 1))
        log.warning("RunPod %s: %s; retry %d/%d in %.1fs", operation, why, attempt, self.attempts - 1, wait)
        self._sleep(wait)

    def _transport_error(
        self, operation: str, exc: Exception, secrets: Iterable[str], *, maybe_applied: bool
    ) -> RunPodTransportError:
        detail = Redactor(secrets).text(f"{type(exc).__name__}: {exc}")
        return RunPodTransportError(operation, f"{detail} ({self.url})", maybe_applied=maybe_applied)
