"""Which ``Host`` names the ``/runpod/...`` routes answer: this server's own, never a rebound one.

DNS rebinding: a page on ``evil.example`` re-points its own name at ``127.0.0.1``; the browser
then talks to ComfyUI as that page's own origin (``Origin`` and ``Host`` both say
``evil.example:8188``), ComfyUI's origin check (it compares the two) lets it through, and the
page could queue jobs on the user's key and read their results. The ``Host`` header still
carries the attacker's name, so these routes answer only a ``Host`` that is

* an IP address (``127.0.0.1``, ``[::1]``, ``192.168.1.20``): no DNS lookup, nothing to rebind;
* a loopback name (``localhost``);
* a name ComfyUI was told to listen on (``--listen mybox.lan``);
* a name the user allows: ``COMFY_RUNPOD_ALLOWED_HOSTS`` (comma-separated) or
  ``"allowed_hosts": [...]`` in ``comfy-runpod.json`` (a LAN name, a reverse proxy's domain).

Anything else gets 403 ``HOST_NOT_ALLOWED`` naming that setting.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from .local_key import LOOPBACK_NAMES  # names that always mean this machine (no DNS)

ALLOWED_HOSTS_ENV = "COMFY_RUNPOD_ALLOWED_HOSTS"


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without port, brackets or trailing dot, lower-cased."""
    value = header.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".").lower()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_names(*sources: Iterable[str]) -> frozenset[str]:
    """Loopback names plus every non-empty name of ``sources`` (listen addresses, the setting)."""
    names = {host_name(str(name)) for source in sources for name in source}
    return LOOPBACK_NAMES | {name for name in names if name}


def host_allowed(header: str | None, names: frozenset[str]) -> bool:
    """Whether a request with this ``Host`` header is for this server (see the module doc)."""
    if not header:
        return False
    name = host_name(header)
    return bool(name) and (_is_ip(name) or name in names)
