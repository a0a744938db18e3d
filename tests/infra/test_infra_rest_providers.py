"""What the providers do differently over REST v2 (``runpodApi: rest``), one test per semantic difference,
against the REST emulator (every request and answer checked against RunPod's OpenAPI description)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("openapi_core")
pulumi = pytest.importorskip("pulumi")

from infra.providers.endpoint import EndpointProvider, rest_fields  # noqa: E402
from infra.providers.network_volume import NetworkVolumeProvider  # noqa: E402
from infra.providers.registry_auth import RegistryAuthProvider  # noqa: E402
from infra.providers.template import TemplateProvider  # noqa: E402
from infra.runpod_graphql import RunPodAPIError  # noqa: E402
from infra.runpod_rest_shapes import endpoint_body, endpoint_patch  # noqa: E402
from tests.infra_support import (  # noqa: E402
    IMAGE,
    NEW_IMAGE,
    ProviderLoader,
    as_the_engine_loads,
    endpoint_inputs,
    state,
)
from tests.runpod_rest_emulator import Fault, RunPodRESTEmulator  # noqa: E402

HF_TOKEN = "hf_secret-token-0123456789"


@pytest.fixture
def load(rest_emulator: RunPodRESTEmulator) -> ProviderLoader:
    return ProviderLoader(rest_emulator.api_key, "rest")


@pytest.fixture
def deps(rest_emulator: RunPodRESTEmulator) -> dict[str, str]:
    account = rest_emulator.account
    body = {"name": "comfy-models", "size": 50, "dataCenter": "EU-RO-1"}
    volume = account.op_createNetworkVolume(body=body)
    body = {"name": "comfy-runpod", "image": IMAGE, "serverless": True, "env": {"OUTPUT_MODE": "s3"}}
    template = account.op_createTemplate(body=body)
    return {"volume": volume[1]["id"], "template": template[1]["id"]}


def created_endpoint(load: ProviderLoader, deps: dict[str, str], **extra: Any) -> tuple[Any, Any]:
    provider = load(EndpointProvider)
    news = provider.check({}, endpoint_inputs(deps["template"], deps["volume"], **extra)).inputs
    return provider, provider.create(news)


def test_the_default_transport_is_rest(rest_emulator: RunPodRESTEmulator, deps: dict[str, str]) -> None:
    provider = as_the_engine_loads(EndpointProvider(), rest_emulator.api_key, None)
    assert provider.rest
    provider.create(provider.check({}, endpoint_inputs(deps["template"], deps["volume"])).inputs)
    assert "createEndpoint" in rest_emulator.operations()


def test_an_unknown_transport_names_the_key_and_the_fix(rest_emulator: RunPodRESTEmulator) -> None:
    with pytest.raises(ValueError, match=r"runpodApi: 'soap'.*pulumi config set runpodApi rest"):
        as_the_engine_loads(EndpointProvider(), rest_emulator.api_key, "soap")


def test_template_id_is_kept_from_the_inputs_and_version_read_from_the_releases(
    load: ProviderLoader, rest_emulator: RunPodRESTEmulator, deps: dict[str, str]
) -> None:
    provider, created = created_endpoint(load, deps)
    live = rest_emulator.account.endpoints[created.id]
    assert "templateId" not in live  # REST answers carry no template
    assert rest_emulator.account.bound_templates[created.id] == deps["template"]  # created from it
    refreshed = provider.read(created.id, state(created.outs))
    assert refreshed.outs is not None
    assert refreshed.outs["templateId"] == deps["template"]
    assert refreshed.outs["version"] == rest_emulator.account.endpoint_version(created.id) == 1
    news = endpoint_inputs(deps["template"], deps["volume"])
    assert provider.diff(created.id, state(refreshed.outs), news).changes is False


def update_bodies(emulator: RunPodRESTEmulator) -> list[Any]:
    return [r.body for r in emulator.requests if r.operation == "updateEndpoint"]


def test_an_update_sends_exactly_endpoint_patch(
    load: ProviderLoader, rest_emulator: RunPodRESTEmulator, deps: dict[str, str]
) -> None:
    provider, created = created_endpoint(load, deps)
    olds = state(created.outs)
    news = provider.check({}, endpoint_inputs(deps["template"], deps["volume"], workersMax=5.0)).inputs
    rest_emulator.requests.clear()
    provider.update(created.id, olds, news)
    patch = endpoint_patch(rest_fields(olds), rest_fields(news))
    assert patch == {"workersMax": 5}
    assert update_bodies(rest_emulator) == [endpoint_body(patch, create=False)] == [{"workers": {"max": 5}}]
    # Nothing changed: no PATCH at all (and no diff).
    rest_emulator.requests.clear()
    assert provider.diff(created.id, olds | {"workersMax": 5}, news).changes is False
    provider.update(created.id, olds | {"workersMax": 5}, news)
    assert update_bodies(rest_emulator) == []


@pytest.mark.parametrize(
    ("change", "body"),
    [
        ({"imageName": NEW_IMAGE}, {"image": NEW_IMAGE}),
        ({"env": {"OUTPUT_MODE": "base64"}}, {"env": {"OUTPUT_MODE": "base64"}}),
    ],
)
def test_a_new_image_or_env_rolls_the_workers_by_patching_the_endpoint(
    load: ProviderLoader,
    rest_emulator: RunPodRESTEmulator,
    deps: dict[str, str],
    change: dict[str, Any],
    body: dict[str, Any],
) -> None:
    provider, created = created_endpoint(load, deps)
    rest_emulator.account.add_worker(created.id)
    news = provider.check({}, endpoint_inputs(deps["template"], deps["volume"], **change)).inputs
    assert provider.diff(created.id, state(created.outs), news).changes is True
    rest_emulator.requests.clear()
    updated = provider.update(created.id, state(created.outs), news)
    assert update_bodies(rest_emulator) == [body]
    assert updated.outs is not None and updated.outs["version"] == 2  # a new release ...
    workers = provider_workers(rest_emulator, created.id)
    assert [w["isStale"] for w in workers] == [True]  # ... that the running worker is not on yet
    rest_emulator.account.cycle_workers(created.id)
    assert [w["isStale"] for w in provider_workers(rest_emulator, created.id)] == [False]


def provider_workers(emulator: RunPodRESTEmulator, endpoint_id: str) -> list[dict[str, Any]]:
    return emulator.account._workers_view(endpoint_id)


def test_env_values_are_redacted_from_endpoint_errors(
    load: ProviderLoader, rest_emulator: RunPodRESTEmulator, deps: dict[str, str]
) -> None:
    provider, created = created_endpoint(load, deps)
    news = endpoint_inputs(deps["template"], deps["volume"], env={"HF_TOKEN": HF_TOKEN})
    rest_emulator.inject(Fault(400, operation="updateEndpoint", detail=f"env value {HF_TOKEN} refused"))
    with pytest.raises(RunPodAPIError) as info:
        provider.update(created.id, state(created.outs), provider.check({}, news).inputs)
    assert HF_TOKEN not in str(info.value)
    assert "env value *** refused" in str(info.value)


def _drift(endpoint: dict[str, Any], field: str, volume2: str) -> None:
    changes: dict[str, Any] = {
        "workersMin": lambda e: e["workers"].update(min=1),
        "workersMax": lambda e: e["workers"].update(max=0),
        "idleTimeout": lambda e: e["workers"].update(idleTimeout=60),
        "scaling": lambda e: e.update(scaling={"type": "REQUEST_COUNT", "requestCount": 2}),
        "flashboot": lambda e: e.update(flashboot="OFF"),
        "cuda": lambda e: e["gpu"].update(allowedCudaVersions=["12.8"]),
        "pools": lambda e: e["gpu"].update(pools=["HOPPER_141"]),
        "env": lambda e: e.update(env={"OUTPUT_MODE": "changed-in-the-console"}),
        "image": lambda e: e.update(image="docker.io/other/image:latest"),
        "disk": lambda e: e.update(disk=50),
        "volumes": lambda e: e.update(networkVolumes=[*e["networkVolumes"], volume2]),
        "dataCenters": lambda e: e.update(dataCenterIds=["EU-RO-1", "US-KS-2"]),
        "timeout": lambda e: e.update(timeout=1000),
    }
    changes[field](endpoint)


@pytest.mark.parametrize(
    "field",
    [
        "workersMin",
        "workersMax",
        "idleTimeout",
        "scaling",
        "flashboot",
        "cuda",
        "pools",
        "env",
        "image",
        "disk",
        "volumes",
        "dataCenters",
        "timeout",
    ],
)
def test_refresh_detects_drift_on_every_managed_field_and_up_restores_it(
    load: ProviderLoader, rest_emulator: RunPodRESTEmulator, deps: dict[str, str], field: str
) -> None:
    provider, created = created_endpoint(load, deps)
    before = dict(rest_emulator.account._endpoint_view(rest_emulator.account.endpoints[created.id]))
    volume2 = rest_emulator.account.op_createNetworkVolume(
        body={"name": "other", "size": 10, "dataCenter": "US-KS-2"}
    )[1]["id"]
    _drift(rest_emulator.account.endpoints[created.id], field, volume2)
    refreshed = provider.read(created.id, state(created.outs))
    news = provider.check({}, endpoint_inputs(deps["template"], deps["volume"])).inputs
    assert provider.diff(created.id, state(refreshed.outs), news).changes is True, field
    provider.update(created.id, state(refreshed.outs), news)
    after = rest_emulator.account._endpoint_view(rest_emulator.account.endpoints[created.id])
    ignore = ("createdAt",)
    assert {k: v for k, v in after.items() if k not in ignore} == {
        k: v for k, v in before.items() if k not in ignore
    }


def test_delete_needs_no_scale_down_and_takes_the_bound_template_which_then_counts_as_deleted(
    load: ProviderLoader, rest_emulator: RunPodRESTEmulator, deps: dict[str, str]
) -> None:
    templates = load(TemplateProvider)
    template_news = {"name": "comfy-t2", "imageName": IMAGE, "env": {}, "__provider": "x"}
    template = templates.create(templates.check({}, template_news).inputs)
    provider, created = created_endpoint(load, {**deps, "template": template.id})
    rest_emulator.requests.clear()
    provider.delete(created.id, state(created.outs))
    assert rest_emulator.operations() == ["deleteEndpoint"]
    assert template.id not in rest_emulator.account.templates  # deleted with the endpoint
    templates.delete(template.id, state(template.outs))  # 404: done
    assert rest_emulator.operations()[-1] == "deleteTemplate"


def test_a_template_delete_refused_while_an_endpoint_is_bound_waits_then_names_the_fix(
    load: ProviderLoader,
    rest_emulator: RunPodRESTEmulator,
    deps: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    templates = load(TemplateProvider)
    template = templates.create(templates.check({}, {"name": "comfy-t3", "imageName": IMAGE}).inputs)
    created_endpoint(load, {**deps, "template": template.id})
    monkeypatch.setattr(TemplateProvider, "delete_wait_s", 0.0)
    with pytest.raises(RunPodAPIError, match="delete the endpoint bound to template comfy-t3 first") as info:
        templates.delete(template.id, state(template.outs))
    assert info.value.status == 400
    assert template.id in rest_emulator.account.templates
    # The refusal is judged by its status: a template bound while the endpoint's deletion is under way is
    # retried until the endpoint's deletion takes it (404: done).
    monkeypatch.setattr(TemplateProvider, "delete_wait_s", 5.0)
    calls: list[str] = []
    original = rest_emulator.account.op_deleteTemplate

    def delete_then_unbind(**kwargs: Any) -> Any:
        calls.append(kwargs["path_params"]["id"])
        try:
            return original(**kwargs)
        finally:
            for endpoint_id in list(rest_emulator.account.bound_templates):
                rest_emulator.account.op_deleteEndpoint(path_params={"id": endpoint_id})

    monkeypatch.setattr(rest_emulator.account, "op_deleteTemplate", delete_then_unbind)
    templates.delete(template.id, state(template.outs))
    assert calls == [template.id, template.id]
    assert template.id not in rest_emulator.account.templates


def test_a_template_update_patches_only_what_changed(
    load: ProviderLoader, rest_emulator: RunPodRESTEmulator
) -> None:
    provider = load(TemplateProvider)
    news = {"name": "comfy-t4", "imageName": IMAGE, "env": {"A": "1"}, "containerDiskInGb": 20.0}
    created = provider.create(provider.check({}, news).inputs)
    rest_emulator.requests.clear()
    newer = provider.check({}, news | {"imageName": NEW_IMAGE}).inputs
    provider.update(created.id, state(created.outs), newer)
    bodies = [r.body for r in rest_emulator.requests if r.operation == "updateTemplate"]
    assert bodies == [{"image": NEW_IMAGE}]


def test_volume_type_is_sent_immutable_and_unset_shows_no_diff(
    load: ProviderLoader, rest_emulator: RunPodRESTEmulator
) -> None:
    provider = load(NetworkVolumeProvider)
    news = {"name": "fast-models", "size": 50.0, "dataCenterId": "EU-RO-1", "volumeType": "HIGH_PERFORMANCE"}
    created = provider.create(provider.check({}, news).inputs)
    assert rest_emulator.account.volumes[created.id]["type"] == "HIGH_PERFORMANCE"
    assert provider.diff(created.id, state(created.outs), news).changes is False
    changed = provider.diff(created.id, state(created.outs), news | {"volumeType": "STANDARD"})
    assert (changed.changes, changed.replaces) == (True, ["volumeType"])  # protect makes this an error
    unset = {k: v for k, v in news.items() if k != "volumeType"}
    assert provider.diff(created.id, state(created.outs), unset).changes is False
    refreshed = provider.read(created.id, state(created.outs))
    assert refreshed.outs is not None and refreshed.outs["volumeType"] == "HIGH_PERFORMANCE"
    # A state from before the key (no volumeType, as GraphQL leaves it) holds a STANDARD volume.
    legacy = {k: v for k, v in state(created.outs).items() if k != "volumeType"}
    assert provider.diff(created.id, legacy, news | {"volumeType": "STANDARD"}).changes is False
    assert provider.diff(created.id, legacy, news).replaces == ["volumeType"]
    bad = provider.check({}, news | {"volumeType": "FAST"}).failures
    assert [(f.property, f.reason) for f in bad] == [
        ("volumeType", "volumeType must be one of STANDARD, HIGH_PERFORMANCE")
    ]


def test_a_high_performance_volume_needs_the_rest_transport(rest_emulator: RunPodRESTEmulator) -> None:
    provider = as_the_engine_loads(NetworkVolumeProvider(), rest_emulator.api_key, "graphql")
    news = {"name": "fast-models", "size": 50.0, "dataCenterId": "EU-RO-1", "volumeType": "HIGH_PERFORMANCE"}
    failures = provider.check({}, news).failures
    assert [f.property for f in failures] == ["volumeType"]
    assert "pulumi config set runpodApi rest" in failures[0].reason


def test_a_new_registry_password_is_a_new_credential_the_endpoint_switches_to_before_the_old_goes(
    load: ProviderLoader, rest_emulator: RunPodRESTEmulator, deps: dict[str, str]
) -> None:
    auths = load(RegistryAuthProvider)
    news = {"name": "comfy-registry", "username": "acme", "password": "pw-old-123"}
    old = auths.create(auths.check({}, news).inputs)
    provider, created = created_endpoint(load, deps, containerRegistryAuthId=old.id)
    assert rest_emulator.account.endpoints[created.id]["registry"] == old.id

    rotated = news | {"password": "pw-new-456"}
    diff = auths.diff(old.id, state(old.outs), rotated)
    assert (diff.replaces, diff.delete_before_replace) == (["password"], False)
    # Pulumi's create-before-delete replacement, step by step: create the new one (the name is taken) ...
    new = auths.create(auths.check({}, rotated).inputs)
    assert new.id != old.id and set(rest_emulator.account.registries) == {old.id, new.id}
    assert new.outs is not None and new.outs["name"] == "comfy-registry"
    assert new.outs["registryName"].startswith("comfy-registry-")
    assert rest_emulator.account.registries[new.id]["password"] == "pw-new-456"
    # ... update the dependents: the endpoint PATCHes its registry (pulls work with either credential) ...
    news_endpoint = endpoint_inputs(deps["template"], deps["volume"], containerRegistryAuthId=new.id)
    rest_emulator.requests.clear()
    provider.update(created.id, state(created.outs), provider.check({}, news_endpoint).inputs)
    assert update_bodies(rest_emulator) == [{"registry": new.id}]
    # ... and only then delete the old one.
    auths.delete(old.id, state(old.outs))
    assert set(rest_emulator.account.registries) == {new.id}
    assert rest_emulator.account.endpoints[created.id]["registry"] == new.id
    # The suffixed name is ours, not drift.
    refreshed = auths.read(new.id, state(new.outs))
    assert refreshed.outs is not None and refreshed.outs["name"] == "comfy-registry"
    assert auths.diff(new.id, state(refreshed.outs), rotated).changes is False


def test_a_create_whose_answer_was_lost_is_recovered_not_duplicated(
    load: ProviderLoader, rest_emulator: RunPodRESTEmulator, deps: dict[str, str]
) -> None:
    rest_emulator.inject(Fault(500, operation="createEndpoint", apply_first=True))
    _, created = created_endpoint(load, deps)
    assert list(rest_emulator.account.endpoints) == [created.id]
    assert rest_emulator.operations().count("createEndpoint") == 1  # never re-sent


def test_adoption_needs_the_same_name_and_image(
    load: ProviderLoader, rest_emulator: RunPodRESTEmulator, deps: dict[str, str]
) -> None:
    _, first = created_endpoint(load, deps)
    _, other = created_endpoint(load, deps, imageName=NEW_IMAGE)  # another image: a new endpoint
    assert other.id != first.id
    _, again = created_endpoint(load, deps, workersMax=2.0)  # same name, same image: adopted, PATCHed
    assert again.id == first.id
    assert rest_emulator.account.endpoints[first.id]["workers"]["max"] == 2


def test_a_provider_pickled_before_the_transport_existed_loads_with_the_default() -> None:
    import dill

    old = EndpointProvider()
    del old.__dict__["_transport"]  # what a pickle in existing state holds
    loaded = dill.loads(dill.dumps(old))  # noqa: S301 - our own pickle
    assert loaded.rest


def test_a_registry_credential_removed_from_the_template_is_cleared_by_the_patch(
    load: ProviderLoader, rest_emulator: RunPodRESTEmulator
) -> None:
    registry = rest_emulator.account.op_createRegistry(body={"name": "r1", "username": "u", "password": "p"})
    provider = load(TemplateProvider)
    news = {"name": "comfy-t5", "imageName": IMAGE, "containerRegistryAuthId": registry[1]["id"]}
    created = provider.create(provider.check({}, news).inputs)
    rest_emulator.requests.clear()
    public = {k: v for k, v in news.items() if k != "containerRegistryAuthId"}
    assert provider.diff(created.id, state(created.outs), public).changes is True
    provider.update(created.id, state(created.outs), provider.check({}, public).inputs)
    assert [r.body for r in rest_emulator.requests if r.operation == "updateTemplate"] == [{"registry": None}]
    assert rest_emulator.account.templates[created.id]["registry"] is None
