"""The fixtures every infra test shares (a pytest plugin that tests/conftest.py loads): the RunPod emulators
wired in, a dynamic provider loaded as the engine loads it, and the Pulumi program under mocks.

Two transports (stack config ``runpodApi``): ``emulator`` is the GraphQL emulator (its tests pin
``graphql``), ``rest_emulator`` the REST v2 one. ``transport`` is parametrized over both, and ``runpod`` gives
a test the emulator of its transport behind one small interface (``Backend``), so a test written once runs
for both. Outside pytest (e.g. engine tests driving ``pulumi``), ``Backend.env`` and ``Backend.config`` are
what a provider process needs: the emulator's URL (``RUNPOD_GRAPHQL_URL`` / ``RUNPOD_REST_URL``) and the
stack config (``runpodApiKey``, ``runpodApi``); switching a stack is ``runpodApi`` plus the other URL, with
``Account.import_graphql`` making the REST emulator hold the GraphQL account's objects.

pulumi and the emulators (graphql-core, openapi-core) are imported when a fixture runs, not when this plugin
loads: the other tests do not need them.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from tests.runpod_emulator import RunPodEmulator
    from tests.runpod_rest_emulator import RunPodRESTEmulator

PROJECT = "comfy-runpod"
KEY = "rpa_secret-key-0123456789"
DIGEST = "ghcr.io/acme/comfy-runpod@sha256:" + "ab" * 32
P = TypeVar("P")
TRANSPORTS = ("graphql", "rest")
ROOT = Path(__file__).resolve().parent.parent
IMAGE = "ghcr.io/acme/comfy-runpod@sha256:" + "ab" * 32
NEW_IMAGE = "ghcr.io/acme/comfy-runpod@sha256:" + "cd" * 32


def state(outs: dict[str, Any] | None) -> dict[str, Any]:
    """Outputs as Pulumi hands them back as olds (with the provider's pickle)."""
    assert outs is not None
    return {**outs, "__provider": "opaque"}


def endpoint_inputs(template_id: str, volume_id: str, **extra: Any) -> dict[str, Any]:
    """What the program hands the Endpoint (numbers as floats, __provider present: pulumi #13830)."""
    return {
        "name": "comfy",
        "templateId": template_id,
        "gpuIds": ["ADA_24", "AMPERE_48"],
        "networkVolumeId": volume_id,
        "volumeDataCenterId": "EU-RO-1",
        "locations": ["EU-RO-1"],
        "workersMin": 0.0,
        "workersMax": 3.0,
        "idleTimeout": 5.0,
        "allowedCudaVersions": ["13.0"],
        "flashBootType": "FLASHBOOT",
        "imageName": IMAGE,
        "containerDiskInGb": 20.0,
        "env": {"OUTPUT_MODE": "s3"},
        "dockerArgs": "",
        "__provider": "opaque",
        "version": None,
    } | extra


@contextmanager
def provider_server(env: Mapping[str, str]) -> Iterator[Any]:
    """Pulumi's dynamic-provider gRPC server, started as the engine starts it (``python -m pulumi.dynamic``,
    in the repo root) with ``env`` on a clean environment; yields a ``ResourceProviderStub``."""
    import grpc
    from pulumi.runtime.proto import provider_pb2_grpc

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "PULUMI_"))}
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.dynamic", "127.0.0.1:0"],
        cwd=ROOT,
        env=clean | {"PULUMI_PROJECT": PROJECT, **env},
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


def struct(values: Mapping[str, Any]) -> Any:
    """A protobuf Struct, as the engine sends properties."""
    from google.protobuf import struct_pb2

    s = struct_pb2.Struct()
    s.update(dict(values))
    return s


def plain(message: Any) -> dict[str, Any]:
    """A protobuf message (Struct) as a dict."""
    from google.protobuf import json_format

    result: dict[str, Any] = json_format.MessageToDict(message)
    return result


def _no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.providers.endpoint import CATALOG_CACHE, EndpointProvider
    from infra.providers.template import TemplateProvider

    monkeypatch.setattr(EndpointProvider, "delete_retry_s", 0.0)
    monkeypatch.setattr(TemplateProvider, "delete_poll_s", 0.0)
    CATALOG_CACHE.clear()


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunPodEmulator]:
    """The emulator on loopback, the GraphQL client pointed at it, the client's and providers' waits off."""
    from tests.runpod_emulator import running_emulator

    _no_waits(monkeypatch)
    for emu in running_emulator():
        monkeypatch.setenv("RUNPOD_GRAPHQL_URL", emu.url)
        monkeypatch.setenv("RUNPOD_GRAPHQL_BACKOFF_S", "0")
        yield emu


@pytest.fixture
def rest_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunPodRESTEmulator]:
    """The REST v2 emulator on loopback (every request and answer checked against RunPod's OpenAPI
    description), the REST client pointed at it, the waits off; fails the test on any spec violation."""
    from tests.runpod_rest_emulator import running_emulator

    _no_waits(monkeypatch)
    for emu in running_emulator():
        monkeypatch.setenv("RUNPOD_REST_URL", emu.url)
        monkeypatch.setenv("RUNPOD_REST_BACKOFF_S", "0")
        yield emu


def as_the_engine_loads(provider: P, api_key: str | None, transport: str | None) -> P:
    """Pickle and unpickle like the engine, then configure like the provider process (``transport``: the
    stack config ``runpodApi``; None leaves it unset, i.e. the default).

    The pickle must refer to the provider's class by reference (small): by value, the engine
    would carry a copy of the code that goes stale.
    """
    import dill
    from pulumi.dynamic import ConfigureRequest
    from pulumi.dynamic.config import Config
    from pulumi.dynamic.dynamic import serialize_provider

    raw = serialize_provider(provider)  # type: ignore[arg-type]
    assert len(raw) < 400, "the provider should be pickled by reference, not by value"
    loaded: P = dill.loads(base64.b64decode(raw))  # noqa: S301 - our own pickle
    config = {f"{PROJECT}:runpodApiKey": api_key} if api_key else {}
    if transport is not None:
        config[f"{PROJECT}:runpodApi"] = transport
    loaded.configure(ConfigureRequest(Config(config, PROJECT)))  # type: ignore[attr-defined]
    return loaded


class ProviderLoader:
    """``load_provider(EndpointProvider)``: a new provider as the engine loads it, keyed for the emulator."""

    def __init__(self, api_key: str, transport: str) -> None:
        self.api_key = api_key
        self.transport = transport

    def __call__(self, cls: type[P]) -> P:
        return as_the_engine_loads(cls(), self.api_key, self.transport)


@pytest.fixture
def load_provider(emulator: RunPodEmulator) -> ProviderLoader:
    """Providers over GraphQL, against ``emulator`` (the GraphQL-specific provider tests)."""
    return ProviderLoader(emulator.api_key, "graphql")


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """Each RunPod API the providers speak (stack config ``runpodApi``)."""
    return str(request.param)


@pytest.fixture
def runpod(transport: str, request: pytest.FixtureRequest) -> Backend:
    """The emulator of ``transport``, behind the interface a test for both transports needs."""
    fixture = "emulator" if transport == "graphql" else "rest_emulator"
    return Backend(transport, request.getfixturevalue(fixture))


def take_over(target: Any, source: Any) -> None:
    """``target`` emulator (REST or GraphQL) now holds ``source``'s account (the other API's), ids and API key
    kept: one RunPod backend behind both APIs. A stack switch is this, ``runpodApi`` set to the target's API,
    and the provider process pointed at ``target`` (``Backend(...).env``): the same for engine tests."""
    from tests.runpod_rest_emulator import RunPodRESTEmulator

    if isinstance(target, RunPodRESTEmulator):
        target.account.import_graphql(source.account)
    else:
        target.account.import_rest(source.account)
    target.api_key = source.api_key


class Backend:
    """One emulated RunPod account over one transport: what a test for both transports reads and changes.

    Objects are read and changed in the emulators' own state (each in its API's shape), never through the
    clients under test. ``live_endpoint`` answers in a few comparable fields."""

    def __init__(self, transport: str, emulator: Any) -> None:
        self.transport = transport
        self.emulator = emulator
        self.api_key: str = emulator.api_key
        self.rest = transport == "rest"

    @property
    def env(self) -> dict[str, str]:
        """The environment a provider process needs to reach this emulator."""
        if self.rest:
            return {"RUNPOD_REST_URL": self.emulator.url, "RUNPOD_REST_BACKOFF_S": "0"}
        return {"RUNPOD_GRAPHQL_URL": self.emulator.url, "RUNPOD_GRAPHQL_BACKOFF_S": "0"}

    @property
    def config(self) -> dict[str, str]:
        """The stack config a provider is configured with (``ConfigureRequest``)."""
        return {f"{PROJECT}:runpodApiKey": self.api_key, f"{PROJECT}:runpodApi": self.transport}

    def load(self, cls: type[P]) -> P:
        return as_the_engine_loads(cls(), self.api_key, self.transport)

    @property
    def account(self) -> Any:
        return self.emulator.account

    def operations(self) -> list[str | None]:
        return list(self.emulator.operations())

    def new_volume(self, name: str = "comfy-models", size: int = 50, data_center: str = "EU-RO-1") -> str:
        if self.rest:
            body = {"name": name, "size": size, "dataCenter": data_center}
            return str(self.account.op_createNetworkVolume(body=body)[1]["id"])
        return str(
            self.account.create_volume({"name": name, "size": size, "dataCenterId": data_center})["id"]
        )

    def new_template(self, name: str, image: str) -> str:
        if self.rest:
            body = {"name": name, "image": image, "serverless": True}
            return str(self.account.op_createTemplate(body=body)[1]["id"])
        return str(self.account.save_template({"name": name, "imageName": image, "isServerless": True})["id"])

    def volumes(self) -> dict[str, int]:
        """Volume id -> size."""
        return {i: int(v["size"]) for i, v in self.account.volumes.items()}

    def templates(self) -> dict[str, str]:
        """Template id -> image."""
        key = "image" if self.rest else "imageName"
        return {i: str(t[key]) for i, t in self.account.templates.items()}

    def registries(self) -> dict[str, dict[str, Any]]:
        return dict(self.account.registries if self.rest else self.account.registry_auths)

    def endpoint_ids(self) -> list[str]:
        return list(self.account.endpoints)

    def live_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        """``workersMin``, ``workersMax``, ``gpuIds`` (a set), ``flashBootType``, ``volumes`` (a set)."""
        e = self.account.endpoints[endpoint_id]
        if self.rest:
            return {
                "workersMin": e["workers"]["min"],
                "workersMax": e["workers"]["max"],
                "gpuIds": set(e["gpu"]["pools"]),
                "flashBootType": e["flashboot"],
                "volumes": set(e["networkVolumes"]),
            }
        volumes = {i["networkVolumeId"] for i in e.get("networkVolumeIds") or []}
        return {
            "workersMin": e["workersMin"],
            "workersMax": e["workersMax"],
            "gpuIds": {t.strip() for t in e["gpuIds"].split(",")},
            "flashBootType": e.get("flashBootType"),
            "volumes": volumes | ({e["networkVolumeId"]} if e.get("networkVolumeId") else set()),
        }

    def writes(self) -> list[str]:
        """Every write RunPod received, in order: GraphQL mutation root fields, REST non-GET operationIds
        (``deleteEndpoint`` and ``deleteTemplate`` are spelled the same in both)."""
        if self.rest:
            return [str(r.operation) for r in self.emulator.requests if r.method != "GET"]
        return [f for r in self.emulator.requests if r.mutation for f in r.fields]

    def statuses(self) -> list[int]:
        return [int(r.status) for r in self.emulator.requests]

    def recorded(self) -> str:
        """Everything the emulator recorded of the requests it got (its log): paths, bodies, answers."""
        if self.rest:
            return json.dumps(
                [[r.path, r.body, r.answer.decode(errors="replace")] for r in self.emulator.requests]
            )
        return json.dumps([r.variables for r in self.emulator.requests])

    def template_env(self, template_id: str) -> dict[str, str]:
        env = self.account.templates[template_id]["env"]
        return dict(env) if self.rest else {e["key"]: e["value"] for e in env}

    def set_template_env(self, template_id: str, key: str, value: str) -> None:
        """A template's env variable changed in the console (drift)."""
        template = self.account.templates[template_id]
        if self.rest:
            template["env"][key] = value
        else:
            template["env"] = [e for e in template["env"] if e["key"] != key] + [{"key": key, "value": value}]

    def template_registry(self, template_id: str) -> str | None:
        template = self.account.templates[template_id]
        return template.get("registry") if self.rest else template.get("containerRegistryAuthId")

    def endpoint_template(self, endpoint_id: str) -> str | None:
        """The template the endpoint was created from (REST: the bound one, deleted with the endpoint)."""
        if self.rest:
            return self.account.bound_templates.get(endpoint_id)
        return self.account.endpoints[endpoint_id].get("templateId")

    def endpoint_version(self, endpoint_id: str) -> int:
        """Bumped by every save that rolls the workers (REST: a new release)."""
        if self.rest:
            return int(self.account.releases[endpoint_id][0]["version"])
        return int(self.account.endpoints[endpoint_id]["version"])

    def running_container(self, endpoint_id: str) -> tuple[str, dict[str, str]]:
        """(image, env) new workers start: REST, the endpoint's own copy; GraphQL, its template's."""
        if self.rest:
            endpoint = self.account.endpoints[endpoint_id]
            return str(endpoint["image"]), dict(endpoint["env"])
        template_id = str(self.account.endpoints[endpoint_id]["templateId"])
        return self.templates()[template_id], self.template_env(template_id)

    def scale_down(self, endpoint_id: str, workers_max: int) -> None:
        """RunPod's idle scale-down of ``workersMax`` (drift)."""
        e = self.account.endpoints[endpoint_id]
        if self.rest:
            e["workers"]["max"] = workers_max
        else:
            e["workersMax"] = workers_max

    # Each resource kind's create and delete operation: (GraphQL operation name, REST operationId).
    OPERATIONS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
        "volume": (
            ("CreateNetworkVolume", "createNetworkVolume"),
            ("DeleteNetworkVolume", "deleteNetworkVolume"),
        ),
        "template": (("SaveTemplate", "createTemplate"), ("DeleteTemplate", "deleteTemplate")),
        "endpoint": (("SaveEndpoint", "createEndpoint"), ("DeleteEndpoint", "deleteEndpoint")),
        "registry": (("SaveRegistryAuth", "createRegistry"), ("DeleteRegistryAuth", "deleteRegistry")),
    }

    def _operation(self, kind: str, which: int) -> str:
        return self.OPERATIONS[kind][which][1 if self.rest else 0]

    def lose_create_answer(self, kind: str) -> None:
        """The next create of ``kind`` applies, but its answer is a 500 (a crash before the state write)."""
        if self.rest:
            from tests.runpod_rest_emulator import Fault as RestFault

            self.emulator.inject(RestFault(500, operation=self._operation(kind, 0), apply_first=True))
        else:
            from tests.runpod_emulator import Fault

            self.emulator.inject(Fault(500, operation=self._operation(kind, 0), apply_first=True))

    def refuse(self, kind: str, message: str, *, times: int = 1, create: bool = False) -> None:
        """The next ``times`` deletes (or creates) of ``kind`` are refused with ``message`` (REST: a 400)."""
        operation = self._operation(kind, 0 if create else 1)
        if self.rest:
            from tests.runpod_rest_emulator import Fault as RestFault

            self.emulator.inject(*[RestFault(400, operation=operation, detail=message)] * times)
        else:
            from tests.runpod_emulator import Fault

            self.emulator.inject(*[Fault(200, operation=operation, message=message)] * times)

    def grow_volume(self, volume_id: str, size: int) -> None:
        """The volume grown in the console (drift)."""
        self.account.volumes[volume_id]["size"] = size


# ── the Pulumi program under mocks ─────────────────────────────────────────────────────────────────────────


class Mocks:
    """What the program declared (pulumi.runtime.Mocks' interface); no engine, no RunPod."""

    def __init__(self) -> None:
        self.resources: dict[str, Any] = {}  # the last resource of each type
        self.created: list[Any] = []  # every resource, in order

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        self.resources[args.typ] = args
        self.created.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def of_type(self, typ: str) -> dict[str, Any]:
        return {a.name: a for a in self.created if a.typ == typ}

    def call(self, args: Any) -> dict[str, Any]:
        return {}


@pytest.fixture(scope="module")
def _close_pulumis_event_loops() -> Iterator[None]:
    """Pulumi's runtime makes event loops of its own (sync awaits, config reads) and never
    closes them; close the one left current and collect the rest after the module, so their sockets
    are not reported during some later module's garbage collection."""
    yield
    asyncio.set_event_loop(None)
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.BaseEventLoop) and not obj.is_running() and not obj.is_closed():
            obj.close()
    _quiet_gc()


@pytest.fixture
def mocks(_close_pulumis_event_loops: None) -> Iterator[Mocks]:
    """Fresh mocks, config and event loop per test; Pulumi's globals (root stack, settings, config) reset.

    Pulumi's runtime needs a current event loop in the main thread; other tests may have closed or unset it.
    Garbage that earlier tests left (unclosed event loops and their sockets, e.g. after
    test_handler_jobs.py) is collected with a quiet unraisable hook before and after each test, so a GC
    pass inside these tests does not blame them for another module's leak.
    """
    import pulumi

    _quiet_gc()
    # Always our own loop, closed at the end: asking the policy for "the" loop can create one
    # that nobody closes, and its sockets then leak into a later test's garbage collection.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    made = Mocks()
    pulumi.runtime.set_mocks(made, project=PROJECT, stack="dev", preview=False)  # type: ignore[arg-type]
    try:
        yield made
    finally:
        pulumi.runtime.set_all_config({}, [])
        pulumi.runtime.settings.reset_options()
        # Tests that stop at a config error leave Pulumi's registration tasks pending: finish or cancel them.
        pending = asyncio.all_tasks(loop)
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=5))
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        asyncio.set_event_loop(None)
        loop.close()
        _quiet_gc()


def _quiet_gc() -> None:
    hook, sys.unraisablehook = sys.unraisablehook, lambda _: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook


def configure_with(values: dict[str, str], secret: tuple[str, ...] = ()) -> None:
    """Stack config like `pulumi config set [--secret] [--path]` leaves it: values as strings, secret keys;
    the API key and a prebuilt image are always set."""
    import pulumi

    config = {f"{PROJECT}:runpodApiKey": KEY, f"{PROJECT}:imageRef": DIGEST}
    config |= {f"{PROJECT}:{k}": v for k, v in values.items()}
    pulumi.runtime.set_all_config(config, [f"{PROJECT}:runpodApiKey", *(f"{PROJECT}:{k}" for k in secret)])


def configure(**values: str) -> None:
    configure_with(values)
