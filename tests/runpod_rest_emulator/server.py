"""A RunPod REST API v2 emulator on loopback, checked against RunPod's OpenAPI description.

Why a real HTTP server: the providers run inside Pulumi's provider process, which only sees an URL
(``RUNPOD_REST_URL``); a stdlib server in a thread stays synchronous like them.

Every request is validated with openapi-core against ``tests/fixtures/runpod/openapi-v2.json`` (path,
method, bearer auth, parameters, body: JSON Schema 2020-12, so ``unevaluatedProperties: false`` makes an
unknown field a 422). Invalid requests get the problem+json answer RunPod documents (401, 422). Valid ones run
against ``state.Account``, which applies the rules the spec's descriptions state. **Every answer is validated
too**, against the operation's response for that status; an answer that does not match is an emulator bug:
it is recorded in ``violations`` (the fixture fails the test on any) and answered as a 500.

A request the spec has no operation for, or an operation the account does not emulate (billing, pods,
clusters, ...), is recorded in ``violations`` as well and answered 404: tests never pass by accident on a
path nobody emulates.

Faults (``inject``) are consumed in order by matching requests (``operation`` is the spec's operationId):
an HTTP status (429 with ``Retry-After``/``RateLimit``, 5xx) instead of the answer, or, with ``apply_first``,
after the operation ran (a crash after RunPod applied a write); ``delay_s`` answers late, so a client with a
shorter read timeout gives up on an answer that was (``apply_first``) or was not yet applied.

``after_apply`` hooks run once, after a successful (2xx) request for a given operation was applied and before
its answer goes out: a test kills the Pulumi engine there, deterministically between RunPod's change and
Pulumi's state write (the GraphQL emulator's hook, by operationId).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from openapi_core import Config, OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.request.exceptions import SecurityValidationError

from tests.loopback_server import LoopbackEmulator, LoopbackServer, read_body, send
from tests.runpod_rest_emulator.state import Account, Problem

SPEC_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "runpod" / "openapi-v2.json"
SPEC_HOST = "https://api.runpod.io"  # the spec's server; requests are validated as if sent there
RATE_LIMIT_POLICY = '"minute";q=60;w=60, "hour";q=3000;w=3600, "day";q=50000;w=86400'


@functools.cache
def load_spec() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SPEC_PATH.read_text())
    return data


@functools.cache
def load_openapi() -> OpenAPI:
    """openapi-core over the spec; problem+json decoded as JSON so error bodies are validated too."""
    config = Config(
        extra_media_type_deserializers={
            "application/problem+json": json.loads,
            "text/event-stream": lambda raw: raw.decode() if isinstance(raw, bytes) else raw,
        }
    )
    return OpenAPI.from_dict(load_spec(), config=config)


@functools.cache
def routes() -> tuple[tuple[str, re.Pattern[str], str], ...]:
    """(method, path regex, operationId), literal paths before templated ones."""
    found: list[tuple[int, str, re.Pattern[str], str]] = []
    for path, item in load_spec()["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")
        for method, operation in item.items():
            if isinstance(operation, dict) and "operationId" in operation:
                found.append((path.count("{"), method.upper(), pattern, operation["operationId"]))
    return tuple((m, p, o) for _, m, p, o in sorted(found, key=lambda r: r[0]))


def schema_errors(exc: BaseException) -> list[str]:
    """Short ``$.path: message`` lines from an openapi-core validation error (its cause's schema errors)."""
    lines: list[str] = []
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        for error in getattr(current, "schema_errors", ()) or ():
            where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            lines.append(f"{where}: {error.message}")
        stack += [current.__cause__, current.__context__]
    return lines or [str(exc).splitlines()[0][:300]]


@dataclass
class Fault:
    """One injected failure; ``operation`` (an operationId) None matches any request."""

    status: int | None = 500  # None: the real answer (with ``delay_s``: late)
    detail: str | None = None
    operation: str | None = None
    apply_first: bool = False
    retry_after: float | None = None
    rate_limit: str | None = None  # a RateLimit header value, e.g. '"minute";r=0;t=2'
    delay_s: float = 0.0  # answer this late (after applying, with ``apply_first``): a client read timeout


@dataclass
class Request:
    """One request as it arrived; ``status`` stays 0 until the answer is sent."""

    method: str
    path: str
    operation: str | None
    body: Any
    status: int
    answer: bytes


@dataclass
class RunPodRESTEmulator(LoopbackEmulator[Fault]):
    api_key: str = "test-key-0123456789"
    account: Account = field(default_factory=Account)
    faults: list[Fault] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    hooks: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    _server: LoopbackServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the emulator first"
        return self._server.origin

    def start(self) -> RunPodRESTEmulator:
        load_openapi()  # parse the spec now (seconds), not inside the first request's timeout
        self._server = LoopbackServer(
            self._serve, name="runpod-rest-emulator", methods=("GET", "POST", "PATCH", "DELETE", "PUT")
        )
        return self

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        status, payload, headers = self.handle(
            handler.command, handler.path, dict(handler.headers.items()), read_body(handler)
        )
        self.run_hooks(self._route(handler.command, urlsplit(handler.path).path)[0], status)
        with contextlib.suppress(OSError):  # the client is gone (a hook killed it)
            send(handler, status, payload, headers)

    def after_apply(self, operation: str, hook: Callable[[], None]) -> None:
        """Run ``hook`` once, after the next successful request for ``operation`` (an operationId), before
        it is answered."""
        with self.account.lock:
            self.hooks.append((operation, hook))

    def run_hooks(self, operation: str | None, status: int) -> None:
        if operation is None or not 200 <= status < 300:
            return
        with self.account.lock:
            due = [h for h in self.hooks if h[0] == operation]
            self.hooks = [h for h in self.hooks if h not in due]
        for _operation, hook in due:
            hook()

    # ── request handling ──────────────────────────────────────────────────────────────────────────────────

    def handle(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        url = urlsplit(target)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        lowered = {k.lower(): v for k, v in headers.items()}
        request = MockRequest(
            SPEC_HOST,
            method.lower(),
            url.path,
            args=query,
            headers={
                k: lowered[k.lower()] for k in ("Authorization", "Last-Event-ID") if k.lower() in lowered
            },
            data=raw or None,
            content_type=lowered.get("content-type", "application/json").split(";")[0],
        )
        try:
            sent: Any = json.loads(raw) if raw else None
        except ValueError:
            sent = raw
        record = Request(method.upper(), url.path, self._route(method.upper(), url.path)[0], sent, 0, b"")
        with self.account.lock:
            self.requests.append(record)  # on arrival: a delayed answer is still a request RunPod got
        operation, status, body, extra = self._answer(method.upper(), url.path, query, lowered, raw, request)
        extra["RateLimit-Policy"] = RATE_LIMIT_POLICY
        if isinstance(body, str):
            extra |= {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        payload, content_type = _encode(status, body)
        with self.account.lock:
            if not self._response_valid(request, operation, status, payload, content_type, extra):
                status, extra = 500, {}
                payload, content_type = _encode(500, Problem(500, "emulator answer outside the spec").body())
            record.status, record.answer = status, payload
        if content_type:
            extra["Content-Type"] = content_type
        return status, payload, extra

    def _answer(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        raw: bytes,
        request: MockRequest,
    ) -> tuple[str | None, int, Any, dict[str, str]]:
        if "api_key" in query:
            return None, 400, Problem(400, "API keys are not accepted in the URL").body(), {}
        operation, path_params = self._route(method, path)
        if operation is None:
            self._violation(f"{method} {path}: no operation in the spec")
            return None, 404, Problem(404, f"no route {method} {path}").body(), {}
        try:
            load_openapi().validate_request(request)
        except SecurityValidationError:
            return operation, 401, Problem(401, "missing bearer token").body(), {}
        except (PathNotFound, OperationNotFound) as exc:  # pragma: no cover - routes() mirrors the spec
            self._violation(f"{method} {path}: {exc}")
            return operation, 404, Problem(404, str(exc)).body(), {}
        except OpenAPIError as exc:  # a body or parameter the spec refuses
            return operation, 422, Problem(422, "request validation failed", schema_errors(exc)).body(), {}
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return operation, 401, Problem(401, "invalid API key").body(), {}
        fault = self._take_fault(operation)
        if fault is not None and not fault.apply_first:
            time.sleep(fault.delay_s)
            if fault.status is not None:
                return operation, fault.status, *_fault_answer(fault)
        try:
            body = json.loads(raw) if raw else None
            status, answer = self.account.dispatch(operation, path_params, query, body, headers)
        except Problem as problem:
            status, answer = problem.status, problem.body()
        except NotImplementedError as exc:
            self._violation(f"{operation}: not emulated ({exc})")
            return operation, 404, Problem(404, f"{operation} is not emulated").body(), {}
        if fault is not None and fault.apply_first:
            time.sleep(fault.delay_s)
            if fault.status is not None:
                return operation, fault.status, *_fault_answer(fault)
        return operation, status, answer, {}

    def _route(self, method: str, path: str) -> tuple[str | None, dict[str, str]]:
        for route_method, pattern, operation in routes():
            match = pattern.match(path)
            if match and route_method == method:
                return operation, match.groupdict()
        return None, {}

    def _response_valid(
        self,
        request: MockRequest,
        operation: str | None,
        status: int,
        payload: bytes,
        content_type: str | None,
        headers: dict[str, str],
    ) -> bool:
        if operation is None:
            return True
        response = MockResponse(payload, status_code=status, headers=headers, content_type=content_type or "")
        try:
            load_openapi().validate_response(request, response)
        except OpenAPIError as exc:
            self._violation(
                f"{operation} answered {status} outside the spec: {'; '.join(schema_errors(exc))}"
            )
            return False
        return True

    def _violation(self, message: str) -> None:
        with self.account.lock:
            self.violations.append(message)


def _fault_answer(fault: Fault) -> tuple[dict[str, Any], dict[str, str]]:
    assert fault.status is not None
    titles = {403: "Forbidden", 404: "Not Found", 429: "Too Many Requests"}
    title = titles.get(fault.status, "Internal Server Error")
    detail = fault.detail or ("rate limit exceeded" if fault.status == 429 else "internal error")
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    if fault.rate_limit:
        headers["RateLimit"] = fault.rate_limit
    return {"title": title, "status": fault.status, "detail": detail}, headers


def _encode(status: int, body: Any) -> tuple[bytes, str | None]:
    if status == 204 or body is None:
        return b"", None
    if isinstance(body, str):  # a Server-Sent Events stream (getWorkerLogs)
        return body.encode(), "text/event-stream"
    content_type = "application/problem+json" if status >= 400 else "application/json"
    return json.dumps(body).encode(), content_type


def running_emulator(**kwargs: Any) -> Iterator[RunPodRESTEmulator]:
    """Generator for a pytest fixture: start on loopback; stop; fail on any spec violation it recorded."""
    emulator = RunPodRESTEmulator(**kwargs).start()
    try:
        yield emulator
    finally:
        emulator.stop()
    assert not emulator.violations, "REST emulator saw spec violations:\n" + "\n".join(emulator.violations)
