"""The emulated GPU catalog (``GET /v2/catalog/gpus``): ``GpuType`` objects with serverless availability.

Illustrative, not RunPod's live stock: the pool ids are the ones RunPod documents (shared reference
runpod-api.md 2.6, ``infra.providers.endpoint.GPU_POOLS``); the GPU types, CUDA versions and data centers per
pool are plausible choices made so tests can exercise every preflight rule (a type whose machines stop at
CUDA 12.8, a pool absent from a data center, low stock). Tests change a copy through ``Account.catalog``.
"""

from __future__ import annotations

import copy
from typing import Any

MODERN_CUDA = ("12.4", "12.6", "12.8", "13.0")
OLD_CUDA = ("12.2", "12.4", "12.6", "12.8")

# (type id, name, pool, memory GB, serverless price, availability, CUDA versions, data centers)
_TYPES: tuple[tuple[str, str, str | None, int, float, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("NVIDIA RTX A4000", "RTX A4000", "AMPERE_16", 16, 0.58, "HIGH", OLD_CUDA, ("EU-RO-1", "US-KS-2")),
    ("NVIDIA RTX A5000", "RTX A5000", "AMPERE_24", 24, 0.69, "MEDIUM", MODERN_CUDA, ("EU-RO-1", "US-GA-2")),
    ("NVIDIA GeForce RTX 4090", "RTX 4090", "ADA_24", 24, 1.1, "HIGH", MODERN_CUDA, ("EU-RO-1", "US-KS-2")),
    ("NVIDIA L4", "L4", "ADA_24", 24, 1.1, "MEDIUM", MODERN_CUDA, ("US-KS-2",)),
    ("NVIDIA GeForce RTX 5090", "RTX 5090", "ADA_32_PRO", 32, 1.58, "MEDIUM", MODERN_CUDA, ("EU-RO-1",)),
    ("NVIDIA RTX A6000", "RTX A6000", "AMPERE_48", 48, 1.22, "HIGH", MODERN_CUDA, ("EU-RO-1", "EU-CZ-1")),
    ("NVIDIA A40", "A40", "AMPERE_48", 48, 1.22, "LOW", MODERN_CUDA, ("EU-CZ-1",)),
    ("NVIDIA L40S", "L40S", "ADA_48_PRO", 48, 1.9, "MEDIUM", MODERN_CUDA, ("EU-RO-1", "US-CA-2")),
    ("NVIDIA L40", "L40", "ADA_48_PRO", 48, 1.9, "LOW", MODERN_CUDA, ("US-CA-2",)),
    ("NVIDIA A100 80GB PCIe", "A100 PCIe", "AMPERE_80", 80, 2.72, "LOW", MODERN_CUDA, ("US-KS-2",)),
    ("NVIDIA H100 80GB HBM3", "H100 SXM", "ADA_80_PRO", 80, 4.18, "MEDIUM", MODERN_CUDA, ("US-GA-2",)),
    ("NVIDIA H200", "H200", "HOPPER_141", 141, 5.58, "LOW", MODERN_CUDA, ("US-GA-2", "EU-RO-1")),
    ("NVIDIA RTX PRO 6000", "RTX PRO 6000", "BLACKWELL_96", 96, 3.4, "MEDIUM", MODERN_CUDA, ("US-CA-2",)),
    ("NVIDIA B200", "B200", "BLACKWELL_180", 180, 8.64, "NONE", MODERN_CUDA, ("US-IL-1",)),
    ("NVIDIA GeForce RTX 3070", "RTX 3070", None, 8, 0.0, "HIGH", OLD_CUDA, ("CA-MTL-1",)),
)

DATA_CENTER_NAMES = {
    "EU-RO-1": "Europe Romania 1",
    "EU-CZ-1": "Europe Czechia 1",
    "US-KS-2": "US Kansas 2",
    "US-GA-2": "US Georgia 2",
    "US-CA-2": "US California 2",
    "US-IL-1": "US Illinois 1",
    "CA-MTL-1": "Canada Montreal 1",
}


def default_catalog() -> list[dict[str, Any]]:
    """A fresh copy of the catalog, with the availability fields (stripped when not requested)."""
    gpus: list[dict[str, Any]] = []
    for type_id, name, pool, memory, price, availability, cuda, centers in _TYPES:
        gpu: dict[str, Any] = {
            "id": type_id,
            "name": name,
            "pool": pool,
            "manufacturer": "NVIDIA",
            "memory": memory,
            "secure": True,
            "community": pool is None,
            "price": {"secure": round(price / 2.5, 2), "community": round(price / 3.5, 2)},
            "maxCount": {"secure": 8, "community": 4},
            "availability": availability if pool is not None else "NONE",
            "cudaVersions": [{"version": v, "available": True} for v in cuda],
        }
        if pool is not None:
            gpu["price"]["serverless"] = price
            gpu["dataCenters"] = [
                {"id": dc, "name": DATA_CENTER_NAMES[dc], "availability": availability} for dc in centers
            ]
        gpus.append(gpu)
    return copy.deepcopy(gpus)


AVAILABILITY_FIELDS = ("availability", "dataCenters", "cudaVersions")
