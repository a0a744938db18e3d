"""RunPod serverless template as a Pulumi dynamic resource.

Behaviour, and why:

- **Everything updates in place** (``saveTemplate`` with ``id``); RunPod rolls the endpoint's workers. The
  name too: state then holds the new name, which is what delete needs (RunPod deletes templates **by name**).
- **Full replace on every save:** RunPod resets any field left out, so create and update always send the whole
  desired template, with ``env`` (even ``[]``), ``dockerArgs``, ``volumeInGb: 0`` and ``isServerless: true``;
  unset optional fields are omitted, never sent as null.
- **create is idempotent:** template names are unique per account, so an existing template with the name is
  adopted (and overwritten with the desired config) instead of failing on the duplicate.
- **env** is a ``{key: value}`` mapping in Pulumi (order-free, so no spurious diffs) and a sorted list on the
  wire. Its values may be secrets (an HF token): the resource marks ``env`` an additional secret output, so
  state and ``pulumi stack output`` hold it encrypted, and the values are redacted from any RunPod error
  before it is raised. Env values are never logged; check() names bad variables, never their values.
- **delete** waits for RunPod's "template in use" refusal to clear (up to ``delete_wait_s``, since RunPod
  needs about 2 minutes after the endpoint's last use); "not found" is success.

Over REST v2 (``runpodApi: rest``) a template is a **snapshot applied when an endpoint is created from it**:
editing it later changes no endpoint. It is kept (same resource, same id, so switching transports replaces
nothing): it seeds the endpoint at creation, and it is the template the console shows for the endpoint and
that a pod can start from. The endpoint carries its own copy of the container settings (``Endpoint``'s
``imageName``, ``env``, ...), and it is the endpoint's PATCH that rolls the workers onto a new image or env.
So over REST an update PATCHes only the changed fields, and delete copes with the binding: deleting an
endpoint deletes the template it was created from (so a later delete finds nothing: 404 is success), and
RunPod refuses (400, judged by status, not by message) to delete a template while an endpoint is bound to it;
the provider then waits up to ``delete_wait_s`` for that endpoint's deletion to take it, deleting by id.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
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

from infra.providers.common import PROVIDER_KEY, RunPodProvider, as_int, bounds_failures, is_known, is_unknown
from infra.runpod_api import RunPodApi
from infra.runpod_graphql import RunPodAPIError, RunPodNotFoundError
from infra.runpod_rest import RunPodREST
from infra.spec import Prop, TemplateSpec, inputs, props

# The configurable fields (infra.spec.TemplateSpec), then the inputs only the resource has.
PROPS: tuple[Prop, ...] = (
    *props(TemplateSpec),
    Prop("imageName", "str", "required"),
    Prop("dockerArgs", "str", "default", ""),
    Prop("containerRegistryAuthId", "str"),
    Prop("volumeMountPath", "str"),
    Prop("readme", "str"),
)
REQUIRED = tuple(p.name for p in PROPS if p.presence == "required")
DEFAULTS: dict[str, Any] = {p.name: p.default for p in PROPS if p.presence == "default"}
INPUT_KEYS = tuple(p.name for p in PROPS)
INT_KEYS = tuple(p.name for p in PROPS if p.shape == "int")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What a field left out of the desired template means in a REST PATCH (which would keep the old value).
REST_UNSET: dict[str, Any] = {"containerRegistryAuthId": None, "dockerArgs": ""}


def _env_values(props: Mapping[str, Any]) -> list[str]:
    """The env values, to redact from errors (a GraphQL server may echo the variables it refused)."""
    env = props.get("env")
    return [str(v) for v in env.values() if is_known(v)] if isinstance(env, dict) else []


def _normalize(props: Mapping[str, Any]) -> dict[str, Any]:
    """Desired/stored template in Pulumi's shape: defaults filled, ints cast, env a dict, no __provider."""
    out = {k: props.get(k, DEFAULTS.get(k)) for k in INPUT_KEYS}
    out = {k: v for k, v in out.items() if v is not None}
    for key in INT_KEYS:
        if is_known(out.get(key)):
            out[key] = as_int(out[key])
    env = out.get("env")
    if isinstance(env, list):  # the wire shape, as read back from RunPod
        out["env"] = {e["key"]: e["value"] for e in env if e}
    return out


def _outs(template: Mapping[str, Any]) -> dict[str, Any]:
    return _normalize({k: template.get(k) for k in INPUT_KEYS})


def _wire(props: Mapping[str, Any], template_id: str | None = None) -> dict[str, Any]:
    """The complete ``SaveTemplateInput`` RunPod needs (see the module docstring)."""
    desired = _normalize(props)
    env = desired.pop("env")
    payload = {**desired, "env": [{"key": k, "value": str(v)} for k, v in sorted(env.items())]}
    payload |= {"volumeInGb": 0, "isServerless": True}
    if template_id:
        payload["id"] = template_id
    return payload


def _changed(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    old, new = _normalize(olds), _normalize(news)
    return [k for k in INPUT_KEYS if is_unknown(new.get(k)) or old.get(k) != new.get(k)]


def rest_patch(olds: Mapping[str, Any], news: Mapping[str, Any], template_id: str) -> dict[str, Any]:
    """The REST PATCH (provider names) for the changed fields only; ``{"id"}`` alone: nothing changed."""
    desired = _wire(news)
    patch: dict[str, Any] = {"id": template_id}
    for key in _changed(olds, news):
        if key in desired:
            patch[key] = desired[key]
        elif key in REST_UNSET:
            patch[key] = REST_UNSET[key]
    return patch


class TemplateProvider(RunPodProvider):
    """CRUD for one RunPod serverless template; see the module docstring for the why."""

    # Class attributes are not pickled (the class is pickled by reference); tests shorten them.
    delete_wait_s: ClassVar[float] = 180.0
    delete_poll_s: ClassVar[float] = 10.0

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        inputs = {k: v for k, v in news.items() if k != PROVIDER_KEY}
        for key in REQUIRED:
            if news.get(key) is None:
                failures.append(CheckFailure(key, f"{key} is required"))
        name = news.get("name")
        if is_known(name) and (not isinstance(name, str) or len(name.strip()) < 3):
            failures.append(CheckFailure("name", "name must be a string of at least 3 characters"))
        ints: dict[str, int] = {}
        for key in INT_KEYS:
            if is_known(news.get(key)):
                try:
                    ints[key] = inputs[key] = as_int(news[key])
                except ValueError as exc:
                    failures.append(CheckFailure(key, str(exc)))
        failures += bounds_failures(PROPS, {**{k: v for k, v in news.items() if k not in INT_KEYS}, **ints})
        env = news.get("env")
        if is_known(env) and not (
            isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            failures.append(CheckFailure("env", "env must map variable names to string values"))
        elif isinstance(env, dict):
            bad = [k for k in env if not ENV_NAME.match(k)]
            if bad:
                failures.append(
                    CheckFailure(
                        "env",
                        f"env: {', '.join(map(repr, bad))} is not a variable name (letters, digits and _, "
                        "not starting with a digit)",
                    )
                )
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = _changed(olds, news)
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        name = props["name"]
        with self.client(_env_values(props)) as api:
            existing = next((t for t in api.list_templates() if t.get("name") == name), None)
            if existing is not None:
                pulumi.log.info(f"adopting existing RunPod template {existing['id']} ({name})")
            saved = api.save_template(_wire(props, existing["id"] if existing else None))
        return CreateResult(str(saved["id"]), _outs(saved))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with self.client() as api:
            template = next((t for t in api.list_templates() if t.get("id") == id_), None)
        if template is None:
            return ReadResult("", {})
        outs = _outs(template)
        return ReadResult(id_, outs, dict(outs))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        with self.client(_env_values(news)) as api:
            if self.rest:  # a partial PATCH: only what changed (a snapshot: no endpoint changes with it)
                patch = rest_patch(olds, news, id_)
                current = None
                if len(patch) == 1:  # nothing to send: the outputs from a read
                    current = next((t for t in api.list_templates() if t.get("id") == id_), None)
                saved = current if current is not None else api.save_template(patch)
            else:
                saved = api.save_template(_wire(news, id_))
        return UpdateResult(_outs(saved))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with self.client() as api:
            self._delete_when_free(api, id_, str(props["name"]))

    def _delete_when_free(self, api: RunPodApi, id_: str, name: str) -> None:
        deadline = time.monotonic() + self.delete_wait_s
        while True:
            try:
                if isinstance(api, RunPodREST):
                    api.delete_template_by_id(id_)  # the id: a template of that name may be another one
                else:
                    api.delete_template(name)
                return
            except RunPodNotFoundError:  # over REST also: deleted with the endpoint it was bound to
                pulumi.log.info(f"RunPod template {name} was already gone")
                return
            except RunPodAPIError as exc:
                # REST: 400 is "an endpoint is bound to it" (by status). GraphQL: only the message tells.
                busy = exc.status == 400 if isinstance(api, RunPodREST) else "in use" in exc.message.lower()
                if not busy or time.monotonic() >= deadline:
                    if busy and isinstance(api, RunPodREST):
                        raise RunPodAPIError(
                            exc.operation,
                            f"{exc.message}; delete the endpoint bound to template {name} first (that "
                            "deletes the template too), or run again once it is gone",
                            status=exc.status,
                        ) from None
                    raise
                pulumi.log.info(
                    f"RunPod template {name} is still in use; retrying in {self.delete_poll_s:.0f}s"
                )
                time.sleep(self.delete_poll_s)


class Template(Resource, module="runpod", name="Template"):
    """A RunPod serverless template. Type token ``pulumi-python:dynamic/runpod:Template`` (do not change)."""

    name: pulumi.Output[str]
    imageName: pulumi.Output[str]
    containerDiskInGb: pulumi.Output[int]
    dockerArgs: pulumi.Output[str]
    env: pulumi.Output[dict[str, str]]

    def __init__(
        self,
        resource_name: str,
        spec: TemplateSpec,
        *,
        image_name: pulumi.Input[str],
        env_secret: bool = False,
        docker_args: pulumi.Input[str] = "",
        container_registry_auth_id: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``spec``: the configurable fields; ``env_secret``: its env holds Pulumi secrets (kept secret)."""
        env = dict(spec.template_env)
        props = {
            **inputs(TemplateSpec, spec),
            "env": pulumi.Output.secret(env) if env_secret else env,
            "imageName": image_name,
            "dockerArgs": docker_args,
            "containerRegistryAuthId": container_registry_auth_id,
        }
        # env may hold secrets (and RunPod echoes it back): always a secret output, encrypted in state.
        secret = pulumi.ResourceOptions(additional_secret_outputs=["env"])
        super().__init__(TemplateProvider(), resource_name, props, pulumi.ResourceOptions.merge(opts, secret))
