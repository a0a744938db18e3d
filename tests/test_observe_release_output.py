"""``pulumi up`` shows the rollout it caused: the ``endpointRelease`` output (``infra.release_summary``).

Read from the REST v2 emulator (spec-checked) under Pulumi's mocks: the newest release's line, not secret
although the key it was read with is; a refusal becomes a note in the output, never a failed ``up``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest

from infra.release_summary import describe_diff, release_output
from infra.runpod_rest import RunPodREST
from tests.runpod_rest_emulator import RunPodRESTEmulator, running_emulator

IMAGE = "ghcr.io/me/comfy-runpod@sha256:" + "a" * 64
NEW_IMAGE = "ghcr.io/me/comfy-runpod@sha256:" + "b" * 64


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: Any) -> tuple[dict[Any, Any], None]:
        return {}, None


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunPodRESTEmulator]:
    for emulator in running_emulator():
        monkeypatch.setenv("RUNPOD_REST_URL", emulator.url)
        yield emulator


@pytest.fixture
def loop() -> Iterator[None]:
    event_loop = asyncio.new_event_loop()
    asyncio.set_event_loop(event_loop)
    pulumi.runtime.set_mocks(Mocks(), project="comfy-runpod", stack="dev", preview=False)
    try:
        yield
    finally:
        pending = asyncio.all_tasks(event_loop)  # Pulumi's own registrations: finish them, then close
        if pending:
            event_loop.run_until_complete(asyncio.wait(pending, timeout=5))
            for task in pending:
                task.cancel()
            event_loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        pulumi.runtime.settings.reset_options()
        asyncio.set_event_loop(None)
        event_loop.close()


def resolve(output: pulumi.Output[str]) -> tuple[str, bool]:
    """The output's value and whether it is secret, as the engine would record them."""
    loop = asyncio.get_event_loop()
    value = loop.run_until_complete(output.future())
    secret = loop.run_until_complete(output.is_secret())
    return str(value), bool(secret)


def test_the_output_is_the_newest_release_line_and_not_secret(
    emulator: RunPodRESTEmulator, loop: None
) -> None:
    with RunPodREST(emulator.api_key, url=emulator.url) as api:
        endpoint = api.save_endpoint(
            {
                "name": "comfy",
                "imageName": IMAGE,
                "gpuIds": "ADA_24",
                "scalerType": "QUEUE_DELAY",
                "scalerValue": 4,
            }
        )
        api.save_endpoint({"id": endpoint["id"], "imageName": NEW_IMAGE})
    value, secret = resolve(
        release_output(
            pulumi.Output.from_input(endpoint["id"]),
            pulumi.Output.from_input(2),
            pulumi.Output.secret(emulator.api_key),
            "rest",
        )
    )
    assert value.startswith("v2  MANUAL  ") and "image: ghcr.io/me/comfy-runpod@sha256:aaaa" in value
    assert "workers" not in value  # worker counts change as workers scale; the output must not
    assert not secret


def test_a_refusal_is_a_note_not_a_failure_and_hides_the_key(
    emulator: RunPodRESTEmulator, loop: None
) -> None:
    value, _ = resolve(
        release_output(
            pulumi.Output.from_input("ep-missing"),
            pulumi.Output.from_input(3),
            pulumi.Output.secret("rpa_the_secret_key_123"),
            "rest",
        )
    )
    assert value.startswith("release summary unavailable: ") and "HTTP 401" in value
    assert "rpa_the_secret_key" not in value


def test_no_version_yet_reads_nothing(loop: None) -> None:
    value, _ = resolve(
        release_output(
            pulumi.Output.from_input("ep"),
            pulumi.Output.from_input(None),  # type: ignore[arg-type]
            pulumi.Output.secret("k"),
            "rest",
        )
    )
    assert value == "not deployed yet"


def test_env_diffs_never_show_values() -> None:
    diff = [{"field": "env", "old": {"A": "s3cret", "B": "1"}, "new": {"A": "other", "B": "1", "C": "x"}}]
    assert describe_diff(diff) == "env: A, C (values hidden)"
