"""The Pulumi program under ``pulumi.runtime.set_mocks`` (no engine, no RunPod): wiring, options, config."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

pulumi = pytest.importorskip("pulumi")

from infra.program import COMPONENT_TYPE, ComfyEndpoint, declare, main  # noqa: E402
from infra.settings import (  # noqa: E402
    CONFIG_FIELDS,
    DERIVED_FIELDS,
    ENDPOINT_SPECS,
    ENDPOINTS_KEY,
    SECRET_KEYS,
    ConfigError,
    EndpointSettings,
    StackSettings,
    load_settings,
)
from tests.infra_support import DIGEST, KEY, PROJECT, Mocks, configure, configure_with  # noqa: E402

VOLUME_T = "pulumi-python:dynamic/runpod:NetworkVolume"
TEMPLATE_T = "pulumi-python:dynamic/runpod:Template"
ENDPOINT_T = "pulumi-python:dynamic/runpod:Endpoint"


def record_options() -> dict[str, pulumi.ResourceOptions]:
    seen: dict[str, pulumi.ResourceOptions] = {}

    def transformation(args: Any) -> None:
        seen[args.type_] = args.opts

    pulumi.runtime.register_stack_transformation(transformation)
    return seen


def test_the_program_wires_volume_template_and_endpoint(mocks: Mocks, transport: str) -> None:
    configure(volumeSizeGb="250", gpuIds='["HOPPER_141"]', workersMax="5", runpodApi=transport)

    @pulumi.runtime.test
    def check() -> Any:
        options = record_options()
        main()
        outputs = pulumi.runtime.get_root_resource().outputs  # type: ignore[union-attr]
        names = [
            "endpointId",
            "endpointUrl",
            "templateId",
            "volumeId",
            "volumeDataCenter",
            "imageRef",
            "endpoints",
        ]

        def verify(values: list[Any]) -> None:
            exported = dict(zip(names, values, strict=True))
            assert exported == {
                "endpointId": "comfy-endpoint-id",
                "endpointUrl": "https://api.runpod.ai/v2/comfy-endpoint-id",
                "templateId": "comfy-template-id",
                "volumeId": "models-volume-id",
                "volumeDataCenter": "EU-RO-1",
                "imageRef": DIGEST,
                "endpoints": {
                    "comfy": {
                        "endpointId": "comfy-endpoint-id",
                        "endpointUrl": "https://api.runpod.ai/v2/comfy-endpoint-id",
                        "templateId": "comfy-template-id",
                    }
                },
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
            # The image's torch wheels need CUDA 13 hosts; FlashBoot and the scaler are always sent too.
            assert endpoint.inputs["allowedCudaVersions"] == ["13.0"]
            assert endpoint.inputs["flashBootType"] == "FLASHBOOT"
            assert (endpoint.inputs["scalerType"], endpoint.inputs["scalerValue"]) == ("QUEUE_DELAY", 4)
            assert endpoint.inputs["gpuCount"] == 1
            assert template.inputs["env"] == {}
            assert "env" in (options[TEMPLATE_T].additional_secret_outputs or [])
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
    assert settings == StackSettings(image_ref=DIGEST, endpoints=(EndpointSettings(),))
    assert settings.endpoint_list() == (EndpointSettings(),)
    assert StackSettings().endpoint_list() == (EndpointSettings(),)  # the top level is the one endpoint


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
        (
            {"allowedCudaVersions": '["12.4"]'},
            "allowedCudaVersions: 12.4 is too old for the image (its torch wheels are CUDA 13 builds",
        ),
        ({"allowedCudaVersions": "[]"}, "allowedCudaVersions: empty would allow hosts of any CUDA version"),
        ({"allowedCudaVersions": '["13"]'}, "allowedCudaVersions: 13 is not a CUDA version like 13.0"),
        ({"flashBoot": "ON"}, "flashBoot: 'ON' is not one of OFF, FLASHBOOT, PRIORITY_FLASHBOOT"),
        ({"scalerType": "FAST"}, "scalerType: 'FAST' is not one of QUEUE_DELAY, REQUEST_COUNT"),
        (
            {"scalerValue": "0"},
            "scalerValue: 0 is below 1 (RunPod refuses it); run `pulumi config set scalerValue 4`",
        ),
        ({"gpuCount": "0"}, "gpuCount: 0 is below 1 GPU per worker"),
        ({"templateEnv": '["A=1"]'}, "templateEnv: is not an object of NAME: value"),
        (
            {"templateEnv": '{"PATH": "/x"}'},
            "templateEnv.PATH: PATH is reserved: the worker image sets it (its Python venv); "
            "remove it: `pulumi config rm --path 'templateEnv.PATH'`",
        ),
        ({"endpoints": '["h200"]'}, "endpoints: is not an object of KEY: {endpoint keys}"),
        (
            {"endpoints": '{"h200": {"gpuIds": ["H200"]}}'},
            "endpoints.h200.gpuIds: H200 is not a RunPod GPU pool id",
        ),
        (
            {"endpoints": '{"h200": {"workersMax": "many"}}'},
            "endpoints.h200.workersMax: 'many' is not a whole number; "
            "run `pulumi config set --path 'endpoints.h200.workersMax' 3`",
        ),
        (
            {"endpoints": '{"h200": {"workersMin": 5}}'},
            "endpoints.h200.workersMin: 5 exceeds workersMax 3; "
            "run `pulumi config set --path 'endpoints.h200.workersMax' 5`",
        ),
        ({"endpoints": '{"H200!": {}}'}, "endpoints.H200!: 'H200!' is not an endpoint key"),
        ({"endpoints": '{"h200": {"gpuId": ["X"]}}'}, "endpoints.h200.gpuId: unknown endpoint key"),
        (
            {"endpoints": '{"a1": {"templateName": "same"}, "b1": {"templateName": "same"}}'},
            "endpoints.b1.templateName: 'same' is also the templateName of endpoint 'a1'",
        ),
        (
            {"endpoints": '{"h200": {"locations": ["US-KS-2"]}}'},
            "endpoints.h200.locations: US-KS-2 must include the volume's data center EU-RO-1",
        ),
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
    """Declared keys carry their default; optional ones (no default) are only described in a comment.

    The real engine refuses `pulumi up` while a key declared without a default has no value
    (tests/engine/ runs it), so a declaration without a default would make an optional key required.
    """
    text = (Path(__file__).resolve().parents[2] / "Pulumi.yaml").read_text()
    declared = yaml.safe_load(text)["config"]
    defaults = StackSettings()
    assert {f.name for f in dataclasses.fields(StackSettings)} == {*CONFIG_FIELDS.values(), *DERIVED_FIELDS}
    values = {key: getattr(defaults, field) for key, field in CONFIG_FIELDS.items()}
    values |= {key: getattr(defaults.top, spec.field) for key, spec in ENDPOINT_SPECS.items()}
    optional = {key for key, value in values.items() if value is None} | {"registryPassword"}
    assert set(declared) == {*CONFIG_FIELDS, *ENDPOINT_SPECS, *SECRET_KEYS, ENDPOINTS_KEY} - optional
    assert all("default" in decl for key, decl in declared.items() if key != "runpodApiKey")
    assert all(f"#   {key} (" in text for key in optional)
    assert declared["runpodApiKey"]["secret"] is True and "secret" in text.split("#   registryPassword (")[1]
    for key, value in values.items():
        expected = list(value) if isinstance(value, tuple) else value
        if key not in optional:
            assert declared[key].get("default") == expected, key
    assert declared[ENDPOINTS_KEY]["default"] == {}
    assert "templateEnv" in declared and declared["templateEnv"]["type"] == "object"
    assert "secret" not in declared["templateEnv"]  # only the values set with --secret are secret


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


# ── template env (item: secrets stay secret, names validated) ─────────────────────────────────────────────

HF_TOKEN = "hf_secret-token-0123456789"
SIG = pulumi.runtime.rpc._special_sig_key
SECRET_SIG = pulumi.runtime.rpc._special_secret_sig


def test_template_env_reaches_the_template_as_strings(mocks: Mocks) -> None:
    env = {
        "OUTPUT_MODE": "s3",
        "EXECUTION_TIMEOUT": 900,
        "ALLOW_PRIVATE_INPUT_URLS": False,
        "RUNPOD_LOG_LEVEL": "WARN",
    }
    configure_with({"templateEnv": json.dumps(env)})

    @pulumi.runtime.test
    def check() -> Any:
        main()
        outputs = pulumi.runtime.get_root_resource().outputs  # type: ignore[union-attr]

        def verify(_: Any) -> None:
            assert mocks.resources[TEMPLATE_T].inputs["env"] == {
                "OUTPUT_MODE": "s3",
                "EXECUTION_TIMEOUT": "900",
                "ALLOW_PRIVATE_INPUT_URLS": "false",
                "RUNPOD_LOG_LEVEL": "WARN",  # the runpod SDK's log level: not reserved
            }

        return outputs["templateId"].apply(verify)

    check()


def test_secret_template_env_stays_secret_from_config_to_the_template_output(mocks: Mocks) -> None:
    # `pulumi config set --secret --path 'templateEnv.HF_TOKEN' ...` makes the key templateEnv secret.
    configure_with({"templateEnv": json.dumps({"HF_TOKEN": HF_TOKEN, "OUTPUT_MODE": "s3"})}, ("templateEnv",))
    settings = load_settings(pulumi.Config())
    assert settings.warnings == ()
    assert HF_TOKEN not in repr(settings)

    @pulumi.runtime.test
    def check() -> Any:
        options = record_options()
        comfy = declare(settings)["comfy"]

        def verify(values: list[Any]) -> None:
            env, is_secret, _ = values
            assert env == {"HF_TOKEN": HF_TOKEN, "OUTPUT_MODE": "s3"}
            assert is_secret, "the template's env output must be a Pulumi secret"
            # What the engine receives: the whole env wrapped as a secret, never the token in clear.
            sent = mocks.resources[TEMPLATE_T].inputs["env"]
            assert sent == {SIG: SECRET_SIG, "value": {"HF_TOKEN": HF_TOKEN, "OUTPUT_MODE": "s3"}}
            assert "env" in (options[TEMPLATE_T].additional_secret_outputs or [])
            # The endpoint owns its env over REST: it gets the same env, as a secret too.
            endpoint = mocks.resources[ENDPOINT_T]
            assert endpoint.inputs["env"] == sent
            assert "env" in (options[ENDPOINT_T].additional_secret_outputs or [])

        return pulumi.Output.all(
            comfy.template.env,
            pulumi.Output.is_secret(comfy.template.env),  # type: ignore[attr-defined]
            comfy.endpoint_id,
        ).apply(verify)

    check()


def test_env_names_are_validated_all_at_once_without_showing_values(mocks: Mocks) -> None:
    env = {
        "COMFYUI_DIR": HF_TOKEN,
        "RUNPOD_WEBHOOK_GET_JOB": HF_TOKEN,
        "1BAD": HF_TOKEN,
        "NESTED": {"a": HF_TOKEN},
        "COMFYUI_URL": HF_TOKEN,
        "HF_TOKEN": HF_TOKEN,
    }
    configure_with({"templateEnv": json.dumps(env)}, ("templateEnv",))
    with pytest.raises(ConfigError) as info:
        load_settings(pulumi.Config())
    problems = info.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "templateEnv.COMFYUI_DIR",
        "templateEnv.RUNPOD_WEBHOOK_GET_JOB",
        "templateEnv.1BAD",
        "templateEnv.NESTED",
        "templateEnv.COMFYUI_URL",
    ]
    assert "remove it: `pulumi config rm --path 'templateEnv.COMFYUI_DIR'`" in problems[0]
    assert "RunPod sets RUNPOD_* in every worker" in problems[1]
    assert "is not an environment variable name" in problems[2]
    assert "the value must be a string" in problems[3]
    assert "attach mode" in problems[4]
    assert HF_TOKEN not in str(info.value)


def test_a_malformed_secret_env_is_not_echoed(mocks: Mocks) -> None:
    configure_with({"templateEnv": json.dumps(HF_TOKEN)}, ("templateEnv",))
    with pytest.raises(ConfigError) as info:
        load_settings(pulumi.Config())
    [problem] = info.value.problems
    assert problem.startswith("templateEnv: is not an object of NAME: value")
    assert HF_TOKEN not in problem


def test_a_secret_looking_env_value_in_clear_is_warned_about(
    mocks: Mocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "HF_TOKEN": HF_TOKEN,
        "BUCKET_SECRET_ACCESS_KEY": "{{ RUNPOD_SECRET_bucket }}",
        "OUTPUT_MODE": "s3",
    }
    configure_with({"templateEnv": json.dumps(env)})
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *_, **__: warned.append(message))

    @pulumi.runtime.test
    def check() -> Any:
        main()
        outputs = pulumi.runtime.get_root_resource().outputs  # type: ignore[union-attr]
        return outputs["templateId"].apply(lambda _: None)

    check()
    # One warning: HF_TOKEN (a RunPod secret reference is fine), with the fix and without the value.
    [warning] = warned
    assert warning.startswith("templateEnv.HF_TOKEN looks like a secret but is stored in clear")
    assert "pulumi config set --secret --path 'templateEnv.HF_TOKEN'" in warning
    assert HF_TOKEN not in warning


# ── several endpoints on one volume and image ───────────────────────────────────────────────────────────────

TWO_ENDPOINTS = {
    "ada": {"gpuIds": ["ADA_24"]},
    "h200": {"gpuIds": ["HOPPER_141"], "workersMax": 2, "templateEnv": {"EXECUTION_TIMEOUT": "1200"}},
}


def test_two_endpoints_share_the_volume_and_the_image(mocks: Mocks) -> None:
    configure_with({"endpoints": json.dumps(TWO_ENDPOINTS), "templateEnv": '{"OUTPUT_MODE": "s3"}'})
    settings = load_settings(pulumi.Config())
    assert [e.key for e in settings.endpoint_list()] == ["ada", "h200"]

    @pulumi.runtime.test
    def check() -> Any:
        options = record_options()
        endpoints = declare(settings)
        outputs = pulumi.runtime.get_root_resource().outputs  # type: ignore[union-attr]
        urns = [r.urn for c in endpoints.values() for r in (c, c.template, c.endpoint)]

        def verify(values: list[Any]) -> None:
            exported, first_id, *resolved = values
            assert len(set(resolved)) == 6, "every component and child has its own URN"
            assert any(
                u.endswith("ComfyEndpoint$pulumi-python:dynamic/runpod:Endpoint::h200-endpoint")
                for u in resolved
            )
            assert any(
                u.endswith("ComfyEndpoint$pulumi-python:dynamic/runpod:Template::ada-template")
                for u in resolved
            )
            assert [a.name for a in mocks.created if a.typ == VOLUME_T] == ["models-volume"]  # one volume
            assert set(mocks.of_type(COMPONENT_TYPE)) == {"ada", "h200"}
            templates, eps = mocks.of_type(TEMPLATE_T), mocks.of_type(ENDPOINT_T)
            assert set(eps) == {"ada-endpoint", "h200-endpoint"}
            for key in ("ada", "h200"):
                endpoint, template = eps[f"{key}-endpoint"].inputs, templates[f"{key}-template"].inputs
                assert endpoint["networkVolumeId"] == "models-volume-id"  # both on the shared volume
                assert endpoint["templateId"] == f"{key}-template-id"
                assert endpoint["name"] == f"comfy-runpod-{key}"
                assert template["name"] == f"comfy-runpod-{key}"  # template names are unique per account
                assert template["imageName"] == DIGEST  # the same image
                assert endpoint["allowedCudaVersions"] == ["13.0"]
            assert eps["ada-endpoint"].inputs["gpuIds"] == ["ADA_24"]
            assert (eps["h200-endpoint"].inputs["gpuIds"], eps["h200-endpoint"].inputs["workersMax"]) == (
                ["HOPPER_141"],
                2,
            )
            assert eps["ada-endpoint"].inputs["workersMax"] == 3  # inherited from the top level
            assert templates["ada-template"].inputs["env"] == {"OUTPUT_MODE": "s3"}
            assert templates["h200-template"].inputs["env"] == {
                "OUTPUT_MODE": "s3",
                "EXECUTION_TIMEOUT": "1200",
            }
            assert exported == {
                key: {
                    "endpointId": f"{key}-endpoint-id",
                    "endpointUrl": f"https://api.runpod.ai/v2/{key}-endpoint-id",
                    "templateId": f"{key}-template-id",
                }
                for key in ("ada", "h200")
            }
            assert first_id == "ada-endpoint-id"  # endpointId: the first endpoint (the tasks' default)
            components = {o.parent for t, o in options.items() if t in (TEMPLATE_T, ENDPOINT_T)}
            assert all(isinstance(c, ComfyEndpoint) for c in components)

        return pulumi.Output.all(outputs["endpoints"], outputs["endpointId"], *urns).apply(verify)

    check()


def test_a_secret_in_an_endpoints_env_keeps_every_endpoints_env_secret(mocks: Mocks) -> None:
    endpoints = {"ada": {}, "h200": {"templateEnv": {"HF_TOKEN": HF_TOKEN}}}
    configure_with({"endpoints": json.dumps(endpoints)}, ("endpoints",))

    @pulumi.runtime.test
    def check() -> Any:
        main()
        outputs = pulumi.runtime.get_root_resource().outputs  # type: ignore[union-attr]

        def verify(_: Any) -> None:
            templates = mocks.of_type(TEMPLATE_T)
            assert templates["h200-template"].inputs["env"] == {
                SIG: SECRET_SIG,
                "value": {"HF_TOKEN": HF_TOKEN},
            }
            assert templates["ada-template"].inputs["env"] == {SIG: SECRET_SIG, "value": {}}

        return pulumi.Output.all(outputs["endpoints"]).apply(verify)

    check()


def test_endpoint_names_can_be_set_per_endpoint(mocks: Mocks) -> None:
    endpoints = {"ada": {"endpointName": "comfy-4090", "templateName": "comfy-4090-tpl"}, "h200": {}}
    configure_with({"endpoints": json.dumps(endpoints), "endpointName": "comfy"})
    settings = load_settings(pulumi.Config())
    named = {e.key: (e.endpoint_name, e.template_name) for e in settings.endpoint_list()}
    assert named == {"ada": ("comfy-4090", "comfy-4090-tpl"), "h200": ("comfy-h200", "comfy-runpod-h200")}


def test_an_inherited_problem_is_reported_once_under_its_top_level_key(mocks: Mocks) -> None:
    configure_with({"endpoints": json.dumps(TWO_ENDPOINTS), "idleTimeoutS": "0"})
    with pytest.raises(ConfigError) as info:
        load_settings(pulumi.Config())
    assert info.value.problems == [
        "idleTimeoutS: 0 is outside 1..3600 seconds; run `pulumi config set idleTimeoutS 5`"
    ]


def test_env_the_worker_would_refuse_fails_at_preview(mocks: Mocks) -> None:
    # The worker reads these at start (handler.environment's table) and refuses bad values: checked up front,
    # every one at once, in the table's order, each under the key it came from.
    endpoints = {"h200": {"templateEnv": {"EXECUTION_TIMEOUT": "soon"}}}
    configure_with({"templateEnv": '{"OUTPUT_MODE": "fast"}', "endpoints": json.dumps(endpoints)})
    with pytest.raises(ConfigError) as info:
        load_settings(pulumi.Config())
    assert [p.split(":")[0] for p in info.value.problems] == [
        "endpoints.h200.templateEnv.EXECUTION_TIMEOUT",
        "templateEnv.OUTPUT_MODE",
    ]
    assert (
        "the worker would refuse to start: EXECUTION_TIMEOUT: must be a number >= 0.01; correct it, "
        "or unset it for the default (600)" in info.value.problems[0]
    )
    assert (
        "run `pulumi config set --path 'endpoints.h200.templateEnv.EXECUTION_TIMEOUT' VALUE`"
        in (info.value.problems[0])
    )
    assert "would refuse to start: OUTPUT_MODE: must be base64, s3 or auto" in info.value.problems[1]
    assert not any("fast" in p or "soon" in p for p in info.value.problems)  # values are never quoted


def test_a_refused_secret_env_value_is_not_echoed(mocks: Mocks) -> None:
    configure_with({"templateEnv": json.dumps({"COMFYUI_PORT": "port-" + HF_TOKEN})}, ("templateEnv",))
    with pytest.raises(ConfigError) as info:
        load_settings(pulumi.Config())
    [problem] = info.value.problems
    assert problem.startswith(
        "templateEnv.COMFYUI_PORT: the worker would refuse to start: COMFYUI_PORT: must be a port number"
    )
    assert HF_TOKEN not in problem


def test_bucket_settings_in_the_env_must_come_together(mocks: Mocks) -> None:
    configure_with({"templateEnv": '{"BUCKET_ENDPOINT_URL": "https://s3.example.com"}'})
    with pytest.raises(ConfigError) as info:
        load_settings(pulumi.Config())
    [problem] = info.value.problems
    assert problem.startswith("templateEnv.BUCKET_ENDPOINT_URL: the worker would refuse to start")
    assert "BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY and BUCKET_NAME must be set too" in problem
