"""The fixtures every infra test shares (a pytest plugin that tests/conftest.py loads): the RunPod emulator
wired in, a dynamic provider loaded as the engine loads it, and the Pulumi program under mocks.

pulumi and the emulator (graphql-core) are imported when a fixture runs, not when this plugin loads: the
other tests do not need them.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from tests.runpod_emulator import RunPodEmulator

PROJECT = "comfy-runpod"
KEY = "rpa_secret-key-0123456789"
DIGEST = "ghcr.io/acme/comfy-runpod@sha256:" + "ab" * 32
P = TypeVar("P")


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunPodEmulator]:
    """The emulator on loopback, the GraphQL client pointed at it, the client's and providers' waits off."""
    from infra.providers.endpoint import EndpointProvider
    from tests.runpod_emulator import running_emulator

    monkeypatch.setattr(EndpointProvider, "delete_retry_s", 0.0)
    for emu in running_emulator():
        monkeypatch.setenv("RUNPOD_GRAPHQL_URL", emu.url)
        monkeypatch.setenv("RUNPOD_GRAPHQL_BACKOFF_S", "0")
        yield emu


def as_the_engine_loads(provider: P, api_key: str | None) -> P:
    """Pickle and unpickle like the engine, then configure like the provider process.

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
    loaded.configure(ConfigureRequest(Config(config, PROJECT)))  # type: ignore[attr-defined]
    return loaded


class ProviderLoader:
    """``load_provider(EndpointProvider)``: a new provider as the engine loads it, keyed for the emulator."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    def __call__(self, cls: type[P]) -> P:
        return as_the_engine_loads(cls(), self.api_key)


@pytest.fixture
def load_provider(emulator: RunPodEmulator) -> ProviderLoader:
    return ProviderLoader(emulator.api_key)


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
    tests/test_handler_jobs.py) is collected with a quiet unraisable hook before and after each test, so a GC
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
