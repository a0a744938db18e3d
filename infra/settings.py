"""The stack config as one typed, validated object (``StackSettings``), read before any resource is declared.

Every problem is collected (not just the first) and reported in one ``ConfigError`` whose lines each name the
config key and the fix, e.g. ``workersMin: 4 exceeds workersMax 2; run `pulumi config set workersMax 4```.
The keys, their parsers and defaults are declared once: in ``infra.spec`` (the endpoint's and the template's)
and on ``StackSettings`` (the stack-wide ones); Pulumi.yaml declares them too (tests keep the two in step).

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

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import pulumi

from handler.environment import VARIABLES as WORKER_VARIABLES
from handler.environment import SettingsError as WorkerSettingsError
from handler.settings import Settings as WorkerSettings
from infra.providers.endpoint import GPU_POOLS
from infra.providers.network_volume import MAX_SIZE_GB, MIN_SIZE_GB
from infra.runpod_api import DEFAULT_TRANSPORT, TRANSPORTS
from infra.runpod_rest_shapes import VOLUME_TYPES
from infra.spec import (
    DEFAULT_CUDA_VERSIONS,
    Bounds,
    EndpointSpec,
    Setting,
    TemplateSpec,
    config_keys,
    parse_bool,
    parse_int,
    parse_object,
    parse_str,
    setting,
)

DIGEST_REF = re.compile(r"^[a-z0-9][a-z0-9._\-/:]*@sha256:[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\- ]{2,}$")
ENDPOINT_KEY = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CUDA_VERSION = re.compile(r"^(\d{2})\.(\d)$")
# The worker image's torch wheels are CUDA 13 builds (image/requirements.lock.txt: nvidia-*-cu13), which need
# a host driver >= 580. RunPod's known CUDA versions end at 13.0 (shared RunPod reference: minCudaVersion).
MIN_CUDA_MAJOR = 13
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
class EndpointSettings(TemplateSpec, EndpointSpec):
    """One ComfyUI endpoint (a template plus an endpoint); ``key`` is its Pulumi resource name."""

    key: str = DEFAULT_ENDPOINT_KEY
    template_env_secret: bool = False  # the env holds Pulumi secrets: it stays a secret Output


@dataclass(frozen=True)
class StackSettings:
    """The stack-wide keys (declared like the endpoint's, ``infra.spec``), and the endpoints to declare."""

    data_center_id: str = setting("dataCenterId", "EU-RO-1", parse_str, "a data center id", "EU-RO-1")
    volume_name: str = setting("volumeName", "comfy-models", parse_str, "a name", "comfy-models")
    volume_size_gb: int = setting(
        "volumeSizeGb", 100, parse_int, "a whole number of GB", "100", bounds=Bounds(MIN_SIZE_GB, MAX_SIZE_GB)
    )
    volume_protect: bool = setting("volumeProtect", True, parse_bool, "true or false", "true")
    # Immutable on RunPod: a change replaces the volume, which `volumeProtect` turns into an error. Unset:
    # the volume keeps the type it has (RunPod's default for a new one, STANDARD): old stacks show no diff.
    volume_type: str | None = setting(
        "volumeType", None, parse_str, "a volume type", "STANDARD", bounds=Bounds(choices=VOLUME_TYPES)
    )
    # Which RunPod API the providers talk (infra.runpod_api); switching replaces nothing (README: Deploy).
    runpod_api: str = setting(
        "runpodApi",
        DEFAULT_TRANSPORT,
        parse_str,
        "rest or graphql",
        DEFAULT_TRANSPORT,
        bounds=Bounds(choices=TRANSPORTS),
    )
    image_ref: str | None = setting("imageRef", None, parse_str, "an image reference", "REPO@sha256:DIGEST")
    image_repository: str | None = setting(
        "imageRepository", None, parse_str, "a repository", "ghcr.io/USER/comfy-runpod"
    )
    registry_auth_id: str | None = setting("registryAuthId", None, parse_str, "a registry auth id", "ID")
    registry_username: str | None = setting("registryUsername", None, parse_str, "a user name", "USER")
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
# The stack-wide keys (the API key is read by the providers; `endpoints`: _read_endpoints).
STACK_SETTINGS: dict[str, Setting] = config_keys(StackSettings)
CONFIG_FIELDS: dict[str, str] = {key: s.field for key, s in STACK_SETTINGS.items()}
# The endpoint keys: at the top level (read into StackSettings.top) and in each `endpoints.<key>` entry.
ENDPOINT_SPECS: dict[str, Setting] = config_keys(EndpointSpec, TemplateSpec)
ENDPOINT_KEYS = tuple(ENDPOINT_SPECS)
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


class _Reader:
    def __init__(self, config: pulumi.Config) -> None:
        self.config = config
        self.problems: list[str] = []

    def value(self, key: Key, spec: Setting, raw: Any, default: Any) -> Any:
        """``raw`` parsed by ``spec``; on a bad value the problem is noted and ``default`` returned."""
        try:
            return spec.parse(raw)
        except (ValueError, TypeError):
            shown = f"{raw!r} " if spec.echo else ""
            self.problems.append(
                f"{key.path}: {shown}is not {spec.kind}; {key.set(spec.example, spec.suffix)}"
            )
            return default

    def read(self, specs: Mapping[str, Setting], defaults: object) -> dict[str, Any]:
        """Field -> value of every key of ``specs`` (top level): the configured value, or the default."""
        values: dict[str, Any] = {}
        for key, spec in specs.items():
            raw = self.config.get(key)
            default = getattr(defaults, spec.field)
            values[spec.field] = default if raw is None else self.value(Key(key), spec, raw, default)
        return values


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
    top = r.read(ENDPOINT_SPECS, d.top)
    env_secret = is_secret_key(config, "templateEnv")
    top["template_env"] = _env(Key("templateEnv"), top["template_env"], env_secret, p, warnings)
    s = StackSettings(**r.read(STACK_SETTINGS, d), top=EndpointSettings(**top))
    _check_bounds(STACK_SETTINGS, s, Key, p)
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
            entries = parse_object(raw)
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
                values[spec.field] = r.value(where.child(name), spec, value, None)
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
    unknown = [g for g in e.gpu_ids if not g.startswith("-") and g not in GPU_POOLS]
    if unknown or not [g for g in e.gpu_ids if not g.startswith("-")]:
        k = source("gpuIds")
        p.append(
            f"{k.path}: {', '.join(unknown) or 'no pool'} is not a RunPod GPU pool id (known: "
            f"{', '.join(sorted(GPU_POOLS))}); {k.set('ADA_24', '[0]')}"
        )
    if e.locations and data_center_id.upper() not in {loc.upper() for loc in e.locations}:
        k = source("locations")
        p.append(
            f"{k.path}: {', '.join(e.locations)} must include the volume's data center {data_center_id}; "
            f"add it ({k.set(data_center_id, f'[{len(e.locations)}]')}) or {k.rm()}"
        )
    if e.workers_min > e.workers_max:
        k = source("workersMin")
        # Raise workersMax where workersMin was set (an endpoint's own value, or the top-level one).
        high = Key(k.path[: -len("workersMin")] + "workersMax")
        p.append(
            f"{k.path}: {e.workers_min} exceeds workersMax {e.workers_max}; "
            f"{high.set(str(e.workers_min))} or lower workersMin"
        )
    _check_bounds(ENDPOINT_SPECS, e, source, p)
    _check_cuda(e.allowed_cuda_versions, source("allowedCudaVersions"), p)
    _check_worker_env(e, source, p)


def _check_bounds(specs: Mapping[str, Setting], values: object, source: Source, p: list[str]) -> None:
    """The declared bounds (``infra.spec``: ranges, choices) of every key that has them."""
    for key, spec in specs.items():
        value = getattr(values, spec.field)
        if spec.bounds is not None and value is not None and spec.bounds.refuses(value):
            k = source(key)
            p.append(f"{k.path}: {spec.bounds.refusal(value)}; {k.set(spec.example)}")


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
