"""The emulated RunPod account: objects plus the business rules the GraphQL schema cannot express.

Rules come from tests/fixtures/runpod/README.md (copied from the shared reference), plus three from the shared
RunPod API reference (sections 2.4, 2.2): CUDA versions are RunPod's known ones (11.8 .. 13.0),
``networkVolumeId`` and ``networkVolumeIds`` are exclusive, one volume per data center. Each violated rule
raises
``RunPodRuleError`` with a message worded like RunPod's; the server turns it into a GraphQL error (HTTP 200).
Deleting something unknown raises a "... not found" message, which clients are expected to treat as success.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DATA_CENTERS = ("EU-RO-1", "EU-CZ-1", "EUR-IS-1", "US-KS-2", "US-CA-2", "US-GA-2", "US-IL-1", "CA-MTL-1")
VOLUME_MIN_GB, VOLUME_MAX_GB = 10, 4096
# CUDA versions RunPod knows (shared reference 2.4: minCudaVersion "11.8" through "13.0").
CUDA_VERSIONS = ("11.8", *(f"12.{minor}" for minor in range(10)), "13.0")
TEMPLATE_GRACE_S = 120.0


class RunPodRuleError(Exception):
    """A request that is valid GraphQL but that RunPod refuses."""


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value.strip()) < 3:
        raise RunPodRuleError(f"{what} name must be at least 3 characters")
    return value


def _full_replace(data: dict[str, Any]) -> dict[str, Any]:
    """An upsert stores exactly the coerced input: graphql-core leaves absent fields out and fills the
    schema's defaults (``workersMax: Int = 3``), so a field the client did not send is reset, as on RunPod."""
    return dict(data)


@dataclass
class Account:
    """All objects of one RunPod account. Thread-safe: the HTTP server answers from several threads."""

    clock: Callable[[], float] = time.monotonic
    template_grace_s: float = TEMPLATE_GRACE_S
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    template_last_used: dict[str, float] = field(default_factory=dict)
    registry_auths: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    # ── network volumes ───────────────────────────────────────────────────────────────────────────────────

    def create_volume(self, data: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            name = _name(data.get("name"), "Network volume")
            size = self._size(data.get("size"))
            dc = data.get("dataCenterId")
            if dc not in DATA_CENTERS:
                raise RunPodRuleError(f"Data center {dc} does not support network volumes")
            volume = {
                "id": self.new_id("vol"),
                "name": name,
                "size": size,
                "dataCenterId": dc,
                "storageClusterId": f"{dc}-cluster",
                "storageType": "MOOSE_FS",
            }
            self.volumes[volume["id"]] = volume
            return dict(volume)

    def update_volume(self, data: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            volume = self._volume(data["id"])
            if data.get("name") is not None:
                volume["name"] = _name(data["name"], "Network volume")
            if data.get("size") is not None:
                size = self._size(data["size"])
                if size < volume["size"]:
                    raise RunPodRuleError(
                        "Network volume size can only be increased "
                        f"(current {volume['size']} GB, asked {size} GB)"
                    )
                volume["size"] = size
            return dict(volume)

    def delete_volume(self, volume_id: str) -> None:
        with self.lock:
            self._volume(volume_id)
            users = [e["id"] for e in self.endpoints.values() if volume_id in _endpoint_volume_ids(e)]
            if users:
                raise RunPodRuleError(
                    f"Network volume {volume_id} is in use by endpoint(s) {', '.join(users)}"
                )
            del self.volumes[volume_id]

    def _volume(self, volume_id: str) -> dict[str, Any]:
        if volume_id not in self.volumes:
            raise RunPodRuleError(f"Network volume {volume_id} not found")
        return self.volumes[volume_id]

    @staticmethod
    def _size(value: Any) -> int:
        if not isinstance(value, int) or not VOLUME_MIN_GB <= value <= VOLUME_MAX_GB:
            raise RunPodRuleError(
                f"Network volume size must be between {VOLUME_MIN_GB} and {VOLUME_MAX_GB} GB"
            )
        return value

    # ── templates ─────────────────────────────────────────────────────────────────────────────────────────

    def save_template(self, data: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            name = _name(data.get("name"), "Template")
            template_id = data.get("id")
            if template_id is not None and template_id not in self.templates:
                raise RunPodRuleError(f"Template {template_id} not found")
            if any(t["name"] == name and t["id"] != template_id for t in self.templates.values()):
                raise RunPodRuleError(f"Template name must be unique: {name!r} is already taken")
            template = _full_replace(data)
            template["id"] = template_id or self.new_id("tpl")
            template.setdefault("isServerless", False)
            self.templates[template["id"]] = template
            return dict(template)

    def delete_template(self, name: str) -> None:
        with self.lock:
            matches = [t for t in self.templates.values() if t["name"] == name]
            if not matches:
                raise RunPodRuleError(f"Template {name} not found")
            template_id = matches[0]["id"]
            if any(e.get("templateId") == template_id for e in self.endpoints.values()):
                raise RunPodRuleError("Template is in use by a serverless endpoint and cannot be deleted")
            last = self.template_last_used.get(template_id)
            if last is not None and self.clock() - last < self.template_grace_s:
                raise RunPodRuleError("Template was recently in use; try again in a few minutes")
            del self.templates[template_id]

    # ── container registry auth ───────────────────────────────────────────────────────────────────────────

    def save_registry_auth(self, data: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            name = _name(data.get("name"), "Registry auth")
            if any(a["name"] == name for a in self.registry_auths.values()):
                raise RunPodRuleError(f"Registry auth name must be unique: {name!r} is already taken")
            auth = {
                "id": self.new_id("cra"),
                "name": name,
                "username": data["username"],
                "password": data["password"],
            }
            self.registry_auths[auth["id"]] = auth
            return {"id": auth["id"], "name": name}

    def update_registry_auth(self, data: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            auth = self.registry_auths.get(data["id"])
            if auth is None:
                raise RunPodRuleError(f"Registry auth {data['id']} not found")
            auth |= {"username": data["username"], "password": data["password"]}
            return {"id": auth["id"], "name": auth["name"]}

    def delete_registry_auth(self, auth_id: str) -> None:
        with self.lock:
            if auth_id not in self.registry_auths:
                raise RunPodRuleError(f"Registry auth {auth_id} not found")
            if any(t.get("containerRegistryAuthId") == auth_id for t in self.templates.values()):
                raise RunPodRuleError("Registry auth is in use by a template and cannot be deleted")
            del self.registry_auths[auth_id]

    # ── endpoints ─────────────────────────────────────────────────────────────────────────────────────────

    def save_endpoint(self, data: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            _name(data.get("name"), "Endpoint")
            endpoint_id = data.get("id")
            if endpoint_id is not None and endpoint_id not in self.endpoints:
                raise RunPodRuleError(f"Endpoint {endpoint_id} not found")
            if data.get("template") is not None and data.get("templateId") is not None:
                raise RunPodRuleError("Provide either template or templateId, not both")
            endpoint = _full_replace(data)
            endpoint.pop("template", None)
            if data.get("template") is not None:
                inline = self.save_template({**data["template"], "isServerless": True})
                endpoint["templateId"] = inline["id"]
            template_id = endpoint.get("templateId")
            if template_id is None or template_id not in self.templates:
                raise RunPodRuleError(f"Template {template_id} not found")
            if (endpoint.get("scalerValue") or 0) < 1:
                raise RunPodRuleError("scalerValue must be at least 1")
            if not 1 <= (endpoint.get("idleTimeout") or 0) <= 3600:
                raise RunPodRuleError("idleTimeout must be between 1 and 3600 seconds")
            if endpoint.get("workersMin", 0) > endpoint.get("workersMax", 0):
                raise RunPodRuleError("workersMin cannot exceed workersMax")
            cuda = [v.strip() for v in (endpoint.get("allowedCudaVersions") or "").split(",") if v.strip()]
            minimum = endpoint.get("minCudaVersion")
            unknown = [v for v in [*cuda, *([minimum] if minimum else [])] if v not in CUDA_VERSIONS]
            if unknown:
                raise RunPodRuleError(
                    f"Invalid CUDA version {', '.join(unknown)}: use one of {', '.join(CUDA_VERSIONS)}"
                )
            if endpoint.get("networkVolumeId") and endpoint.get("networkVolumeIds"):
                raise RunPodRuleError("Provide either networkVolumeId or networkVolumeIds, not both")
            volume_centers = [self._volume(v)["dataCenterId"] for v in _endpoint_volume_ids(endpoint)]
            if len(volume_centers) != len(set(volume_centers)):
                raise RunPodRuleError("An endpoint can attach at most one network volume per data center")
            locations = {loc.strip() for loc in (endpoint.get("locations") or "").split(",") if loc.strip()}
            for volume_id in _endpoint_volume_ids(endpoint):
                volume = self._volume(volume_id)
                if locations and volume["dataCenterId"] not in locations:
                    raise RunPodRuleError(
                        "Endpoint locations must include the network volume's data center "
                        f"{volume['dataCenterId']}"
                    )
            previous = self.endpoints.get(endpoint_id or "")
            if previous is not None and previous.get("templateId") != template_id:
                self.template_last_used[previous["templateId"]] = self.clock()
            endpoint["id"] = endpoint_id or self.new_id("ep")
            endpoint["version"] = (previous or {}).get("version", -1) + 1
            self.endpoints[endpoint["id"]] = endpoint
            return self.endpoint_view(endpoint)

    def delete_endpoint(self, endpoint_id: str) -> None:
        with self.lock:
            endpoint = self.endpoints.get(endpoint_id)
            if endpoint is None:
                raise RunPodRuleError(f"Endpoint {endpoint_id} not found")
            if endpoint.get("workersMin") or endpoint.get("workersMax"):
                raise RunPodRuleError("Endpoint workersMin and workersMax must be 0 before it can be deleted")
            self.template_last_used[endpoint["templateId"]] = self.clock()
            del self.endpoints[endpoint_id]

    def import_rest(self, source: Any) -> None:
        """Take over the objects of a REST v2 emulator account (``tests.runpod_rest_emulator.Account``), ids
        kept: the same RunPod backend seen through GraphQL, for a switch from REST back to GraphQL. Written
        from the two APIs' shapes, independently of the clients' mapping."""
        with self.lock, source.lock:
            for v in source.volumes.values():
                self.volumes[v["id"]] = {
                    "id": v["id"],
                    "name": v["name"],
                    "size": v["size"],
                    "dataCenterId": v["dataCenter"],
                    "storageClusterId": f"{v['dataCenter']}-cluster",
                    "storageType": "MOOSE_FS",
                }
            for r in source.registries.values():
                self.registry_auths[r["id"]] = dict(r)
            for t in source.templates.values():
                self.templates[t["id"]] = {
                    "id": t["id"],
                    "name": t["name"],
                    "imageName": t["image"],
                    "containerDiskInGb": t["disk"],
                    "dockerArgs": t["args"],
                    "env": [{"key": k, "value": v} for k, v in sorted(t["env"].items())],
                    "isServerless": t["serverless"],
                    "containerRegistryAuthId": t["registry"],
                    "volumeInGb": 0,
                }
            for e in source.endpoints.values():
                gpu, workers, scaling = e["gpu"], e["workers"], e["scaling"]
                volumes = list(e["networkVolumes"])
                endpoint = {
                    "id": e["id"],
                    "name": e["name"],
                    "templateId": source.bound_templates.get(e["id"]),
                    "gpuIds": ",".join([*gpu["pools"], *(f"-{t}" for t in gpu.get("excludedTypes") or [])]),
                    "gpuCount": gpu["count"],
                    "allowedCudaVersions": ",".join(gpu["allowedCudaVersions"]),
                    "workersMin": workers["min"],
                    "workersMax": workers["max"],
                    "idleTimeout": workers.get("idleTimeout", 5),
                    "locations": ",".join(e["dataCenterIds"]),
                    "scalerType": scaling["type"],
                    "scalerValue": scaling.get("queueDelay", scaling.get("requestCount")),
                    "executionTimeoutMs": e["timeout"],
                    "flashBootType": e["flashboot"],
                    "version": source.endpoint_version(e["id"]),
                }
                if gpu.get("minCudaVersion"):
                    endpoint["minCudaVersion"] = gpu["minCudaVersion"]
                if len(volumes) == 1:
                    endpoint["networkVolumeId"] = volumes[0]
                elif volumes:
                    endpoint["networkVolumeIds"] = [{"networkVolumeId": v} for v in volumes]
                self.endpoints[e["id"]] = endpoint
            taken = [
                int(m)
                for i in (*self.volumes, *self.templates, *self.endpoints, *self.registry_auths)
                if (m := "".join(c for c in i if c.isdigit()))
            ]
            self._ids = itertools.count(max([next(self._ids), *taken]) + 1)

    def endpoint_view(self, endpoint: dict[str, Any]) -> dict[str, Any]:
        """The read shape: ``networkVolumeIds`` carries data centers, unlike the write shape."""
        view = dict(endpoint)
        ids = endpoint.get("networkVolumeIds")
        if ids is not None:
            view["networkVolumeIds"] = [
                {
                    "networkVolumeId": i["networkVolumeId"],
                    "dataCenterId": self.volumes[i["networkVolumeId"]]["dataCenterId"],
                }
                for i in ids
                if i["networkVolumeId"] in self.volumes
            ]
        return view


def _endpoint_volume_ids(endpoint: dict[str, Any]) -> list[str]:
    ids = [i["networkVolumeId"] for i in endpoint.get("networkVolumeIds") or [] if i]
    if endpoint.get("networkVolumeId"):
        ids.append(endpoint["networkVolumeId"])
    return ids
