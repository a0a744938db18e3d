"""The emulated RunPod account behind the REST v2 emulator: objects in REST shape, and the spec's rules.

The request and response *shapes* are checked by the server against ``openapi-v2.json``; this module applies
the rules the spec's descriptions state (each cites the operation whose description says it):

- exactly one of ``gpu`` / ``cpu`` on an endpoint (createEndpoint: 400); the compute family is fixed
  (updateEndpoint); CPU endpoints themselves are not emulated (a recorded violation, like any unemulated
  operation);
- a non-empty ``gpu.allowedCudaVersions`` and a ``gpu.minCudaVersion`` together are a 400, also after a PATCH
  merged them (UpdateEndpointGpuConfig: "Setting one does not clear the other");
- ``excludedTypes`` must be GPU types of the chosen pools, and leave one (BaseEndpointGpuConfig: 400);
  ``pools`` must be serverless pools of the catalog (400);
- ``templateId`` seeds the container settings (body wins, ``env`` merged per key; the template's CUDA set
  seeds the gpu block unless the body sets one or a floor); unknown template 404, pod template 422;
- ``idleTimeout`` with ``REQUEST_COUNT`` scaling on a queue endpoint is rejected (EndpointWorkers);
- a PATCH that changes anything creates a release (listEndpointReleases), version + 1, with a ``diff``;
  workers (placed by tests with ``add_worker``) keep their version until ``cycle_workers`` replaces them, so
  ``isStale``, the rollout summary and each release's ``workerCount`` follow (listEndpointWorkers); their
  logs (``log``) come back as Server-Sent Events with ``tail``, ``since``, ``source`` and ``Last-Event-ID``
  (getWorkerLogs; the stream ends after the backfill: no live tail);
- deleting an endpoint deletes its bound template (deleteEndpoint); a template bound to an endpoint cannot be
  deleted (deleteTemplate: 400);
- network volume ``size`` only grows (updateNetworkVolume: 400); ``type`` is immutable (the update schema has
  no such field: 422);
- registry credentials are write-only (never in an answer); deleting one nulls the ``registry`` of templates
  that reference it (deleteRegistry);
- catalog: ``product`` is required with ``include=AVAILABILITY`` and valid only with it (400 either way);
- serverless billing: charges recorded by tests (``charge``) summed into ``hour``/``day`` buckets over the
  window the spec describes (startTime snapped down, endTime snapped up, or the last N buckets; the two
  forms exclusive: 400), filtered by ``serverlessId``.

Two rules do not come from the REST spec: template names are unique per account (RunPod's backend, see
``tests/fixtures/runpod/README.md``), and a volume's data center must be one of the catalog's.
Errors are raised as ``Problem(status, detail)``; the server answers them as ``application/problem+json``.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.runpod_rest_emulator.catalog import AVAILABILITY_FIELDS, DATA_CENTER_NAMES, default_catalog
from tests.runpod_rest_emulator.volume_billing import NetworkVolumeBilling

JOB_API = "https://api.runpod.ai/v2"
CONTAINER_KEYS = ("image", "args", "disk", "ports", "env", "registry")
# Defaults the spec states (CreateEndpointRequest, CreateTemplateRequest, CreateNetworkVolumeRequest).
WORKER_DEFAULTS = {"min": 0, "max": 3, "idleTimeout": 10}
TEMPLATE_DISK_DEFAULT = 20  # not in the spec (disk has no default there); the console's default


class Problem(Exception):
    """An RFC 9457 problem the server answers with ``status``."""

    TITLES = {
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        409: "Conflict",
        422: "Unprocessable Entity",
        500: "Internal Server Error",
    }

    def __init__(self, status: int, detail: str, errors: list[str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"title": self.TITLES.get(self.status, "Error"), "status": self.status}
        body["detail"] = self.detail
        if self.errors:
            body["errors"] = self.errors
        return body


def _now() -> str:
    return _iso(datetime.now(UTC))


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


BUCKETS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
AMOUNTS = ("totalAmount", "gpuAmount", "cpuAmount", "diskAmount", "feeAmount")


def _snap(at: datetime, size: timedelta) -> datetime:
    """The start of the bucket ``at`` falls in (hour and day buckets are aligned to UTC midnight)."""
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + size * ((at - midnight) // size)


def _cuda_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"workers": {"max": 3}}`` -> ``{"workers.max": 3}`` (lists and env stay whole), for release diffs."""
    if isinstance(value, dict) and prefix != "env" and not prefix.endswith(".env"):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= _flatten(item, f"{prefix}.{key}" if prefix else key)
        return out
    return {prefix: value}


@dataclass
class Account(NetworkVolumeBilling):
    """All objects of one RunPod account, in the REST v2 response shapes. Thread-safe (a threaded server)."""

    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    # endpoint id -> id of the template it was created from ("bound"; deleted with the endpoint)
    bound_templates: dict[str, str] = field(default_factory=dict)
    releases: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # endpoint id -> its active workers (``Worker`` objects); tests place them with ``add_worker``
    workers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # worker id -> its log events {ts, source, line}, oldest first; tests append with ``log``
    worker_logs: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    _log_clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    charges: list[dict[str, Any]] = field(default_factory=list)  # for listServerlessBilling; see ``charge``
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    registries: dict[str, dict[str, Any]] = field(default_factory=dict)  # with the write-only credentials
    catalog: list[dict[str, Any]] = field(default_factory=default_catalog)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def dispatch(
        self,
        operation: str,
        path_params: Mapping[str, str],
        query: Mapping[str, str],
        body: Any,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Run one spec operation: ``(status, JSON body, SSE text or None)``; NotImplementedError if not
        emulated. ``headers``: the request's, lower-cased."""
        handler = getattr(self, f"op_{operation}", None)
        if handler is None:
            raise NotImplementedError(operation)
        with self.lock:
            result: tuple[int, Any] = handler(
                path_params=path_params, query=query, body=body, headers=headers or {}
            )
            return result

    # ── network volumes ───────────────────────────────────────────────────────────────────────────────────

    def op_listNetworkVolumes(self, **_: Any) -> tuple[int, Any]:
        return 200, {"networkVolumes": [dict(v) for v in self.volumes.values()]}

    def op_createNetworkVolume(self, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        if body["dataCenter"] not in DATA_CENTER_NAMES:
            raise Problem(400, f"data center {body['dataCenter']} does not exist or has no network storage")
        volume = {
            "id": self.new_id("vol"),
            "name": body["name"],
            "size": body["size"],
            "dataCenter": body["dataCenter"],
            "type": body.get("type", "STANDARD"),
        }
        self.volumes[volume["id"]] = volume
        return 201, dict(volume)

    def op_getNetworkVolume(self, *, path_params: Mapping[str, str], **_: Any) -> tuple[int, Any]:
        return 200, dict(self._volume(path_params["id"]))

    def op_updateNetworkVolume(
        self, *, path_params: Mapping[str, str], body: dict[str, Any], **_: Any
    ) -> tuple[int, Any]:
        volume = self._volume(path_params["id"])
        if "size" in body and body["size"] < volume["size"]:
            raise Problem(
                400,
                f"network volume size may only increase (current {volume['size']} GB, asked {body['size']})",
            )
        volume.update({k: body[k] for k in ("name", "size") if k in body})
        return 200, dict(volume)

    def op_deleteNetworkVolume(self, *, path_params: Mapping[str, str], **_: Any) -> tuple[int, Any]:
        self._volume(path_params["id"])
        del self.volumes[path_params["id"]]
        return 204, None

    def _volume(self, volume_id: str) -> dict[str, Any]:
        if volume_id not in self.volumes:
            raise Problem(404, f"network volume {volume_id} not found")
        return self.volumes[volume_id]

    # ── templates ─────────────────────────────────────────────────────────────────────────────────────────

    def op_listTemplates(self, **_: Any) -> tuple[int, Any]:
        return 200, {"templates": [self._template_view(t) for t in self.templates.values()]}

    def op_createTemplate(self, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        self._unique_template_name(body["name"], None)
        self._registry_ref(body.get("registry"))
        template = {
            "id": self.new_id("tpl"),
            "name": body["name"],
            "image": body["image"],
            "args": body.get("args", ""),
            "disk": body.get("disk", TEMPLATE_DISK_DEFAULT),
            "mounts": body.get("mounts", {}),
            "ports": body.get("ports", []),
            "env": body.get("env", {}),
            "registry": body.get("registry"),
            "serverless": body.get("serverless", False),
            "public": body.get("public", False),
            "category": body.get("category", "NVIDIA"),
            "startSsh": body.get("startSsh", True),
            "startJupyter": body.get("startJupyter", True),
            "allowedCudaVersions": body.get("allowedCudaVersions", []),
        }
        self.templates[template["id"]] = template
        return 201, self._template_view(template)

    def op_getTemplate(self, *, path_params: Mapping[str, str], **_: Any) -> tuple[int, Any]:
        return 200, self._template_view(self._template(path_params["id"]))

    def op_updateTemplate(
        self, *, path_params: Mapping[str, str], body: dict[str, Any], **_: Any
    ) -> tuple[int, Any]:
        template = self._template(path_params["id"])
        if "name" in body:
            self._unique_template_name(body["name"], template["id"])
        if "registry" in body:
            self._registry_ref(body["registry"])
        changes = dict(body)
        if changes.get("mounts") == {}:
            del changes["mounts"]  # "{} leaves the existing mount unchanged"
        template.update(changes)
        return 200, self._template_view(template)

    def op_deleteTemplate(self, *, path_params: Mapping[str, str], **_: Any) -> tuple[int, Any]:
        template = self._template(path_params["id"])
        bound = sorted(e for e, t in self.bound_templates.items() if t == template["id"])
        if bound:
            raise Problem(
                400,
                f"template {template['id']} is bound to serverless endpoint {', '.join(bound)} and cannot be "
                "deleted; deleting the endpoint deletes its bound template",
            )
        del self.templates[template["id"]]
        return 204, None

    def _template(self, template_id: str) -> dict[str, Any]:
        if template_id not in self.templates:
            raise Problem(404, f"template {template_id} not found")
        return self.templates[template_id]

    def _unique_template_name(self, name: str, own_id: str | None) -> None:
        if any(t["name"] == name and t["id"] != own_id for t in self.templates.values()):
            raise Problem(400, f"template name {name!r} is already taken (names are unique per account)")

    @staticmethod
    def _template_view(template: dict[str, Any]) -> dict[str, Any]:
        return {**template, "env": dict(template["env"]), "mounts": dict(template["mounts"])}

    # ── registry credentials ──────────────────────────────────────────────────────────────────────────────

    def op_listRegistries(self, **_: Any) -> tuple[int, Any]:
        return 200, {"registries": [self._registry_view(r) for r in self.registries.values()]}

    def op_createRegistry(self, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        registry = {"id": self.new_id("reg"), **body}
        self.registries[registry["id"]] = registry
        return 201, self._registry_view(registry)

    def op_getRegistry(self, *, path_params: Mapping[str, str], **_: Any) -> tuple[int, Any]:
        return 200, self._registry_view(self._registry(path_params["id"]))

    def op_deleteRegistry(self, *, path_params: Mapping[str, str], **_: Any) -> tuple[int, Any]:
        registry = self._registry(path_params["id"])
        for template in self.templates.values():
            if template.get("registry") == registry["id"]:
                template["registry"] = None  # "silently lose the reference"
        del self.registries[registry["id"]]
        return 204, None

    def _registry(self, registry_id: str) -> dict[str, Any]:
        if registry_id not in self.registries:
            raise Problem(404, f"registry {registry_id} not found")
        return self.registries[registry_id]

    def _registry_ref(self, registry_id: str | None) -> None:
        if registry_id is not None and registry_id not in self.registries:
            raise Problem(400, f"registry {registry_id} does not exist")

    @staticmethod
    def _registry_view(registry: dict[str, Any]) -> dict[str, Any]:
        return {"id": registry["id"], "name": registry["name"]}  # username/password are write-only

    # ── endpoints ─────────────────────────────────────────────────────────────────────────────────────────

    def op_listEndpoints(self, **_: Any) -> tuple[int, Any]:
        return 200, {"endpoints": [self._endpoint_view(e) for e in self.endpoints.values()]}

    def op_getEndpoint(self, *, path_params: Mapping[str, str], **_: Any) -> tuple[int, Any]:
        return 200, self._endpoint_view(self._endpoint(path_params["id"]))

    def op_createEndpoint(self, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        if ("gpu" in body) == ("cpu" in body):
            raise Problem(400, "specify exactly one of gpu or cpu")
        if "cpu" in body:
            raise NotImplementedError("createEndpoint with cpu")
        container: dict[str, Any] = {"args": "", "disk": TEMPLATE_DISK_DEFAULT, "ports": [], "env": {}}
        container["registry"] = None
        gpu_body = dict(body["gpu"])
        template_id = body.get("templateId")
        if template_id is not None:
            template = self._template(template_id)
            if not template["serverless"]:
                raise Problem(422, f"template {template_id} is not a serverless template")
            container |= {k: template[k] for k in CONTAINER_KEYS}
            if (
                "allowedCudaVersions" not in gpu_body
                and not gpu_body.get("minCudaVersion")
                and template["allowedCudaVersions"]
            ):
                gpu_body["allowedCudaVersions"] = list(template["allowedCudaVersions"])
        overrides = {k: body[k] for k in CONTAINER_KEYS if k in body}
        env = {**container["env"], **overrides.pop("env", {})}
        container |= overrides | {"env": env}
        self._registry_ref(container["registry"])
        gpu = {
            "pools": gpu_body["pools"],
            "count": gpu_body.get("count", 1),
            "allowedCudaVersions": gpu_body.get("allowedCudaVersions", []),
            "minCudaVersion": gpu_body.get("minCudaVersion") or None,
        }
        if gpu_body.get("excludedTypes"):
            gpu["excludedTypes"] = [t.strip() for t in gpu_body["excludedTypes"]]
        self._check_gpu(gpu)
        endpoint_id = self.new_id("ep")
        endpoint = {
            "id": endpoint_id,
            "name": body["name"],
            "type": body["type"],
            **container,
            "gpu": gpu,
            "workers": {**WORKER_DEFAULTS, **body.get("workers", {})},
            "scaling": body["scaling"],
            "dataCenterIds": list(body.get("dataCenterIds", [])),
            "networkVolumes": self._volume_refs(body.get("networkVolumes", [])),
            "timeout": body.get("timeout", 300000),
            "flashboot": body.get("flashboot", "OFF"),
            "createdAt": _now(),
        }
        self._settle_workers(endpoint, sent_idle="idleTimeout" in body.get("workers", {}))
        self.endpoints[endpoint_id] = endpoint
        if template_id is not None:
            self.bound_templates[endpoint_id] = template_id
        self.releases[endpoint_id] = [self._release(endpoint_id, 1, [])]
        return 201, self._endpoint_view(endpoint)

    def op_updateEndpoint(
        self, *, path_params: Mapping[str, str], body: dict[str, Any], **_: Any
    ) -> tuple[int, Any]:
        endpoint = self._endpoint(path_params["id"])
        if "cpu" in body:
            raise Problem(400, "cpu on a GPU endpoint: the compute family cannot change")
        before = _flatten(self._endpoint_view(endpoint))
        updated = {**endpoint, "gpu": dict(endpoint["gpu"]), "workers": dict(endpoint["workers"])}
        changes = dict(body)
        template_id = changes.pop("templateId", None)
        if template_id is not None:
            template = self._template(template_id)
            if not template["serverless"]:
                raise Problem(422, f"template {template_id} is not a serverless template")
            seeded = {k: template[k] for k in CONTAINER_KEYS}
            seeded["env"] = {**template["env"], **changes.get("env", {})}
            changes = {**seeded, **{k: v for k, v in changes.items() if k != "env"}}
        if "gpu" in changes:
            patch = changes.pop("gpu")
            gpu = updated["gpu"]
            if "pools" in patch:
                gpu["pools"] = patch["pools"]
                gpu.pop("excludedTypes", None)
                if patch.get("excludedTypes"):
                    gpu["excludedTypes"] = [t.strip() for t in patch["excludedTypes"]]
            if "count" in patch:
                gpu["count"] = patch["count"]
            if "allowedCudaVersions" in patch:
                gpu["allowedCudaVersions"] = patch["allowedCudaVersions"]
            if "minCudaVersion" in patch:
                gpu["minCudaVersion"] = patch["minCudaVersion"] or None
            self._check_gpu(gpu)
        if "workers" in changes:
            updated["workers"] |= changes.pop("workers")
        updated["scaling"] = changes.pop("scaling", updated["scaling"])
        self._settle_workers(updated, sent_idle="idleTimeout" in body.get("workers", {}))
        if "registry" in changes:
            self._registry_ref(changes["registry"])
        if "networkVolumes" in changes:
            changes["networkVolumes"] = self._volume_refs(changes["networkVolumes"])
        updated |= changes
        after = _flatten(self._endpoint_view(updated))
        diff = [
            {"field": key, "old": before.get(key), "new": after.get(key)}
            for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)
        ]
        self.endpoints[endpoint["id"]] = updated
        if diff:
            releases = self.releases[endpoint["id"]]
            releases.insert(0, self._release(endpoint["id"], releases[0]["version"] + 1, diff))
        return 200, self._endpoint_view(updated)

    def op_deleteEndpoint(self, *, path_params: Mapping[str, str], **_: Any) -> tuple[int, Any]:
        endpoint = self._endpoint(path_params["id"])
        del self.endpoints[endpoint["id"]]
        self.releases.pop(endpoint["id"], None)
        for worker in self.workers.pop(endpoint["id"], []):  # "all workers are terminated"
            self.worker_logs.pop(worker["id"], None)
        bound = self.bound_templates.pop(endpoint["id"], None)
        if bound is not None:
            self.templates.pop(bound, None)  # "deletes a serverless endpoint and its bound template"
        return 204, None

    def op_listEndpointReleases(self, *, path_params: Mapping[str, str], **_: Any) -> tuple[int, Any]:
        endpoint = self._endpoint(path_params["id"])
        releases = self.releases[endpoint["id"]]
        current = releases[0]["version"]
        workers = self._workers_view(endpoint["id"])
        on_latest = sum(1 for w in workers if w["version"] == current)
        return 200, {
            "endpointVersion": current,
            "rollout": {
                "inProgress": on_latest < len(workers),
                "workersOnLatest": on_latest,
                "workersTotal": len(workers),
                "percentOnLatest": round(100 * on_latest / len(workers)) if workers else 0,
            },
            "releases": [
                {**r, "workerCount": sum(1 for w in workers if w["version"] == r["version"])}
                for r in releases
            ],
        }

    def op_listEndpointWorkers(self, *, path_params: Mapping[str, str], **_: Any) -> tuple[int, Any]:
        endpoint = self._endpoint(path_params["id"])
        workers = self._workers_view(endpoint["id"])
        statuses = ("RUNNING", "IDLE", "INITIALIZING", "THROTTLED", "UNHEALTHY")
        summary = {s.lower(): sum(1 for w in workers if w["status"] == s) for s in statuses}
        summary["total"] = len(workers)
        return 200, {
            "workers": workers,
            "summary": summary,
            "endpointVersion": self.endpoint_version(endpoint["id"]),
        }

    def op_getWorkerLogs(
        self,
        *,
        path_params: Mapping[str, str],
        query: Mapping[str, str],
        headers: Mapping[str, str],
        **_: Any,
    ) -> tuple[int, Any]:
        """The backfill as Server-Sent Events, then the stream ends (no live tail here: a client reads later
        lines by reconnecting with ``Last-Event-ID``, as EventSource does). Event ids are the events' ``ts``
        (the operation's description; its example id with a ``/n`` suffix would not pass the spec's own
        ``Last-Event-ID: date-time`` parameter schema)."""
        endpoint = self._endpoint(path_params["id"])
        worker_id = path_params["workerId"]
        if not any(w["id"] == worker_id for w in self.workers.get(endpoint["id"], [])):
            raise Problem(404, f"worker {worker_id} of endpoint {endpoint['id']} not found")
        events = self.worker_logs.get(worker_id, [])
        if query.get("source"):
            events = [e for e in events if e["source"] == query["source"]]
        if headers.get("last-event-id"):
            events = [e for e in events if e["ts"] > headers["last-event-id"]]
        elif query.get("since"):
            events = [e for e in events if e["ts"] >= query["since"]]
        else:
            tail = int(query.get("tail", "100"))
            events = events[-tail:] if tail else []
        stream = "".join(f"id: {e['ts']}\ndata: {json.dumps(e)}\n\n" for e in events)
        return 200, stream or ": keep-alive\n\n"  # an SSE comment: a live stream with nothing yet

    def log(self, worker_id: str, line: str, source: str = "container") -> str:
        """Append one log event to a worker; returns its ``ts`` (strictly increasing, so ids sort)."""
        with self.lock:
            tick = next(self._log_clock)
            ts = f"2026-06-01T12:00:{tick // 1_000_000:02d}.{tick % 1_000_000:06d}Z"
            self.worker_logs.setdefault(worker_id, []).append({"ts": ts, "source": source, "line": line})
            return ts

    def endpoint_version(self, endpoint_id: str) -> int:
        with self.lock:
            return int(self.releases[endpoint_id][0]["version"])

    def add_worker(
        self,
        endpoint_id: str,
        *,
        status: str = "IDLE",
        gpu_type_id: str | None = "NVIDIA GeForce RTX 4090",
        data_center_id: str | None = "EU-RO-1",
        uptime_s: int | None = 60,
    ) -> str:
        """Place a worker on the endpoint's current release (what RunPod's scheduler would do)."""
        with self.lock:
            endpoint = self._endpoint(endpoint_id)
            worker = {
                "id": self.new_id("wrk"),
                "status": status,
                "version": self.endpoint_version(endpoint_id),
                "gpuCount": endpoint["gpu"]["count"],
                "image": endpoint["image"],
                "uptimeSeconds": uptime_s,
                "gpuTypeId": gpu_type_id,
                "dataCenterId": data_center_id,
                "startedAt": _now() if uptime_s is not None else None,
            }
            self.workers.setdefault(endpoint_id, []).append(worker)
            return str(worker["id"])

    def cycle_workers(self, endpoint_id: str) -> None:
        """Replace every worker with one on the current release (a rollout completing)."""
        with self.lock:
            old = self.workers.pop(endpoint_id, [])
            for worker in old:
                self.add_worker(
                    endpoint_id,
                    status=worker["status"],
                    gpu_type_id=worker["gpuTypeId"],
                    data_center_id=worker["dataCenterId"],
                )

    def _workers_view(self, endpoint_id: str) -> list[dict[str, Any]]:
        current = self.endpoint_version(endpoint_id)
        return [{**w, "isStale": w["version"] != current} for w in self.workers.get(endpoint_id, [])]

    def _release(self, endpoint_id: str, version: int, diff: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.new_id("rel"),
            "version": version,
            "source": "MANUAL",
            "buildId": None,
            "createdByUserId": "user-1",
            "workerCount": 0,
            "createdAt": _now(),
            "diff": diff,
        }

    def _endpoint(self, endpoint_id: str) -> dict[str, Any]:
        if endpoint_id not in self.endpoints:
            raise Problem(404, f"serverless endpoint {endpoint_id} not found")
        return self.endpoints[endpoint_id]

    def _volume_refs(self, ids: list[str]) -> list[str]:
        missing = [v for v in ids if v not in self.volumes]
        if missing:
            raise Problem(400, f"network volume {', '.join(missing)} does not exist")
        return list(ids)

    def _check_gpu(self, gpu: dict[str, Any]) -> None:
        if gpu.get("allowedCudaVersions") and gpu.get("minCudaVersion"):
            raise Problem(
                400,
                "gpu.allowedCudaVersions (a non-empty set) and gpu.minCudaVersion are mutually exclusive; "
                'clear one (allowedCudaVersions: [] or minCudaVersion: "")',
            )
        pools = {g["pool"] for g in self.catalog if g["pool"]}
        unknown = [p for p in gpu["pools"] if p not in pools]
        if unknown:
            raise Problem(400, f"unknown serverless GPU pool {', '.join(unknown)}")
        in_pools = {g["id"] for g in self.catalog if g["pool"] in gpu["pools"]}
        excluded = set(gpu.get("excludedTypes", []))
        outside = sorted(excluded - in_pools)
        if outside:
            raise Problem(400, f"excludedTypes {', '.join(outside)} is not a GPU type of the selected pools")
        if not in_pools - excluded:
            raise Problem(400, "excludedTypes leaves no GPU type in the selected pools")

    @staticmethod
    def _settle_workers(endpoint: dict[str, Any], *, sent_idle: bool) -> None:
        """min <= max; ``idleTimeout`` is refused and omitted for a queue endpoint scaling on requestCount."""
        workers = endpoint["workers"]
        if workers["min"] > workers["max"]:
            raise Problem(400, f"workers.min ({workers['min']}) exceeds workers.max ({workers['max']})")
        if endpoint["type"] == "QUEUE" and endpoint["scaling"]["type"] == "REQUEST_COUNT":
            if sent_idle:
                raise Problem(
                    400, "workers.idleTimeout does not apply to a queue endpoint scaling on requestCount"
                )
            workers.pop("idleTimeout", None)
        else:
            workers.setdefault("idleTimeout", WORKER_DEFAULTS["idleTimeout"])

    @staticmethod
    def _endpoint_view(endpoint: dict[str, Any]) -> dict[str, Any]:
        view = {**endpoint, "env": dict(endpoint["env"]), "gpu": dict(endpoint["gpu"])}
        view["workers"] = dict(endpoint["workers"])
        view["requestUrls"] = {
            name: f"{JOB_API}/{endpoint['id']}/{suffix}"
            for name, suffix in (
                ("run", "run"),
                ("runSync", "runsync"),
                ("status", "status/{job_id}"),
                ("stream", "stream/{job_id}"),
                ("cancel", "cancel/{job_id}"),
                ("retry", "retry/{job_id}"),
                ("purgeQueue", "purge-queue"),
                ("health", "health"),
            )
        }
        return view

    # ── billing (serverless) ──────────────────────────────────────────────────────────────────────────────

    def charge(
        self,
        endpoint_id: str,
        at: datetime,
        *,
        gpu: float,
        cpu: float = 0.0,
        disk: float = 0.0,
        fee: float = 0.0,
    ) -> None:
        """Record what an endpoint cost at ``at`` (UTC); listServerlessBilling buckets these."""
        with self.lock:
            self.charges.append(
                {"serverlessId": endpoint_id, "at": at, "gpu": gpu, "cpu": cpu, "disk": disk, "fee": fee}
            )

    def billing_window(
        self, operation: str, query: Mapping[str, str]
    ) -> tuple[str, timedelta, datetime, datetime]:
        """``(bucket size name, bucket size, start, end)`` of a billing query, resolved as the spec's
        Billing* parameters describe (shared by every emulated billing operation)."""
        size_name = query.get("bucketSize", "day")
        if size_name not in BUCKETS:
            raise NotImplementedError(f"{operation} bucketSize={size_name}")
        size = BUCKETS[size_name]
        if "lastN" in query and ("startTime" in query or "endTime" in query):
            raise Problem(400, "lastN and startTime/endTime are mutually exclusive: give one or the other")
        now = self.now()
        if "lastN" in query:
            end = _snap(now, size) + size
            start = end - size * int(query["lastN"])
        else:
            start = _snap(
                _parse_time(query["startTime"]) if "startTime" in query else now - timedelta(days=30), size
            )
            end_at = _parse_time(query["endTime"]) if "endTime" in query else now
            end = end_at if _snap(end_at, size) == end_at else _snap(end_at, size) + size
        if end <= start:
            raise Problem(400, "endTime must be after startTime")
        return size_name, size, start, end

    def op_listServerlessBilling(self, *, query: Mapping[str, str], **_: Any) -> tuple[int, Any]:
        """Buckets of ``hour`` or ``day`` (longer ones are not emulated) over the resolved window, one record
        per endpoint per bucket that has charges (sparse: empty buckets are left out)."""
        size_name, size, start, end = self.billing_window("listServerlessBilling", query)
        wanted = query.get("serverlessId")
        buckets: dict[tuple[str, datetime], dict[str, float]] = {}
        for c in self.charges:
            if start <= c["at"] < end and wanted in (None, c["serverlessId"]):
                key = (c["serverlessId"], _snap(c["at"], size))
                amounts = buckets.setdefault(key, dict.fromkeys(AMOUNTS, 0.0))
                for name in ("gpu", "cpu", "disk", "fee"):
                    amounts[f"{name}Amount"] += c[name]
                    amounts["totalAmount"] += c[name]
        records: list[dict[str, Any]] = [
            {
                "startTime": _iso(at),
                "endTime": _iso(at + size),
                "serverlessId": ep,
                **{k: round(v, 6) for k, v in a.items()},
            }
            for (ep, at), a in sorted(buckets.items(), key=lambda item: (item[0][1], item[0][0]))
        ]
        totals = {k: round(sum(float(r[k]) for r in records), 6) for k in AMOUNTS}
        return 200, {
            "records": records,
            "metadata": {
                "query": {
                    "startTime": _iso(start),
                    "endTime": _iso(end),
                    "bucketSize": size_name,
                    "serverlessId": wanted,
                },
                "recordCount": len(records),
                "uniqueServerlessCount": len({r["serverlessId"] for r in records}),
                "totals": totals,
            },
        }

    # ── the same account seen through GraphQL ─────────────────────────────────────────────────────────────

    def import_graphql(self, source: Any) -> None:
        """Take over the objects of a GraphQL emulator account (``tests.runpod_emulator.Account``), ids kept.

        Why: RunPod has one backend behind both APIs, so a stack created over GraphQL is read over REST with
        the same ids. A switch test creates over GraphQL, imports, and points the providers here. Written
        independently of ``infra.runpod_rest_shapes`` so the client's mapping is checked, not repeated."""
        with self.lock, source.lock:
            for volume in source.volumes.values():
                self.volumes[volume["id"]] = {
                    "id": volume["id"],
                    "name": volume["name"],
                    "size": volume["size"],
                    "dataCenter": volume["dataCenterId"],
                    "type": "STANDARD",
                }
            for auth in source.registry_auths.values():
                self.registries[auth["id"]] = dict(auth)
            for tpl in source.templates.values():
                self.templates[tpl["id"]] = {
                    "id": tpl["id"],
                    "name": tpl["name"],
                    "image": tpl.get("imageName") or "",
                    "args": tpl.get("dockerArgs") or "",
                    "disk": tpl.get("containerDiskInGb") or TEMPLATE_DISK_DEFAULT,
                    "mounts": {},
                    "ports": [],
                    "env": {e["key"]: e["value"] for e in tpl.get("env") or []},
                    "registry": tpl.get("containerRegistryAuthId"),
                    "serverless": bool(tpl.get("isServerless")),
                    "public": False,
                    "category": "NVIDIA",
                    "startSsh": False,
                    "startJupyter": False,
                    "allowedCudaVersions": [],
                }
            for ep in source.endpoints.values():
                self._import_graphql_endpoint(ep)
            taken = [int(m) for i in self._all_ids() if (m := "".join(c for c in i if c.isdigit()))]
            self._ids = itertools.count(max([next(self._ids), *taken]) + 1)  # new ids never collide

    def _all_ids(self) -> list[str]:
        return [*self.volumes, *self.templates, *self.endpoints, *self.registries]

    def _import_graphql_endpoint(self, ep: Mapping[str, Any]) -> None:
        def comma(value: Any) -> list[str]:
            return [t.strip() for t in (value or "").split(",") if t.strip()]

        template = self.templates[ep["templateId"]]
        gpu_tokens = comma(ep.get("gpuIds"))
        gpu: dict[str, Any] = {
            "pools": [t for t in gpu_tokens if not t.startswith("-")],
            "count": ep.get("gpuCount", 1),
            "allowedCudaVersions": comma(ep.get("allowedCudaVersions")),
            "minCudaVersion": ep.get("minCudaVersion") or None,
        }
        excluded = [t[1:] for t in gpu_tokens if t.startswith("-")]
        if excluded:
            gpu["excludedTypes"] = excluded
        scaler = ep.get("scalerType") or "QUEUE_DELAY"
        value_key = "queueDelay" if scaler == "QUEUE_DELAY" else "requestCount"
        volumes = [i["networkVolumeId"] for i in ep.get("networkVolumeIds") or [] if i]
        if ep.get("networkVolumeId"):
            volumes.insert(0, ep["networkVolumeId"])
        endpoint = {
            "id": ep["id"],
            "name": ep["name"],
            "type": "QUEUE",
            **{k: template[k] for k in CONTAINER_KEYS},
            "env": dict(template["env"]),
            "gpu": gpu,
            "workers": {"min": ep.get("workersMin", 0), "max": ep.get("workersMax", 3)},
            "scaling": {"type": scaler, value_key: ep.get("scalerValue", 4)},
            "dataCenterIds": comma(ep.get("locations")),
            "networkVolumes": volumes,
            "timeout": ep.get("executionTimeoutMs") or 300000,
            "flashboot": ep.get("flashBootType") or "OFF",
            "createdAt": _now(),
        }
        if scaler == "QUEUE_DELAY":
            endpoint["workers"]["idleTimeout"] = ep.get("idleTimeout", 10)
        self.endpoints[ep["id"]] = endpoint
        self.bound_templates[ep["id"]] = ep["templateId"]
        self.releases[ep["id"]] = [self._release(ep["id"], max(1, int(ep.get("version") or 0)), [])]

    # ── catalog ───────────────────────────────────────────────────────────────────────────────────────────

    def op_listGpuTypes(self, *, query: Mapping[str, str], **_: Any) -> tuple[int, Any]:
        include, product = query.get("include"), query.get("product")
        if bool(include) != bool(product):
            raise Problem(400, "product is required with include=AVAILABILITY and valid only with it")
        filters = sorted(set(query) - {"include", "product"})
        if filters:
            raise NotImplementedError(f"listGpuTypes filter {', '.join(filters)}")
        if product and set(product.split(",")) != {"SERVERLESS"}:
            raise NotImplementedError(f"listGpuTypes availability for product {product}")
        gpus = [dict(g) for g in self.catalog]
        if not include:
            gpus = [{k: v for k, v in g.items() if k not in AVAILABILITY_FIELDS} for g in gpus]
        return 200, {"gpus": gpus}
