"""The Pulumi program under ``pulumi.runtime.set_mocks`` (no engine, no RunPod): wiring, options, config."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pulumi = pytest.importorskip("pulumi")

from infra.program import COMPONENT_TYPE, main  # noqa: E402
from infra.settings import CONFIG_FIELDS, SECRET_KEYS, ConfigError, StackSettings, load_settings  # noqa: E402

PROJECT = "comfy-runpod"
KEY = "rpa_secret-key-0123456789"
DIGEST = "ghcr.io/acme/comfy-runpod@sha256:" + "ab" * 32
VOLUME_T = "pulumi-python:dynamic/runpod:NetworkVolume"
TEMPLATE_T = "pulumi-python:dynamic/runpod:Template"
ENDPOINT_T = "pulumi-python:dynamic/runpod:Endpoint"


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: dict[str, Any] = {}

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        self.resources[args.typ] = args
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: Any) -> dict[str, Any]:
        return {}


@pytest.fixture
def mocks() -> Iterator[Mocks]:
    """Fresh mocks, config and event loop per test; Pulumi's globals (root stack, settings, config) reset.

    Pulumi's runtime needs a current event loop in the main thread; other tests may have closed or unset it.
    Garbage that earlier tests left (unclosed event loops and their sockets, e.g. after
    tests/test_handler_jobs.py) is collected with a quiet unraisable hook before and after each test, so a GC
    pass inside these tests does not blame them for another module's leak.
    """
    _quiet_gc()
    # Always our own loop, closed at the end: asking the policy for "the" loop can create one
    # that nobody closes, and its sockets then leak into a later test's garbage collection.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    made = Mocks()
    pulumi.runtime.set_mocks(made, project=PROJECT, stack="dev", preview=False)
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


@pytest.fixture(autouse=True, scope="module")
def _close_pulumis_event_loops() -> Iterator[None]:
    """Pulumi's runtime makes event loops of its own (sync awaits, config reads) and never
    closes them; close the one left current and collect the rest here, so their sockets are
    not reported during some later module's garbage collection."""
    yield
    asyncio.set_event_loop(None)
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.BaseEventLoop) and not obj.is_running() and not obj.is_closed():
            obj.close()
    _quiet_gc()


def _quiet_gc() -> None:
    hook, sys.unraisablehook = sys.unraisablehook, lambda _: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook


def configure(**values: str) -> None:
    config = {f"{PROJECT}:runpodApiKey": KEY, f"{PROJECT}:imageRef": DIGEST}
    config |= {f"{PROJECT}:{k}": v for k, v in values.items()}
    pulumi.runtime.set_all_config(config, [f"{PROJECT}:runpodApiKey"])


def record_options() -> dict[str, pulumi.ResourceOptions]:
    seen: dict[str, pulumi.ResourceOptions] = {}

    def transformation(args: Any) -> None:
        seen[args.type_] = args.opts

    pulumi.runtime.register_stack_transformation(transformation)
    return seen


def test_the_program_wires_volume_template_and_endpoint(mocks: Mocks) -> None:
    configure(volumeSizeGb="250", gpuIds='["HOPPER_141"]', workersMax="5")

    @pulumi.runtime.test
    def check() -> Any:
        options = record_options()
        main()
        outputs = pulumi.runtime.get_root_resource().outputs  # type: ignore[union-attr]
        names = ["endpointId", "endpointUrl", "templateId", "volumeId", "volumeDataCenter", "imageRef"]

        def verify(values: list[Any]) -> None:
            exported = dict(zip(names, values, strict=True))
            assert exported == {
                "endpointId": "comfy-endpoint-id",
                "endpointUrl": "https://api.runpod.ai/v2/comfy-endpoint-id",
                "templateId": "comfy-template-id",
                "volumeId": "models-volume-id",
                "volumeDataCenter": "EU-RO-1",
                "imageRef": DIGEST,
            }
            volume = mocks.resources[VOLUME_T]
            template = mocks.resources[TEMPLATE_T]
            endpoint = mocks.resources[ENDPOINT_T]
            assert {k: v for k, v in volume.inputs.items() if k != "__provider"} == {
                "name": "comfy-models",
                "size": 250,
                "dataCenterId": "EU-RO-1",
            }
            assert template.inputs["imageName"] == DIGEST  # the digest-pinned ref flows into the template
            assert template.inputs["name"] == "comfy-runpod"
            assert endpoint.inputs["templateId"] == "comfy-template-id"
            assert endpoint.inputs["networkVolumeId"] == "models-volume-id"
            assert endpoint.inputs["volumeDataCenterId"] == "EU-RO-1"
            assert endpoint.inputs["locations"] == ["EU-RO-1"]
            assert endpoint.inputs["gpuIds"] == ["HOPPER_141"]
            assert endpoint.inputs["workersMax"] == 5
            assert COMPONENT_TYPE in mocks.resources
            for args in mocks.resources.values():
                assert KEY not in repr(args.inputs), "the API key must never be a resource input"
            assert KEY not in repr(values)
            assert options[VOLUME_T].protect is True
            component = options[TEMPLATE_T].parent
            assert component is not None
            assert options[ENDPOINT_T].parent is component
            assert options[VOLUME_T].parent is None

        return pulumi.Output.all(*[outputs[n] for n in names]).apply(verify)

    check()


def test_volume_protection_can_be_lifted_by_config(mocks: Mocks) -> None:
    configure(volumeProtect="false")

    @pulumi.runtime.test
    def check() -> Any:
        options = record_options()
        main()
        outputs = pulumi.runtime.get_root_resource().outputs  # type: ignore[union-attr]
        return outputs["volumeId"].apply(lambda _: _assert(options[VOLUME_T].protect is False))

    check()


def _assert(condition: bool) -> None:
    assert condition


def test_the_api_key_config_stays_secret(mocks: Mocks) -> None:
    configure()
    key = pulumi.Config().require_secret("runpodApiKey")

    @pulumi.runtime.test
    def check() -> Any:
        return pulumi.Output.all(key, pulumi.Output.is_secret(key)).apply(  # type: ignore[attr-defined]
            lambda v: _assert(v == [KEY, True])
        )

    check()


def test_defaults(mocks: Mocks) -> None:
    configure()
    settings = load_settings(pulumi.Config())
    assert settings == StackSettings(image_ref=DIGEST)


def test_a_missing_api_key_fails_before_anything_is_declared(mocks: Mocks) -> None:
    pulumi.runtime.set_all_config({f"{PROJECT}:imageRef": DIGEST}, [])
    with pytest.raises(pulumi.ConfigMissingError, match="runpodApiKey"):
        main()
    assert mocks.resources == {}


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"imageRef": ""}, "imageRef: '' is not pinned by digest"),
        ({"imageRef": "ghcr.io/acme/comfy:latest"}, "imageRef: 'ghcr.io/acme/comfy:latest' is not pinned"),
        (
            {"workersMin": "4", "workersMax": "2"},
            "workersMin: 4 exceeds workersMax 2; run `pulumi config set workersMax 4`",
        ),
        (
            {"workersMax": "three"},
            "workersMax: 'three' is not a whole number; run `pulumi config set workersMax 3`",
        ),
        ({"gpuIds": '["NVIDIA H200"]'}, "gpuIds: NVIDIA H200 is not a RunPod GPU pool id"),
        ({"gpuIds": "ADA_24"}, "gpuIds: 'ADA_24' is not a JSON list of strings"),
        ({"locations": '["US-KS-2"]'}, "locations: US-KS-2 must include the volume's data center EU-RO-1"),
        ({"volumeSizeGb": "5"}, "volumeSizeGb: 5 is outside 10..4096"),
        ({"volumeProtect": "maybe"}, "volumeProtect: 'maybe' is not true or false"),
        ({"idleTimeoutS": "0"}, "idleTimeoutS: 0 is outside 1..3600"),
        ({"endpointName": "x"}, "endpointName: 'x' needs 3+"),
        ({"registryUsername": "acme"}, "registryPassword: missing for registryUsername"),
    ],
)
def test_config_errors_name_the_key_and_the_fix(mocks: Mocks, values: dict[str, str], words: str) -> None:
    configure(**values)
    with pytest.raises(ConfigError) as info:
        load_settings(pulumi.Config())
    assert len(info.value.problems) == 1, info.value.problems
    assert words in info.value.problems[0]
    with pytest.raises(ConfigError):
        main()
    assert mocks.resources == {}


def test_every_problem_is_reported_at_once(mocks: Mocks) -> None:
    pulumi.runtime.set_all_config({f"{PROJECT}:workersMin": "9", f"{PROJECT}:idleTimeoutS": "0"}, [])
    with pytest.raises(ConfigError) as info:
        load_settings(pulumi.Config())
    assert [p.split(":")[0] for p in info.value.problems] == ["imageRef", "workersMin", "idleTimeoutS"]
    assert "pulumi config set imageRef REGISTRY/REPO@sha256:DIGEST" in info.value.problems[0]


def test_pulumi_yaml_declares_every_setting_with_the_same_default() -> None:
    declared = yaml.safe_load((Path(__file__).resolve().parent.parent / "Pulumi.yaml").read_text())["config"]
    assert set(declared) == {*CONFIG_FIELDS, *SECRET_KEYS}
    assert all(declared[k]["secret"] is True for k in SECRET_KEYS)
    defaults = StackSettings()
    assert {f.name for f in dataclasses.fields(StackSettings)} == set(CONFIG_FIELDS.values())
    for key, field in CONFIG_FIELDS.items():
        value = getattr(defaults, field)
        expected = list(value) if isinstance(value, tuple) else value
        assert declared[key].get("default") == expected, key


REGISTRY_T = "pulumi-python:dynamic/runpod:RegistryAuth"


def test_registry_credentials_become_a_secret_registry_auth_wired_into_the_template(mocks: Mocks) -> None:
    password = "ghp_registry-password-42"
    pulumi.runtime.set_all_config(
        {
            f"{PROJECT}:runpodApiKey": KEY,
            f"{PROJECT}:imageRef": DIGEST,
            f"{PROJECT}:registryUsername": "acme",
            f"{PROJECT}:registryPassword": password,
        },
        [f"{PROJECT}:runpodApiKey", f"{PROJECT}:registryPassword"],
    )

    @pulumi.runtime.test
    def check() -> Any:
        options = record_options()
        main()
        outputs = pulumi.runtime.get_root_resource().outputs  # type: ignore[union-attr]

        def verify(_: Any) -> None:
            auth = mocks.resources[REGISTRY_T]
            assert auth.inputs["username"] == "acme"
            # The password reaches the engine as a secret (Pulumi's secret sentinel), never as plain text.
            sig = pulumi.runtime.rpc._special_sig_key
            assert auth.inputs["password"] == {sig: pulumi.runtime.rpc._special_secret_sig, "value": password}
            assert "password" in (options[REGISTRY_T].additional_secret_outputs or [])
            assert mocks.resources[TEMPLATE_T].inputs["containerRegistryAuthId"] == "registry-auth-id"

        return outputs["templateId"].apply(verify)

    check()


def test_without_an_image_ref_or_repository_the_error_names_both(mocks: Mocks) -> None:
    pulumi.runtime.set_all_config({f"{PROJECT}:runpodApiKey": KEY}, [f"{PROJECT}:runpodApiKey"])
    with pytest.raises(ConfigError) as info:
        load_settings(pulumi.Config())
    [problem] = info.value.problems
    assert "pulumi config set imageRef" in problem
    assert "pulumi config set imageRepository" in problem


def test_a_built_image_flows_into_the_template_by_digest(mocks: Mocks) -> None:
    pytest.importorskip("pulumi_docker")
    repo = "ghcr.io/acme/comfy-runpod"
    built = f"{repo}@sha256:" + "cd" * 32

    class DockerMocks(Mocks):
        def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
            if args.typ == "docker:index/image:Image":
                self.resources[args.typ] = args
                return "worker-image-id", {**args.inputs, "repoDigest": built}
            return super().new_resource(args)

    docker_mocks = DockerMocks()
    pulumi.runtime.set_mocks(docker_mocks, project=PROJECT, stack="dev", preview=False)
    pulumi.runtime.set_all_config(
        {f"{PROJECT}:runpodApiKey": KEY, f"{PROJECT}:imageRepository": repo}, [f"{PROJECT}:runpodApiKey"]
    )

    @pulumi.runtime.test
    def check() -> Any:
        main()
        outputs = pulumi.runtime.get_root_resource().outputs  # type: ignore[union-attr]

        def verify(values: list[Any]) -> None:
            image_ref, _template_id = values
            assert image_ref == built
            image = docker_mocks.resources["docker:index/image:Image"]
            assert image.inputs["imageName"] == f"{repo}:dev"
            assert image.inputs["build"]["platform"] == "linux/amd64"
            assert image.inputs["build"]["dockerfile"] == "image/Dockerfile"
            assert docker_mocks.resources[TEMPLATE_T].inputs["imageName"] == built

        return pulumi.Output.all(outputs["imageRef"], outputs["templateId"]).apply(verify)

    check()
