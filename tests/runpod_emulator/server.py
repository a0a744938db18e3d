"""A RunPod GraphQL emulator on loopback, for tests of the client and the dynamic providers.

Why a real HTTP server rather than ``httpx.MockTransport``: the providers are also driven through Pulumi's
gRPC provider process, which only sees an URL (``RUNPOD_GRAPHQL_URL``). A stdlib server in a thread keeps it
synchronous like the providers themselves.

Every request is parsed and validated with graphql-core against RunPod's SDL plus the extension file
(``tests/fixtures/runpod/``); invalid operations, and variables that do not coerce to their declared input
types, get HTTP 400 with GraphQL errors. Valid ones are executed
by graphql-core itself, so selections, variable coercion and input defaults (``workersMax: Int = 3``) behave
as on a real GraphQL server; the resolvers apply the business rules of ``state.Account``. Rule violations come
back as GraphQL errors with HTTP 200, as RunPod does.

Faults (``inject``) are consumed in order by matching requests: HTTP status codes (429, 5xx), GraphQL errors
with HTTP 200, and ``apply_first``, which executes the operation and then answers with the fault (a crash
after the server applied a mutation). ``after_apply`` hooks run once, after a request for a given root field
(``createNetworkVolume``) was executed and before its answer goes out: a test kills the Pulumi engine there,
deterministically between RunPod's change and Pulumi's state write.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from graphql import GraphQLError, GraphQLSchema, build_schema, execute_sync, parse, validate
from graphql.execution.values import get_variable_values
from graphql.language import FieldNode, OperationDefinitionNode, OperationType

from tests.loopback_server import LoopbackEmulator, LoopbackServer, read_body, send
from tests.runpod_emulator.state import Account

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "runpod"
SCHEMA_FILES = ("schema.pulumi-runpod.graphql", "schema.extensions.graphql")


@functools.cache
def load_schema() -> GraphQLSchema:
    """RunPod's minimal SDL merged with the extensions, as the fixture README prescribes."""
    return build_schema("\n".join((SCHEMA_DIR / name).read_text() for name in SCHEMA_FILES))


@dataclass
class Fault:
    """One injected failure. ``operation`` None matches any request."""

    status: int = 500
    message: str | None = None
    operation: str | None = None
    apply_first: bool = False
    retry_after: float | None = None


@dataclass
class Request:
    operation: str | None
    variables: dict[str, Any]
    status: int
    fields: tuple[str, ...] = ()  # root fields, e.g. ("saveEndpoint",)
    mutation: bool = False


@dataclass
class RunPodEmulator(LoopbackEmulator[Fault]):
    api_key: str = "test-key-0123456789"
    account: Account = field(default_factory=Account)
    schema: GraphQLSchema = field(default_factory=load_schema)
    faults: list[Fault] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    hooks: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    _server: LoopbackServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the emulator first"
        return f"{self._server.origin}/graphql"

    def start(self) -> RunPodEmulator:
        self._server = LoopbackServer(self._serve, name="runpod-emulator", methods=("POST",))
        return self

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        request, body, headers = self.handle_request(
            handler.path, handler.headers.get("Authorization"), read_body(handler)
        )
        self.run_hooks(request)
        payload = json.dumps(body).encode()
        with contextlib.suppress(OSError):  # the client is gone (a hook killed it)
            send(handler, request.status, payload, {"Content-Type": "application/json", **headers})

    def after_apply(self, root_field: str, hook: Callable[[], None]) -> None:
        """Run ``hook`` once, after the next successful request for ``root_field``, before it is answered."""
        with self.account.lock:
            self.hooks.append((root_field, hook))

    def run_hooks(self, request: Request) -> None:
        if request.status != 200:
            return
        with self.account.lock:
            due = [h for h in self.hooks if h[0] in request.fields]
            self.hooks = [h for h in self.hooks if h not in due]
        for _field, hook in due:
            hook()

    # ── request handling ──────────────────────────────────────────────────────────────────────────────────

    def handle(self, path: str, auth: str | None, raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        request, body, headers = self.handle_request(path, auth, raw)
        return request.status, body, headers

    def handle_request(
        self, path: str, auth: str | None, raw: bytes
    ) -> tuple[Request, dict[str, Any], dict[str, str]]:
        """Answer one POST; also returns the recorded ``Request`` (the hooks need this one, not the last)."""
        status, body, headers, operation, variables = self._answer(path, auth, raw)
        fields, mutation = _root_fields(raw)
        request = Request(operation, variables, status, fields, mutation)
        with self.account.lock:
            self.requests.append(request)
        return request, body, headers

    def _answer(
        self, path: str, auth: str | None, raw: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str], str | None, dict[str, Any]]:
        if "api_key" in path:
            return 400, _errors("API key must not be sent in the URL"), {}, None, {}
        if auth != f"Bearer {self.api_key}":
            return 401, _errors("Unauthorized: invalid API key"), {}, None, {}
        try:
            request = json.loads(raw)
            query = request["query"]
            variables = request.get("variables") or {}
            document = parse(query)
        except (ValueError, KeyError, TypeError, GraphQLError) as exc:
            return 400, _errors(f"Bad request: {exc}"), {}, None, {}
        operation = _operation_name(document)
        problems = validate(self.schema, document)
        if not problems:
            # Variables that do not coerce to the declared input types (a missing required field, an unknown
            # field): a request error, answered like a validation error.
            definitions = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            coerced = get_variable_values(self.schema, definitions[0].variable_definitions or (), variables)
            problems = coerced if isinstance(coerced, list) else []
        if problems:
            return 400, {"errors": [p.formatted for p in problems]}, {}, operation, variables
        fault = self._take_fault(operation)
        if fault is not None and not fault.apply_first:
            return (*_fault_answer(fault), operation, variables)
        result = execute_sync(self.schema, document, root_value=self._root(), variable_values=variables)
        if fault is not None:
            return (*_fault_answer(fault), operation, variables)
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [e.formatted for e in result.errors]
        return 200, body, {}, operation, variables

    def _root(self) -> dict[str, Any]:
        """Root resolvers: graphql-core calls a callable field value with ``(info, **args)``."""
        account = self.account

        def myself(_info: Any) -> dict[str, Any]:
            with account.lock:
                return {
                    "id": "user-1",
                    "networkVolumes": [dict(v) for v in account.volumes.values()],
                    "podTemplates": [dict(t) for t in account.templates.values()],
                    "endpoints": [account.endpoint_view(e) for e in account.endpoints.values()],
                    "containerRegistryCreds": [
                        {"id": a["id"], "name": a["name"]} for a in account.registry_auths.values()
                    ],
                    "secrets": [],
                    "endpoint": lambda _i, id: (
                        account.endpoint_view(account.endpoints[id]) if id in account.endpoints else None
                    ),
                }

        return {
            "myself": myself,
            "podTemplate": lambda _i, id: account.templates.get(id),
            "createNetworkVolume": lambda _i, input: account.create_volume(input),
            "updateNetworkVolume": lambda _i, input: account.update_volume(input),
            "deleteNetworkVolume": lambda _i, input: account.delete_volume(input["id"]),
            "saveTemplate": lambda _i, input: account.save_template(input),
            "deleteTemplate": lambda _i, templateName: account.delete_template(templateName),
            "saveEndpoint": lambda _i, input: account.save_endpoint(input),
            "deleteEndpoint": lambda _i, id: account.delete_endpoint(id),
            "saveRegistryAuth": lambda _i, input: account.save_registry_auth(input),
            "updateRegistryAuth": lambda _i, input: account.update_registry_auth(input),
            "deleteRegistryAuth": lambda _i, registryAuthId: account.delete_registry_auth(registryAuthId),
        }


def _errors(message: str) -> dict[str, Any]:
    return {"data": None, "errors": [{"message": message}]}


def _fault_answer(fault: Fault) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    message = fault.message or ("Too many requests" if fault.status == 429 else "Internal server error")
    return fault.status, _errors(message), headers


def _root_fields(raw: bytes) -> tuple[tuple[str, ...], bool]:
    """The root fields a request asked for, and whether it is a mutation (nothing for a bad request)."""
    try:
        document = parse(json.loads(raw)["query"])
    except (ValueError, KeyError, TypeError, GraphQLError):
        return (), False
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            names = tuple(
                s.name.value for s in definition.selection_set.selections if isinstance(s, FieldNode)
            )
            return names, definition.operation == OperationType.MUTATION
    return (), False


def _operation_name(document: Any) -> str | None:
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and definition.name is not None:
            return str(definition.name.value)
    return None


def running_emulator(**kwargs: Any) -> Iterator[RunPodEmulator]:
    """Generator for a pytest fixture: start on loopback, stop afterwards."""
    emulator = RunPodEmulator(**kwargs).start()
    try:
        yield emulator
    finally:
        emulator.stop()
