"""Preflight from RunPod's GPU catalog: unknown pools, a CUDA set no GPU of the pools offers, a data center
hosting none of the pools (errors naming the key and the fix), and low stock (a warning).

The catalog is the REST v2 emulator's (``tests/runpod_rest_emulator/catalog.py``), read through the client
where the flow matters; see that module for which pool offers what."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra.preflight import Keys, check_gpu_catalog, check_stack
from infra.runpod_rest import RunPodREST
from infra.settings import EndpointSettings, StackSettings
from tests.runpod_rest_emulator import running_emulator
from tests.runpod_rest_emulator.catalog import default_catalog


@pytest.fixture(scope="module")
def catalog() -> Iterator[list[dict[str, Any]]]:
    """The catalog as the client reads it from the emulator (include=AVAILABILITY, product=SERVERLESS)."""
    for emulator in running_emulator():
        with RunPodREST(emulator.api_key, url=emulator.url) as api:
            yield api.list_gpu_types()


def check(catalog: list[dict[str, Any]], gpu_ids: str, cuda: str = "13.0", dc: str | None = "EU-RO-1") -> Any:
    return check_gpu_catalog(
        catalog,
        gpu_ids=gpu_ids.split(","),
        allowed_cuda_versions=cuda.split(",") if cuda else (),
        data_center_id=dc,
    )


def test_the_default_stack_passes(catalog: list[dict[str, Any]]) -> None:
    result = check_stack(catalog, StackSettings())
    assert (result.errors, result.warnings) == ((), ())


def test_an_unknown_pool_names_the_key_and_the_pools(catalog: list[dict[str, Any]]) -> None:
    result = check(catalog, "ADA_24,ADA_99")
    assert len(result.errors) == 1
    message = result.errors[0]
    assert message.startswith("gpuIds: ADA_99 is not a serverless GPU pool in RunPod's catalog")
    assert "AMPERE_48" in message and "NVIDIA" not in message  # pools, not GPU type names
    assert "`pulumi config set --path 'gpuIds[0]' " in message


def test_an_exclusion_outside_the_pools_is_an_error(catalog: list[dict[str, Any]]) -> None:
    result = check(catalog, "ADA_24,-NVIDIA H200")
    assert result.errors == (
        "gpuIds: -NVIDIA H200 excludes no GPU type of ADA_24 (their types: NVIDIA GeForce RTX 4090, "
        "NVIDIA L4); correct or remove the exclusion",
    )


def test_a_cuda_set_no_gpu_of_the_pools_offers(catalog: list[dict[str, Any]]) -> None:
    result = check(catalog, "AMPERE_16", cuda="13.0")
    assert len(result.errors) == 1
    message = result.errors[0]
    assert message.startswith("allowedCudaVersions: 13.0 leaves no GPU type of AMPERE_16 able to run")
    assert "offer CUDA 12.2, 12.4, 12.6, 12.8" in message
    assert "ADA_24" in message and "`pulumi config set --path 'gpuIds[0]' " in message
    assert check(catalog, "AMPERE_16", cuda="12.8").errors == ()


def test_excluding_the_only_runnable_type_trips_the_cuda_check() -> None:
    catalog = default_catalog()
    for gpu in catalog:
        if gpu["id"] == "NVIDIA L40":
            gpu["cudaVersions"] = [{"version": "12.8", "available": True}]
        if gpu["id"] == "NVIDIA L40S":
            del gpu["cudaVersions"]  # a type without the field offers no CUDA version
    result = check(catalog, "ADA_48_PRO", dc="US-CA-2")
    assert [e.split(":")[0] for e in result.errors] == ["allowedCudaVersions"]


def test_a_data_center_hosting_none_of_the_pools(catalog: list[dict[str, Any]]) -> None:
    result = check(catalog, "AMPERE_80", dc="EU-RO-1")
    assert len(result.errors) == 1
    message = result.errors[0]
    assert message.startswith(
        "dataCenterId: EU-RO-1 hosts none of the chosen pools AMPERE_80 (they run in US-KS-2)"
    )
    assert "ADA_24" in message  # a pool hosted there
    assert check(catalog, "AMPERE_80", dc="us-ks-2").errors == ()


def test_the_data_center_check_counts_only_gpus_that_can_run() -> None:
    catalog = default_catalog()
    for gpu in catalog:
        if gpu["id"] == "NVIDIA L4":
            gpu["cudaVersions"] = [{"version": "12.8", "available": True}]
    # ADA_24 in US-KS-2: the RTX 4090 runs CUDA 13.0 there; in US-GA-2 nothing of ADA_24 runs.
    assert check(catalog, "ADA_24", dc="US-KS-2").errors == ()
    assert check(catalog, "ADA_24", dc="US-GA-2").errors[0].startswith("dataCenterId: US-GA-2 hosts none")


def test_no_data_center_listed_is_a_warning_not_an_error() -> None:
    catalog = default_catalog()
    for gpu in catalog:
        if gpu["pool"] == "AMPERE_80":
            del gpu["dataCenters"]
    result = check(catalog, "AMPERE_80", dc="EU-RO-1")
    assert result.errors == ()
    assert result.warnings[0].startswith("dataCenterId: the catalog lists no data center for AMPERE_80")


def test_low_availability_everywhere_is_a_warning(catalog: list[dict[str, Any]]) -> None:
    result = check(catalog, "AMPERE_80,HOPPER_141", dc="US-KS-2")
    assert result.errors == ()
    assert len(result.warnings) == 1
    warning = result.warnings[0]
    assert warning.startswith(
        "gpuIds: every chosen pool has low availability right now (AMPERE_80: LOW, HOPPER_141: LOW)"
    )
    assert "ADA_24" in warning  # a pool with more stock
    assert check(catalog, "AMPERE_80,ADA_24", dc="US-KS-2").warnings == ()


def test_a_pool_with_one_well_stocked_type_is_not_low(catalog: list[dict[str, Any]]) -> None:
    # AMPERE_48: the A40 is LOW, the A6000 HIGH.
    assert check(catalog, "AMPERE_48").warnings == ()
    assert check(catalog, "AMPERE_48,-NVIDIA RTX A6000", dc="EU-CZ-1").warnings != ()


def test_several_endpoints_name_their_own_keys(catalog: list[dict[str, Any]]) -> None:
    settings = StackSettings(
        data_center_id="EU-RO-1",
        endpoints=(
            EndpointSettings(key="h200", gpu_ids=("HOPPER_141",)),
            EndpointSettings(key="legacy", gpu_ids=("AMPERE_16",)),
            EndpointSettings(key="typo", gpu_ids=("ADA24",)),
        ),
    )
    result = check_stack(catalog, settings)
    assert [e.split(":")[0] for e in result.errors] == [
        "endpoints.legacy.allowedCudaVersions",
        "endpoints.typo.gpuIds",
    ]
    assert result.warnings[0].startswith("endpoints.h200.gpuIds: every chosen pool has low availability")


def test_custom_keys_are_used_in_messages(catalog: list[dict[str, Any]]) -> None:
    keys = Keys(gpu_ids="endpoints.x.gpuIds", cuda="c", data_center="dc")
    result = check_gpu_catalog(
        catalog, gpu_ids=["AMPERE_80"], allowed_cuda_versions=["13.0"], data_center_id="EU-RO-1", keys=keys
    )
    assert result.errors[0].startswith("dc: EU-RO-1 hosts none")
    assert "`pulumi config set --path 'endpoints.x.gpuIds[0]' " in result.errors[0]
