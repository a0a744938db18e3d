"""The template's and the endpoint's fields, each declared once, with what every layer needs to know of it.

A field of ``TemplateSpec`` or ``EndpointSpec`` (and of ``infra.settings.StackSettings``) is declared with
``setting(...)``: its Python name and type, its default, the stack config key it is read from (and how it is
parsed, for the messages), and the dynamic provider's input it becomes (``prop``: the name in the provider's
inputs and in Pulumi state, how it is normalized and compared). From this:

- ``infra.settings`` reads and checks the stack config (``config_keys``);
- ``infra.program`` hands a spec to ``ComfyEndpoint``, which hands it to the resources;
- ``Template`` and ``Endpoint`` build their inputs from it (``inputs``), and their providers fill defaults,
  cast numbers and compare values by the same table (``props``), next to the inputs only they have
  (``templateId``, the volume ids, ``imageName``, ...);
- a test checks Pulumi.yaml's config declarations (keys, types, defaults) against it.

Config keys and provider inputs keep their historic names (``idleTimeoutS`` -> ``idleTimeout``,
``flashBoot`` -> ``flashBootType``): stacks and Pulumi state already hold them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any, Literal

Shape = Literal["str", "int", "bool", "list", "map"]
Compare = Literal["exact", "set", "set-ci"]  # set: order-free (RunPod may reorder); set-ci: and case-free
# For the provider, an absent input is: an error / its default / left unset.
Presence = Literal["required", "default", "optional"]

DEFAULT_CUDA_VERSIONS = ("13.0",)
SCALER_TYPES = ("QUEUE_DELAY", "REQUEST_COUNT")
FLASHBOOT_TYPES = ("OFF", "FLASHBOOT", "PRIORITY_FLASHBOOT")
META = "comfy-runpod"


# ── parsers: a raw config string (top level) or a JSON value (inside `endpoints`) -> a typed value ──────────


def parse_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(raw)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"\s*-?\d+\s*", raw):
        return int(raw)
    raise ValueError(raw)


def parse_str(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(raw)
    return raw


def parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    lowered = str(raw).strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(raw)
    return lowered == "true"


def _json(raw: Any) -> Any:
    return json.loads(raw) if isinstance(raw, str) else raw


def parse_string_list(raw: Any) -> tuple[str, ...]:
    value = _json(raw)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(raw)
    return tuple(v.strip() for v in value if v.strip())


def parse_object(raw: Any) -> dict[str, Any]:
    value = _json(raw)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


SHAPES: Mapping[Callable[[Any], Any], Shape] = {
    parse_str: "str",
    parse_int: "int",
    parse_bool: "bool",
    parse_string_list: "list",
    parse_object: "map",
}


@dataclass(frozen=True)
class Bounds:
    """The values a field accepts: a range of whole numbers or a set of choices; ``unit`` ends the range."""

    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""  # " seconds", " GB", " (RunPod refuses it)"

    def refuses(self, value: Any) -> bool:
        if self.choices:
            return value not in self.choices
        low = self.minimum if self.minimum is not None else value
        high = self.maximum if self.maximum is not None else value
        return not low <= value <= high

    def accepted(self) -> str:
        """What is accepted, as a phrase: "one of A, B", "1..3600 seconds", "at least 1 GB"."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.maximum is not None:
            return f"{self.minimum}..{self.maximum}{self.unit}"
        return f"at least {self.minimum}{self.unit}"

    def refusal(self, value: Any) -> str:
        """Why ``value`` is refused, for the stack config's messages: "0 is below 1 GB"."""
        if self.choices:
            return f"{value!r} is not {self.accepted()}"
        if self.maximum is not None:
            return f"{value} is outside {self.accepted()}"
        return f"{value} is below {self.minimum}{self.unit}"


@dataclass(frozen=True)
class Setting:
    """How one field is configured (stack config ``key``) and, if it is one, which provider input it is."""

    key: str
    parse: Callable[[Any], Any]
    kind: str  # what the value must be, for messages: "a whole number of GB"
    example: str  # a value for the fix: `pulumi config set KEY EXAMPLE`
    suffix: str = ""  # appended to the path in the fix (list keys: "[0]")
    echo: bool = True  # False: the value is never shown (it may hold secrets)
    prop: str | None = None  # the provider input (and state) name; None: not a provider input
    presence: Presence = "default"
    compare: Compare = "exact"
    bounds: Bounds | None = None  # what RunPod (or the image) accepts; both the config and the provider check
    field: str = ""  # the Python field name (filled in by config_keys)

    @property
    def shape(self) -> Shape:
        return SHAPES[self.parse]


def setting(
    key: str,
    default: Any,
    parse: Callable[[Any], Any],
    kind: str,
    example: str,
    **options: Any,
) -> Any:
    """A dataclass field declared with its ``Setting`` (``options``: its other attributes).

    A field whose value may hold secrets (``echo=False``) is also left out of the dataclass's repr."""
    spec = Setting(key, parse, kind, example, **options)
    meta = {META: spec}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta, repr=spec.echo)
    return field(default=default, metadata=meta, repr=spec.echo)


def _settings(cls: type) -> list[tuple[Field[Any], Setting]]:
    return [(f, f.metadata[META]) for f in fields(cls) if META in f.metadata]


def config_keys(*classes: type) -> dict[str, Setting]:
    """Config key -> its setting (with ``field`` set), for the given spec classes in order."""
    return {s.key: replace(s, field=f.name) for cls in classes for f, s in _settings(cls)}


@dataclass(frozen=True)
class Prop:
    """One input of a dynamic provider: how it is normalized (shape, default) and compared."""

    name: str
    shape: Shape
    presence: Presence = "optional"
    default: Any = None
    compare: Compare = "exact"
    bounds: Bounds | None = None


def props(cls: type) -> tuple[Prop, ...]:
    """The provider inputs a spec class declares, with their defaults (lists as lists, as Pulumi has them)."""
    out = []
    for f, s in _settings(cls):
        if s.prop is not None:
            default = None  # a required or optional input has no default in the provider
            if s.presence == "default":
                default = f.default_factory() if callable(f.default_factory) else f.default
                default = list(default) if isinstance(default, tuple) else default
            out.append(Prop(s.prop, s.shape, s.presence, default, s.compare, s.bounds))
    return tuple(out)


def inputs(cls: type, spec: object) -> dict[str, Any]:
    """The values of ``cls``'s fields in ``spec`` (a ``cls`` or a subclass, such as a class that is both a
    template's and an endpoint's spec) as the provider's inputs: prop name -> value, lists as lists."""
    out: dict[str, Any] = {}
    for f, s in _settings(cls):
        if s.prop is not None:
            value = getattr(spec, f.name)
            out[s.prop] = list(value) if isinstance(value, tuple) else value
    return out


@dataclass(frozen=True)
class TemplateSpec:
    """The serverless template's configurable fields (its image, registry auth and env secrecy are wiring)."""

    template_name: str = setting(
        "templateName", "comfy-runpod", parse_str, "a name", "comfy-runpod", prop="name", presence="required"
    )
    container_disk_gb: int = setting(
        "containerDiskGb",
        20,
        parse_int,
        "a whole number of GB",
        "20",
        prop="containerDiskInGb",
        bounds=Bounds(5, unit=" GB"),
    )
    template_env: Mapping[str, str] = setting(
        "templateEnv",
        {},
        parse_object,
        "an object of NAME: value",
        "VALUE",
        suffix=".NAME",
        echo=False,
        prop="env",
    )


@dataclass(frozen=True)
class EndpointSpec:
    """The serverless endpoint's configurable fields (its template and volume are wiring)."""

    endpoint_name: str = setting(
        "endpointName", "comfy-runpod", parse_str, "a name", "comfy-runpod", prop="name", presence="required"
    )
    gpu_ids: tuple[str, ...] = setting(
        "gpuIds",
        ("ADA_24", "AMPERE_48"),
        parse_string_list,
        "a JSON list of strings",
        "ADA_24",
        suffix="[0]",
        prop="gpuIds",
        presence="required",
        compare="set",
    )
    gpu_count: int = setting(
        "gpuCount",
        1,
        parse_int,
        "a whole number",
        "1",
        prop="gpuCount",
        bounds=Bounds(1, unit=" GPU per worker"),
    )
    locations: tuple[str, ...] = setting(
        "locations",
        (),
        parse_string_list,
        "a JSON list of strings",
        "EU-RO-1",
        suffix="[0]",
        prop="locations",
        compare="set-ci",
    )
    workers_min: int = setting(
        "workersMin", 0, parse_int, "a whole number", "0", prop="workersMin", bounds=Bounds(0)
    )
    workers_max: int = setting("workersMax", 3, parse_int, "a whole number", "3", prop="workersMax")
    idle_timeout_s: int = setting(
        "idleTimeoutS",
        5,
        parse_int,
        "a whole number of seconds",
        "5",
        prop="idleTimeout",
        bounds=Bounds(1, 3600, unit=" seconds"),
    )
    scaler_type: str = setting(
        "scalerType",
        "QUEUE_DELAY",
        parse_str,
        "a string",
        "QUEUE_DELAY",
        prop="scalerType",
        bounds=Bounds(choices=SCALER_TYPES),
    )
    scaler_value: int = setting(
        "scalerValue",
        4,
        parse_int,
        "a whole number",
        "4",
        prop="scalerValue",
        bounds=Bounds(1, unit=" (RunPod refuses it)"),
    )
    execution_timeout_ms: int | None = setting(
        "executionTimeoutMs",
        None,
        parse_int,
        "a whole number of ms",
        "600000",
        prop="executionTimeoutMs",
        presence="optional",
        bounds=Bounds(0, unit=" (0 means no limit)"),
    )
    flashboot: str = setting(
        "flashBoot",
        "FLASHBOOT",
        parse_str,
        "a string",
        "FLASHBOOT",
        prop="flashBootType",
        presence="optional",
        bounds=Bounds(choices=FLASHBOOT_TYPES),
    )
    allowed_cuda_versions: tuple[str, ...] = setting(
        "allowedCudaVersions",
        DEFAULT_CUDA_VERSIONS,
        parse_string_list,
        "a JSON list of strings",
        "13.0",
        suffix="[0]",
        prop="allowedCudaVersions",
        presence="optional",
        compare="set",
    )
