"""The transport seam: what the dynamic providers may call on a RunPod client, and which client to make.

Why: the providers run over REST v2 (the default) or GraphQL (until RunPod retires it in early 2027), chosen
by the stack config ``runpodApi`` (read in ``infra.providers.common.RunPodProvider.configure``). Both clients
take and return the providers' field names; ``RunPodApi`` is the part they share, so a provider typed against
it works over either. What only one transport has stays off the protocol: ``update_registry_auth`` (GraphQL
only: REST credentials cannot be changed),
``list_gpu_types``/``list_endpoint_releases``/``list_endpoint_workers`` (REST only).

Semantics still differ behind the same names (see ``infra.runpod_rest``): a save with an ``id`` is a full
replace over GraphQL and a partial PATCH over REST; a REST endpoint answer has no ``templateId``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from infra.runpod_graphql import RunPodGraphQL
from infra.runpod_rest import RunPodREST

Transport = Literal["rest", "graphql"]
TRANSPORTS: Final[tuple[Transport, ...]] = ("rest", "graphql")
DEFAULT_TRANSPORT: Final[Transport] = "rest"


class RunPodApi(Protocol):
    """The resource-level methods both clients offer, in the providers' field names."""

    def close(self) -> None: ...
    def __enter__(self) -> RunPodApi: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def list_network_volumes(self) -> list[dict[str, Any]]: ...
    def create_network_volume(self, *, name: str, size: int, data_center_id: str) -> dict[str, Any]: ...
    def update_network_volume(self, volume_id: str, *, name: str, size: int) -> dict[str, Any]: ...
    def delete_network_volume(self, volume_id: str) -> None: ...

    def list_templates(self) -> list[dict[str, Any]]: ...
    def save_template(self, template: Mapping[str, Any]) -> dict[str, Any]: ...
    def delete_template(self, name: str) -> None: ...

    def get_endpoint(self, endpoint_id: str) -> dict[str, Any] | None: ...
    def list_endpoints(self) -> list[dict[str, Any]]: ...
    def save_endpoint(self, endpoint: Mapping[str, Any]) -> dict[str, Any]: ...
    def delete_endpoint(self, endpoint_id: str) -> None: ...

    def list_registry_auths(self) -> list[dict[str, Any]]: ...
    def save_registry_auth(self, *, name: str, username: str, password: str) -> dict[str, Any]: ...
    def delete_registry_auth(self, auth_id: str) -> None: ...


def transport_of(value: object) -> Transport:
    """``value`` as a transport; anything but ``rest`` or ``graphql`` is a ``ValueError`` naming the config
    key and the fix."""
    for known in TRANSPORTS:
        if value == known:
            return known
    raise ValueError(
        f"runpodApi: {value!r} is not one of {', '.join(TRANSPORTS)}; "
        f"run `pulumi config set runpodApi {DEFAULT_TRANSPORT}`"
    )


def connect(transport: str, api_key: str, *, redact: Iterable[str] = ()) -> RunPodApi:
    """A client for ``transport`` (``rest`` or ``graphql``; see ``transport_of`` for any other value)."""
    if transport_of(transport) == "rest":
        return RunPodREST(api_key, redact=redact)
    return RunPodGraphQL(api_key, redact=redact)


if TYPE_CHECKING:  # mypy proves both clients fit the protocol
    _rest: type[RunPodApi] = RunPodREST
    _graphql: type[RunPodApi] = RunPodGraphQL
