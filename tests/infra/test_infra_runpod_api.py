"""The transport seam: ``runpodApi`` picks the client; both offer the protocol's methods."""

from __future__ import annotations

import pytest

from infra.runpod_api import DEFAULT_TRANSPORT, RunPodApi, connect
from infra.runpod_graphql import RunPodGraphQL
from infra.runpod_rest import RunPodREST


def test_connect_makes_the_chosen_client_pointed_by_its_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_REST_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("RUNPOD_GRAPHQL_URL", "http://127.0.0.1:8/graphql")
    with connect("rest", "k" * 12) as rest, connect("graphql", "k" * 12) as graphql:
        assert isinstance(rest, RunPodREST) and rest.url == "http://127.0.0.1:9"
        assert isinstance(graphql, RunPodGraphQL) and graphql.url == "http://127.0.0.1:8/graphql"
    assert DEFAULT_TRANSPORT == "rest"


def test_an_unknown_transport_names_the_key_and_the_fix() -> None:
    with pytest.raises(
        ValueError, match=r"runpodApi: 'soap' is not one of rest, graphql; run `pulumi config set"
    ):
        connect("soap", "k" * 12)


def test_both_clients_offer_every_protocol_method() -> None:
    methods = {
        name for name in vars(RunPodApi) if not name.startswith("_") or name in ("__enter__", "__exit__")
    }
    methods -= {"__protocol_attrs__", "__non_callable_proto_members__"}
    assert "save_endpoint" in methods
    for cls in (RunPodREST, RunPodGraphQL):
        assert all(callable(getattr(cls, m, None)) for m in methods), cls
