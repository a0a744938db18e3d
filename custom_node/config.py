"""Where the custom node finds its endpoint and API key.

The key stays on the ComfyUI server: it is read from the server's environment or from a
JSON file, and nothing here ever returns it to a route or writes it to a log.

Lookup, first match per field wins:

1. environment: ``RUNPOD_ENDPOINT_URL`` or ``RUNPOD_ENDPOINT_ID``, ``RUNPOD_API_KEY``;
2. ``comfy-runpod.json`` in ComfyUI's user directory (``ComfyUI/user/comfy-runpod.json``);
3. ``comfy-runpod.json`` next to this file (inside the custom node's folder);
and for the key of a local endpoint on a loopback URL that made its own key, the key file it
wrote (``local_key``) comes first.

File format (every key optional)::

    {"endpoint_id": "abc123", "api_key": "rpa_...", "endpoint_url": "http://127.0.0.1:8000/v2/local",
     "timeout_s": 3600, "allowed_hosts": ["mybox.lan"]}

``allowed_hosts`` (or ``COMFY_RUNPOD_ALLOWED_HOSTS=mybox.lan,comfy.example.com``) names the host
names, besides IP addresses and ``localhost``, under which this ComfyUI is opened (see ``hosts``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .endpoint_client import endpoint_url
from .errors import EndpointConfigError
from .hosts import ALLOWED_HOSTS_ENV
from .local_key import read_local_key

log = logging.getLogger("comfy_runpod.config")

CONFIG_NAME = "comfy-runpod.json"


@dataclass(frozen=True)
class RunPodConfig:
    """The resolved settings; ``api_key`` is excluded from ``repr`` so it never reaches a log."""

    url: str | None
    api_key: str | None = field(default=None, repr=False)
    source: str | None = None
    timeout_s: float = 3600.0
    problem: str | None = None
    allowed_hosts: tuple[str, ...] = ()

    @property
    def configured(self) -> bool:
        return self.url is not None

    def public(self) -> dict[str, Any]:
        """What the browser may see: whether it is configured and where, never the key."""
        return {
            "configured": self.configured,
            "endpoint": self.url,
            "has_api_key": bool(self.api_key),
            "source": self.source,
            "problem": self.problem,
        }


def default_paths(user_dir: str | None) -> list[Path]:
    """The config files looked at, in order."""
    paths = [Path(user_dir) / CONFIG_NAME] if user_dir else []
    return [*paths, Path(__file__).resolve().parent / CONFIG_NAME]


def _read_file(paths: Sequence[Path]) -> tuple[dict[str, Any], str | None, str | None]:
    for path in paths:
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            # The message names the file and the parse error only: the content may hold the key.
            return {}, str(path), f"cannot read {path}: {type(exc).__name__}"
        if not isinstance(data, dict):
            return {}, str(path), f"{path} must hold a JSON object"
        return data, str(path), None
    return {}, None, None


def load_config(env: Mapping[str, str] | None = None, paths: Sequence[Path] = ()) -> RunPodConfig:
    """Resolve the endpoint URL and key from ``env`` then the first existing file of ``paths``.

    Read on every request (a small file), so editing the file needs no ComfyUI restart.
    """
    env = os.environ if env is None else env
    data, file_source, problem = _read_file(paths)
    merged = {
        "RUNPOD_ENDPOINT_URL": env.get("RUNPOD_ENDPOINT_URL") or str(data.get("endpoint_url") or ""),
        "RUNPOD_ENDPOINT_ID": env.get("RUNPOD_ENDPOINT_ID") or str(data.get("endpoint_id") or ""),
    }
    api_key = env.get("RUNPOD_API_KEY") or (str(data["api_key"]) if data.get("api_key") else None)
    from_env = bool(env.get("RUNPOD_ENDPOINT_URL") or env.get("RUNPOD_ENDPOINT_ID"))
    try:
        timeout_s = float(data.get("timeout_s", 3600))
    except (TypeError, ValueError):
        timeout_s, problem = 3600.0, problem or "timeout_s must be a number"
    try:
        url: str | None = endpoint_url(env=merged)
    except EndpointConfigError:
        url = None
        problem = problem or (
            "no endpoint: set RUNPOD_ENDPOINT_ID (or RUNPOD_ENDPOINT_URL) and RUNPOD_API_KEY in "
            f"ComfyUI's environment, or write them to {CONFIG_NAME} in ComfyUI's user folder"
        )
    hosts: Any = env.get(ALLOWED_HOSTS_ENV) or data.get("allowed_hosts") or ()
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    if not isinstance(hosts, list | tuple) or not all(isinstance(h, str) for h in hosts):
        hosts, problem = (), problem or "allowed_hosts must be a list of host names"
    source = "environment" if from_env else file_source if url else None
    if url is not None:
        # A local endpoint on loopback that made its own key: that key (local_key) wins.
        api_key = read_local_key(url, env) or api_key
    return RunPodConfig(
        url=url,
        api_key=api_key,
        source=source,
        timeout_s=timeout_s,
        problem=problem,
        allowed_hosts=tuple(h.strip() for h in hosts if h.strip()),
    )
