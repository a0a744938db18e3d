"""The catalog preflight as `pulumi preview` runs it: the Endpoint provider's check() over REST reads RunPod's
GPU catalog once, refuses with the config key and the fix, warns on low stock, and stores nothing."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("openapi_core")
pulumi = pytest.importorskip("pulumi")

from infra.providers.endpoint import EndpointProvider  # noqa: E402
from tests.infra_support import as_the_engine_loads, endpoint_inputs  # noqa: E402
from tests.runpod_rest_emulator import Fault, RunPodRESTEmulator  # noqa: E402

TOP = {"dataCenterId": "EU-RO-1", "dataCenterKey": "dataCenterId", "gpuIds": "gpuIds"}
TOP |= {"allowedCudaVersions": "allowedCudaVersions"}


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *_, **__: seen.append(message))
    return seen


def news(preflight: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return endpoint_inputs("tpl1", "vol1", preflight=TOP if preflight is None else preflight, **extra)


def check(emulator: RunPodRESTEmulator, values: dict[str, Any], transport: str = "rest") -> Any:
    provider = as_the_engine_loads(EndpointProvider(), emulator.api_key, transport)
    return provider.check({}, values)


def test_a_sound_config_passes_reading_the_catalog_once_and_storing_none_of_it(
    rest_emulator: RunPodRESTEmulator, warnings: list[str]
) -> None:
    first = check(rest_emulator, news())
    second = check(rest_emulator, news(gpuIds=["AMPERE_48"]))
    assert (first.failures, second.failures, warnings) == ([], [], [])
    assert rest_emulator.operations() == ["listGpuTypes"]
    assert "preflight" not in first.inputs  # check-only: never an input in state
    assert "ADA_24" in repr(first.inputs) and "availability" not in repr(first.inputs)


def test_a_pool_missing_from_the_catalog_is_refused_naming_the_key(
    rest_emulator: RunPodRESTEmulator,
) -> None:
    rest_emulator.account.catalog = [g for g in rest_emulator.account.catalog if g["pool"] != "AMPERE_48"]
    failures = check(rest_emulator, news()).failures
    assert [f.property for f in failures] == ["gpuIds"]
    assert failures[0].reason.startswith("gpuIds: AMPERE_48 is not a serverless GPU pool in RunPod's catalog")
    assert "pulumi config set --path 'gpuIds[0]'" in failures[0].reason


def test_a_cuda_set_leaving_no_gpu_type_is_refused(rest_emulator: RunPodRESTEmulator) -> None:
    failures = check(rest_emulator, news(allowedCudaVersions=["13.1"])).failures
    assert [f.property for f in failures] == ["allowedCudaVersions"]
    assert failures[0].reason.startswith("allowedCudaVersions: 13.1 leaves no GPU type of ADA_24, AMPERE_48")


def test_a_data_center_hosting_none_of_the_pools_is_refused(rest_emulator: RunPodRESTEmulator) -> None:
    failures = check(rest_emulator, news(gpuIds=["BLACKWELL_180"])).failures
    assert [f.property for f in failures] == ["locations"]
    assert failures[0].reason.startswith("dataCenterId: EU-RO-1 hosts none of the chosen pools BLACKWELL_180")


def test_an_endpoint_of_several_is_named_by_its_own_path(rest_emulator: RunPodRESTEmulator) -> None:
    own = TOP | {
        "gpuIds": "endpoints.b200.gpuIds",
        "allowedCudaVersions": "endpoints.b200.allowedCudaVersions",
    }
    failures = check(rest_emulator, news(own, gpuIds=["BLACKWELL_180"])).failures
    assert failures[0].reason.startswith("dataCenterId: EU-RO-1 hosts none")
    assert "pulumi config set --path 'endpoints.b200.gpuIds[0]'" in failures[0].reason


def test_low_stock_in_every_chosen_pool_is_a_warning(
    rest_emulator: RunPodRESTEmulator, warnings: list[str]
) -> None:
    assert check(rest_emulator, news(gpuIds=["HOPPER_141"])).failures == []
    assert [w.split(" (")[0] for w in warnings] == [
        "gpuIds: every chosen pool has low availability right now"
    ]


def test_an_unreadable_catalog_skips_the_preflight_with_a_warning(
    rest_emulator: RunPodRESTEmulator, warnings: list[str]
) -> None:
    rest_emulator.inject(*[Fault(503, operation="listGpuTypes")] * 4)
    assert check(rest_emulator, news(gpuIds=["BLACKWELL_180"])).failures == []
    assert [w.split(":")[0] for w in warnings] == ["preflight skipped"]


def test_graphql_and_unknown_values_skip_the_preflight(rest_emulator: RunPodRESTEmulator) -> None:
    assert check(rest_emulator, news(gpuIds=["BLACKWELL_180"]), "graphql").failures == []
    unknown = news(preflight=TOP | {"dataCenterId": pulumi.output.Unknown()}, gpuIds=["BLACKWELL_180"])
    assert check(rest_emulator, unknown).failures == []
    assert rest_emulator.operations() == []
