"""The RunPod providers run by Pulumi's real dynamic-provider gRPC server, as the engine runs them.

Why: this is what `pulumi up` does after unpickling ``__provider`` in a separate process. It proves that the
provider pickles by reference and imports there, that ``configure()`` receives the secret stack config (the
API key) and that numbers crossing the protobuf boundary (floats) are handled. No CLI needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("graphql")
pytest.importorskip("pulumi")
grpc = pytest.importorskip("grpc")

from pulumi.dynamic.dynamic import serialize_provider  # noqa: E402
from pulumi.runtime.proto import provider_pb2  # noqa: E402

from infra.providers.endpoint import EndpointProvider  # noqa: E402
from infra.providers.network_volume import NetworkVolumeProvider  # noqa: E402
from infra.providers.registry_auth import RegistryAuthProvider, password_matches  # noqa: E402
from infra.providers.template import TemplateProvider  # noqa: E402
from tests.infra_support import plain, provider_server, struct  # noqa: E402
from tests.runpod_emulator import Fault, RunPodEmulator  # noqa: E402

URN = "urn:pulumi:dev::comfy-runpod::pulumi-python:dynamic/runpod:NetworkVolume::models"


@pytest.fixture
def stub(emulator: RunPodEmulator) -> Iterator[Any]:
    with provider_server({"RUNPOD_GRAPHQL_URL": emulator.url, "RUNPOD_GRAPHQL_BACKOFF_S": "0"}) as server:
        yield server


def test_lifecycle_through_the_grpc_provider_server(stub: Any, emulator: RunPodEmulator) -> None:
    pickled = serialize_provider(NetworkVolumeProvider())
    stub.Configure(
        provider_pb2.ConfigureRequest(
            args=struct({"comfy-runpod:runpodApiKey": emulator.api_key, "comfy-runpod:runpodApi": "graphql"})
        )
    )
    news = {"name": "comfy-models", "size": 50, "dataCenterId": "EU-RO-1", "__provider": pickled}

    checked = stub.Check(provider_pb2.CheckRequest(urn=URN, olds=struct({}), news=struct(news)))
    assert not checked.failures
    created = stub.Create(provider_pb2.CreateRequest(urn=URN, properties=checked.inputs))
    outs = plain(created.properties)
    assert created.id in emulator.account.volumes
    assert outs["size"] == 50
    assert emulator.api_key not in str(outs)

    shrink = stub.Check(
        provider_pb2.CheckRequest(urn=URN, olds=checked.inputs, news=struct(news | {"size": 20}))
    )
    assert [f.property for f in shrink.failures] == ["size"]

    same = stub.Diff(
        provider_pb2.DiffRequest(id=created.id, urn=URN, olds=created.properties, news=struct(news))
    )
    assert same.changes == provider_pb2.DiffResponse.DIFF_NONE
    moved = news | {"dataCenterId": "US-KS-2"}
    diff = stub.Diff(
        provider_pb2.DiffRequest(id=created.id, urn=URN, olds=created.properties, news=struct(moved))
    )
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(diff.replaces) == ["dataCenterId"]

    read = stub.Read(provider_pb2.ReadRequest(id=created.id, urn=URN, properties=created.properties))
    assert read.id == created.id

    stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=URN, properties=created.properties))
    assert emulator.account.volumes == {}
    gone = stub.Read(provider_pb2.ReadRequest(id=created.id, urn=URN, properties=created.properties))
    assert gone.id == ""
    stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=URN, properties=created.properties))


ENDPOINT_URN = "urn:pulumi:dev::comfy-runpod::pulumi-python:dynamic/runpod:Endpoint::comfy"


def test_endpoint_lifecycle_through_the_grpc_provider_server(stub: Any, emulator: RunPodEmulator) -> None:
    volume = emulator.account.create_volume({"name": "comfy-models", "size": 50, "dataCenterId": "EU-RO-1"})
    template = emulator.account.save_template({"name": "comfy", "imageName": "img:a", "isServerless": True})
    stub.Configure(
        provider_pb2.ConfigureRequest(
            args=struct({"comfy-runpod:runpodApiKey": emulator.api_key, "comfy-runpod:runpodApi": "graphql"})
        )
    )
    news = {
        "name": "comfy",
        "templateId": template["id"],
        "gpuIds": ["ADA_24", "AMPERE_48"],
        "networkVolumeId": volume["id"],
        "volumeDataCenterId": "EU-RO-1",
        "locations": ["EU-RO-1"],
        "workersMax": 3,
        "allowedCudaVersions": ["13.0"],
        "flashBootType": "FLASHBOOT",
        "__provider": serialize_provider(EndpointProvider()),
    }
    bad = stub.Check(
        provider_pb2.CheckRequest(
            urn=ENDPOINT_URN, olds=struct({}), news=struct(news | {"locations": ["US-KS-2"]})
        )
    )
    assert [f.property for f in bad.failures] == ["locations"]
    assert emulator.requests == []

    checked = stub.Check(provider_pb2.CheckRequest(urn=ENDPOINT_URN, olds=struct({}), news=struct(news)))
    assert not checked.failures
    created = stub.Create(provider_pb2.CreateRequest(urn=ENDPOINT_URN, properties=checked.inputs))
    assert emulator.account.endpoints[created.id]["workersMax"] == 3  # a float on the wire, an int to RunPod
    live = emulator.account.endpoints[created.id]
    assert (live["allowedCudaVersions"], live["flashBootType"]) == ("13.0", "FLASHBOOT")
    same = stub.Diff(
        provider_pb2.DiffRequest(
            id=created.id, urn=ENDPOINT_URN, olds=created.properties, news=checked.inputs
        )
    )
    assert same.changes == provider_pb2.DiffResponse.DIFF_NONE

    emulator.account.endpoints[created.id]["workersMax"] = 0  # idle scale-down
    read = stub.Read(provider_pb2.ReadRequest(id=created.id, urn=ENDPOINT_URN, properties=created.properties))
    assert plain(read.properties)["workersMax"] == 0
    drift = stub.Diff(
        provider_pb2.DiffRequest(id=created.id, urn=ENDPOINT_URN, olds=read.properties, news=checked.inputs)
    )
    assert drift.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(drift.replaces) == []
    stub.Update(
        provider_pb2.UpdateRequest(id=created.id, urn=ENDPOINT_URN, olds=read.properties, news=checked.inputs)
    )
    assert emulator.account.endpoints[created.id]["workersMax"] == 3

    stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=ENDPOINT_URN, properties=created.properties))
    assert emulator.account.endpoints == {}
    stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=ENDPOINT_URN, properties=created.properties))


TEMPLATE_URN = (
    "urn:pulumi:dev::comfy-runpod::comfy-runpod:index:ComfyEndpoint$pulumi-python:dynamic/runpod:Template"
    "::comfy-template"
)
HF_TOKEN = "hf_secret-token-0123456789"


def configure(stub: Any, emulator: RunPodEmulator) -> None:
    stub.Configure(
        provider_pb2.ConfigureRequest(
            args=struct({"comfy-runpod:runpodApiKey": emulator.api_key, "comfy-runpod:runpodApi": "graphql"})
        )
    )


def test_template_lifecycle_through_the_grpc_provider_server(stub: Any, emulator: RunPodEmulator) -> None:
    configure(stub, emulator)
    news = {
        "name": "comfy-runpod",
        "imageName": "ghcr.io/acme/comfy-runpod@sha256:" + "ab" * 32,
        "containerDiskInGb": 30,
        "dockerArgs": "",
        # The engine strips the secret marker before the provider sees it (acceptSecrets=False).
        "env": {"HF_TOKEN": HF_TOKEN, "OUTPUT_MODE": "s3"},
        "__provider": serialize_provider(TemplateProvider()),
    }
    bad = stub.Check(
        provider_pb2.CheckRequest(
            urn=TEMPLATE_URN, olds=struct({}), news=struct(news | {"env": {"HF TOKEN": HF_TOKEN}})
        )
    )
    assert [f.property for f in bad.failures] == ["env"]
    assert HF_TOKEN not in bad.failures[0].reason
    assert emulator.requests == []

    checked = stub.Check(provider_pb2.CheckRequest(urn=TEMPLATE_URN, olds=struct({}), news=struct(news)))
    assert not checked.failures
    created = stub.Create(provider_pb2.CreateRequest(urn=TEMPLATE_URN, properties=checked.inputs))
    stored = emulator.account.templates[created.id]
    assert stored["containerDiskInGb"] == 30  # a float on the wire, an int to RunPod
    assert (stored["volumeInGb"], stored["isServerless"]) == (0, True)
    assert stored["env"] == [{"key": "HF_TOKEN", "value": HF_TOKEN}, {"key": "OUTPUT_MODE", "value": "s3"}]
    outs = plain(created.properties)
    assert outs["env"] == {"HF_TOKEN": HF_TOKEN, "OUTPUT_MODE": "s3"}  # secret in state: additional output
    assert emulator.api_key not in str(outs)

    same = stub.Diff(
        provider_pb2.DiffRequest(
            id=created.id, urn=TEMPLATE_URN, olds=created.properties, news=checked.inputs
        )
    )
    assert same.changes == provider_pb2.DiffResponse.DIFF_NONE

    stored["env"] = [{"key": "HF_TOKEN", "value": "changed-in-the-console"}]  # drift
    read = stub.Read(provider_pb2.ReadRequest(id=created.id, urn=TEMPLATE_URN, properties=created.properties))
    assert read.id == created.id
    assert plain(read.properties)["env"] == {"HF_TOKEN": "changed-in-the-console"}
    drift = stub.Diff(
        provider_pb2.DiffRequest(id=created.id, urn=TEMPLATE_URN, olds=read.properties, news=checked.inputs)
    )
    assert drift.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(drift.replaces) == []

    newer = struct(plain(checked.inputs) | {"imageName": "ghcr.io/acme/comfy-runpod@sha256:" + "cd" * 32})
    updated = stub.Update(
        provider_pb2.UpdateRequest(id=created.id, urn=TEMPLATE_URN, olds=read.properties, news=newer)
    )
    assert emulator.account.templates[created.id]["imageName"].endswith("cd" * 32)
    assert emulator.account.templates[created.id]["env"][0] == {"key": "HF_TOKEN", "value": HF_TOKEN}

    # A RunPod error that echoes the env is redacted before it leaves the provider (the CLI shows it).
    emulator.inject(Fault(200, message=f"env value {HF_TOKEN} refused", operation="SaveTemplate"))
    with pytest.raises(grpc.RpcError) as info:
        stub.Update(
            provider_pb2.UpdateRequest(id=created.id, urn=TEMPLATE_URN, olds=updated.properties, news=newer)
        )
    assert "env value *** refused" in str(info.value.details())
    assert HF_TOKEN not in str(info.value.details())

    stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=TEMPLATE_URN, properties=updated.properties))
    assert emulator.account.templates == {}
    gone = stub.Read(provider_pb2.ReadRequest(id=created.id, urn=TEMPLATE_URN, properties=updated.properties))
    assert gone.id == ""
    stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=TEMPLATE_URN, properties=updated.properties))


AUTH_URN = "urn:pulumi:dev::comfy-runpod::pulumi-python:dynamic/runpod:RegistryAuth::registry-auth"
PASSWORD = "ghp_registry-password-42"


def _wire_text(message: Any) -> str:
    """Everything a gRPC answer carries, as text: the password must not be in it."""
    return str(message.SerializeToString().decode("latin-1"))


def test_registry_auth_lifecycle_through_the_grpc_provider_server(
    stub: Any, emulator: RunPodEmulator
) -> None:
    configure(stub, emulator)
    news = {
        "name": "comfy-runpod-registry",
        "username": "acme",
        "password": PASSWORD,
        "__provider": serialize_provider(RegistryAuthProvider()),
    }
    empty = stub.Check(
        provider_pb2.CheckRequest(urn=AUTH_URN, olds=struct({}), news=struct(news | {"password": ""}))
    )
    assert [f.property for f in empty.failures] == ["password"]

    # Check hands the inputs back (the engine keeps them secret: they came in as a secret input).
    checked = stub.Check(provider_pb2.CheckRequest(urn=AUTH_URN, olds=struct({}), news=struct(news)))
    assert not checked.failures
    created = stub.Create(provider_pb2.CreateRequest(urn=AUTH_URN, properties=checked.inputs))
    stored = emulator.account.registry_auths[created.id]
    assert (stored["username"], stored["password"]) == ("acme", PASSWORD)
    outs = plain(created.properties)
    assert PASSWORD not in _wire_text(created)
    assert "password" not in outs
    assert password_matches(PASSWORD, outs["passwordDigest"])

    same = stub.Diff(
        provider_pb2.DiffRequest(id=created.id, urn=AUTH_URN, olds=created.properties, news=checked.inputs)
    )
    assert same.changes == provider_pb2.DiffResponse.DIFF_NONE
    rotated = struct(news | {"password": "rotated-password-7"})
    diff = stub.Diff(
        provider_pb2.DiffRequest(id=created.id, urn=AUTH_URN, olds=created.properties, news=rotated)
    )
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(diff.replaces) == []
    renamed = struct(news | {"name": "other-registry"})
    diff = stub.Diff(
        provider_pb2.DiffRequest(id=created.id, urn=AUTH_URN, olds=created.properties, news=renamed)
    )
    assert list(diff.replaces) == ["name"]
    assert diff.deleteBeforeReplace
    assert PASSWORD not in _wire_text(diff)

    read = stub.Read(provider_pb2.ReadRequest(id=created.id, urn=AUTH_URN, properties=created.properties))
    assert read.id == created.id
    assert plain(read.properties)["passwordDigest"] == outs["passwordDigest"]
    assert PASSWORD not in _wire_text(read)

    updated = stub.Update(
        provider_pb2.UpdateRequest(id=created.id, urn=AUTH_URN, olds=read.properties, news=rotated)
    )
    assert emulator.account.registry_auths[created.id]["password"] == "rotated-password-7"
    assert "rotated-password-7" not in _wire_text(updated)
    assert password_matches("rotated-password-7", plain(updated.properties)["passwordDigest"])

    emulator.inject(Fault(200, message=f"bad credentials {PASSWORD}", operation="UpdateRegistryAuth"))
    with pytest.raises(grpc.RpcError) as info:
        stub.Update(
            provider_pb2.UpdateRequest(id=created.id, urn=AUTH_URN, olds=read.properties, news=struct(news))
        )
    assert PASSWORD not in str(info.value.details())

    stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=AUTH_URN, properties=updated.properties))
    assert emulator.account.registry_auths == {}
    gone = stub.Read(provider_pb2.ReadRequest(id=created.id, urn=AUTH_URN, properties=updated.properties))
    assert gone.id == ""
    stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=AUTH_URN, properties=updated.properties))
