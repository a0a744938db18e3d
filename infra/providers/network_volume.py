"""RunPod network volume as a Pulumi dynamic resource.

Why a dynamic provider: the official native RunPod provider downloads its plugin from GitHub and the older one
does no drift detection; the volume is simple enough to manage over GraphQL ourselves.

Behaviour, and why:

- **create is idempotent.** A volume with the same name in the same data center is *adopted*, not duplicated:
  a crash between RunPod's create and Pulumi's state write (or a 5xx on a create that RunPod applied) would
  otherwise leave an orphan that costs money and holds nothing. An adopted volume smaller than asked is grown.
- **size only grows.** RunPod refuses shrinking; ``check`` (and ``diff``, for drift) refuse it at preview with
  a clear message rather than failing halfway through ``up``.
- **dataCenterId replaces.** RunPod cannot move a volume; a different data center is a new volume (``protect``
  the resource to turn that into an error rather than a data loss).
- **volumeType** (REST's ``type``: ``STANDARD`` | ``HIGH_PERFORMANCE``) is optional and immutable: a change
  replaces (an error under ``protect``). Unset, it is not compared, so stacks from before it existed show
  no diff; a state without it (GraphQL never reports it) counts as ``STANDARD``, the only type GraphQL
  creates. Over GraphQL a ``HIGH_PERFORMANCE`` volume is refused by check().
- **read** returns an empty id when the volume is gone, so ``refresh`` drops it.
- **delete** treats "not found" as success.
- **The API key** comes from the secret stack config ``runpodApiKey`` (env ``RUNPOD_API_KEY`` as a fallback),
  read in ``configure()``, which runs in the provider process after unpickling: it is never an input, never in
  state, never pickled. No HTTP client is held on ``self`` either (an ``SSLContext`` cannot be pickled).
- The module is free of side effects and the class is importable, so dill pickles it *by reference*.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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

from infra.providers.common import PROVIDER_KEY, RunPodProvider, as_int, is_known, is_unknown
from infra.runpod_api import RunPodApi
from infra.runpod_graphql import RunPodNotFoundError
from infra.runpod_rest import RunPodREST
from infra.runpod_rest_shapes import VOLUME_TYPES

MIN_SIZE_GB, MAX_SIZE_GB = 10, 4096
INPUT_KEYS = ("name", "size", "dataCenterId")
TYPE_KEY = "volumeType"
DEFAULT_TYPE = "STANDARD"  # RunPod's default, and what every GraphQL-created volume is


class VolumeShrinkError(ValueError):
    """Raised when the desired size is below the volume's current size."""


def shrink_message(current: int, desired: int) -> str:
    return (
        f"size cannot shrink from {current} GB to {desired} GB: RunPod network volumes only grow. "
        "Keep the size, or create a new volume under another resource name and move the data."
    )


def _clean(props: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only our input keys, with numbers as ints; ``__provider`` never leaves this module."""
    out = {k: props[k] for k in INPUT_KEYS if props.get(k) is not None}
    if is_known(out.get("size")):
        out["size"] = as_int(out["size"])
    return out


def _outs(volume: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """The live volume; its ``type`` as read (REST), else as asked (GraphQL cannot read it)."""
    outs = {"name": volume["name"], "size": int(volume["size"]), "dataCenterId": volume["dataCenterId"]}
    kind = volume.get("type") or props.get(TYPE_KEY)
    if kind:
        outs[TYPE_KEY] = kind
    return outs


def _type_changed(olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
    """Only a set ``type`` is compared; a state without one holds a STANDARD volume."""
    wanted = news.get(TYPE_KEY)
    if wanted is None:
        return False
    return is_unknown(wanted) or (olds.get(TYPE_KEY) or DEFAULT_TYPE) != wanted


class NetworkVolumeProvider(RunPodProvider):
    """CRUD for one RunPod network volume; see the module docstring for the why."""

    def _api(self) -> RunPodApi:
        return self.client()

    # ── planning ──────────────────────────────────────────────────────────────────────────────────────────

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        inputs = {k: v for k, v in news.items() if k != PROVIDER_KEY}
        name = news.get("name")
        if is_known(name) and (not isinstance(name, str) or len(name.strip()) < 3):
            failures.append(CheckFailure("name", "name must be a string of at least 3 characters"))
        data_center = news.get("dataCenterId")
        if data_center is None:
            failures.append(CheckFailure("dataCenterId", "dataCenterId is required (e.g. EU-RO-1)"))
        elif is_known(data_center) and (not isinstance(data_center, str) or not data_center):
            failures.append(
                CheckFailure("dataCenterId", "dataCenterId must be a data center id (e.g. EU-RO-1)")
            )
        size = news.get("size")
        if size is None:
            failures.append(CheckFailure("size", "size (GB) is required"))
        elif is_known(size):
            try:
                inputs["size"] = size = as_int(size)
            except ValueError as exc:
                failures.append(CheckFailure("size", str(exc)))
            else:
                if not MIN_SIZE_GB <= size <= MAX_SIZE_GB:
                    failures.append(CheckFailure("size", f"size must be {MIN_SIZE_GB}..{MAX_SIZE_GB} GB"))
                old_size = _olds.get("size")
                if isinstance(old_size, int | float) and size < old_size:
                    failures.append(CheckFailure("size", shrink_message(int(old_size), size)))
        kind = news.get(TYPE_KEY)
        if is_known(kind) and kind not in VOLUME_TYPES:
            failures.append(CheckFailure(TYPE_KEY, f"volumeType must be one of {', '.join(VOLUME_TYPES)}"))
        elif is_known(kind) and kind != DEFAULT_TYPE and not self.rest:
            failures.append(
                CheckFailure(
                    TYPE_KEY,
                    f"volumeType {kind} needs RunPod's REST API: `pulumi config set runpodApi rest` "
                    "(GraphQL creates STANDARD volumes only)",
                )
            )
        if kind is None:
            inputs.pop(TYPE_KEY, None)
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        old, new = _clean(olds), _clean(news)
        changed = [k for k in INPUT_KEYS if is_unknown(new.get(k)) or old.get(k) != new.get(k)]
        old_size, new_size = old.get("size"), new.get("size")
        if isinstance(old_size, int) and isinstance(new_size, int) and new_size < old_size:
            # olds are the *outputs*: after a refresh they hold the live size, which check() never sees.
            raise VolumeShrinkError(shrink_message(old_size, new_size))
        replaces = [k for k in changed if k == "dataCenterId"]
        if _type_changed(olds, news):
            changed.append(TYPE_KEY)
            replaces.append(TYPE_KEY)  # immutable on RunPod: a new volume (refused while protected)
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    # ── CRUD ──────────────────────────────────────────────────────────────────────────────────────────────

    def create(self, props: dict[str, Any]) -> CreateResult:
        want = _clean(props)
        kind = props.get(TYPE_KEY)
        api = self._api()
        try:
            same = [
                v
                for v in api.list_network_volumes()
                if v.get("name") == want["name"] and v.get("dataCenterId") == want["dataCenterId"]
            ]
            if len(same) > 1:
                ids = ", ".join(sorted(str(v["id"]) for v in same))
                raise RuntimeError(
                    f"several RunPod volumes are named {want['name']!r} in {want['dataCenterId']} ({ids}); "
                    "delete or rename the extras, then run again"
                )
            if same:
                volume = same[0]
                if kind and (volume.get("type") or DEFAULT_TYPE) != kind:
                    raise RuntimeError(
                        f"RunPod volume {volume['id']} ({want['name']!r} in {want['dataCenterId']}) is "
                        f"{volume.get('type') or DEFAULT_TYPE}, not {kind}: set volumeType to its type, "
                        "or rename volumeName for a new volume"
                    )
                pulumi.log.info(f"adopting existing RunPod network volume {volume['id']} ({want['name']})")
                if int(volume["size"]) < want["size"]:
                    volume = api.update_network_volume(volume["id"], name=want["name"], size=want["size"])
            elif isinstance(api, RunPodREST):
                volume = api.create_network_volume(
                    name=want["name"],
                    size=want["size"],
                    data_center_id=want["dataCenterId"],
                    volume_type=kind,
                )
            else:
                volume = api.create_network_volume(
                    name=want["name"], size=want["size"], data_center_id=want["dataCenterId"]
                )
        finally:
            api.close()
        return CreateResult(str(volume["id"]), _outs(volume, props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        api = self._api()
        try:
            volume = next((v for v in api.list_network_volumes() if v.get("id") == id_), None)
        finally:
            api.close()
        if volume is None:
            return ReadResult("", {})
        outs = _outs(volume, props)
        return ReadResult(id_, outs, dict(outs))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        old, new = _clean(olds), _clean(news)
        if new["size"] < old.get("size", 0):
            raise VolumeShrinkError(shrink_message(old["size"], new["size"]))
        api = self._api()
        try:
            volume = api.update_network_volume(id_, name=new["name"], size=new["size"])
        finally:
            api.close()
        return UpdateResult(_outs(volume, news))

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        api = self._api()
        try:
            api.delete_network_volume(id_)
        except RunPodNotFoundError:
            pulumi.log.info(f"RunPod network volume {id_} was already gone")
        finally:
            api.close()


class NetworkVolume(Resource, module="runpod", name="NetworkVolume"):
    """A RunPod network volume. Type token ``pulumi-python:dynamic/runpod:NetworkVolume`` (do not change)."""

    name: pulumi.Output[str]
    size: pulumi.Output[int]
    dataCenterId: pulumi.Output[str]
    volumeType: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        size: pulumi.Input[int],
        data_center_id: pulumi.Input[str],
        volume_type: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``volume_type``: STANDARD or HIGH_PERFORMANCE (REST only); None keeps the volume's own."""
        props: dict[str, Any] = {"name": name, "size": size, "dataCenterId": data_center_id}
        if volume_type is not None:
            props[TYPE_KEY] = volume_type
        super().__init__(NetworkVolumeProvider(), resource_name, props, opts)
