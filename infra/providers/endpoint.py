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

Over REST v2 (``runpodApi: rest``, the default; ``infra.runpod_api``) the semantics differ, and so does the
provider (same inputs, same state, same id: switching transports replaces nothing):

- **The endpoint owns its container settings** (``imageName``, ``env``, ``containerDiskInGb``,
  ``dockerArgs``, ``containerRegistryAuthId``: inputs here, the same values the template gets). The template
  only seeds them at creation (``templateId`` is sent on create, and again if it changes), so a new image
  digest or a changed ``templateEnv`` rolls the workers by PATCHing the endpoint (a new release), as the
  template's save does over GraphQL. ``env`` may hold secrets: a secret output, its values redacted from
  errors. Over GraphQL these inputs are not sent; they are kept in state (and compared once state has them)
  so that a later switch to REST shows no diff.
- **PATCH is partial:** update sends exactly ``runpod_rest_shapes.endpoint_patch(olds, news)``, and diff is
  that patch being non-empty (so diff and update agree on what a field left unset means: RunPod's default).
  refresh reads every managed field (workers, scaling, idle timeout, flashboot, CUDA set, env, image, disk,
  registry, volumes, data centers): drift in any of them is a diff.
- ``templateId`` is not in a REST answer: state keeps the input's. ``version`` is read from the releases.
- **delete** needs no scale-down (RunPod's DELETE terminates the workers); it also deletes the template the
  endpoint was created from (the Template provider treats that as done).
- **adoption** after a crash between create and the state write: an endpoint with the same name *and* image
  (no ``templateId`` to match on); the client itself recovers a create whose answer was lost.
- **preflight** (check(), REST only): the GPU settings against RunPod's live catalog (``infra.preflight``),
  read once per provider process and never stored; the check-only input ``preflight`` names the config keys
  and the stack's data center. A refusal names the key and the fix; low stock is a warning.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

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

from infra import preflight
from infra.providers.common import PROVIDER_KEY, RunPodProvider, as_int, bounds_failures, is_known, is_unknown
from infra.runpod_api import RunPodApi
from infra.runpod_graphql import RunPodError, RunPodNotFoundError
from infra.runpod_rest import RunPodREST
from infra.runpod_rest_shapes import ENDPOINT_KEYS, ENDPOINT_UNSET, endpoint_patch
from infra.spec import EndpointSpec, Prop, TemplateSpec, inputs, props

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

# The container settings a REST endpoint owns: the template's fields (infra.spec.TemplateSpec) but its name,
# and the wiring the template gets too (image, args, registry credential).
CONTAINER_PROPS: tuple[Prop, ...] = (
    *(p for p in props(TemplateSpec) if p.name != "name"),
    Prop("imageName", "str"),
    Prop("dockerArgs", "str", "default", ""),
    Prop("containerRegistryAuthId", "str"),
)
CONTAINER_KEYS = tuple(p.name for p in CONTAINER_PROPS)
# The configurable fields (infra.spec.EndpointSpec), then the inputs only the resource has (its template, the
# volumes, the container settings; volumeDataCenterId(s) and preflight are for check() only and not part of
# the inputs compared or sent).
PROPS: tuple[Prop, ...] = (
    *props(EndpointSpec),
    Prop("templateId", "str", "required"),
    Prop("networkVolumeId", "str"),
    Prop("networkVolumeIds", "list", compare="set"),
    *CONTAINER_PROPS,
)
PREFLIGHT_KEY = "preflight"  # check-only: {dataCenterId, gpuIds, allowedCudaVersions} (config key paths)
REQUIRED = tuple(p.name for p in PROPS if p.presence == "required")
DEFAULTS: dict[str, Any] = {p.name: p.default for p in PROPS if p.presence == "default"}
INPUT_KEYS = tuple(p.name for p in PROPS)
INT_KEYS = tuple(p.name for p in PROPS if p.shape == "int")
LIST_KEYS = tuple(p.name for p in PROPS if p.shape == "list")
COMPARE = {p.name: p.compare for p in PROPS}
CUDA_VERSION = re.compile(r"^\d{2}\.\d$")


# The GPU catalog, read once per provider process (one `pulumi preview`/`up`): RunPod URL -> GpuType list.
# Never an input or output, so never in state.
CATALOG_CACHE: dict[str, list[dict[str, Any]]] = {}


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
    env = out.get("env")
    if isinstance(env, list):  # the read shape [{key, value}]
        out["env"] = {e["key"]: e["value"] for e in env if e}
    return out


def _loose(key: str, value: Any) -> Any:
    """The value as compared: lists RunPod may reorder (or re-case) as sets."""
    if COMPARE.get(key) == "set" and isinstance(value, list):
        return frozenset(value)
    if COMPARE.get(key) == "set-ci" and isinstance(value, list):
        return frozenset(v.upper() for v in value)
    return value


def changed_keys(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """The inputs that differ (GraphQL's diff). A field left unset is RunPod's default (``ENDPOINT_UNSET``,
    as over REST), so a live value equal to that default is no change: e.g. ``executionTimeoutMs`` unset
    against the 300000 that REST reads back after a switch."""
    old, new = normalize(olds), normalize(news)
    return [
        k
        for k in INPUT_KEYS
        if any(is_unknown(v) for v in _flat(new.get(k)))
        or (
            _loose(k, old.get(k)) != _loose(k, new.get(k))
            and not (k not in new and k in ENDPOINT_UNSET and old.get(k) == ENDPOINT_UNSET[k])
        )
    ]


def _flat(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def wire(props: Mapping[str, Any], endpoint_id: str | None = None) -> dict[str, Any]:
    """The complete GraphQL ``EndpointInput``: every managed field, lists as comma strings, unset ones
    omitted (the container settings are the template's over GraphQL)."""
    desired = normalize(props)
    payload: dict[str, Any] = {
        k: v for k, v in desired.items() if k not in LIST_KEYS and k not in CONTAINER_KEYS
    }
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


def rest_fields(props: Mapping[str, Any]) -> dict[str, Any]:
    """The endpoint in the REST client's field names (``runpod_rest_shapes.ENDPOINT_KEYS``), no ``id``:
    the GraphQL fields and the container settings."""
    desired = normalize(props)
    return wire(props) | {k: desired[k] for k in CONTAINER_KEYS if k in desired}


def rest_patch(olds: Mapping[str, Any], news: Mapping[str, Any]) -> dict[str, Any]:
    """What an update sends over REST: exactly ``endpoint_patch`` between the old and new desired state."""
    return endpoint_patch(rest_fields(olds), rest_fields(news))


def outs_of(endpoint: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """Outputs: the live values (so drift shows), the read-only ``version``, the volume's data center.

    What the answer lacks comes from ``props``: ``templateId`` (never in a REST answer) and the container
    settings (not in a GraphQL answer: the template's)."""
    live = {k: endpoint.get(k) for k in INPUT_KEYS}
    if live.get("templateId") is None:
        live["templateId"] = props.get("templateId")
    for key in CONTAINER_KEYS:
        if key not in endpoint:
            live[key] = props.get(key)
    attached = [i for i in endpoint.get("networkVolumeIds") or [] if i and i.get("networkVolumeId")]
    ids = [str(i["networkVolumeId"]) for i in attached]
    # The read shape: networkVolumeIds [{networkVolumeId, dataCenterId}] even for one volume. Several volumes
    # (desired, or added in the console: drift) are reported as networkVolumeIds, one as networkVolumeId.
    live["networkVolumeIds"] = ids if props.get("networkVolumeIds") is not None or len(ids) > 1 else None
    if not live.get("networkVolumeId") and live["networkVolumeIds"] is None:
        live["networkVolumeId"] = ids[0] if ids else None
    outs = normalize(live)
    for key in CONTAINER_KEYS:  # GraphQL state from before these inputs: keep them out (no default filled)
        if key not in endpoint and props.get(key) is None:
            outs.pop(key, None)
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


def _env_values(props: Mapping[str, Any]) -> list[str]:
    """The env values, to redact from errors (a RunPod error may echo the body it refused)."""
    env = props.get("env")
    return [str(v) for v in env.values() if is_known(v)] if isinstance(env, dict) else []


def _has_unknowns(news: Mapping[str, Any]) -> bool:
    return any(is_unknown(v) for k in INPUT_KEYS for v in _flat(news.get(k)))


class EndpointProvider(RunPodProvider):
    """CRUD for one RunPod serverless endpoint; see the module docstring for the why."""

    # Class attributes are not pickled (the class is pickled by reference); tests shorten them.
    delete_attempts: ClassVar[int] = 4
    delete_retry_s: ClassVar[float] = 3.0

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = {k: v for k, v in news.items() if k not in (PROVIDER_KEY, PREFLIGHT_KEY)}
        failures = check_failures(news)
        if self.rest and news.get("imageName") is None:
            failures.append(
                CheckFailure("imageName", "imageName is required over REST v2 (the endpoint owns its image)")
            )
        if not failures:
            for key in INT_KEYS:
                if is_known(inputs.get(key)):
                    inputs[key] = as_int(inputs[key])
            if self.rest:
                failures += self._preflight(news)
        return CheckResult(inputs, failures)

    def _preflight(self, news: Mapping[str, Any]) -> list[CheckFailure]:
        """The GPU settings against RunPod's catalog (REST only); see the module docstring."""
        asked = news.get(PREFLIGHT_KEY)
        gpu_ids, cuda = news.get("gpuIds"), news.get("allowedCudaVersions") or []
        if not isinstance(asked, dict) or not all(is_known(v) for v in (*asked.values(), gpu_ids, cuda)):
            return []
        if any(is_unknown(t) for t in (*_flat(gpu_ids), *_flat(cuda))):
            return []
        keys = preflight.Keys(
            gpu_ids=str(asked.get("gpuIds") or "gpuIds"),
            cuda=str(asked.get("allowedCudaVersions") or "allowedCudaVersions"),
            data_center=str(asked.get("dataCenterKey") or "dataCenterId"),
        )
        try:
            catalog = self._catalog()
        except (RunPodError, RuntimeError) as exc:
            pulumi.log.warn(f"preflight skipped: RunPod's GPU catalog could not be read ({exc})")
            return []
        result = preflight.check_gpu_catalog(
            catalog,
            gpu_ids=_tokens(gpu_ids),
            allowed_cuda_versions=_tokens(cuda),
            data_center_id=str(asked["dataCenterId"]) if asked.get("dataCenterId") else None,
            keys=keys,
        )
        for warning in result.warnings:
            pulumi.log.warn(warning)
        props = {keys.gpu_ids: "gpuIds", keys.cuda: "allowedCudaVersions", keys.data_center: "locations"}
        return [CheckFailure(props.get(e.split(":", 1)[0], "gpuIds"), e) for e in result.errors]

    def _catalog(self) -> list[dict[str, Any]]:
        with self.client() as api:
            if not isinstance(api, RunPodREST):
                return []
            if api.url not in CATALOG_CACHE:
                CATALOG_CACHE[api.url] = api.list_gpu_types()
            return CATALOG_CACHE[api.url]

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        if self.rest:
            changes = _has_unknowns(news) or bool(rest_patch(olds, news))
            return DiffResult(changes=changes, replaces=[], delete_before_replace=False)
        # GraphQL: the container settings are compared once state holds them (the template applies them).
        changed = [k for k in changed_keys(olds, news) if k not in CONTAINER_KEYS or k in olds]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        if self.rest:
            return self._create_rest(props)
        with self.client(_env_values(props)) as api:
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

    def _create_rest(self, props: dict[str, Any]) -> CreateResult:
        desired = rest_fields(props)
        with self.client(_env_values(props)) as api:
            same = [
                e
                for e in api.list_endpoints()
                if e.get("name") == desired["name"] and e.get("imageName") == desired.get("imageName")
            ]
            if len(same) == 1:
                endpoint_id = str(same[0]["id"])
                pulumi.log.info(f"adopting existing RunPod endpoint {endpoint_id} ({desired['name']})")
                managed = set(ENDPOINT_KEYS) - {"id", "templateId"}
                live = {k: v for k, v in same[0].items() if k in managed}
                patch = endpoint_patch(live, desired)
                if patch:
                    api.save_endpoint({"id": endpoint_id, **patch})
            else:
                endpoint_id = str(api.save_endpoint(desired)["id"])
            endpoint = self._get(api, endpoint_id)
        return CreateResult(endpoint_id, outs_of(endpoint, props))

    @staticmethod
    def _get(api: RunPodApi, endpoint_id: str) -> dict[str, Any]:
        """The endpoint as RunPod has it now (over REST with ``version`` from its releases)."""
        endpoint = api.get_endpoint(endpoint_id)
        if endpoint is None:
            raise RunPodNotFoundError("getEndpoint", f"endpoint {endpoint_id} not found", status=404)
        return endpoint

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with self.client() as api:
            endpoint = api.get_endpoint(id_)
        if endpoint is None:
            return ReadResult("", {})
        outs = outs_of(endpoint, props)
        return ReadResult(id_, outs, {k: v for k, v in outs.items() if k != "version"})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        with self.client(_env_values(news)) as api:
            if self.rest:  # partial: exactly the changed fields (a new image or env: a new release)
                patch = rest_patch(olds, news)
                if patch:
                    api.save_endpoint({"id": id_, **patch})
                saved = self._get(api, id_)
            else:
                saved = api.save_endpoint(wire(news, id_))
        return UpdateResult(outs_of(saved, news))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with self.client() as api:
            if not self.rest:
                try:
                    # A full save (a partial one would reset fields), with no workers: RunPod's precondition.
                    api.save_endpoint(wire({**props, "workersMin": 0, "workersMax": 0}, id_))
                except RunPodNotFoundError:
                    pulumi.log.info(f"RunPod endpoint {id_} was already gone")
                    return
            # REST: DELETE terminates the workers itself (and deletes the template it was created from).
            self._delete_with_retries(api, id_)

    def _delete_with_retries(self, api: RunPodApi, id_: str) -> None:
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
    imageName: pulumi.Output[str]
    env: pulumi.Output[dict[str, str]]
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
        image_name: pulumi.Input[str] | None = None,
        container: TemplateSpec | None = None,
        env_secret: bool = False,
        docker_args: pulumi.Input[str] = "",
        container_registry_auth_id: pulumi.Input[str] | None = None,
        preflight_keys: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``spec``: the configurable fields; ``locations`` replaces ``spec.locations`` (e.g. with the
        volume's data center, an Output). The container settings (the template's: ``image_name``,
        ``container``'s disk and env, ``env_secret`` as for the template, ``docker_args``, the registry
        credential) are the endpoint's own over REST. ``preflight_keys``: ``dataCenterId`` (the stack's) and
        the config key paths the catalog check's messages name (check-only; see the module docstring)."""
        own: dict[str, Any] = {}
        if container is not None:
            own = {k: v for k, v in inputs(TemplateSpec, container).items() if k in CONTAINER_KEYS}
            own["env"] = pulumi.Output.secret(own["env"]) if env_secret else own["env"]
        props = {
            **inputs(EndpointSpec, spec),
            **own,
            "imageName": image_name,
            "dockerArgs": docker_args,
            "containerRegistryAuthId": container_registry_auth_id,
            PREFLIGHT_KEY: dict(preflight_keys) if preflight_keys is not None else None,
            "templateId": template_id,
            "networkVolumeId": network_volume_id,
            "volumeDataCenterId": volume_data_center_id,
            "networkVolumeIds": network_volume_ids,
            "volumeDataCenterIds": volume_data_center_ids,
            "version": None,
        }
        if locations is not None:
            props["locations"] = locations
        # env may hold secrets (and RunPod echoes it back over REST): always a secret output.
        secret = pulumi.ResourceOptions(additional_secret_outputs=["env"])
        super().__init__(EndpointProvider(), resource_name, props, pulumi.ResourceOptions.merge(opts, secret))
