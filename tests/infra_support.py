"""Shared by the dynamic-provider tests: the emulator wired in, a provider loaded as the engine loads it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import TypeVar

import dill
import pytest
from pulumi.dynamic import ConfigureRequest, ResourceProvider
from pulumi.dynamic.config import Config
from pulumi.dynamic.dynamic import serialize_provider

from tests.runpod_emulator import RunPodEmulator, running_emulator

PROJECT = "comfy-runpod"
P = TypeVar("P", bound=ResourceProvider)


def emulated_runpod(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunPodEmulator]:
    """The emulator on loopback, with the GraphQL client pointed at it and its retry backoff off."""
    for emu in running_emulator():
        monkeypatch.setenv("RUNPOD_GRAPHQL_URL", emu.url)
        monkeypatch.setenv("RUNPOD_GRAPHQL_BACKOFF_S", "0")
        yield emu


def as_the_engine_loads(provider: P, api_key: str | None) -> P:
    """Pickle and unpickle like the engine, then configure like the provider process.

    The pickle must refer to the provider's class by reference (small): by value, the engine
    would carry a copy of the code that goes stale.
    """
    raw = serialize_provider(provider)
    assert len(raw) < 400, "the provider should be pickled by reference, not by value"
    loaded: P = dill.loads(base64.b64decode(raw))  # noqa: S301 - our own pickle
    config = {f"{PROJECT}:runpodApiKey": api_key} if api_key else {}
    loaded.configure(ConfigureRequest(Config(config, PROJECT)))
    return loaded
