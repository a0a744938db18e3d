"""An engine killed mid-update (issue 11, point 7): the next `pulumi up` adopts what RunPod made."""

from __future__ import annotations

import subprocess

import pytest

from tests.engine.pulumi_cli import PulumiStack

pytestmark = pytest.mark.timeout(900)


def test_engine_killed_after_volume_create_then_up_adopts(stack: PulumiStack, api_key: str) -> None:
    runpod = stack.backend
    stack.init(api_key)
    # SIGKILL the whole engine (CLI, language host, program, providers) once RunPod made the volume, before
    # the answer reaches it: RunPod has the volume, Pulumi's state never heard of it.
    engines: list[subprocess.Popen[str]] = []
    runpod.emulator.after_apply(
        "createNetworkVolume", lambda: stack.kill(engines[0])
    )  # same name in both APIs
    engines.append(engine := stack.start("up", "--yes"))
    output, _ = engine.communicate(timeout=300)
    assert engine.returncode != 0, output
    assert len(runpod.volumes()) == 1, output
    (volume_id,) = runpod.volumes()
    assert volume_id not in stack.export()

    # The file backend keeps the dead update's lock: the next up says so and names `pulumi cancel`.
    locked = stack.run("up", "--yes", check=False)
    assert locked.returncode != 0 and "pulumi cancel" in locked.stdout + locked.stderr
    assert len(runpod.volumes()) == 1, output
    stack.run("cancel", "--yes")
    stack.run("up", "--yes")
    assert set(runpod.volumes()) == {volume_id}  # adopted, not duplicated
    assert stack.outputs_json()["volumeId"] == volume_id
    assert len(runpod.templates()) == len(runpod.endpoint_ids()) == 1
    stack.run("up", "--yes")
    assert set(stack.last_changes()) == {"same"}
