"""The stack config as one typed, validated object (``StackSettings``), read before any resource is declared.

Every problem is collected (not just the first) and reported in one ``ConfigError`` whose lines each name the
config key and the fix, e.g. ``workersMin: 4 exceeds workersMax 2; run `pulumi config set workersMax 4```.
The keys and defaults are declared in Pulumi.yaml too (a test keeps the two in step).

Endpoints: the top-level endpoint keys (``gpuIds``, ``workersMax``, ``templateEnv``, ...) describe one
endpoint, ``comfy``. The optional ``endpoints`` object declares several instead (e.g. one per GPU class), all
on the same volume and image: ``endpoints.<key>.<endpoint key>`` overrides the top-level value for that
endpoint, ``<key>`` becomes the resource name (``<key>-template``, ``<key>-endpoint``), and the RunPod names
default to ``<endpointName>-<key>`` / ``<templateName>-<key>`` (template names are unique per RunPod account).
A problem in an inherited value is reported once, under its top-level key; one in an override under its path.

Template env values may be Pulumi secrets (``pulumi config set --secret --path 'templateEnv.HF_TOKEN' ...``):
Pulumi then marks the whole key secret, and the program passes the env on as a secret Output. Env values are
never part of an error or warning message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import pulumi

from handler.environment import VARIABLES as WORKER_VARIABLES
from handler.environment import SettingsError as WorkerSettingsError
from handler.settings import Settings as WorkerSettings
from infra.providers.endpoint import FLASHBOOT_TYPES, GPU_POOLS, SCALER_TYPES
from infra.providers.network_volume import MAX_SIZE_GB, MIN_SIZE_GB

DIGEST_REF = re.compile(r"^[a-z0-9][a-z0-9._\-/:]*@sha256:[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\- ]{2,}$")
ENDPOINT_KEY = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CUDA_VERSION = re.compile(r"^(\d{2})\.(\d)$")
# The worker image's torch wheels are CUDA 13 builds (image/requirements.lock.txt: nvidia-*-cu13), which need
# a host driver >= 580. RunPod's known CUDA versions end at 13.0 (shared RunPod reference: minCudaVersion).
MIN_CUDA_MAJOR = 13
DEFAULT_CUDA_VERSIONS = ("13.0",)
DEFAULT_ENDPOINT_KEY = "comfy"

# Env the worker must not get from the template: the worker's variables that the image or RunPod sets
# (handler.environment marks them), and the image's and RunPod's own.
RESERVED_ENV: Mapping[str, str] = {
    **{var.name: var.reserved for var in WORKER_VARIABLES if var.reserved},
    "PATH": "the worker image sets it (its Python venv)",
    "VIRTUAL_ENV": "the worker image sets it (its Python venv)",
    "CUDA_VISIBLE_DEVICES": "RunPod assigns the worker's GPUs",
    "NVIDIA_VISIBLE_DEVICES": "RunPod assigns the worker's GPUs",
}
RUNPOD_ENV_REASON = "RunPod sets RUNPOD_* in every worker (job queue URLs, worker id, the job API key)"
RUNPOD_ENV_ALLOWED = frozenset({"RUNPOD_LOG_LEVEL", "RUNPOD_DEBUG_LEVEL"})  # runpod SDK log levels
SECRET_LOOKING = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|ACCESS_KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)


class ConfigError(ValueError):
    """Invalid stack config; ``problems`` lists one line per key, each naming the fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid stack config:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class EndpointSettings:
    """One ComfyUI endpoint (a template plus an endpoint); ``key`` is its Pulumi resource name."""

    key: str = DEFAULT_ENDPOINT_KEY
    endpoint_name: str = "comfy-runpod"
    template_name: str = "comfy-runpod"
    container_disk_gb: int = 20
    template_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    template_env_secret: bool = False
    gpu_ids: tuple[str, ...] = ("ADA_24", "AMPERE_48")
    gpu_count: int = 1
    locations: tuple[str, ...] = ()
    workers_min: int = 0
    workers_max: int = 3
    idle_timeout_s: int = 5
    scaler_type: str = "QUEUE_DELAY"
    scaler_value: int = 4
    execution_timeout_ms: int | None = None
    flashboot: str = "FLASHBOOT"
    allowed_cuda_versions: tuple[str, ...] = DEFAULT_CUDA_VERSIONS


@dataclass(frozen=True)
class StackSettings:
    data_center_id: str = "EU-RO-1"
    volume_name: str = "comfy-models"
    volume_size_gb: int = 100
    volume_protect: bool = True
    image_ref: str | None = None
    image_repository: str | None = None
    registry_auth_id: str | None = None
    registry_username: str | None = None
    # The top-level endpoint keys: the single endpoint, or what every `endpoints` entry inherits.
    top: EndpointSettings = field(default_factory=EndpointSettings)
    # Derived by load_settings (not config keys of their own): the resolved endpoints and the warnings.
    endpoints: tuple[EndpointSettings, ...] = ()
    warnings: tuple[str, ...] = ()

    def endpoint_list(self) -> tuple[EndpointSettings, ...]:
        """The endpoints to declare: the resolved ones, or the single default one built from the top level."""
        return self.endpoints or (self.top,)


# Secret keys: never read into StackSettings (the program reads registryPassword as a secret Output).
SECRET_KEYS = ("runpodApiKey", "registryPassword")
# StackSettings fields that are not stack-wide config keys (the endpoint keys; what load_settings computes).
DERIVED_FIELDS = ("top", "endpoints", "warnings")
# Pulumi.yaml key -> StackSettings field for the stack-wide keys (the API key is read by the providers; the
# endpoint keys are ENDPOINT_SPECS, read into StackSettings.top; `endpoints`: _read_endpoints).
CONFIG_FIELDS: dict[str, str] = {
    "dataCenterId": "data_center_id",
    "volumeName": "volume_name",
    "volumeSizeGb": "volume_size_gb",
    "volumeProtect": "volume_protect",
    "imageRef": "image_ref",
    "imageRepository": "image_repository",
    "registryAuthId": "registry_auth_id",
    "registryUsername": "registry_username",
}
ENDPOINTS_KEY = "endpoints"


# ── key paths and their fix commands ───────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Key:
    """A config key as the user names it: ``workersMax`` or ``endpoints.h200.workersMax``."""

    path: str

    def child(self, name: str) -> Key:
        return Key(f"{self.path}.{name}")

    def set(self, example: str, suffix: str = "") -> str:
        if "." in self.path or suffix:
            return f"run `pulumi config set --path '{self.path}{suffix}' {example}`"
        return f"run `pulumi config set {self.path} {example}`"

    def rm(self) -> str:
        flag = "--path " if "." in self.path else ""
        quoted = f"'{self.path}'" if flag else self.path
        return f"`pulumi config rm {flag}{quoted}`"


def _set(key: str, example: str) -> str:
    return Key(key).set(example)


# ── parsers: a raw config string (top level) or a JSON value (inside `endpoints`) -> a typed value ──────────


def _int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(raw)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"\s*-?\d+\s*", raw):
        return int(raw)
    raise ValueError(raw)


def _str(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(raw)
    return raw


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    lowered = str(raw).strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(raw)
    return lowered == "true"


def _json(raw: Any) -> Any:
    return json.loads(raw) if isinstance(raw, str) else raw


def _string_list(raw: Any) -> tuple[str, ...]:
    value = _json(raw)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(raw)
    return tuple(v.strip() for v in value if v.strip())


def _object(raw: Any) -> dict[str, Any]:
    value = _json(raw)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


@dataclass(frozen=True)
class Spec:
    """How one endpoint key is read: parser, what it must be (for the message), an example value."""

    field: str
    parse: Callable[[Any], Any]
    kind: str
    example: str
    suffix: str = ""  # appended to the path in the fix (list keys: "[0]")
    echo: bool = True  # False: the value is never shown (it may hold secrets)


ENDPOINT_SPECS: dict[str, Spec] = {
    "endpointName": Spec("endpoint_name", _str, "a name", "comfy-runpod"),
    "templateName": Spec("template_name", _str, "a name", "comfy-runpod"),
    "containerDiskGb": Spec("container_disk_gb", _int, "a whole number of GB", "20"),
    "templateEnv": Spec("template_env", _object, "an object of NAME: value", "VALUE", ".NAME", echo=False),
    "gpuIds": Spec("gpu_ids", _string_list, "a JSON list of strings", "ADA_24", "[0]"),
    "gpuCount": Spec("gpu_count", _int, "a whole number", "1"),
    "locations": Spec("locations", _string_list, "a JSON list of strings", "EU-RO-1", "[0]"),
    "workersMin": Spec("workers_min", _int, "a whole number", "0"),
    "workersMax": Spec("workers_max", _int, "a whole number", "3"),
    "idleTimeoutS": Spec("idle_timeout_s", _int, "a whole number of seconds", "5"),
    "scalerType": Spec("scaler_type", _str, "a string", "QUEUE_DELAY"),
    "scalerValue": Spec("scaler_value", _int, "a whole number", "4"),
    "executionTimeoutMs": Spec("execution_timeout_ms", _int, "a whole number of ms", "600000"),
    "flashBoot": Spec("flashboot", _str, "a string", "FLASHBOOT"),
    "allowedCudaVersions": Spec(
        "allowed_cuda_versions", _string_list, "a JSON list of strings", "13.0", "[0]"
    ),
}
# The keys an `endpoints.<key>` entry may override (same names as at the top level).
ENDPOINT_KEYS = tuple(ENDPOINT_SPECS)


class _Reader:
    def __init__(self, config: pulumi.Config) -> None:
        self.config = config
        self.problems: list[str] = []

    def get(self, key: str, parse: Callable[[str], Any], kind: str, example: str, default: Any) -> Any:
        raw = self.config.get(key)
        if raw is None:
            return default
        try:
            return parse(raw)
        except (ValueError, TypeError):
            self.problems.append(f"{key}: {raw!r} is not {kind}; {_set(key, example)}")
            return default

    def endpoint_value(self, key: Key, spec: Spec, raw: Any, default: Any) -> Any:
        try:
            return spec.parse(raw)
        except (ValueError, TypeError):
            shown = f"{raw!r} " if spec.echo else ""
            self.problems.append(
                f"{key.path}: {shown}is not {spec.kind}; {key.set(spec.example, spec.suffix)}"
            )
            return default


def is_secret_key(config: pulumi.Config, key: str) -> bool:
    """True when the stack holds ``key`` as a secret (or any value inside it: `--secret --path`)."""
    return bool(pulumi.runtime.is_config_secret(config.full_key(key)))


# ── template env ───────────────────────────────────────────────────────────────────────────────────────────


def _env(
    key: Key, raw: Mapping[str, Any], secret: bool, problems: list[str], warnings: list[str]
) -> dict[str, str]:
    """Validate one templateEnv object; values are strings on the wire (numbers and booleans converted)."""
    env: dict[str, str] = {}
    for name, value in raw.items():
        where = key.child(name)
        if not ENV_NAME.match(name):
            problems.append(
                f"{where.path}: {name!r} is not an environment variable name (letters, digits and _, not "
                f"starting with a digit); rename it: {where.rm()}, then {key.set('VALUE', '.NEW_NAME')}"
            )
            continue
        reason = RESERVED_ENV.get(name) or (
            RUNPOD_ENV_REASON if name.startswith("RUNPOD_") and name not in RUNPOD_ENV_ALLOWED else None
        )
        if reason is not None:
            problems.append(f"{where.path}: {name} is reserved: {reason}; remove it: {where.rm()}")
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str):
            problems.append(
                f"{where.path}: the value must be a string, not {type(value).__name__}; {where.set('VALUE')}"
            )
            continue
        if not secret and SECRET_LOOKING.search(name) and value and not value.lstrip().startswith("{{"):
            warnings.append(
                f"{where.path} looks like a secret but is stored in clear: run `pulumi config set --secret "
                f"--path '{where.path}' ...` (or reference a RunPod secret: '{{{{ RUNPOD_SECRET_name }}}}')"
            )
        env[name] = value
    return env


# ── loading ────────────────────────────────────────────────────────────────────────────────────────────────


def _endpoint_from(base: StackSettings, key: str, values: Mapping[str, Any]) -> EndpointSettings:
    """An endpoint from the top-level values, with ``values`` (EndpointSettings field -> value) on top."""
    return replace(base.top, key=key, **values)


def load_settings(config: pulumi.Config) -> StackSettings:
    """Read and validate the stack config; raise ``ConfigError`` listing every problem."""
    d = StackSettings()
    r = _Reader(config)
    p = r.problems
    warnings: list[str] = []
    top: dict[str, Any] = {}
    for key, spec in ENDPOINT_SPECS.items():
        raw = config.get(key)
        default = getattr(d.top, spec.field)
        top[spec.field] = default if raw is None else r.endpoint_value(Key(key), spec, raw, default)
    env_secret = is_secret_key(config, "templateEnv")
    top["template_env"] = _env(Key("templateEnv"), top["template_env"], env_secret, p, warnings)
    s = StackSettings(
        data_center_id=r.get("dataCenterId", str, "a data center id", "EU-RO-1", d.data_center_id),
        volume_name=r.get("volumeName", str, "a name", "comfy-models", d.volume_name),
        volume_size_gb=r.get("volumeSizeGb", _int, "a whole number of GB", "100", d.volume_size_gb),
        volume_protect=r.get("volumeProtect", _bool, "true or false", "true", d.volume_protect),
        image_ref=r.get("imageRef", str, "an image reference", "REPO@sha256:DIGEST", d.image_ref),
        image_repository=r.get(
            "imageRepository", str, "a repository", "ghcr.io/USER/comfy-runpod", d.image_repository
        ),
        registry_auth_id=r.get("registryAuthId", str, "a registry auth id", "ID", d.registry_auth_id),
        registry_username=r.get("registryUsername", str, "a user name", "USER", d.registry_username),
        top=EndpointSettings(**top),
    )
    if not MIN_SIZE_GB <= s.volume_size_gb <= MAX_SIZE_GB:
        p.append(
            f"volumeSizeGb: {s.volume_size_gb} is outside {MIN_SIZE_GB}..{MAX_SIZE_GB}; "
            + _set("volumeSizeGb", "100")
        )
    if not NAME.match(s.volume_name):
        p.append(
            f"volumeName: {s.volume_name!r} needs 3+ letters, digits, '.', '_', '-' or spaces; "
            + _set("volumeName", "comfy-models")
        )
    _check_image_and_registry(config, s, p)

    endpoints = _read_endpoints(config, r, s, env_secret, warnings)
    for endpoint, source in endpoints:
        _check_endpoint(endpoint, source, s.data_center_id, p)
    for attr, key in (("template_name", "templateName"), ("endpoint_name", "endpointName")):
        seen: dict[str, str] = {}
        for endpoint, source in endpoints:
            name = getattr(endpoint, attr)
            if name in seen:
                why = "unique per RunPod account" if attr == "template_name" else "one name, one endpoint"
                p.append(
                    f"{source(key).path}: {name!r} is also the {key} of endpoint {seen[name]!r} ({why}); "
                    + source(key).set(f"{name}-{endpoint.key}")
                )
            seen.setdefault(name, endpoint.key)
    if p:
        raise ConfigError(list(dict.fromkeys(p)))  # an inherited value's problem is reported once
    return StackSettings(
        **{f.name: getattr(s, f.name) for f in fields(s) if f.name not in DERIVED_FIELDS},
        endpoints=tuple(e for e, _ in endpoints),
        warnings=tuple(dict.fromkeys(warnings)),
    )


def _check_image_and_registry(config: pulumi.Config, s: StackSettings, p: list[str]) -> None:
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


Source = Callable[[str], Key]


def _read_endpoints(
    config: pulumi.Config, r: _Reader, s: StackSettings, top_env_secret: bool, warnings: list[str]
) -> list[tuple[EndpointSettings, Source]]:
    """The endpoints to declare, each with ``source(key)``: the config path its value came from."""
    top_level: Source = Key
    raw = config.get(ENDPOINTS_KEY)
    entries: dict[str, Any] = {}
    if raw is not None:
        try:
            entries = _object(raw)
        except ValueError:
            r.problems.append(
                f"{ENDPOINTS_KEY}: is not an object of KEY: {{endpoint keys}}; "
                f"run `pulumi config set --path '{ENDPOINTS_KEY}.h200.gpuIds[0]' HOPPER_141`, or "
                f"`pulumi config rm {ENDPOINTS_KEY}` for the single endpoint of the top-level keys"
            )
    if not entries:
        return [(replace(s.top, template_env_secret=top_env_secret), top_level)]
    secret = top_env_secret or is_secret_key(config, ENDPOINTS_KEY)
    result: list[tuple[EndpointSettings, Source]] = []
    for key, overrides in entries.items():
        where = Key(f"{ENDPOINTS_KEY}.{key}")
        if not ENDPOINT_KEY.match(key) or key == ENDPOINTS_KEY:
            r.problems.append(
                f"{where.path}: {key!r} is not an endpoint key (2-32 lower-case letters, digits or '-', "
                f"starting with a letter; it names the Pulumi resources); rename it: {where.rm()}, then "
                + Key(f"{ENDPOINTS_KEY}.h200").set("HOPPER_141", ".gpuIds[0]")
            )
            continue
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, dict):
            r.problems.append(
                f"{where.path}: is not an object of endpoint keys ({', '.join(ENDPOINT_KEYS)}); "
                + where.set("HOPPER_141", ".gpuIds[0]")
            )
            continue
        unknown = [k for k in overrides if k not in ENDPOINT_SPECS]
        for name in unknown:
            r.problems.append(
                f"{where.child(name).path}: unknown endpoint key (known: {', '.join(ENDPOINT_KEYS)}); "
                f"remove it: {where.child(name).rm()}"
            )
        values: dict[str, Any] = {}
        for name, value in overrides.items():
            spec = ENDPOINT_SPECS.get(name)
            if spec is not None:
                values[spec.field] = r.endpoint_value(where.child(name), spec, value, None)
        values = {k: v for k, v in values.items() if v is not None}  # unparsable: the top-level value
        if "template_env" in values:
            env = _env(where.child("templateEnv"), values["template_env"], secret, r.problems, warnings)
            values["template_env"] = {**s.top.template_env, **env}  # an endpoint's names win
        for name, attr in (("endpointName", "endpoint_name"), ("templateName", "template_name")):
            if name not in overrides:
                values[attr] = f"{getattr(s.top, attr)}-{key}"
        values["template_env_secret"] = secret

        def source(name: str, where: Key = where, overrides: dict[str, Any] = overrides) -> Key:
            head, _, var = name.partition(".")  # "templateEnv.NAME": this endpoint's variable, or inherited
            own = head in overrides and (
                not var or (isinstance(overrides[head], dict) and var in overrides[head])
            )
            if own or name in ("endpointName", "templateName"):
                return where.child(name)
            return Key(name)

        result.append((_endpoint_from(s, key, values), source))
    return result


def _check_endpoint(e: EndpointSettings, source: Source, data_center_id: str, p: list[str]) -> None:
    """The checks of one endpoint; each problem names the key its value came from."""
    for key, value in (("templateName", e.template_name), ("endpointName", e.endpoint_name)):
        if not NAME.match(value):
            p.append(
                f"{source(key).path}: {value!r} needs 3+ letters, digits, '.', '_', '-' or spaces; "
                + source(key).set("comfy-runpod")
            )
    if e.container_disk_gb < 5:
        k = source("containerDiskGb")
        p.append(f"{k.path}: {e.container_disk_gb} is below 5 GB; {k.set('20')}")
    unknown = [g for g in e.gpu_ids if not g.startswith("-") and g not in GPU_POOLS]
    if unknown or not [g for g in e.gpu_ids if not g.startswith("-")]:
        k = source("gpuIds")
        p.append(
            f"{k.path}: {', '.join(unknown) or 'no pool'} is not a RunPod GPU pool id (known: "
            f"{', '.join(sorted(GPU_POOLS))}); {k.set('ADA_24', '[0]')}"
        )
    if e.gpu_count < 1:
        k = source("gpuCount")
        p.append(f"{k.path}: {e.gpu_count} is below 1 GPU per worker; {k.set('1')}")
    if e.locations and data_center_id.upper() not in {loc.upper() for loc in e.locations}:
        k = source("locations")
        p.append(
            f"{k.path}: {', '.join(e.locations)} must include the volume's data center {data_center_id}; "
            f"add it ({k.set(data_center_id, f'[{len(e.locations)}]')}) or {k.rm()}"
        )
    if e.workers_min < 0:
        k = source("workersMin")
        p.append(f"{k.path}: must be 0 or more; {k.set('0')}")
    if e.workers_min > e.workers_max:
        k = source("workersMin")
        # Raise workersMax where workersMin was set (an endpoint's own value, or the top-level one).
        high = Key(k.path[: -len("workersMin")] + "workersMax")
        p.append(
            f"{k.path}: {e.workers_min} exceeds workersMax {e.workers_max}; "
            f"{high.set(str(e.workers_min))} or lower workersMin"
        )
    if not 1 <= e.idle_timeout_s <= 3600:
        k = source("idleTimeoutS")
        p.append(f"{k.path}: {e.idle_timeout_s} is outside 1..3600 seconds; {k.set('5')}")
    if e.scaler_type not in SCALER_TYPES:
        k = source("scalerType")
        p.append(
            f"{k.path}: {e.scaler_type!r} is not one of {', '.join(SCALER_TYPES)}; {k.set('QUEUE_DELAY')}"
        )
    if e.scaler_value < 1:
        k = source("scalerValue")
        p.append(f"{k.path}: {e.scaler_value} is below 1 (RunPod refuses it); {k.set('4')}")
    if e.execution_timeout_ms is not None and e.execution_timeout_ms < 0:
        k = source("executionTimeoutMs")
        p.append(f"{k.path}: must be 0 (no limit) or more; {k.set('600000')}")
    if e.flashboot not in FLASHBOOT_TYPES:
        k = source("flashBoot")
        p.append(
            f"{k.path}: {e.flashboot!r} is not one of {', '.join(FLASHBOOT_TYPES)}; {k.set('FLASHBOOT')}"
        )
    _check_cuda(e.allowed_cuda_versions, source("allowedCudaVersions"), p)
    _check_worker_env(e, source, p)


def _check_worker_env(e: EndpointSettings, source: Source, p: list[str]) -> None:
    """The worker reads its settings from this env at start (``handler.environment``'s table) and refuses
    to work with a bad one: read it the same way now, so the mistake shows at preview rather than as workers
    failing their jobs. The worker's problems never quote a value, so a secret env is safe to report."""
    try:
        WorkerSettings.from_env(e.template_env)
    except WorkerSettingsError as exc:
        for problem in exc.problems:
            own = problem.variable in e.template_env
            k = source(f"templateEnv.{problem.variable}") if own else source("templateEnv")
            p.append(
                f"{k.path}: the worker would refuse to start: {problem}; correct it "
                f"({k.set('VALUE')}; the README's configuration reference lists the worker's variables)"
            )


def _check_cuda(versions: tuple[str, ...], k: Key, p: list[str]) -> None:
    fix = f"{k.rm()} (default {', '.join(DEFAULT_CUDA_VERSIONS)}) or {k.set(DEFAULT_CUDA_VERSIONS[0], '[0]')}"
    if not versions:
        p.append(
            f"{k.path}: empty would allow hosts of any CUDA version, but the image needs CUDA "
            f"{MIN_CUDA_MAJOR} (driver >= 580); {fix}"
        )
        return
    malformed = [v for v in versions if not CUDA_VERSION.match(v)]
    if malformed:
        p.append(f"{k.path}: {', '.join(malformed)} is not a CUDA version like 13.0; {fix}")
    too_old = [v for v in versions if (m := CUDA_VERSION.match(v)) and int(m.group(1)) < MIN_CUDA_MAJOR]
    if too_old:
        p.append(
            f"{k.path}: {', '.join(too_old)} is too old for the image (its torch wheels are CUDA "
            f"{MIN_CUDA_MAJOR} builds, driver >= 580), so workers on such hosts would fail; {fix}"
        )
