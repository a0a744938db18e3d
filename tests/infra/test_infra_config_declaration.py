"""infra/spec.py declares each template, endpoint and stack field once: Pulumi.yaml declares the same keys
with the same types, and a value set in the stack config reaches the resource input the declaration names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pulumi = pytest.importorskip("pulumi")

from infra.program import main  # noqa: E402
from infra.providers.endpoint import EndpointProvider  # noqa: E402
from infra.providers.template import TemplateProvider  # noqa: E402
from infra.settings import (  # noqa: E402
    ENDPOINT_SPECS,
    ENDPOINTS_KEY,
    SECRET_KEYS,
    STACK_SETTINGS,
    ConfigError,
    StackSettings,
    load_settings,
)
from infra.spec import Bounds, EndpointSpec, Setting, config_keys  # noqa: E402
from tests.infra_support import Mocks, configure_with  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PULUMI_YAML = (ROOT / "Pulumi.yaml").read_text()
DECLARED = yaml.safe_load(PULUMI_YAML)["config"]
YAML_TYPES = {"str": "string", "int": "integer", "bool": "boolean", "list": "array", "map": "object"}
TEMPLATE_T = "pulumi-python:dynamic/runpod:Template"
ENDPOINT_T = "pulumi-python:dynamic/runpod:Endpoint"

# A value other than the default for each endpoint key (as `pulumi config set` stores it), and what the
# provider input then holds. A new key fails here until it has one: it must reach its resource.
NON_DEFAULT: dict[str, tuple[str, Any]] = {
    "templateName": ("my-template", "my-template"),
    "containerDiskGb": ("40", 40),
    "templateEnv": ('{"OUTPUT_MODE": "s3"}', {"OUTPUT_MODE": "s3"}),
    "endpointName": ("my-endpoint", "my-endpoint"),
    "gpuIds": ('["HOPPER_141"]', ["HOPPER_141"]),
    "gpuCount": ("2", 2),
    "locations": ('["EU-RO-1", "US-KS-2"]', ["EU-RO-1", "US-KS-2"]),
    "workersMin": ("1", 1),
    "workersMax": ("7", 7),
    "idleTimeoutS": ("60", 60),
    "scalerType": ("REQUEST_COUNT", "REQUEST_COUNT"),
    "scalerValue": ("2", 2),
    "executionTimeoutMs": ("900000", 900000),
    "flashBoot": ("OFF", "OFF"),
    "allowedCudaVersions": ('["13.0", "13.1"]', ["13.0", "13.1"]),
}


@pytest.mark.parametrize("key", [*STACK_SETTINGS, *ENDPOINT_SPECS])
def test_pulumi_yaml_declares_each_key_with_its_type(key: str) -> None:
    """A key with a default is declared with its type; an optional one (no default) only in the comment that
    lists them, with its type: the real engine makes a key declared without a default required."""
    spec: Setting = {**STACK_SETTINGS, **ENDPOINT_SPECS}[key]
    defaults = StackSettings()
    if getattr(defaults.top if key in ENDPOINT_SPECS else defaults, spec.field) is None:
        assert key not in DECLARED
        assert f"#   {key} ({YAML_TYPES[spec.shape]}" in (ROOT / "Pulumi.yaml").read_text(), key
    else:
        assert DECLARED[key]["type"] == YAML_TYPES[spec.shape], key


def test_the_endpoints_key_and_the_readme_name_every_endpoint_key() -> None:
    description = " ".join(DECLARED[ENDPOINTS_KEY]["description"].split())
    assert [k for k in ENDPOINT_SPECS if k not in description] == []
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Stack config (`pulumi config`)")[1].split("\n## ")[0]
    assert [k for k in (*STACK_SETTINGS, *SECRET_KEYS, ENDPOINTS_KEY) if f"`{k}`" not in table] == []
    assert [k for k in ENDPOINT_SPECS if f"`{k}`*" not in table] == []  # * marks a per-endpoint key


@pytest.mark.parametrize("key", ENDPOINT_SPECS)
def test_a_configured_endpoint_key_reaches_its_resource_input(mocks: Mocks, key: str) -> None:
    spec = ENDPOINT_SPECS[key]
    raw, expected = NON_DEFAULT[key]
    configure_with({key: raw})

    @pulumi.runtime.test
    def check() -> Any:
        main()

        def verify(_: Any) -> None:
            # The template's and the endpoint's `name` are different fields: look in the right resource.
            typ = TEMPLATE_T if spec.field.startswith(("template_", "container_")) else ENDPOINT_T
            inputs = mocks.resources[typ].inputs
            assert spec.prop is not None
            assert inputs[spec.prop] == expected, (key, spec.prop, inputs)

        outputs = pulumi.runtime.get_root_resource().outputs  # type: ignore[union-attr]
        return pulumi.Output.all(outputs["endpointId"], outputs["templateId"]).apply(verify)

    check()


BOUNDED = {key: spec for key, spec in {**STACK_SETTINGS, **ENDPOINT_SPECS}.items() if spec.bounds is not None}


def refused(bounds: Bounds) -> Any:
    if bounds.choices:
        return "NOPE"
    assert bounds.minimum is not None
    return bounds.minimum - 1


@pytest.mark.parametrize("key", BOUNDED)
def test_a_declared_bound_is_checked_by_the_config_and_by_the_provider(mocks: Mocks, key: str) -> None:
    spec = BOUNDED[key]
    assert spec.bounds is not None
    value = refused(spec.bounds)
    configure_with({key: str(value)})
    with pytest.raises(ConfigError) as info:
        load_settings(pulumi.Config())
    assert [p for p in info.value.problems if p.startswith(f"{key}: ")] == [
        f"{key}: {spec.bounds.refusal(value)}; run `pulumi config set {key} {spec.example}`"
    ]
    if spec.prop is None:  # a stack-wide key: its resource's provider has checks of its own
        return
    endpoint = spec.key in config_keys(EndpointSpec)
    provider = EndpointProvider() if endpoint else TemplateProvider()
    news: dict[str, Any] = {"name": "comfy-x", "templateId": "t", "gpuIds": ["ADA_24"], "imageName": "img"}
    if not endpoint:
        news = {"name": "comfy-x", "imageName": "img"}
    news[spec.prop] = float(value) if isinstance(value, int) else value  # Pulumi's numbers are floats
    failures = provider.check({}, news).failures
    assert [(f.property, f.reason) for f in failures] == [
        (spec.prop, f"{spec.prop} must be {spec.bounds.accepted()}")
    ]
