"""What every RunPod dynamic provider shares: the API key and the transport from stack config, and Pulumi's
value quirks.

The key is read in ``configure()``, which runs in the provider process after unpickling: it is never an input,
never in state and never pickled (``__getstate__`` drops it even from a configured provider). The transport
(stack config ``runpodApi``: ``rest``, the default, or ``graphql``) is read there too, so one stack config key
switches every resource, and it is never an input either: switching changes no input, hence no diff.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, ConfigureRequest, ResourceProvider

from infra.runpod_api import DEFAULT_TRANSPORT, RunPodApi, Transport, connect, transport_of
from infra.spec import Prop

API_KEY_CONFIG = "runpodApiKey"
API_KEY_ENV = "RUNPOD_API_KEY"
TRANSPORT_CONFIG = "runpodApi"
PROVIDER_KEY = "__provider"


def is_known(value: Any) -> bool:
    """False for None and for the ``Unknown`` placeholders that check/diff see during preview."""
    return value is not None and not isinstance(value, pulumi.output.Unknown)


def is_unknown(value: Any) -> bool:
    """True for a value Pulumi does not know yet (preview), which must count as a change."""
    return isinstance(value, pulumi.output.Unknown)


def as_int(value: Any) -> int:
    """Pulumi hands numbers over as floats (pulumi #13830); GraphQL Int wants an int."""
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(value)


def bounds_failures(props: Iterable[Prop], values: Mapping[str, Any]) -> list[CheckFailure]:
    """The declared bounds (``infra.spec``: ranges, choices) that a known value breaks; ``values`` holds the
    inputs with numbers already cast (an input missing there is checked at its default)."""
    failures: list[CheckFailure] = []
    for prop in props:
        value = values.get(prop.name, prop.default)
        if prop.bounds is not None and is_known(value) and prop.bounds.refuses(value):
            failures.append(CheckFailure(prop.name, f"{prop.name} must be {prop.bounds.accepted()}"))
    return failures


class RunPodProvider(ResourceProvider):
    """Base class: API-key handling; no HTTP client is ever held on ``self`` (an SSLContext cannot pickle)."""

    # The provider captures no secret, so its pickle need not be secret (that has a cost, pulumi #15538).
    serialize_as_secret_always = False

    def __init__(self) -> None:
        super().__init__()
        self._api_key: str | None = None
        self._transport: Transport = DEFAULT_TRANSPORT

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_api_key"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_transport", DEFAULT_TRANSPORT)  # a pickle from before the switch existed

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def configure(self, req: ConfigureRequest) -> None:
        key = req.config.get(API_KEY_CONFIG)
        self._api_key = str(key) if key else None
        self._transport = transport_of(req.config.get(TRANSPORT_CONFIG) or DEFAULT_TRANSPORT)

    @property
    def rest(self) -> bool:
        """True over REST v2 (``runpodApi: rest``), where the semantics differ (see each provider)."""
        return self._transport == "rest"

    def client(self, redact: Iterable[str] = ()) -> RunPodApi:
        """A client for one operation; ``redact``: secret values to hide in any error it raises."""
        key = self._api_key or os.environ.get(API_KEY_ENV)
        if not key:
            raise RuntimeError(
                f"no RunPod API key: run `pulumi config set --secret {API_KEY_CONFIG} ...` "
                f"(or export {API_KEY_ENV})"
            )
        return connect(self._transport, key, redact=redact)
