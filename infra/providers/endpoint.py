"""RunPod serverless endpoint as a Pulumi dynamic resource.

Behaviour, and why:

- **Full desired state on every save.** ``saveEndpoint`` is an upsert and a full replace: a field left out
  takes the SDL default (``workersMax: Int = 3``, ...). So create, update and the scale-down before delete all
  send every managed field (:func:`wire`), omitting only unset optional ones (never null).
- **Everything updates in place** (template, volume, GPUs, scaling): ``saveEndpoint`` with ``id``; RunPod
  rolls the workers. Nothing forces a replace.
- **Loose comparison where the server normalizes:** ``gpuIds``, ``locations`` and ``allowedCudaVersions``
  are comma lists that RunPod may reorder; they are compared as token sets (``locations`` case-insensitively),
  so a no-op ``up`` shows no diff. Everything else is compared exactly, so real drift shows: RunPod's idle
  scale-down lowers ``workersMax`` (to 2 after 3 idle days, 0 after 7), ``refresh`` records it and the next
  ``up`` restores the declared value.
- **check() cross-checks the config before any API call:** ``locations`` must include the volume's data
  center, ``gpuIds`` must be known pool ids, ``workersMin <= workersMax``, ``allowedCudaVersions`` like
  ``13.0``, and each field within the bounds ``infra.spec`` declares (``idleTimeout`` 1..3600, ``scalerValue``
  at least 1, ...: the stack config is checked against the same); each failure names the key and the fix.
- **CUDA:** ``allowedCudaVersions`` (a list here, a comma string on the wire) restricts the hosts RunPod
  places workers on; the program always sends it (the image needs CUDA 13). ``flashBootType`` is an enum
  (OFF, FLASHBOOT, PRIORITY_FLASHBOOT) sent as a variable, never as a quoted literal.
- **delete** first saves the full endpoint with ``workersMin = workersMax = 0`` (RunPod refuses to delete an
  endpoint with workers), then deletes with a few retries; "not found" at either step is success.
- **read** (refresh) returns an empty id when the endpoint is gone, so Pulumi drops it.
- **create is idempotent-ish:** endpoint names are not unique on RunPod, so only an endpoint with the same
  name *and* the same template (a crash between RunPod's create and Pulumi's state write) is adopted.
- **Several volumes:** ``networkVolumeIds`` (instead of ``networkVolumeId``) attaches one volume per data
  center (RunPod: at most one per data center; data is not synced between them), compared as a set; wire
  ``volumeDataCenterIds`` to their data centers for the cross-checks. The program attaches one volume (the
  model sync fills one); the provider supports several for a program that syncs each.
- ``volumeDataCenterId`` is an input for the cross-check only (wire it to the volume's ``dataCenterId``); it
  is not sent to RunPod and not part of the diff.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    UpdateResult,
)

from infra.providers.common import PROVIDER_KEY, RunPodProvider, as_int, bounds_failures, is_known, is_unknown
from infra.runpod_graphql import RunPodError, RunPodNotFoundError
from infra.spec import EndpointSpec, Prop, inputs, props

# docs: references/gpu-types (see shared/reference/runpod-api.md 2.6). "-<GPU type id>" tokens exclude a type.
GPU_POOLS = frozenset(
    {
        "AMPERE_16",
        "AMPERE_24",
        "ADA_24",
        "ADA_32_PRO",
        "AMPERE_48",
        "ADA_48_PRO",
        "AMPERE_80",
        "ADA_80_PRO",
        "HOPPER_141",
        "BLACKWELL_96",
        "BLACKWELL_180",
    }
)

# The configurable fields (infra.spec.EndpointSpec), then the inputs only the resource has (its template, the
# volumes; volumeDataCenterId(s) are for check() only and not part of the inputs compared or sent).
PROPS: tuple[Prop, ...] = (
    *props(EndpointSpec),
    Prop("templateId", "str", "required"),
    Prop("networkVolumeId", "str"),
    Prop("networkVolumeIds", "list", compare="set"),
)
REQUIRED = tuple(p.name for p in PROPS if p.presence == "required")
DEFAULTS: dict[str, Any] = {p.name: p.default for p in PROPS if p.presence == "default"}
INPUT_KEYS = tuple(p.name for p in PROPS)
INT_KEYS = tuple(p.name for p in PROPS if p.shape == "int")
LIST_KEYS = tuple(p.name for p in PROPS if p.shape == "list")
COMPARE = {p.name: p.compare for p in PROPS}
CUDA_VERSION = re.compile(r"^\d{2}\.\d$")


class EndpointApi(Protocol):
    """What the provider needs from RunPod; the GraphQL client implements it, a REST v2 client could too."""

    def list_endpoints(self) -> list[dict[str, Any]]: ...
    def get_endpoint(self, endpoint_id: str) -> dict[str, Any] | None: ...
    def save_endpoint(self, endpoint: Mapping[str, Any]) -> dict[str, Any]: ...
    def delete_endpoint(self, endpoint_id: str) -> None: ...


def _tokens(value: Any) -> list[str]:
    """A comma string or a list of strings as a list of stripped tokens, order kept."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(t).strip() for t in items if str(t).strip()]


def normalize(props: Mapping[str, Any]) -> dict[str, Any]:
    """Desired or stored endpoint in Pulumi's shape: defaults filled, ints cast, lists, no ``__provider``."""
    out = {k: props.get(k, DEFAULTS.get(k)) for k in INPUT_KEYS}
    out = {k: v for k, v in out.items() if v is not None}
    for key in INT_KEYS:
        if is_known(out.get(key)):
            out[key] = as_int(out[key])
    for key in LIST_KEYS:
        if is_known(out.get(key)):
            out[key] = _tokens(out[key])
    return out


def _loose(key: str, value: Any) -> Any:
    """The value as compared: lists RunPod may reorder (or re-case) as sets."""
    if COMPARE.get(key) == "set" and isinstance(value, list):
        return frozenset(value)
    if COMPARE.get(key) == "set-ci" and isinstance(value, list):
        return frozenset(v.upper() for v in value)
    return value


def changed_keys(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    old, new = normalize(olds), normalize(news)
    return [
        k
        for k in INPUT_KEYS
        if any(is_unknown(v) for v in _flat(new.get(k))) or _loose(k, old.get(k)) != _loose(k, new.get(k))
    ]


def _flat(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def wire(props: Mapping[str, Any], endpoint_id: str | None = None) -> dict[str, Any]:
    """The complete ``EndpointInput``: every managed field, lists as comma strings, unset ones omitted."""
    desired = normalize(props)
    payload: dict[str, Any] = {k: v for k, v in desired.items() if k not in LIST_KEYS}
    payload["gpuIds"] = ",".join(desired["gpuIds"])
    payload["locations"] = ",".join(desired.get("locations", []))
    if "allowedCudaVersions" in desired:
        payload["allowedCudaVersions"] = ",".join(desired["allowedCudaVersions"])
    if desired.get("networkVolumeId"):
        payload["networkVolumeId"] = desired["networkVolumeId"]
    if desired.get("networkVolumeIds"):
        payload["networkVolumeIds"] = [{"networkVolumeId": i} for i in desired["networkVolumeIds"]]
    if endpoint_id:
        payload["id"] = endpoint_id
    return payload


def outs_of(endpoint: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """Outputs: the live values (so drift shows), the read-only ``version``, the volume's data center."""
    live = {k: endpoint.get(k) for k in INPUT_KEYS}
    attached = [i for i in endpoint.get("networkVolumeIds") or [] if i and i.get("networkVolumeId")]
    ids = [str(i["networkVolumeId"]) for i in attached]
    # The read shape: networkVolumeIds [{networkVolumeId, dataCenterId}] even for one volume. Several volumes
    # (desired, or added in the console: drift) are reported as networkVolumeIds, one as networkVolumeId.
    live["networkVolumeIds"] = ids if props.get("networkVolumeIds") is not None or len(ids) > 1 else None
    if not live.get("networkVolumeId") and live["networkVolumeIds"] is None:
        live["networkVolumeId"] = ids[0] if ids else None
    outs = normalize(live)
    data_centers = [str(i["dataCenterId"]) for i in attached if i.get("dataCenterId")]
    data_center = next(iter(data_centers), None) or props.get("volumeDataCenterId")
    if is_known(data_center):
        outs["volumeDataCenterId"] = data_center
    if live["networkVolumeIds"] is not None:
        outs["volumeDataCenterIds"] = data_centers or props.get("volumeDataCenterIds") or []
    if endpoint.get("version") is not None:
        outs["version"] = int(endpoint["version"])
    return outs


def check_failures(news: Mapping[str, Any]) -> list[CheckFailure]:
    """Config cross-checks; each message names the key and the fix."""
    failures: list[CheckFailure] = []
    for key in REQUIRED:
        if news.get(key) is None:
            failures.append(CheckFailure(key, f"{key} is required"))
    name = news.get("name")
    if is_known(name) and (not isinstance(name, str) or len(name.strip()) < 3):
        failures.append(CheckFailure("name", "name must be a string of at least 3 characters"))
    ints: dict[str, int] = {}
    for key in INT_KEYS:
        value = news.get(key, DEFAULTS.get(key))
        if is_known(value):
            try:
                ints[key] = as_int(value)
            except ValueError as exc:
                failures.append(CheckFailure(key, f"{key}: {exc}"))
    failures += bounds_failures(PROPS, {**{k: v for k, v in news.items() if k not in INT_KEYS}, **ints})
    low, high = ints.get("workersMin"), ints.get("workersMax")
    if low is not None and high is not None and low > high:
        failures.append(
            CheckFailure(
                "workersMin",
                f"workersMin ({low}) exceeds workersMax ({high}): lower workersMin or raise workersMax",
            )
        )
    cuda = news.get("allowedCudaVersions")
    if is_known(cuda) and not any(is_unknown(t) for t in _flat(cuda)):
        tokens = _tokens(cuda)
        bad = [t for t in tokens if not CUDA_VERSION.match(t)]
        if bad or not tokens:
            failures.append(
                CheckFailure(
                    "allowedCudaVersions",
                    f"allowedCudaVersions: {', '.join(bad) or 'empty'} is not a list of CUDA versions "
                    "like 13.0",
                )
            )
    gpu_ids = news.get("gpuIds")
    if is_known(gpu_ids) and not any(is_unknown(t) for t in _flat(gpu_ids)):
        tokens = _tokens(gpu_ids)
        unknown = [t for t in tokens if not t.startswith("-") and t not in GPU_POOLS]
        if not [t for t in tokens if not t.startswith("-")]:
            failures.append(CheckFailure("gpuIds", "gpuIds needs at least one GPU pool id, e.g. ADA_24"))
        elif unknown:
            failures.append(
                CheckFailure(
                    "gpuIds",
                    f"unknown GPU pool id(s) {', '.join(unknown)}: use pool ids "
                    f"({', '.join(sorted(GPU_POOLS))}), not GPU type names; "
                    "exclude one type with '-<GPU type id>'",
                )
            )
    failures += _volume_failures(news)
    return failures


def _volume_failures(news: Mapping[str, Any]) -> list[CheckFailure]:
    """One volume or several (one per data center); locations must include each volume's data center."""
    failures: list[CheckFailure] = []
    several = news.get("networkVolumeIds")
    if news.get("networkVolumeId") is not None and several:
        failures.append(
            CheckFailure(
                "networkVolumeIds",
                "set networkVolumeId (one volume) or networkVolumeIds (several), not both",
            )
        )
    if several:
        centers = news.get("volumeDataCenterIds")
    elif news.get("networkVolumeId") is not None:
        centers = [news.get("volumeDataCenterId")]
    else:
        centers = None
    if not is_known(centers) or not isinstance(centers, list) or not all(is_known(c) for c in centers):
        return failures
    if several and len({str(c).upper() for c in centers}) != len(centers):
        failures.append(
            CheckFailure(
                "networkVolumeIds",
                "networkVolumeIds: RunPod attaches at most one volume per data center "
                f"({', '.join(map(str, centers))})",
            )
        )
    locations = news.get("locations")
    if is_known(locations) and not any(is_unknown(t) for t in _flat(locations)):
        wanted = {t.upper() for t in _tokens(locations)}
        missing = [str(c) for c in centers if wanted and str(c).upper() not in wanted]
        if missing:
            failures.append(
                CheckFailure(
                    "locations",
                    f"locations ({', '.join(sorted(wanted))}) must include the network volume's data center "
                    f"{', '.join(missing)}: add it, or leave locations empty",
                )
            )
    return failures


class EndpointProvider(RunPodProvider):
    """CRUD for one RunPod serverless endpoint; see the module docstring for the why."""

    # Class attributes are not pickled (the class is pickled by reference); tests shorten them.
    delete_attempts: ClassVar[int] = 4
    delete_retry_s: ClassVar[float] = 3.0

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = {k: v for k, v in news.items() if k != PROVIDER_KEY}
        failures = check_failures(news)
        if not failures:
            for key in INT_KEYS:
                if is_known(inputs.get(key)):
                    inputs[key] = as_int(inputs[key])
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=bool(changed_keys(olds, news)), replaces=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        with self.client() as api:
            same = [
                e
                for e in api.list_endpoints()
                if e.get("name") == props["name"] and e.get("templateId") == props["templateId"]
            ]
            existing = same[0]["id"] if len(same) == 1 else None
            if existing:
                pulumi.log.info(f"adopting existing RunPod endpoint {existing} ({props['name']})")
            saved = api.save_endpoint(wire(props, existing))
        return CreateResult(str(saved["id"]), outs_of(saved, props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with self.client() as api:
            endpoint = api.get_endpoint(id_)
        if endpoint is None:
            return ReadResult("", {})
        outs = outs_of(endpoint, props)
        return ReadResult(id_, outs, {k: v for k, v in outs.items() if k != "version"})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        with self.client() as api:
            saved = api.save_endpoint(wire(news, id_))
        return UpdateResult(outs_of(saved, news))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with self.client() as api:
            try:
                # A full save (a partial one would reset fields), with no workers: RunPod's precondition.
                api.save_endpoint(wire({**props, "workersMin": 0, "workersMax": 0}, id_))
            except RunPodNotFoundError:
                pulumi.log.info(f"RunPod endpoint {id_} was already gone")
                return
            self._delete_with_retries(api, id_)

    def _delete_with_retries(self, api: EndpointApi, id_: str) -> None:
        for attempt in range(1, self.delete_attempts + 1):
            try:
                api.delete_endpoint(id_)
                return
            except RunPodNotFoundError:
                pulumi.log.info(f"RunPod endpoint {id_} was already gone")
                return
            except RunPodError as exc:
                if attempt == self.delete_attempts:
                    raise
                pulumi.log.info(
                    f"RunPod endpoint {id_}: delete refused ({exc.message}); "
                    f"retry in {self.delete_retry_s:.0f}s"
                )
                time.sleep(self.delete_retry_s)


class Endpoint(Resource, module="runpod", name="Endpoint"):
    """A RunPod serverless endpoint. Type token ``pulumi-python:dynamic/runpod:Endpoint`` (do not change)."""

    name: pulumi.Output[str]
    templateId: pulumi.Output[str]
    gpuIds: pulumi.Output[list[str]]
    workersMin: pulumi.Output[int]
    workersMax: pulumi.Output[int]
    networkVolumeId: pulumi.Output[str]
    networkVolumeIds: pulumi.Output[list[str]]
    locations: pulumi.Output[list[str]]
    allowedCudaVersions: pulumi.Output[list[str]]
    flashBootType: pulumi.Output[str]
    version: pulumi.Output[int]

    def __init__(
        self,
        resource_name: str,
        spec: EndpointSpec,
        *,
        template_id: pulumi.Input[str],
        network_volume_id: pulumi.Input[str] | None = None,
        volume_data_center_id: pulumi.Input[str] | None = None,
        network_volume_ids: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None,
        volume_data_center_ids: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None,
        locations: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``spec``: the configurable fields; ``locations`` replaces ``spec.locations`` (e.g. with the
        volume's data center, an Output)."""
        props = {
            **inputs(EndpointSpec, spec),
            "templateId": template_id,
            "networkVolumeId": network_volume_id,
            "volumeDataCenterId": volume_data_center_id,
            "networkVolumeIds": network_volume_ids,
            "volumeDataCenterIds": volume_data_center_ids,
            "version": None,
        }
        if locations is not None:
            props["locations"] = locations
        super().__init__(EndpointProvider(), resource_name, props, opts)
