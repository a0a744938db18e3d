"""RunPod container registry credentials as a Pulumi dynamic resource (for a private worker image).

Behaviour, and why:

- **name replaces** (RunPod cannot rename a credential); username and password update in place
  (``updateRegistryAuth``).
- **The password is secret and never an output:** the provider returns only a salted PBKDF2 digest of it
  (``passwordDigest``), which ``diff`` checks the desired password against; the password itself stays a secret
  input (encrypted in state), is never logged and is redacted from any RunPod error. RunPod never returns
  username or password, so ``read`` (refresh) can only see that the credential still exists (and its name): a
  password changed in the console is not drift Pulumi can see.
- **create is idempotent:** names are unique per account, so an existing credential with the name is adopted
  and its username/password overwritten with the desired ones.
- **Over REST v2 a credential cannot be changed** (no update operation): a changed username or password (or
  name) is a *create-before-delete replacement*: Pulumi creates the new credential, updates the template and
  the endpoint that refer to it (the endpoint PATCH rolls the workers onto it), and only then deletes the old
  one, so there is no moment where pulls fail. While the old one exists the new one cannot take its name, so
  it gets the name with a random suffix (``registryName`` output: the name on RunPod; ``name`` stays the
  input). For the same reason REST never adopts a credential by name (its password cannot be checked or
  set); a create whose answer was lost is recovered by the client instead.
- **delete** treats "not found" as success. Templates refer to it by id (``containerRegistryAuthId``), and
  RunPod refuses to delete it while one does; Pulumi deletes the template first because it depends on it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
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

from infra.providers.common import PROVIDER_KEY, RunPodProvider, is_known, is_unknown
from infra.runpod_graphql import RunPodGraphQL, RunPodNotFoundError

INPUT_KEYS = ("name", "username", "password")
DIGEST_KEY = "passwordDigest"
REGISTRY_NAME_KEY = "registryName"  # the credential's name on RunPod (REST: maybe suffixed, see above)
DIGEST_ITERATIONS = 100_000


def password_digest(password: str, salt: str | None = None, iterations: int = DIGEST_ITERATIONS) -> str:
    """``pbkdf2-sha256$<iterations>$<salt>$<digest>`` (hex): tells a changed password, cannot be undone."""
    salt = salt or secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), iterations)
    return f"pbkdf2-sha256${iterations}${salt}${digest.hex()}"


def password_matches(password: str, digest: str) -> bool:
    try:
        scheme, iterations, salt, _ = digest.split("$")
        if scheme != "pbkdf2-sha256":
            return False
        return hmac.compare_digest(password_digest(password, salt, int(iterations)), digest)
    except ValueError:
        return False


def _password_changed(olds: Mapping[str, Any], password: Any) -> bool:
    if is_unknown(password) or not isinstance(password, str):
        return True
    digest = olds.get(DIGEST_KEY)
    if isinstance(digest, str):
        return not password_matches(password, digest)
    return olds.get("password") != password  # state written before passwordDigest existed


def _outs(name: str, username: str, password: str, registry_name: str | None = None) -> dict[str, Any]:
    outs = {"name": name, "username": username, DIGEST_KEY: password_digest(password)}
    if registry_name is not None and registry_name != name:
        outs[REGISTRY_NAME_KEY] = registry_name
    return outs


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
        changed = [k for k in ("name", "username") if is_unknown(news.get(k)) or olds.get(k) != news.get(k)]
        if _password_changed(olds, news.get("password")):
            changed.append("password")
        if self.rest:  # no update over REST: a new credential first, the old one deleted last
            return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)
        replaces = [k for k in changed if k == "name"]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)

    def create(self, props: dict[str, Any]) -> CreateResult:
        name, username, password = (str(props[k]) for k in INPUT_KEYS)
        if self.rest:
            return self._create_rest(name, username, password)
        with self.client([password]) as api:
            if not isinstance(api, RunPodGraphQL):
                raise TypeError(f"expected the GraphQL client, got {api!r}")
            existing = next((a for a in api.list_registry_auths() if a.get("name") == name), None)
            if existing is not None:
                pulumi.log.info(f"adopting existing RunPod registry auth {existing['id']} ({name})")
                saved = api.update_registry_auth(str(existing["id"]), username=username, password=password)
            else:
                saved = api.save_registry_auth(name=name, username=username, password=password)
        return CreateResult(str(saved["id"]), _outs(name, username, password))

    def _create_rest(self, name: str, username: str, password: str) -> CreateResult:
        with self.client([password, username]) as api:
            taken = {str(a.get("name")) for a in api.list_registry_auths()}
            registry_name = name
            while registry_name in taken:  # the credential this one replaces, until it is deleted
                registry_name = f"{name}-{secrets.token_hex(3)}"
            saved = api.save_registry_auth(name=registry_name, username=username, password=password)
        return CreateResult(str(saved["id"]), _outs(name, username, password, registry_name))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with self.client() as api:
            auth = next((a for a in api.list_registry_auths() if a.get("id") == id_), None)
        if auth is None:
            return ReadResult("", {})
        # Username and password cannot be read back: keep the stored username and digest (and the inputs).
        outs = {k: props[k] for k in ("username", DIGEST_KEY) if props.get(k) is not None}
        live = auth.get("name")
        if props.get(REGISTRY_NAME_KEY) is not None and live == props[REGISTRY_NAME_KEY]:
            outs |= {"name": props.get("name"), REGISTRY_NAME_KEY: live}  # our suffixed name: no drift
        else:
            outs["name"] = live
        return ReadResult(id_, outs)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        username, password = str(news["username"]), str(news["password"])
        with self.client([password]) as api:
            if not isinstance(api, RunPodGraphQL):  # diff() makes every change a replacement over REST
                raise RuntimeError("a RunPod registry credential cannot be updated over REST v2; run again")
            api.update_registry_auth(id_, username=username, password=password)
        return UpdateResult(_outs(str(news["name"]), username, password))

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
    passwordDigest: pulumi.Output[str]
    registryName: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        username: pulumi.Input[str],
        password: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "name": name,
            "username": username,
            "password": pulumi.Output.secret(password),
            DIGEST_KEY: None,
            REGISTRY_NAME_KEY: None,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["password", DIGEST_KEY])
        super().__init__(
            RegistryAuthProvider(), resource_name, props, pulumi.ResourceOptions.merge(opts, secret)
        )
