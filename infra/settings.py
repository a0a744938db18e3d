"""The stack config as one typed, validated object (``StackSettings``), read before any resource is declared.

Every problem is collected (not just the first) and reported in one ``ConfigError`` whose lines each name the
config key and the fix, e.g. ``workersMin: 4 exceeds workersMax 2; run `pulumi config set workersMax 4```.
The keys and defaults are declared in Pulumi.yaml too (a test keeps the two in step).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pulumi

from infra.providers.endpoint import GPU_POOLS
from infra.providers.network_volume import MAX_SIZE_GB, MIN_SIZE_GB

DIGEST_REF = re.compile(r"^[a-z0-9][a-z0-9._\-/:]*@sha256:[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\- ]{2,}$")
T = TypeVar("T")


class ConfigError(ValueError):
    """Invalid stack config; ``problems`` lists one line per key, each naming the fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid stack config:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class StackSettings:
    data_center_id: str = "EU-RO-1"
    volume_name: str = "comfy-models"
    volume_size_gb: int = 100
    volume_protect: bool = True
    image_ref: str | None = None
    image_repository: str | None = None
    template_name: str = "comfy-runpod"
    container_disk_gb: int = 20
    registry_auth_id: str | None = None
    registry_username: str | None = None
    endpoint_name: str = "comfy-runpod"
    gpu_ids: tuple[str, ...] = ("ADA_24", "AMPERE_48")
    locations: tuple[str, ...] = ()
    workers_min: int = 0
    workers_max: int = 3
    idle_timeout_s: int = 5
    execution_timeout_ms: int | None = None


# Secret keys: never read into StackSettings (the program reads registryPassword as a secret Output).
SECRET_KEYS = ("runpodApiKey", "registryPassword")
# Pulumi.yaml key -> StackSettings field (the API key is read by the providers, not here).
CONFIG_FIELDS: dict[str, str] = {
    "dataCenterId": "data_center_id",
    "volumeName": "volume_name",
    "volumeSizeGb": "volume_size_gb",
    "volumeProtect": "volume_protect",
    "imageRef": "image_ref",
    "imageRepository": "image_repository",
    "templateName": "template_name",
    "containerDiskGb": "container_disk_gb",
    "registryAuthId": "registry_auth_id",
    "registryUsername": "registry_username",
    "endpointName": "endpoint_name",
    "gpuIds": "gpu_ids",
    "locations": "locations",
    "workersMin": "workers_min",
    "workersMax": "workers_max",
    "idleTimeoutS": "idle_timeout_s",
    "executionTimeoutMs": "execution_timeout_ms",
}


def _set(key: str, example: str) -> str:
    return f"run `pulumi config set {key} {example}`"


class _Reader:
    def __init__(self, config: pulumi.Config) -> None:
        self.config = config
        self.problems: list[str] = []

    def get(self, key: str, parse: Callable[[str], T], kind: str, example: str, default: T) -> T:
        raw = self.config.get(key)
        if raw is None:
            return default
        try:
            return parse(raw)
        except (ValueError, TypeError):
            self.problems.append(f"{key}: {raw!r} is not {kind}; {_set(key, example)}")
            return default


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(raw)
    return lowered == "true"


def _string_list(raw: str) -> tuple[str, ...]:
    value: Any = json.loads(raw)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(raw)
    return tuple(v.strip() for v in value if v.strip())


def load_settings(config: pulumi.Config) -> StackSettings:
    """Read and validate the stack config; raise ``ConfigError`` listing every problem."""
    d = StackSettings()
    r = _Reader(config)
    s = StackSettings(
        data_center_id=r.get("dataCenterId", str, "a data center id", "EU-RO-1", d.data_center_id),
        volume_name=r.get("volumeName", str, "a name", "comfy-models", d.volume_name),
        volume_size_gb=r.get("volumeSizeGb", int, "a whole number of GB", "100", d.volume_size_gb),
        volume_protect=r.get("volumeProtect", _bool, "true or false", "true", d.volume_protect),
        image_ref=r.get("imageRef", str, "an image reference", "REPO@sha256:DIGEST", d.image_ref),
        image_repository=r.get(
            "imageRepository", str, "a repository", "ghcr.io/USER/comfy-runpod", d.image_repository
        ),
        template_name=r.get("templateName", str, "a name", "comfy-runpod", d.template_name),
        container_disk_gb=r.get("containerDiskGb", int, "a whole number of GB", "20", d.container_disk_gb),
        registry_auth_id=r.get("registryAuthId", str, "a registry auth id", "ID", d.registry_auth_id),
        registry_username=r.get("registryUsername", str, "a user name", "USER", d.registry_username),
        endpoint_name=r.get("endpointName", str, "a name", "comfy-runpod", d.endpoint_name),
        gpu_ids=r.get(
            "gpuIds", _string_list, "a JSON list of strings", "--path 'gpuIds[0]' ADA_24", d.gpu_ids
        ),
        locations=r.get(
            "locations", _string_list, "a JSON list of strings", "--path 'locations[0]' EU-RO-1", d.locations
        ),
        workers_min=r.get("workersMin", int, "a whole number", "0", d.workers_min),
        workers_max=r.get("workersMax", int, "a whole number", "3", d.workers_max),
        idle_timeout_s=r.get("idleTimeoutS", int, "a whole number of seconds", "5", d.idle_timeout_s),
        execution_timeout_ms=r.get(
            "executionTimeoutMs", int, "a whole number of ms", "600000", d.execution_timeout_ms
        ),
    )
    p = r.problems
    if not MIN_SIZE_GB <= s.volume_size_gb <= MAX_SIZE_GB:
        p.append(
            f"volumeSizeGb: {s.volume_size_gb} is outside {MIN_SIZE_GB}..{MAX_SIZE_GB}; "
            + _set("volumeSizeGb", "100")
        )
    for key, value in (
        ("volumeName", s.volume_name),
        ("templateName", s.template_name),
        ("endpointName", s.endpoint_name),
    ):
        if not NAME.match(value):
            p.append(
                f"{key}: {value!r} needs 3+ letters, digits, '.', '_', '-' or spaces; "
                + _set(key, "comfy-runpod")
            )
    if s.image_ref is None and s.image_repository is None:
        p.append(
            "imageRef: no image; "
            + _set("imageRef", "REGISTRY/REPO@sha256:DIGEST")
            + " (a prebuilt image), or "
            + _set("imageRepository", "ghcr.io/USER/comfy-runpod")
            + " to build image/Dockerfile with Docker and push it"
        )
    elif s.image_ref is None and not re.match(r"^[a-z0-9][a-z0-9._\-/:]*$", s.image_repository or ""):
        p.append(
            f"imageRepository: {s.image_repository!r} is not a repository name (lower case, no tag); "
            + _set("imageRepository", "ghcr.io/USER/comfy-runpod")
        )
    elif s.image_ref is not None and not DIGEST_REF.match(s.image_ref):
        p.append(
            f"imageRef: {s.image_ref!r} is not pinned by digest (workers must all run the same image); "
            + _set("imageRef", "REGISTRY/REPO@sha256:DIGEST")
            + " (`docker buildx imagetools inspect REF` shows the digest)"
        )
    has_password = config.get_secret("registryPassword") is not None
    if s.registry_username and not has_password:
        p.append(
            "registryPassword: missing for registryUsername; "
            "run `pulumi config set --secret registryPassword ...`"
        )
    if has_password and not s.registry_username:
        p.append(f"registryUsername: missing for registryPassword; {_set('registryUsername', 'USER')}")
    if s.registry_auth_id and (s.registry_username or has_password):
        p.append(
            "registryAuthId: set together with registryUsername/registryPassword; use one: "
            "`pulumi config rm registryAuthId` (Pulumi then manages the credential) or remove the other two"
        )
    if s.container_disk_gb < 5:
        p.append(f"containerDiskGb: {s.container_disk_gb} is below 5 GB; {_set('containerDiskGb', '20')}")
    unknown = [g for g in s.gpu_ids if not g.startswith("-") and g not in GPU_POOLS]
    if unknown or not [g for g in s.gpu_ids if not g.startswith("-")]:
        p.append(
            f"gpuIds: {', '.join(unknown) or 'no pool'} is not a RunPod GPU pool id (known: "
            f"{', '.join(sorted(GPU_POOLS))}); {_set('--path gpuIds[0]', 'ADA_24')}"
        )
    if s.locations and s.data_center_id.upper() not in {loc.upper() for loc in s.locations}:
        p.append(
            f"locations: {', '.join(s.locations)} must include the volume's data center {s.data_center_id}; "
            f"add it (`pulumi config set --path 'locations[{len(s.locations)}]' {s.data_center_id}`) "
            "or `pulumi config rm locations`"
        )
    if s.workers_min < 0:
        p.append(f"workersMin: must be 0 or more; {_set('workersMin', '0')}")
    if s.workers_min > s.workers_max:
        p.append(
            f"workersMin: {s.workers_min} exceeds workersMax {s.workers_max}; "
            f"{_set('workersMax', str(s.workers_min))} or lower workersMin"
        )
    if not 1 <= s.idle_timeout_s <= 3600:
        p.append(f"idleTimeoutS: {s.idle_timeout_s} is outside 1..3600 seconds; {_set('idleTimeoutS', '5')}")
    if s.execution_timeout_ms is not None and s.execution_timeout_ms < 0:
        p.append(f"executionTimeoutMs: must be 0 (no limit) or more; {_set('executionTimeoutMs', '600000')}")
    if p:
        raise ConfigError(p)
    return s
