"""The one place that maps between the providers' field names and RunPod REST API v2 shapes.

Why a mapping at all: the dynamic providers were written against GraphQL and speak its field names
(``imageName``, ``gpuIds: "ADA_24,-NVIDIA L40"``, ``workersMax``, ``dataCenterId``, ``env: [{key, value}]``).
The REST v2 client (``infra.runpod_rest``) keeps those names at its interface, so the providers can switch
transport without a rename, and translates here, in both directions. Every body built here is checked
against ``tests/fixtures/runpod/openapi-v2.json`` in a unit test.

Field by field (provider name -> REST v2 name), per RunPod's OpenAPI description:

- volume: ``dataCenterId`` -> ``dataCenter``; ``size``; ``name``; new ``type`` (STANDARD | HIGH_PERFORMANCE).
- template: ``imageName`` -> ``image``, ``containerDiskInGb`` -> ``disk``, ``dockerArgs`` -> ``args``,
  ``containerRegistryAuthId`` -> ``registry``, ``isServerless`` -> ``serverless``, ``env`` list -> object,
  ``volumeInGb``/``volumeMountPath`` -> ``mounts.persistent`` (0 GB: no mount), ``readme``: no REST field.
- endpoint: ``gpuIds`` (pool ids, ``-<type id>`` tokens excluded) -> ``gpu.pools`` + ``gpu.excludedTypes``;
  ``gpuCount`` -> ``gpu.count``; ``allowedCudaVersions`` (comma list) / ``minCudaVersion`` -> ``gpu.*``;
  ``workersMin``/``workersMax``/``idleTimeout`` -> ``workers.{min,max,idleTimeout}``;
  ``scalerType``/``scalerValue`` -> ``scaling {type, queueDelay | requestCount}``; ``locations`` ->
  ``dataCenterIds``; ``networkVolumeId``/``networkVolumeIds`` -> ``networkVolumes``; ``executionTimeoutMs``
  -> ``timeout``; ``flashBootType`` -> ``flashboot``; and the container settings the REST endpoint owns
  (``imageName``, ``env``, ``containerDiskInGb``, ``dockerArgs``, ``containerRegistryAuthId``, as on a
  template).
  REST has no ``templateId`` in the answer (a template only seeds the endpoint) and no ``version`` (the
  client reads it from the releases).

Bodies carry exactly the keys given (PATCH is partial): a key given as ``None`` clears the value where the
spec allows a clear (``registry: null``, ``dataCenterIds: []``, ``networkVolumes: []``, ``gpu.minCudaVersion:
""``, ``gpu.allowedCudaVersions: []``) and is an error where it does not. Unknown keys are a ``ValueError``
naming them: REST bodies are strict (``unevaluatedProperties: false``), so a typo fails here, not as a 422.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

ENDPOINT_TYPE: Final = "QUEUE"
SCALER_VALUE_KEYS: Final = {"QUEUE_DELAY": "queueDelay", "REQUEST_COUNT": "requestCount"}

# ── small helpers ──────────────────────────────────────────────────────────────────────────────────────────


def tokens(value: Any) -> list[str]:
    """A comma string or a list as a list of stripped, non-empty strings (order kept)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(t).strip() for t in items if str(t).strip()]


def _unknown(given: Iterable[str], known: Iterable[str], what: str) -> None:
    extra = sorted(set(given) - set(known))
    if extra:
        raise ValueError(
            f"{what}: {', '.join(extra)} has no REST v2 field (known: {', '.join(sorted(known))})"
        )


def env_object(env: Any) -> dict[str, str]:
    """``[{key, value}]`` (GraphQL) or ``{NAME: value}`` as the REST object; values as strings."""
    if env is None:
        return {}
    if isinstance(env, Mapping):
        return {str(k): str(v) for k, v in env.items()}
    return {str(e["key"]): str(e["value"]) for e in env if e}


def env_list(env: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """The REST object as the GraphQL list the providers read (sorted: order-free)."""
    return [{"key": k, "value": str(v)} for k, v in sorted((env or {}).items())]


def _whole(value: Any) -> Any:
    """4.0 -> 4: REST's ``queueDelay`` is a number, the providers compare whole numbers."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# ── network volumes ────────────────────────────────────────────────────────────────────────────────────────

VOLUME_TYPES: Final = ("STANDARD", "HIGH_PERFORMANCE")


def volume_create_body(
    *, name: str, size: int, data_center_id: str, volume_type: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "size": int(size), "dataCenter": data_center_id}
    if volume_type is not None:
        if volume_type not in VOLUME_TYPES:
            raise ValueError(f"volume type {volume_type!r} is not one of {', '.join(VOLUME_TYPES)}")
        body["type"] = volume_type
    return body


def volume_update_body(*, name: str | None, size: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if size is not None:
        body["size"] = int(size)
    if not body:
        raise ValueError("a volume update needs name or size (REST refuses an empty body)")
    return body


def volume_from_rest(volume: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": volume["id"],
        "name": volume["name"],
        "size": int(volume["size"]),
        "dataCenterId": volume["dataCenter"],
        "type": volume.get("type"),
    }


# ── templates ──────────────────────────────────────────────────────────────────────────────────────────────

# Container settings shared by templates and endpoints: provider name -> REST name.
CONTAINER_FIELDS: Final[Mapping[str, str]] = {
    "imageName": "image",
    "containerDiskInGb": "disk",
    "dockerArgs": "args",
    "env": "env",
    "containerRegistryAuthId": "registry",
}
TEMPLATE_KEYS: Final = (
    "id",
    "name",
    *CONTAINER_FIELDS,
    "isServerless",
    "volumeInGb",
    "volumeMountPath",
    "readme",
    "allowedCudaVersions",
)


def _container_body(fields: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, rest in CONTAINER_FIELDS.items():
        if key not in fields:
            continue
        value = fields[key]
        if key == "env":
            body["env"] = env_object(value)
        elif key == "containerRegistryAuthId":
            body["registry"] = value or None  # null clears the credential
        elif value is None:
            raise ValueError(f"{key} cannot be cleared over REST v2; give a value")
        elif key == "containerDiskInGb":
            body["disk"] = int(value)
        else:
            body[rest] = str(value)
    return body


def template_body(fields: Mapping[str, Any], *, create: bool) -> dict[str, Any]:
    """``CreateTemplateRequest`` or ``UpdateTemplateRequest`` from provider-named fields (``id`` ignored)."""
    _unknown(fields, TEMPLATE_KEYS, "template")
    if fields.get("readme"):
        raise ValueError("template readme has no REST v2 field; leave it unset")
    body = _container_body(fields)
    if "name" in fields:
        body["name"] = str(fields["name"])
    if "isServerless" in fields:
        body["serverless"] = bool(fields["isServerless"])
    size = int(fields.get("volumeInGb") or 0)
    if size:
        body["mounts"] = {
            "persistent": {"size": size, "path": str(fields.get("volumeMountPath") or "/workspace")}
        }
    if "allowedCudaVersions" in fields:
        body["allowedCudaVersions"] = tokens(fields["allowedCudaVersions"])
    if create:
        missing = [k for k, rest in (("name", "name"), ("imageName", "image")) if rest not in body]
        if missing:
            raise ValueError(f"template: {', '.join(missing)} is required to create a template")
        if body.get("registry") is None:
            body.pop("registry", None)
        # Pod-only conveniences that default to true and would inject env (PUBLIC_KEY, JUPYTER_PASSWORD).
        body.setdefault("startSsh", False)
        body.setdefault("startJupyter", False)
    return body


def template_from_rest(template: Mapping[str, Any]) -> dict[str, Any]:
    persistent = (template.get("mounts") or {}).get("persistent") or {}
    return {
        "id": template["id"],
        "name": template["name"],
        "imageName": template.get("image"),
        "containerDiskInGb": template.get("disk"),
        "dockerArgs": template.get("args", ""),
        "env": env_list(template.get("env")),
        "isServerless": bool(template.get("serverless")),
        "containerRegistryAuthId": template.get("registry"),
        "volumeInGb": int(persistent.get("size") or 0),
        "volumeMountPath": persistent.get("path"),
        "readme": None,
        "allowedCudaVersions": ",".join(template.get("allowedCudaVersions") or []),
    }


# ── endpoints ──────────────────────────────────────────────────────────────────────────────────────────────

ENDPOINT_KEYS: Final = (
    "id",
    "name",
    "templateId",
    "gpuIds",
    "gpuCount",
    "allowedCudaVersions",
    "minCudaVersion",
    "workersMin",
    "workersMax",
    "idleTimeout",
    "scalerType",
    "scalerValue",
    "locations",
    "networkVolumeId",
    "networkVolumeIds",
    "executionTimeoutMs",
    "flashBootType",
    *CONTAINER_FIELDS,
)


def split_gpu_ids(gpu_ids: Any) -> tuple[list[str], list[str]]:
    """``"ADA_24,-NVIDIA L40"`` -> (pools, excluded GPU type ids)."""
    items = tokens(gpu_ids)
    return [t for t in items if not t.startswith("-")], [t[1:].strip() for t in items if t.startswith("-")]


def _volume_ids(fields: Mapping[str, Any]) -> list[str]:
    ids = [
        str(i["networkVolumeId"]) for i in fields.get("networkVolumeIds") or [] if i and isinstance(i, dict)
    ]
    ids += [str(i) for i in fields.get("networkVolumeIds") or [] if i and not isinstance(i, dict)]
    if fields.get("networkVolumeId"):
        ids.insert(0, str(fields["networkVolumeId"]))
    return list(dict.fromkeys(ids))


def endpoint_body(fields: Mapping[str, Any], *, create: bool) -> dict[str, Any]:
    """``CreateEndpointRequest`` (``type: QUEUE``) or a partial ``UpdateEndpointRequest``.

    Only the given keys are sent. ``scalerType`` and ``scalerValue`` travel together (REST's ``scaling`` is
    one object), so give both or neither; ``id`` is ignored (it is the URL)."""
    _unknown(fields, ENDPOINT_KEYS, "endpoint")
    body = _container_body(fields)
    if "name" in fields:
        body["name"] = str(fields["name"])
    if fields.get("templateId"):
        body["templateId"] = str(fields["templateId"])
    gpu: dict[str, Any] = {}
    if "gpuIds" in fields:
        pools, excluded = split_gpu_ids(fields["gpuIds"])
        if not pools:
            raise ValueError("gpuIds needs at least one GPU pool id, e.g. ADA_24")
        gpu["pools"] = pools
        if excluded or not create:  # a PATCH with pools replaces the exclusions: state them
            gpu["excludedTypes"] = list(dict.fromkeys(excluded))
    if fields.get("gpuCount") is not None:
        gpu["count"] = int(fields["gpuCount"])
    if "allowedCudaVersions" in fields:
        gpu["allowedCudaVersions"] = tokens(fields["allowedCudaVersions"])
    if "minCudaVersion" in fields:
        floor = fields["minCudaVersion"]
        if floor:
            gpu["minCudaVersion"] = str(floor)
        elif not create:
            gpu["minCudaVersion"] = ""  # "" clears the floor
    if gpu:
        body["gpu"] = gpu
    workers = {
        rest: int(fields[key])
        for key, rest in (("workersMin", "min"), ("workersMax", "max"), ("idleTimeout", "idleTimeout"))
        if fields.get(key) is not None
    }
    if workers:
        body["workers"] = workers
    has_type, has_value = fields.get("scalerType") is not None, fields.get("scalerValue") is not None
    if has_type != has_value:
        raise ValueError(
            "scalerType and scalerValue go together over REST v2 (one scaling object): give both"
        )
    if has_type:
        scaler = str(fields["scalerType"])
        if scaler not in SCALER_VALUE_KEYS:
            raise ValueError(f"scalerType {scaler!r} is not one of {', '.join(SCALER_VALUE_KEYS)}")
        value = fields["scalerValue"]
        body["scaling"] = {"type": scaler, SCALER_VALUE_KEYS[scaler]: value}
    if "locations" in fields:
        body["dataCenterIds"] = tokens(fields["locations"])
    if "networkVolumeId" in fields or "networkVolumeIds" in fields:
        body["networkVolumes"] = _volume_ids(fields)
    if fields.get("executionTimeoutMs") is not None:
        body["timeout"] = int(fields["executionTimeoutMs"])
    if fields.get("flashBootType") is not None:
        body["flashboot"] = str(fields["flashBootType"])
    if create:
        missing = [k for k in ("name", "gpuIds", "scalerType") if fields.get(k) is None]
        if "image" not in body and "templateId" not in body:
            missing.append("imageName (or templateId)")
        if missing:
            raise ValueError(f"endpoint: {', '.join(missing)} is required to create an endpoint")
        body["type"] = ENDPOINT_TYPE
        for key in ("dataCenterIds", "networkVolumes"):
            if body.get(key) == []:
                del body[key]
        if body.get("registry") is None:
            body.pop("registry", None)
    return body


def endpoint_from_rest(endpoint: Mapping[str, Any], version: int | None = None) -> dict[str, Any]:
    """A REST ``Endpoint`` in the providers' (GraphQL) names; ``templateId`` is absent over REST."""
    gpu = endpoint.get("gpu") or {}
    workers = endpoint.get("workers") or {}
    scaling = endpoint.get("scaling") or {}
    scaler = scaling.get("type")
    volumes = [str(v) for v in endpoint.get("networkVolumes") or []]
    pools = list(gpu.get("pools") or [])
    excluded = [f"-{t}" for t in gpu.get("excludedTypes") or []]
    out: dict[str, Any] = {
        "id": endpoint["id"],
        "name": endpoint["name"],
        "templateId": None,
        "gpuIds": ",".join(pools + excluded),
        "gpuCount": gpu.get("count"),
        "allowedCudaVersions": ",".join(gpu.get("allowedCudaVersions") or []),
        "minCudaVersion": gpu.get("minCudaVersion"),
        "workersMin": workers.get("min"),
        "workersMax": workers.get("max"),
        "idleTimeout": workers.get("idleTimeout"),
        "scalerType": scaler,
        "scalerValue": _whole(scaling.get(SCALER_VALUE_KEYS.get(str(scaler), ""))),
        "locations": ",".join(endpoint.get("dataCenterIds") or []),
        "networkVolumeId": volumes[0] if len(volumes) == 1 else None,
        "networkVolumeIds": [{"networkVolumeId": v} for v in volumes],
        "executionTimeoutMs": endpoint.get("timeout"),
        "flashBootType": endpoint.get("flashboot"),
        "imageName": endpoint.get("image"),
        "env": env_list(endpoint.get("env")),
        "containerDiskInGb": endpoint.get("disk"),
        "dockerArgs": endpoint.get("args"),
        "containerRegistryAuthId": endpoint.get("registry"),
        "version": version,
    }
    return out


# ── registry credentials ───────────────────────────────────────────────────────────────────────────────────


def registry_from_rest(registry: Mapping[str, Any]) -> dict[str, Any]:
    """Id and name only: REST never returns the username or password (write-only)."""
    return {"id": registry["id"], "name": registry["name"]}
