"""The NetworkVolume provider run by Pulumi's real dynamic-provider gRPC server, as the engine runs it.

Why: this is what `pulumi up` does after unpickling ``__provider`` in a separate process. It proves that the
provider pickles by reference and imports there, that ``configure()`` receives the secret stack config (the
API key) and that numbers crossing the protobuf boundary (floats) are handled. No CLI needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("graphql")
pytest.importorskip("pulumi")
grpc = pytest.importorskip("grpc")

from google.protobuf import json_format, struct_pb2  # noqa: E402
from pulumi.dynamic.dynamic import serialize_provider  # noqa: E402
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc  # noqa: E402

from infra.providers.endpoint import EndpointProvider  # noqa: E402
from infra.providers.network_volume import NetworkVolumeProvider  # noqa: E402
from tests.runpod_emulator import RunPodEmulator, running_emulator  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
URN = "urn:pulumi:dev::comfy-runpod::pulumi-python:dynamic/runpod:NetworkVolume::models"


@pytest.fixture
def emulator() -> Iterator[RunPodEmulator]:
    yield from running_emulator()


@pytest.fixture
def stub(emulator: RunPodEmulator) -> Iterator[Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "PULUMI_"))}
    env |= {
        "PULUMI_PROJECT": "comfy-runpod",
        "RUNPOD_GRAPHQL_URL": emulator.url,
        "RUNPOD_GRAPHQL_BACKOFF_S": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.dynamic", "127.0.0.1:0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().strip())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield provider_pb2_grpc.ResourceProviderStub(channel)
        channel.close()
    finally:
        process.terminate()
        process.communicate(timeout=10)


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


def plain(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(message)
    return result


def test_lifecycle_through_the_grpc_provider_server(stub: Any, emulator: RunPodEmulator) -> None:
    pickled = serialize_provider(NetworkVolumeProvider())
    stub.Configure(
        provider_pb2.ConfigureRequest(args=struct({"comfy-runpod:runpodApiKey": emulator.api_key}))
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
        provider_pb2.ConfigureRequest(args=struct({"comfy-runpod:runpodApiKey": emulator.api_key}))
    )
    news = {
        "name": "comfy",
        "templateId": template["id"],
        "gpuIds": ["ADA_24", "AMPERE_48"],
        "networkVolumeId": volume["id"],
        "volumeDataCenterId": "EU-RO-1",
        "locations": ["EU-RO-1"],
        "workersMax": 3,
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
