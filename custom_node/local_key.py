"""The local endpoint's generated API key: where it is kept, and who may pick it up.

``python -m local_endpoint`` (``invoke local-endpoint``) without ``RUNPOD_API_KEY`` makes a
random key, requires it from every client, prints it once and writes it to
``<state dir>/local-endpoint-<port>.key`` (mode 0600, in a 0700 folder; removed when the
endpoint stops). Clients on this machine with no key of their own (the invoke tasks, this
custom node) read that file for an endpoint URL on a loopback address, so everything works
out of the box while a web page in the user's browser, which cannot read files, cannot
queue jobs.

The state dir is ``$COMFY_RUNPOD_STATE``, else ``$XDG_STATE_HOME/comfy-runpod``, else
``~/.local/state/comfy-runpod``. Standard library only: this folder must work copied alone
into ComfyUI.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

#: Host names that always mean this machine (IP literals are checked with ``is_loopback``).
LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the key files live (see the module docstring)."""
    env = os.environ if env is None else env
    if env.get("COMFY_RUNPOD_STATE"):
        return Path(env["COMFY_RUNPOD_STATE"])
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "comfy-runpod"


def key_file(port: int, env: Mapping[str, str] | None = None) -> Path:
    """The key file of the local endpoint listening on ``port``."""
    return state_dir(env) / f"local-endpoint-{port}.key"


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP literal (``127.0.0.0/8``, ``::1``; brackets allowed)."""
    host = host.strip().lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_local_key(url: str, env: Mapping[str, str] | None = None) -> str | None:
    """The generated key of the local endpoint at ``url``, or None.

    Only for ``http://`` URLs on a loopback address (the key never goes anywhere else), and
    only when the file exists and is readable.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != "http" or not parts.hostname or not is_loopback_host(parts.hostname):
        return None
    try:
        key = key_file(port or 80, env).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return key or None
