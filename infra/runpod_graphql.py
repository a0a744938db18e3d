"""A small RunPod GraphQL client over httpx, used by the Pulumi dynamic providers.

Why one small client: RunPod retires the GraphQL API in early 2027 in favour of REST v2. The providers talk
to the resource-level methods here (``list_network_volumes``, ``create_network_volume``, ...), never to
GraphQL directly, so a REST v2 client with the same methods can replace this module.

Exceptions: the tree of ``infra.runpod_http`` (re-exported here): GraphQL ``errors`` (also with HTTP 200) and
HTTP 4xx are ``RunPodAPIError``; a rejection saying the object does not exist ("not found", "does not exist",
"could not find") is ``RunPodNotFoundError``; no usable answer is ``RunPodTransportError``.

Retry policy (FL's, see the reference notes): queries are retried on connection errors, timeouts, 429 and 5xx.
Mutations are never re-sent once they may have been applied: they are retried only when the connection could
not be opened (nothing was sent) or on 429 (the rate limiter refuses before executing). A mutation that fails
with a 5xx or a read timeout raises ``RunPodTransportError(maybe_applied=True)``; the providers recover by
looking the object up by name (create is idempotent).

Environment: ``RUNPOD_GRAPHQL_URL`` (full URL, default ``https://api.runpod.io/graphql``; tests point it at
the loopback emulator) and ``RUNPOD_GRAPHQL_BACKOFF_S`` (first retry delay, doubled each time; default 1 s).

The API key travels only in the ``Authorization: Bearer`` header: never in the URL, in an error, in a log line
or in ``repr()``. Other secrets a caller sends (a registry password, template env values) are handed over as
``redact=`` and replaced by ``***`` in every error message too (GraphQL servers may echo variable values).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import httpx

from infra.runpod_http import (
    RunPodAPIError,
    RunPodError,
    RunPodHTTPClient,
    RunPodNotFoundError,
    RunPodTransportError,
)

DEFAULT_URL: Final = "https://api.runpod.io/graphql"
URL_ENV: Final = "RUNPOD_GRAPHQL_URL"
BACKOFF_ENV: Final = "RUNPOD_GRAPHQL_BACKOFF_S"

__all__ = [
    "RunPodAPIError",
    "RunPodError",
    "RunPodGraphQL",
    "RunPodNotFoundError",
    "RunPodTransportError",
]

_NOT_FOUND = re.compile(r"not found|does not exist|could not find|doesn't exist", re.IGNORECASE)

# ── Operations: every string the client sends, validated against the schema in tests ──────────────────────

VOLUME_FIELDS: Final = "id name size dataCenterId"

LIST_NETWORK_VOLUMES: Final = (
    f"query ListNetworkVolumes {{ myself {{ networkVolumes {{ {VOLUME_FIELDS} }} }} }}"
)
CREATE_NETWORK_VOLUME: Final = (
    "mutation CreateNetworkVolume($input: CreateNetworkVolumeInput!) "
    f"{{ createNetworkVolume(input: $input) {{ {VOLUME_FIELDS} }} }}"
)
UPDATE_NETWORK_VOLUME: Final = (
    "mutation UpdateNetworkVolume($input: UpdateNetworkVolumeInput!) "
    f"{{ updateNetworkVolume(input: $input) {{ {VOLUME_FIELDS} }} }}"
)
DELETE_NETWORK_VOLUME: Final = (
    "mutation DeleteNetworkVolume($input: DeleteNetworkVolumeInput!) { deleteNetworkVolume(input: $input) }"
)

TEMPLATE_FIELDS: Final = (
    "id name imageName containerDiskInGb volumeInGb dockerArgs env { key value } isServerless "
    "containerRegistryAuthId volumeMountPath readme"
)

LIST_TEMPLATES: Final = f"query ListTemplates {{ myself {{ podTemplates {{ {TEMPLATE_FIELDS} }} }} }}"
# The argument is nullable in RunPod's SDL; declaring the variable without `!` matches it exactly.
SAVE_TEMPLATE: Final = (
    "mutation SaveTemplate($input: SaveTemplateInput) "
    f"{{ saveTemplate(input: $input) {{ {TEMPLATE_FIELDS} }} }}"
)
DELETE_TEMPLATE: Final = (
    "mutation DeleteTemplate($templateName: String) { deleteTemplate(templateName: $templateName) }"
)

ENDPOINT_FIELDS: Final = (
    "id name templateId gpuIds gpuCount workersMin workersMax idleTimeout locations scalerType scalerValue "
    "networkVolumeId networkVolumeIds { networkVolumeId dataCenterId } executionTimeoutMs flashBootType "
    "allowedCudaVersions version"
)

GET_ENDPOINT: Final = (
    f"query GetEndpoint($id: String!) {{ myself {{ endpoint(id: $id) {{ {ENDPOINT_FIELDS} }} }} }}"
)
LIST_ENDPOINTS: Final = f"query ListEndpoints {{ myself {{ endpoints {{ {ENDPOINT_FIELDS} }} }} }}"
SAVE_ENDPOINT: Final = (
    f"mutation SaveEndpoint($input: EndpointInput!) {{ saveEndpoint(input: $input) {{ {ENDPOINT_FIELDS} }} }}"
)
DELETE_ENDPOINT: Final = "mutation DeleteEndpoint($id: String!) { deleteEndpoint(id: $id) }"

REGISTRY_AUTH_FIELDS: Final = "id name"

LIST_REGISTRY_AUTHS: Final = (
    f"query ListRegistryAuths {{ myself {{ containerRegistryCreds {{ {REGISTRY_AUTH_FIELDS} }} }} }}"
)
# Both arguments are nullable in RunPod's SDL; the variables are declared to match.
SAVE_REGISTRY_AUTH: Final = (
    "mutation SaveRegistryAuth($input: SaveRegistryAuthInput) "
    f"{{ saveRegistryAuth(input: $input) {{ {REGISTRY_AUTH_FIELDS} }} }}"
)
UPDATE_REGISTRY_AUTH: Final = (
    "mutation UpdateRegistryAuth($input: UpdateRegistryAuthInput) "
    f"{{ updateRegistryAuth(input: $input) {{ {REGISTRY_AUTH_FIELDS} }} }}"
)
DELETE_REGISTRY_AUTH: Final = (
    "mutation DeleteRegistryAuth($registryAuthId: String) "
    "{ deleteRegistryAuth(registryAuthId: $registryAuthId) }"
)

OPERATIONS: Final[Mapping[str, str]] = {
    "ListNetworkVolumes": LIST_NETWORK_VOLUMES,
    "CreateNetworkVolume": CREATE_NETWORK_VOLUME,
    "UpdateNetworkVolume": UPDATE_NETWORK_VOLUME,
    "DeleteNetworkVolume": DELETE_NETWORK_VOLUME,
    "ListTemplates": LIST_TEMPLATES,
    "SaveTemplate": SAVE_TEMPLATE,
    "DeleteTemplate": DELETE_TEMPLATE,
    "GetEndpoint": GET_ENDPOINT,
    "ListEndpoints": LIST_ENDPOINTS,
    "SaveEndpoint": SAVE_ENDPOINT,
    "DeleteEndpoint": DELETE_ENDPOINT,
    "ListRegistryAuths": LIST_REGISTRY_AUTHS,
    "SaveRegistryAuth": SAVE_REGISTRY_AUTH,
    "UpdateRegistryAuth": UPDATE_REGISTRY_AUTH,
    "DeleteRegistryAuth": DELETE_REGISTRY_AUTH,
}


# ── Errors ─────────────────────────────────────────────────────────────────────────────────────────────────


def _api_error(operation: str, message: str, status: int | None) -> RunPodAPIError:
    cls = RunPodNotFoundError if _NOT_FOUND.search(message) else RunPodAPIError
    return cls(operation, message, status=status)


# ── Client ─────────────────────────────────────────────────────────────────────────────────────────────────


class RunPodGraphQL(RunPodHTTPClient):
    """Executes RunPod GraphQL operations with the retry policy of the module docstring (``RunPodHTTPClient``
    holds the session, the backoff and the retry loop)."""

    URL_ENV = URL_ENV
    DEFAULT_URL = DEFAULT_URL
    BACKOFF_ENV = BACKOFF_ENV

    # -- the one generic entry point ------------------------------------------------------------------------

    def execute(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run one operation from ``OPERATIONS``; return its ``data`` or raise a ``RunPodError``."""
        operation = _operation_name(query)
        is_mutation = query.lstrip().startswith("mutation")
        body: dict[str, Any] = {"query": query, "operationName": operation}
        if variables:
            body["variables"] = dict(variables)
        response = self._send(operation, lambda: self._http.post(self.url, json=body), is_write=is_mutation)
        return self._data_of(operation, response)

    # -- network volumes ------------------------------------------------------------------------------------

    def list_network_volumes(self) -> list[dict[str, Any]]:
        data = self.execute(LIST_NETWORK_VOLUMES)
        myself = data.get("myself") or {}
        return [v for v in (myself.get("networkVolumes") or []) if v]

    def create_network_volume(self, *, name: str, size: int, data_center_id: str) -> dict[str, Any]:
        variables = {"input": {"name": name, "size": int(size), "dataCenterId": data_center_id}}
        return _required(self.execute(CREATE_NETWORK_VOLUME, variables), "createNetworkVolume")

    def update_network_volume(self, volume_id: str, *, name: str, size: int) -> dict[str, Any]:
        variables = {"input": {"id": volume_id, "name": name, "size": int(size)}}
        return _required(self.execute(UPDATE_NETWORK_VOLUME, variables), "updateNetworkVolume")

    def delete_network_volume(self, volume_id: str) -> None:
        self.execute(DELETE_NETWORK_VOLUME, {"input": {"id": volume_id}})

    # -- templates ------------------------------------------------------------------------------------------

    def list_templates(self) -> list[dict[str, Any]]:
        data = self.execute(LIST_TEMPLATES)
        myself = data.get("myself") or {}
        return [t for t in (myself.get("podTemplates") or []) if t]

    def save_template(self, template: Mapping[str, Any]) -> dict[str, Any]:
        """Upsert (with ``id``: update), a full replace: send every field, omit unset ones (never null)."""
        payload = {k: v for k, v in template.items() if v is not None}
        return _required(self.execute(SAVE_TEMPLATE, {"input": payload}), "saveTemplate")

    def delete_template(self, name: str) -> None:
        """RunPod deletes templates by **name**, not id."""
        self.execute(DELETE_TEMPLATE, {"templateName": name})

    # -- endpoints ------------------------------------------------------------------------------------------

    def get_endpoint(self, endpoint_id: str) -> dict[str, Any] | None:
        """The endpoint, or None when RunPod has no endpoint with that id."""
        data = self.execute(GET_ENDPOINT, {"id": endpoint_id})
        myself = data.get("myself") or {}
        endpoint = myself.get("endpoint")
        return endpoint if isinstance(endpoint, dict) else None

    def list_endpoints(self) -> list[dict[str, Any]]:
        data = self.execute(LIST_ENDPOINTS)
        myself = data.get("myself") or {}
        return [e for e in (myself.get("endpoints") or []) if e]

    def save_endpoint(self, endpoint: Mapping[str, Any]) -> dict[str, Any]:
        """Upsert (with ``id``: update), a full replace: send the whole desired endpoint, never null."""
        payload = {k: v for k, v in endpoint.items() if v is not None}
        return _required(self.execute(SAVE_ENDPOINT, {"input": payload}), "saveEndpoint")

    def delete_endpoint(self, endpoint_id: str) -> None:
        self.execute(DELETE_ENDPOINT, {"id": endpoint_id})

    # -- container registry auth ----------------------------------------------------------------------------

    def list_registry_auths(self) -> list[dict[str, Any]]:
        """Ids and names only: RunPod never returns the username or password."""
        data = self.execute(LIST_REGISTRY_AUTHS)
        myself = data.get("myself") or {}
        return [a for a in (myself.get("containerRegistryCreds") or []) if a]

    def save_registry_auth(self, *, name: str, username: str, password: str) -> dict[str, Any]:
        variables = {"input": {"name": name, "username": username, "password": password}}
        return _required(self.execute(SAVE_REGISTRY_AUTH, variables), "saveRegistryAuth")

    def update_registry_auth(self, auth_id: str, *, username: str, password: str) -> dict[str, Any]:
        variables = {"input": {"id": auth_id, "username": username, "password": password}}
        return _required(self.execute(UPDATE_REGISTRY_AUTH, variables), "updateRegistryAuth")

    def delete_registry_auth(self, auth_id: str) -> None:
        self.execute(DELETE_REGISTRY_AUTH, {"registryAuthId": auth_id})

    # -- helpers --------------------------------------------------------------------------------------------

    def _overload_message(self, response: httpx.Response, secrets: Iterable[str]) -> str:
        return self._message_of(response) or response.reason_phrase

    def _message_of(self, response: httpx.Response) -> str:
        try:
            payload = response.json()
        except ValueError:
            return self._redactor.text(response.text[:200].strip())
        return self._redactor.text(_errors_message(payload) or "")

    def _data_of(self, operation: str, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            snippet = self._redactor.text(response.text[:200].strip())
            if status >= 400:
                raise RunPodAPIError(operation, snippet or response.reason_phrase, status=status) from None
            raise RunPodTransportError(operation, f"not a JSON answer: {snippet!r}", status=status) from None
        message = _errors_message(payload)
        if message:
            raise _api_error(operation, self._redactor.text(message), status)
        if status >= 400:
            raise RunPodAPIError(operation, response.reason_phrase, status=status)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            raise RunPodTransportError(operation, "answer has no 'data' object", status=status)
        return data


def _operation_name(query: str) -> str:
    match = re.match(r"\s*(?:query|mutation)\s+(\w+)", query)
    return match.group(1) if match else "anonymous operation"


def _errors_message(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return None
    errors = payload.get("errors")
    if not errors:
        return None
    messages = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
    return "; ".join(messages)


def _required(data: dict[str, Any], field: str) -> dict[str, Any]:
    value = data.get(field)
    if not isinstance(value, dict):
        raise RunPodTransportError(field, f"answer has no {field!r} object")
    return value
