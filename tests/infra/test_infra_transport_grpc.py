"""The providers through Pulumi's real dynamic-provider gRPC server (``python -m pulumi.dynamic``, as the
engine starts it), over both RunPod APIs: the transport comes from the stack config the engine sends in
Configure (``runpodApi``), the emulator's URL from the environment the provider process inherits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("graphql")
pytest.importorskip("openapi_core")
pytest.importorskip("pulumi")
grpc = pytest.importorskip("grpc")

from pulumi.dynamic.dynamic import serialize_provider  # noqa: E402
from pulumi.runtime.proto import provider_pb2  # noqa: E402

from infra.providers.endpoint import EndpointProvider  # noqa: E402
from infra.providers.network_volume import NetworkVolumeProvider  # noqa: E402
from infra.providers.registry_auth import RegistryAuthProvider  # noqa: E402
from infra.providers.template import TemplateProvider  # noqa: E402
from tests.infra_support import IMAGE, NEW_IMAGE, Backend, plain, provider_server, struct  # noqa: E402

HF_TOKEN = "hf_secret-token-0123456789"
NONE, SOME = provider_pb2.DiffResponse.DIFF_NONE, provider_pb2.DiffResponse.DIFF_SOME


def urn(kind: str, name: str) -> str:
    return f"urn:pulumi:dev::comfy-runpod::pulumi-python:dynamic/runpod:{kind}::{name}"


@pytest.fixture
def stub(runpod: Backend) -> Iterator[Any]:
    """The provider server, configured with this transport's stack config."""
    with provider_server(runpod.env) as server:
        server.Configure(provider_pb2.ConfigureRequest(args=struct(runpod.config)))
        yield server


def lifecycle(stub: Any, kind: str, name: str, news: dict[str, Any]) -> tuple[str, Any, Any]:
    """Check and create; returns (id, checked inputs, created properties)."""
    checked = stub.Check(provider_pb2.CheckRequest(urn=urn(kind, name), olds=struct({}), news=struct(news)))
    assert not checked.failures, checked.failures
    created = stub.Create(provider_pb2.CreateRequest(urn=urn(kind, name), properties=checked.inputs))
    same = stub.Diff(
        provider_pb2.DiffRequest(
            id=created.id, urn=urn(kind, name), olds=created.properties, news=checked.inputs
        )
    )
    assert same.changes == NONE
    return created.id, checked.inputs, created.properties


def test_volume_template_and_endpoint_through_the_server(stub: Any, runpod: Backend) -> None:
    volume_id, _, volume = lifecycle(
        stub,
        "NetworkVolume",
        "models-volume",
        {
            "name": "comfy-models",
            "size": 50,
            "dataCenterId": "EU-RO-1",
            "__provider": serialize_provider(NetworkVolumeProvider()),
        },
    )
    assert runpod.volumes() == {volume_id: 50}
    template_news = {
        "name": "comfy-runpod",
        "imageName": IMAGE,
        "containerDiskInGb": 20,
        "dockerArgs": "",
        "env": {"HF_TOKEN": HF_TOKEN},
        "__provider": serialize_provider(TemplateProvider()),
    }
    template_id, _, template = lifecycle(stub, "Template", "comfy-template", template_news)
    endpoint_news = {
        "name": "comfy",
        "templateId": template_id,
        "gpuIds": ["ADA_24", "AMPERE_48"],
        "networkVolumeId": volume_id,
        "volumeDataCenterId": "EU-RO-1",
        "locations": ["EU-RO-1"],
        "workersMax": 3,
        "allowedCudaVersions": ["13.0"],
        "flashBootType": "FLASHBOOT",
        "imageName": IMAGE,
        "containerDiskInGb": 20,
        "env": {"HF_TOKEN": HF_TOKEN},
        "preflight": {
            "dataCenterId": "EU-RO-1",
            "gpuIds": "gpuIds",
            "allowedCudaVersions": "allowedCudaVersions",
        },
        "__provider": serialize_provider(EndpointProvider()),
    }
    ep_urn = urn("Endpoint", "comfy-endpoint")
    bad = stub.Check(
        provider_pb2.CheckRequest(
            urn=ep_urn, olds=struct({}), news=struct(endpoint_news | {"gpuIds": ["BLACKWELL_180"]})
        )
    )
    # Over REST the catalog preflight refuses a pool the volume's data center does not host.
    assert [f.property for f in bad.failures] == (["locations"] if runpod.rest else [])
    endpoint_id, checked, endpoint = lifecycle(stub, "Endpoint", "comfy-endpoint", endpoint_news)
    assert runpod.live_endpoint(endpoint_id)["workersMax"] == 3  # a float on the wire, an int to RunPod
    assert plain(endpoint)["templateId"] == template_id
    assert "preflight" not in plain(checked)

    runpod.scale_down(endpoint_id, 0)  # drift: refresh shows it, update restores it
    read = stub.Read(provider_pb2.ReadRequest(id=endpoint_id, urn=ep_urn, properties=endpoint))
    assert plain(read.properties)["workersMax"] == 0
    drift = stub.Diff(
        provider_pb2.DiffRequest(id=endpoint_id, urn=ep_urn, olds=read.properties, news=checked)
    )
    assert (drift.changes, list(drift.replaces)) == (SOME, [])
    stub.Update(provider_pb2.UpdateRequest(id=endpoint_id, urn=ep_urn, olds=read.properties, news=checked))
    assert runpod.live_endpoint(endpoint_id)["workersMax"] == 3

    # A new image: the template updates; over REST the endpoint's own image too (its workers roll).
    newer = struct(plain(checked) | {"imageName": NEW_IMAGE})
    diff = stub.Diff(provider_pb2.DiffRequest(id=endpoint_id, urn=ep_urn, olds=endpoint, news=newer))
    assert diff.changes == SOME
    updated = stub.Update(provider_pb2.UpdateRequest(id=endpoint_id, urn=ep_urn, olds=endpoint, news=newer))
    assert plain(updated.properties)["imageName"] == NEW_IMAGE
    if runpod.rest:
        assert runpod.account.endpoints[endpoint_id]["image"] == NEW_IMAGE

    if not runpod.rest:
        runpod.account.template_grace_s = 0  # GraphQL: no wait for "recently in use" (not under test here)
    for kind, name, resource_id, properties in (
        ("Endpoint", "comfy-endpoint", endpoint_id, updated.properties),
        ("Template", "comfy-template", template_id, template),
        ("NetworkVolume", "models-volume", volume_id, volume),
    ):
        stub.Delete(provider_pb2.DeleteRequest(id=resource_id, urn=urn(kind, name), properties=properties))
        gone = stub.Read(provider_pb2.ReadRequest(id=resource_id, urn=urn(kind, name), properties=properties))
        assert gone.id == ""
    assert (runpod.endpoint_ids(), runpod.templates(), runpod.volumes()) == ([], {}, {})


def test_registry_auth_rotation_through_the_server(stub: Any, runpod: Backend) -> None:
    news = {
        "name": "comfy-runpod-registry",
        "username": "acme",
        "password": "pw-old-123456",
        "__provider": serialize_provider(RegistryAuthProvider()),
    }
    auth_urn = urn("RegistryAuth", "registry-auth")
    auth_id, _, created = lifecycle(stub, "RegistryAuth", "registry-auth", news)
    rotated = struct(news | {"password": "pw-new-654321"})
    diff = stub.Diff(provider_pb2.DiffRequest(id=auth_id, urn=auth_urn, olds=created, news=rotated))
    assert diff.changes == SOME
    if runpod.rest:  # create-before-delete replacement
        assert (list(diff.replaces), diff.deleteBeforeReplace) == (["password"], False)
        replacement = stub.Create(provider_pb2.CreateRequest(urn=auth_urn, properties=rotated))
        assert set(runpod.registries()) == {auth_id, replacement.id}
        stub.Delete(provider_pb2.DeleteRequest(id=auth_id, urn=auth_urn, properties=created))
        assert set(runpod.registries()) == {replacement.id}
        assert runpod.registries()[replacement.id]["password"] == "pw-new-654321"
    else:  # updated in place
        assert list(diff.replaces) == []
        stub.Update(provider_pb2.UpdateRequest(id=auth_id, urn=auth_urn, olds=created, news=rotated))
        assert runpod.registries()[auth_id]["password"] == "pw-new-654321"
