"""The RunPod GraphQL client: operations valid against the schema, auth, errors, the retry policy."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import httpx
import pytest

graphql = pytest.importorskip("graphql")

from infra import runpod_graphql as rg  # noqa: E402
from infra.runpod_graphql import (  # noqa: E402
    RunPodAPIError,
    RunPodGraphQL,
    RunPodNotFoundError,
    RunPodTransportError,
)
from tests.runpod_emulator import load_schema  # noqa: E402

KEY = "rpa_SECRET_KEY_abcdef"


@pytest.mark.parametrize("name", sorted(rg.OPERATIONS))
def test_every_operation_validates_against_the_schema(name: str) -> None:
    document = graphql.parse(rg.OPERATIONS[name])
    assert graphql.validate(load_schema(), document) == []
    assert rg._operation_name(rg.OPERATIONS[name]) == name


def test_every_module_level_operation_is_registered() -> None:
    constants = {
        v
        for k, v in vars(rg).items()
        if k.isupper() and isinstance(v, str) and v.startswith(("query", "mutation"))
    }
    assert constants == set(rg.OPERATIONS.values())


Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, **kwargs: object) -> tuple[RunPodGraphQL, list[httpx.Request], list[float]]:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    api = RunPodGraphQL(KEY, transport=httpx.MockTransport(record), sleep=sleeps.append, **kwargs)  # type: ignore[arg-type]
    return api, seen, sleeps


def ok(data: object) -> Handler:
    return lambda _r: httpx.Response(200, json={"data": data})


def test_bearer_auth_user_agent_and_default_url(monkeypatch: pytest.MonkeyPatch) -> None:
    api, seen, _ = client(ok({"myself": {"networkVolumes": []}}))
    assert api.list_network_volumes() == []
    request = seen[0]
    assert str(request.url) == rg.DEFAULT_URL
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["User-Agent"].startswith("comfy-runpod")
    assert KEY not in str(request.url)
    body = json.loads(request.content)
    assert body["operationName"] == "ListNetworkVolumes"
    assert "variables" not in body


def test_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_GRAPHQL_URL", "http://127.0.0.1:9/graphql")
    api, seen, _ = client(ok({"myself": None}))
    api.list_network_volumes()
    assert str(seen[0].url) == "http://127.0.0.1:9/graphql"


def test_the_key_is_never_in_repr_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echo = {"errors": [{"message": f"key {KEY} is read-only"}]}
    api, _, _ = client(lambda _r: httpx.Response(500, json=echo), attempts=2)
    assert KEY not in repr(api)
    with pytest.raises(RunPodTransportError) as info:
        api.list_network_volumes()
    assert KEY not in str(info.value)
    assert "***" in str(info.value)
    assert KEY not in caplog.text


def test_graphql_errors_with_http_200_are_raised_with_message_and_operation() -> None:
    body = {"data": {"updateNetworkVolume": None}, "errors": [{"message": "size can only be increased"}]}
    api, seen, _ = client(lambda _r: httpx.Response(200, json=body))
    with pytest.raises(RunPodAPIError) as info:
        api.update_network_volume("vol1", name="models", size=5)
    assert info.value.operation == "UpdateNetworkVolume"
    assert "size can only be increased" in str(info.value)
    assert "UpdateNetworkVolume" in str(info.value)
    assert len(seen) == 1


@pytest.mark.parametrize(
    "message", ["Network volume not found", "Template does not exist", "Could not find it"]
)
def test_not_found_is_its_own_error(message: str) -> None:
    api, _, _ = client(lambda _r: httpx.Response(200, json={"data": None, "errors": [{"message": message}]}))
    with pytest.raises(RunPodNotFoundError):
        api.delete_network_volume("vol1")


def test_401_is_an_api_error_not_retried() -> None:
    api, seen, _ = client(lambda _r: httpx.Response(401, json={"errors": [{"message": "Unauthorized"}]}))
    with pytest.raises(RunPodAPIError, match=r"HTTP 401.*Unauthorized"):
        api.list_network_volumes()
    assert len(seen) == 1


def flaky(*statuses: int, then: object) -> Handler:
    answers = list(statuses)

    def handler(_r: httpx.Request) -> httpx.Response:
        if answers:
            status = answers.pop(0)
            headers = {"Retry-After": "2"} if status == 429 else {}
            return httpx.Response(status, json={"errors": [{"message": "busy"}]}, headers=headers)
        return httpx.Response(200, json={"data": then})

    return handler


def test_queries_retry_5xx_and_429_with_backoff() -> None:
    api, seen, sleeps = client(flaky(502, 429, then={"myself": {"networkVolumes": []}}), backoff_s=0.5)
    assert api.list_network_volumes() == []
    assert len(seen) == 3
    assert sleeps == [0.5, 2.0]  # exponential, then the server's Retry-After


def test_queries_give_up_after_the_attempts() -> None:
    api, seen, _ = client(flaky(503, 503, 503, then={}), attempts=3, backoff_s=0)
    with pytest.raises(RunPodTransportError, match=r"ListNetworkVolumes failed \(HTTP 503\): busy"):
        api.list_network_volumes()
    assert len(seen) == 3


def test_a_mutation_is_not_resent_after_a_5xx() -> None:
    vol = {"id": "v", "name": "models", "size": 50, "dataCenterId": "EU-RO-1"}
    api, seen, _ = client(flaky(500, then={"createNetworkVolume": vol}), backoff_s=0)
    with pytest.raises(RunPodTransportError) as info:
        api.create_network_volume(name="models", size=50, data_center_id="EU-RO-1")
    assert info.value.maybe_applied
    assert len(seen) == 1


def test_a_mutation_is_retried_on_429() -> None:
    vol = {"id": "v", "name": "models", "size": 50, "dataCenterId": "EU-RO-1"}
    api, seen, _ = client(flaky(429, then={"createNetworkVolume": vol}), backoff_s=0)
    assert api.create_network_volume(name="models", size=50, data_center_id="EU-RO-1")["id"] == "v"
    assert len(seen) == 2


def test_a_mutation_is_retried_when_the_connection_never_opened() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"data": {"deleteNetworkVolume": None}})

    api, _, _ = client(handler, backoff_s=0)
    api.delete_network_volume("vol1")
    assert len(calls) == 2


def test_a_mutation_is_not_resent_after_a_read_timeout() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("slow", request=request)

    api, _, _ = client(handler, backoff_s=0)
    with pytest.raises(RunPodTransportError) as info:
        api.delete_network_volume("vol1")
    assert info.value.maybe_applied
    assert len(calls) == 1


def test_a_query_is_retried_after_a_read_timeout() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json={"data": {"myself": {"networkVolumes": []}}})

    api, _, _ = client(handler, backoff_s=0)
    assert api.list_network_volumes() == []


def test_a_non_json_answer_is_a_transport_error() -> None:
    api, _, _ = client(lambda _r: httpx.Response(200, text="<html>gateway</html>"))
    with pytest.raises(RunPodTransportError, match="not a JSON answer"):
        api.list_network_volumes()


def test_explicit_timeouts() -> None:
    api, _, _ = client(ok({}))
    assert api._http.timeout.connect == 10.0
    assert api._http.timeout.read == 30.0


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="API key"):
        RunPodGraphQL("")
