"""The REST v2 emulator's ``after_apply`` hook: once, after RunPod applied the operation, before the answer.

The engine test of a killed ``pulumi up`` (tests/engine/test_engine_crash.py) relies on exactly this: the
volume exists when the hook runs, a refused request does not fire it, and it fires only once.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.runpod_rest_emulator import RunPodRESTEmulator, running_emulator

VOLUME = {"name": "v-1", "size": 10, "dataCenter": "EU-RO-1"}


@pytest.fixture
def emulator() -> Iterator[RunPodRESTEmulator]:
    yield from running_emulator()


def test_after_apply_runs_once_after_the_write_and_not_on_a_refusal(emulator: RunPodRESTEmulator) -> None:
    seen: list[list[str]] = []
    emulator.after_apply("createNetworkVolume", lambda: seen.append(list(emulator.account.volumes)))
    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    with httpx.Client(base_url=emulator.url, headers=headers, timeout=10) as http:
        refused = http.post("/v2/network-volumes", json={**VOLUME, "dataCenter": "XX-NONE-1"})
        assert refused.status_code == 400 and seen == []
        assert http.get("/v2/network-volumes").status_code == 200 and seen == []  # another operation
        first = http.post("/v2/network-volumes", json=VOLUME)
        second = http.post("/v2/network-volumes", json=VOLUME | {"name": "v-2"})
    assert first.status_code == second.status_code == 201
    assert seen == [[first.json()["id"]]]  # the volume existed when it ran; the second create ran none
