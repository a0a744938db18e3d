"""RunPod container registry credentials as a Pulumi dynamic resource (for a private worker image).

Behaviour, and why:

- **name replaces** (RunPod cannot rename a credential); username and password update in place
  (``updateRegistryAuth``).
- **The password is secret:** the resource marks it an additional secret output, so state holds it encrypted;
  it is never logged. RunPod never returns username or password, so ``read`` (refresh) can only see that the
  credential still exists (and its name): a password changed in the console is not drift Pulumi can see.
- **create is idempotent:** names are unique per account, so an existing credential with the name is adopted
  and its username/password overwritten with the desired ones.
- **delete** treats "not found" as success. Templates refer to it by id (``containerRegistryAuthId``), and
  RunPod refuses to delete it while one does; Pulumi deletes the template first because it depends on it.
"""

from __future__ import annotations

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

from infra.providers.common import PROVIDER_KEY, RunPodProvider, is_known, is_unknown
from infra.runpod_graphql import RunPodNotFoundError

INPUT_KEYS = ("name", "username", "password")


class RegistryAuthProvider(RunPodProvider):
    """CRUD for one RunPod container registry credential; see the module docstring for the why."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = {k: v for k, v in news.items() if k != PROVIDER_KEY}
        failures: list[CheckFailure] = []
        for key in INPUT_KEYS:
            value = news.get(key)
            if value is None or (is_known(value) and (not isinstance(value, str) or not value)):
                failures.append(CheckFailure(key, f"{key} is required (a non-empty string)"))
        name = news.get("name")
        if is_known(name) and isinstance(name, str) and len(name.strip()) < 3:
            failures.append(CheckFailure("name", "name must be at least 3 characters"))
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in INPUT_KEYS if is_unknown(news.get(k)) or olds.get(k) != news.get(k)]
        replaces = [k for k in changed if k == "name"]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)

    def create(self, props: dict[str, Any]) -> CreateResult:
        name, username, password = (str(props[k]) for k in INPUT_KEYS)
        with self.client() as api:
            existing = next((a for a in api.list_registry_auths() if a.get("name") == name), None)
            if existing is not None:
                pulumi.log.info(f"adopting existing RunPod registry auth {existing['id']} ({name})")
                saved = api.update_registry_auth(str(existing["id"]), username=username, password=password)
            else:
                saved = api.save_registry_auth(name=name, username=username, password=password)
        return CreateResult(str(saved["id"]), {"name": name, "username": username, "password": password})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with self.client() as api:
            auth = next((a for a in api.list_registry_auths() if a.get("id") == id_), None)
        if auth is None:
            return ReadResult("", {})
        # Username and password cannot be read back: keep the stored ones.
        outs = {k: props.get(k) for k in INPUT_KEYS} | {"name": auth.get("name")}
        return ReadResult(id_, outs, dict(outs))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        with self.client() as api:
            api.update_registry_auth(id_, username=str(news["username"]), password=str(news["password"]))
        return UpdateResult({k: news[k] for k in INPUT_KEYS})

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        with self.client() as api:
            try:
                api.delete_registry_auth(id_)
            except RunPodNotFoundError:
                pulumi.log.info(f"RunPod registry auth {id_} was already gone")


class RegistryAuth(Resource, module="runpod", name="RegistryAuth"):
    """RunPod container registry credentials. Type token ``pulumi-python:dynamic/runpod:RegistryAuth``."""

    name: pulumi.Output[str]
    username: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        username: pulumi.Input[str],
        password: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"name": name, "username": username, "password": pulumi.Output.secret(password)}
        secret = pulumi.ResourceOptions(additional_secret_outputs=["password"])
        super().__init__(
            RegistryAuthProvider(), resource_name, props, pulumi.ResourceOptions.merge(opts, secret)
        )
