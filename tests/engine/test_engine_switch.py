"""A stack made over GraphQL, switched to REST v2 (issue 12): `runpodApi rest` replaces and deletes nothing.

RunPod has one backend behind both APIs: the test hands the GraphQL emulator's account to the REST emulator
(``take_over``: same ids, same key) and points the providers at it, as the real switch does.
"""

from __future__ import annotations

import re

import pytest

from tests.engine.pulumi_cli import PulumiStack
from tests.infra_support import Backend, take_over

pytestmark = pytest.mark.timeout(900)
KEPT = ("volumeId", "templateId", "endpointId", "endpointUrl")


@pytest.mark.parametrize("transport", ["graphql"])  # the stack is created over GraphQL
def test_switch_graphql_to_rest_replaces_nothing(
    stack: PulumiStack, api_key: str, rest_runpod: Backend
) -> None:
    graphql = stack.backend
    stack.init(api_key, workersMax="3")
    stack.run("config", "set", "--path", "templateEnv.OUTPUT_MODE", "base64")
    stack.run("up", "--yes")
    before = stack.outputs_json()
    assert before["endpointId"] in graphql.endpoint_ids()

    take_over(rest_runpod.emulator, graphql.emulator)
    stack.backend = rest_runpod  # RUNPOD_REST_URL: the REST emulator; RUNPOD_GRAPHQL_URL: nothing listens
    stack.set(runpodApi="rest")
    asked = len(graphql.emulator.requests)

    preview = stack.run("preview", "--diff")
    assert not any(w in preview.stdout for w in ("to create", "to delete", "to replace")), preview.stdout
    steps = [line for line in preview.stdout.splitlines() if "dynamic/runpod:" in line]
    assert not [s for s in steps if re.search(r"\b(create|delete|replace)\b", s)], preview.stdout
    assert rest_runpod.writes() == []  # a preview changes nothing

    stack.run("up", "--yes")
    changes = stack.last_changes()
    assert not {"create", "delete", "replace", "create-replacement", "delete-replaced"} & set(changes), (
        changes
    )
    after = stack.outputs_json()
    assert {k: after[k] for k in KEPT} == {k: before[k] for k in KEPT}
    assert set(rest_runpod.endpoint_ids()) == {before["endpointId"]}
    assert set(rest_runpod.volumes()) == {before["volumeId"]}
    assert set(rest_runpod.templates()) == {before["templateId"]}
    assert not [w for w in rest_runpod.writes() if w.startswith(("create", "delete"))]
    assert rest_runpod.live_endpoint(before["endpointId"])["workersMax"] == 3
    assert rest_runpod.running_container(before["endpointId"])[1]["OUTPUT_MODE"] == "base64"
    assert len(graphql.emulator.requests) == asked  # nothing went to GraphQL after the switch

    stack.run("up", "--yes")
    assert set(stack.last_changes()) == {"same"}
