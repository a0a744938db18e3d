"""A small RunPod REST API v2 client over httpx, with the resource-level methods of ``infra.runpod_graphql``.

Why: RunPod retires GraphQL in early 2027; REST v2 (``https://api.runpod.io/v2/...``) replaces it. The
providers call resource-level methods (``list_network_volumes``, ``save_endpoint``, ...); this client offers
the same ones, taking and returning the same provider-side field names, and translates in
``infra.runpod_rest_shapes`` (the one place that knows both shapes). What does differ, and the providers must
design for (see ``shared/reference/runpod-rest-v2.md``):

- ``save_endpoint`` / ``save_template`` with an ``id`` are a PATCH: **only the given keys change** (GraphQL's
  saves were full replaces). Without ``id`` they create (``POST``). ``runpod_rest_shapes.endpoint_patch``
  computes the keys to send from the previous and the new desired endpoint.
- an endpoint answer has no ``templateId`` (a template only seeds the endpoint's container settings), but it
  carries those settings itself (``imageName``, ``env``, ...); ``version`` comes from its releases.
- ``update_registry_auth`` does not exist: REST credentials cannot be changed, only created and deleted.
- ``delete_template`` still takes the **name** (as the GraphQL method does) and resolves it to an id first.

Errors: the exception tree of ``infra.runpod_http`` (shared with the GraphQL client, re-exported here).
RFC 9457 problem bodies (``application/problem+json``: ``title``, ``status``, ``detail``, ``errors``) become
the message, ``detail`` and every ``errors`` entry kept; 404 is ``RunPodNotFoundError`` (deletes treat it as
success), other 4xx ``RunPodAPIError``, 429/5xx after the retries and connection failures
``RunPodTransportError``.

Retry policy (``infra.runpod_http``'s, shared with the GraphQL client): reads (GET) are retried on connection
errors, timeouts, 429 and 5xx. Writes (POST, PATCH, DELETE) are retried only when nothing reached RunPod (the
connection could not be opened) or on 429 (refused before executing); a 5xx or a read timeout on a write
raises ``RunPodTransportError(maybe_applied=True)`` and is never re-sent. Delays honour ``Retry-After``, else
the ``RateLimit`` header (the seconds until an exhausted window resets), else back off exponentially from
``RUNPOD_REST_BACKOFF_S`` (default 1 s), capped at 30 s. **Creates stay idempotent:** before a POST the
client notes the ids already carrying the name; if the POST may have applied, it lists again and returns the
one new object with that name rather than failing (or re-sending).

Environment: ``RUNPOD_REST_URL`` (base URL, default ``https://api.runpod.io``; tests point it at the
loopback emulator). The API key travels only in the ``Authorization: Bearer`` header; it and any secret given
as ``redact=`` (a registry password, env values) are replaced by ``***`` in every error message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final
from urllib.parse import quote

import httpx

from handler.redaction import Redactor
from infra import runpod_rest_shapes as shapes
from infra.runpod_http import (
    RunPodAPIError,
    RunPodError,
    RunPodHTTPClient,
    RunPodNotFoundError,
    RunPodTransportError,
    retry_after,
)
from infra.sse import LogEvent, parse_sse

log = logging.getLogger(__name__)

DEFAULT_URL: Final = "https://api.runpod.io"
URL_ENV: Final = "RUNPOD_REST_URL"
BACKOFF_ENV: Final = "RUNPOD_REST_BACKOFF_S"
READ_METHODS: Final = frozenset({"GET"})

__all__ = [
    "RunPodAPIError",
    "RunPodError",
    "RunPodNotFoundError",
    "RunPodREST",
    "RunPodTransportError",
]

# One RateLimit member: "minute";r=0;t=12
_RATE_MEMBER = re.compile(r'"?[\w-]+"?\s*((?:;\s*\w+=[\w.]+)*)')


def rate_limit_delay(header: str | None) -> float | None:
    """Seconds until the longest exhausted window (``r=0``) of a ``RateLimit`` header resets, else None."""
    if not header:
        return None
    waits: list[float] = []
    for member in header.split(","):
        match = _RATE_MEMBER.match(member.strip())
        if not match:
            continue
        params = dict(p.split("=", 1) for p in match.group(1).replace(" ", "").split(";") if "=" in p)
        try:
            if int(params.get("r", "1")) <= 0 and "t" in params:
                waits.append(max(0.0, float(params["t"])))
        except ValueError:
            continue
    return max(waits) if waits else None


def retry_delay(response: httpx.Response) -> float | None:
    """``Retry-After`` (seconds) first, then the ``RateLimit`` header."""
    delay = retry_after(response)
    return delay if delay is not None else rate_limit_delay(response.headers.get("RateLimit"))


class RunPodREST(RunPodHTTPClient):
    """Executes RunPod REST v2 calls with the retry policy of the module docstring (``RunPodHTTPClient``
    holds the session, the backoff and the retry loop)."""

    URL_ENV = URL_ENV
    DEFAULT_URL = DEFAULT_URL
    BACKOFF_ENV = BACKOFF_ENV
    EXTRA_HEADERS = {"Accept": "application/json, application/problem+json"}

    def _normalise_url(self, url: str) -> str:
        return url.rstrip("/")

    def _session(
        self, *, transport: httpx.BaseTransport | None, timeout: httpx.Timeout, headers: Mapping[str, str]
    ) -> httpx.Client:
        return httpx.Client(base_url=self.url, transport=transport, timeout=timeout, headers=dict(headers))

    def _retry_delay(self, response: httpx.Response) -> float | None:
        return retry_delay(response)

    def _overload_message(self, response: httpx.Response, secrets: Iterable[str]) -> str:
        return self._problem_message(response, secrets) + _retry_hint(response)

    # -- the one generic entry point ------------------------------------------------------------------------

    def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        redact: Iterable[str] = (),
    ) -> Any:
        """One REST call; the decoded JSON answer (None for 204) or a ``RunPodError``.

        ``operation`` is the spec's operationId (``createEndpoint``), used in errors and logs;
        ``redact``: more secrets (beyond the client's) to hide in any error of this call."""
        secrets = (*self._secrets, *redact)
        is_write = method.upper() not in READ_METHODS
        response = self._send(
            operation,
            lambda: self._http.request(
                method, path, json=dict(body) if body is not None else None, params=params
            ),
            is_write=is_write,
            secrets=secrets,
        )
        status = response.status_code
        if status >= 400:
            cls = RunPodNotFoundError if status == 404 else RunPodAPIError
            raise cls(operation, self._problem_message(response, secrets), status=status)
        if status == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            snippet = Redactor(secrets).text(response.text[:200].strip())
            raise RunPodTransportError(operation, f"not a JSON answer: {snippet!r}", status=status) from None

    # -- network volumes ------------------------------------------------------------------------------------

    def list_network_volumes(self) -> list[dict[str, Any]]:
        data = self.call("listNetworkVolumes", "GET", "/v2/network-volumes")
        return [shapes.volume_from_rest(v) for v in _items(data, "networkVolumes")]

    def create_network_volume(
        self, *, name: str, size: int, data_center_id: str, volume_type: str | None = None
    ) -> dict[str, Any]:
        body = shapes.volume_create_body(
            name=name, size=size, data_center_id=data_center_id, volume_type=volume_type
        )
        return self._create_once(
            "createNetworkVolume",
            "/v2/network-volumes",
            body,
            self.list_network_volumes,
            shapes.volume_from_rest,
        )

    def update_network_volume(self, volume_id: str, *, name: str | None, size: int | None) -> dict[str, Any]:
        body = shapes.volume_update_body(name=name, size=size)
        data = self.call("updateNetworkVolume", "PATCH", f"/v2/network-volumes/{_seg(volume_id)}", body=body)
        return shapes.volume_from_rest(_object(data, "updateNetworkVolume"))

    def delete_network_volume(self, volume_id: str) -> None:
        self.call("deleteNetworkVolume", "DELETE", f"/v2/network-volumes/{_seg(volume_id)}")

    # -- templates ------------------------------------------------------------------------------------------

    def list_templates(self) -> list[dict[str, Any]]:
        data = self.call("listTemplates", "GET", "/v2/templates")
        return [shapes.template_from_rest(t) for t in _items(data, "templates")]

    def save_template(self, template: Mapping[str, Any]) -> dict[str, Any]:
        """With ``id``: PATCH exactly the given keys. Without: create (idempotent by name)."""
        return self._save(
            "Template",
            "/v2/templates",
            template,
            shapes.template_body,
            self.list_templates,
            shapes.template_from_rest,
        )

    def delete_template(self, name: str) -> None:
        """By **name**, like the GraphQL method: resolved to the template's id, then ``DELETE``."""
        matches = [t for t in self.list_templates() if t.get("name") == name]
        if not matches:
            raise RunPodNotFoundError("deleteTemplate", f"template {name!r} not found", status=404)
        self.delete_template_by_id(str(matches[0]["id"]))

    def delete_template_by_id(self, template_id: str) -> None:
        self.call("deleteTemplate", "DELETE", f"/v2/templates/{_seg(template_id)}")

    # -- endpoints ------------------------------------------------------------------------------------------

    def get_endpoint(self, endpoint_id: str) -> dict[str, Any] | None:
        """The endpoint (with ``version`` from its releases), or None when RunPod has none with that id."""
        try:
            data = self.call("getEndpoint", "GET", f"/v2/serverless/{_seg(endpoint_id)}")
            releases = self.list_endpoint_releases(endpoint_id)
        except RunPodNotFoundError:
            return None
        version = releases.get("endpointVersion")
        return shapes.endpoint_from_rest(
            _object(data, "getEndpoint"), version if isinstance(version, int) else None
        )

    def list_endpoints(self) -> list[dict[str, Any]]:
        data = self.call("listEndpoints", "GET", "/v2/serverless")
        return [shapes.endpoint_from_rest(e) for e in _items(data, "endpoints")]

    def save_endpoint(self, endpoint: Mapping[str, Any]) -> dict[str, Any]:
        """With ``id``: PATCH exactly the given keys (a new release if the container settings change).
        Without: create a ``QUEUE`` endpoint (idempotent by name)."""
        return self._save(
            "Endpoint",
            "/v2/serverless",
            endpoint,
            shapes.endpoint_body,
            self.list_endpoints,
            shapes.endpoint_from_rest,
        )

    def delete_endpoint(self, endpoint_id: str) -> None:
        """Terminates the workers, cancels jobs, and deletes the endpoint's bound template with it."""
        self.call("deleteEndpoint", "DELETE", f"/v2/serverless/{_seg(endpoint_id)}")

    def list_endpoint_releases(self, endpoint_id: str) -> dict[str, Any]:
        """``{endpointVersion, rollout, releases}`` as RunPod answers it (newest release first)."""
        data = self.call("listEndpointReleases", "GET", f"/v2/serverless/{_seg(endpoint_id)}/releases")
        return _object(data, "listEndpointReleases")

    def list_endpoint_workers(self, endpoint_id: str) -> dict[str, Any]:
        """``{workers, summary, endpointVersion}`` as RunPod answers it: the active workers, each with status,
        image, version (``isStale`` when older than the endpoint's), GPU type, data center, uptime."""
        data = self.call("listEndpointWorkers", "GET", f"/v2/serverless/{_seg(endpoint_id)}/workers")
        return _object(data, "listEndpointWorkers")

    # -- container registry credentials ---------------------------------------------------------------------

    def list_registry_auths(self) -> list[dict[str, Any]]:
        """Ids and names only: RunPod never returns the username or password."""
        data = self.call("listRegistries", "GET", "/v2/registries")
        return [shapes.registry_from_rest(r) for r in _items(data, "registries")]

    def save_registry_auth(self, *, name: str, username: str, password: str) -> dict[str, Any]:
        """Create (idempotent by name). There is no update over REST: a new password is a new credential."""
        body = {"name": name, "username": username, "password": password}
        return self._create_once(
            "createRegistry",
            "/v2/registries",
            body,
            self.list_registry_auths,
            shapes.registry_from_rest,
            redact=(username, password),
        )

    def delete_registry_auth(self, auth_id: str) -> None:
        """Templates that reference it silently lose the reference (RunPod); a pod using it refuses."""
        self.call("deleteRegistry", "DELETE", f"/v2/registries/{_seg(auth_id)}")

    # -- catalog --------------------------------------------------------------------------------------------

    def list_gpu_types(self, *, product: str = "SERVERLESS") -> list[dict[str, Any]]:
        """The GPU catalog with availability for ``product``, as RunPod answers it (``GpuType`` objects)."""
        params = {"include": "AVAILABILITY", "product": product}
        data = self.call("listGpuTypes", "GET", "/v2/catalog/gpus", params=params)
        return _items(data, "gpus")

    # -- Observability (issue 13) ---------------------------------------------------------------------------
    # Worker logs (Server-Sent Events, resumable), billing. Used by ``invoke workers/logs/releases/cost``.

    def stream_worker_logs(
        self,
        endpoint_id: str,
        worker_id: str,
        *,
        tail: int | None = None,
        since: str | None = None,
        last_event_id: str | None = None,
        source: str | None = None,
        read_timeout_s: float = 75.0,
        idle_end_s: float | None = None,
    ) -> Iterator[LogEvent]:
        """One connection of ``getWorkerLogs``: each complete event as it arrives, until the stream ends.

        ``last_event_id`` (sent as the ``Last-Event-ID`` header) wins over ``since``, which wins over ``tail``
        (RunPod's precedence). An event cut off by a dropped connection (no blank line yet) is never yielded:
        a caller that resumes from the last yielded ``id`` gets it again, whole. Errors opening the stream are
        the client's usual ones (no retry here: ``follow_worker_logs`` reconnects); a connection that drops
        while reading raises ``RunPodTransportError``. ``idle_end_s``: end quietly once no event came for that
        long (RunPod's stream stays open after the backfill: this reads the backfill and stops)."""
        operation = "getWorkerLogs"
        path = f"/v2/serverless/{_seg(endpoint_id)}/workers/{_seg(worker_id)}/logs"
        params: dict[str, str] = {}
        if tail is not None:
            params["tail"] = str(tail)
        if since:
            params["since"] = since
        if source:
            params["source"] = source
        headers = {"Accept": "text/event-stream, application/problem+json"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(10.0, read=idle_end_s if idle_end_s is not None else read_timeout_s)
        try:
            with self._http.stream("GET", path, params=params, headers=headers, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._status_error(operation, response)
                yield from parse_sse(response.iter_lines())
        except httpx.ReadTimeout as exc:
            if idle_end_s is None:
                raise self._transport_error(operation, exc, self._secrets, maybe_applied=False) from None
        except httpx.TransportError as exc:
            raise self._transport_error(operation, exc, self._secrets, maybe_applied=False) from None

    def follow_worker_logs(
        self,
        endpoint_id: str,
        worker_id: str,
        *,
        tail: int | None = None,
        since: str | None = None,
        source: str | None = None,
        stop: Callable[[], bool] = lambda: False,
        reconnect_s: float = 1.0,
        max_failures: int = 5,
        quiet_s: float = 75.0,
    ) -> Iterator[LogEvent]:
        """The worker's log, live: reconnects after the stream ends or drops, from the last event id, so no
        line is lost or repeated (events whose id is not after the last one seen are skipped as well).

        Ends when ``stop()`` is true (checked between events and reconnects), when the worker is gone (a 404
        once lines came; a 404 before any line is raised: no such worker), or after ``max_failures``
        reconnects in a row that failed (the last error is raised)."""
        last_id: str | None = None
        failures = 0
        while not stop():
            try:
                for event in self.stream_worker_logs(
                    endpoint_id,
                    worker_id,
                    tail=tail if last_id is None else None,
                    since=since if last_id is None else None,
                    last_event_id=last_id,
                    source=source,
                    idle_end_s=quiet_s,  # a quiet worker is not a failure: reconnect, from the last id
                ):
                    failures = 0
                    if event.id is not None:
                        if last_id is not None and event.id <= last_id:
                            continue
                        last_id = event.id
                    yield event
                    if stop():
                        return
            except RunPodNotFoundError:
                if last_id is None:
                    raise
                return
            except RunPodError as exc:
                if isinstance(exc, RunPodAPIError) and exc.status not in (None, 429):
                    raise
                failures += 1
                if failures > max_failures:
                    raise
                log.info("worker %s log stream: %s; reconnecting", worker_id, exc.message)
            self._sleep(reconnect_s)

    def list_serverless_billing(
        self, *, last_days: int, bucket_size: str = "day", endpoint_id: str | None = None
    ) -> dict[str, Any]:
        """``listServerlessBilling`` over the last ``last_days`` buckets: ``{records, metadata}`` as RunPod
        answers it (one record per endpoint per bucket; amounts in USD)."""
        params = {"bucketSize": bucket_size, "lastN": str(last_days)}
        if endpoint_id:
            params["serverlessId"] = endpoint_id
        data = self.call("listServerlessBilling", "GET", "/v2/billing/serverless", params=params)
        return _object(data, "listServerlessBilling")

    def list_network_volume_billing(
        self, *, last_days: int, bucket_size: str = "day", volume_id: str | None = None
    ) -> dict[str, Any]:
        """``listNetworkVolumeBilling`` over the last ``last_days`` buckets (per volume per bucket)."""
        params = {"bucketSize": bucket_size, "lastN": str(last_days)}
        if volume_id:
            params["networkVolumeId"] = volume_id
        data = self.call("listNetworkVolumeBilling", "GET", "/v2/billing/network-volumes", params=params)
        return _object(data, "listNetworkVolumeBilling")

    def get_endpoint_raw(self, endpoint_id: str) -> dict[str, Any]:
        """``getEndpoint`` as RunPod answers it (REST names: ``gpu.pools``, ``gpu.count``, ...)."""
        return _object(self.call("getEndpoint", "GET", f"/v2/serverless/{_seg(endpoint_id)}"), "getEndpoint")

    def _status_error(self, operation: str, response: httpx.Response) -> RunPodError:
        message = self._problem_message(response, self._secrets)
        status = response.status_code
        if status == 429 or status >= 500:
            return RunPodTransportError(operation, message + _retry_hint(response), status=status)
        cls = RunPodNotFoundError if status == 404 else RunPodAPIError
        return cls(operation, message, status=status)

    # -- helpers --------------------------------------------------------------------------------------------

    def _save(
        self,
        noun: str,
        collection: str,
        desired: Mapping[str, Any],
        body_of: Callable[..., dict[str, Any]],
        lister: Callable[[], list[dict[str, Any]]],
        mapper: Callable[[Mapping[str, Any]], dict[str, Any]],
    ) -> dict[str, Any]:
        """``update<noun>`` (a PATCH of ``body_of(desired, create=False)``) when ``desired`` has an ``id``,
        else ``create<noun>`` once (idempotent by name); the answer mapped to provider field names."""
        object_id = desired.get("id")
        if object_id:
            operation = f"update{noun}"
            body = body_of(desired, create=False)
            data = self.call(operation, "PATCH", f"{collection}/{_seg(str(object_id))}", body=body)
            return mapper(_object(data, operation))
        return self._create_once(f"create{noun}", collection, body_of(desired, create=True), lister, mapper)

    def _create_once(
        self,
        operation: str,
        path: str,
        body: Mapping[str, Any],
        lister: Callable[[], list[dict[str, Any]]],
        mapper: Callable[[Mapping[str, Any]], dict[str, Any]],
        *,
        redact: Iterable[str] = (),
    ) -> dict[str, Any]:
        """POST once and map the answer; if the POST may have applied but its answer was lost, the one new
        object named like the body (``lister`` returns mapped objects) instead of an error or a re-send."""
        name = str(body["name"])
        before = {str(o["id"]) for o in lister() if o.get("name") == name}
        try:
            return mapper(_object(self.call(operation, "POST", path, body=body, redact=redact), operation))
        except RunPodTransportError as exc:
            if not exc.maybe_applied:
                raise
            created = [o for o in lister() if o.get("name") == name and str(o["id"]) not in before]
            if len(created) != 1:
                raise
            log.warning(
                "RunPod %s: the answer was lost, but %s was created; using it", operation, created[0]["id"]
            )
            return created[0]

    def _problem_message(self, response: httpx.Response, secrets: Iterable[str]) -> str:
        """``title: detail (errors: a; b)`` from an RFC 9457 body, else a snippet; secrets redacted."""
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict) and ("detail" in payload or "title" in payload):
            title = str(payload.get("title") or response.reason_phrase)
            detail = payload.get("detail")
            message = f"{title}: {detail}" if detail else title
            errors = payload.get("errors")
            if isinstance(errors, list) and errors:
                message += " (errors: " + "; ".join(str(e) for e in errors) + ")"
        else:
            message = response.text[:200].strip() or response.reason_phrase
        return Redactor(secrets).text(message)


def _seg(value: str) -> str:
    """An id as one URL path segment (an id can never walk to another path)."""
    return quote(value, safe="")


def _items(data: Any, key: str) -> list[dict[str, Any]]:
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise RunPodTransportError(key, f"answer has no {key!r} list")
    return [i for i in items if isinstance(i, dict)]


def _object(data: Any, operation: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RunPodTransportError(operation, "answer is not a JSON object")
    return data


def _retry_hint(response: httpx.Response) -> str:
    """``; retry after 12 s`` from a 429's ``Retry-After``/``RateLimit``: when to try again."""
    if response.status_code != 429:
        return ""
    delay = retry_delay(response)
    return f"; retry after {delay:g} s" if delay is not None else ""
