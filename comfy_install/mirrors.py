"""Redirect the lock's repository URLs: offline mirrors, corporate proxies, the tests.

The lock names the public repositories; where they are fetched from is a property of the
machine, so it comes from the command line (``--mirror URL=TARGET``, repeatable) or the
environment (``COMFY_RUNPOD_MIRRORS="URL=TARGET;URL=TARGET"``, entries separated by ``;`` or
new lines). The command line wins over the environment.

Two forms, as git's ``url.<base>.insteadOf``::

    https://github.com/Comfy-Org/ComfyUI=/srv/git/ComfyUI.git    one repository (exact match)
    https://github.com/=https://git.example.com/github/          every URL under a prefix (ends in /)

URLs are compared without a trailing ``/`` or ``.git`` and with the host in lower case, so
``https://GitHub.com/x/y.git`` matches ``https://github.com/x/y``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from comfy_install.errors import MirrorError

MIRRORS_ENV = "COMFY_RUNPOD_MIRRORS"


@dataclass(frozen=True)
class Mirror:
    """One redirection: ``source`` (a URL, or a prefix ending in ``/``) to ``target``."""

    source: str
    target: str

    @property
    def is_prefix(self) -> bool:
        return self.source.endswith("/")


def normalize_url(url: str) -> str:
    """The form two spellings of one repository share (host lower-cased, no ``.git``, no ``/``)."""
    text = url.strip().rstrip("/")
    if text.endswith(".git"):
        text = text[: -len(".git")]
    scheme, sep, rest = text.partition("://")
    if sep:
        host, slash, path = rest.partition("/")
        text = f"{scheme.lower()}://{host.lower()}{slash}{path}"
    return text


def parse_mirror(spec: str, origin: str = "--mirror") -> Mirror:
    """Parse ``URL=TARGET``; the error names where the entry came from and the expected form."""
    source, sep, target = spec.strip().partition("=")
    source, target = source.strip(), target.strip()
    if not sep or not source or not target:
        raise MirrorError(
            f"{origin} {spec.strip()!r}: expected URL=PATH or URL=URL, "
            "e.g. https://github.com/Comfy-Org/ComfyUI=/srv/git/ComfyUI"
        )
    if target.startswith("-"):
        raise MirrorError(f"{origin} {spec.strip()!r}: the target may not start with '-'")
    if source.endswith("/") and not target.endswith(("/", os.sep)):
        target += "/"
    return Mirror(source, target)


def parse_mirrors(cli: Iterable[str] = (), env: Mapping[str, str] | None = None) -> tuple[Mirror, ...]:
    """The mirrors in force: ``--mirror`` entries first (they win), then ``COMFY_RUNPOD_MIRRORS``."""
    mirrors = [parse_mirror(spec) for spec in cli]
    raw = (env if env is not None else os.environ).get(MIRRORS_ENV, "")
    for entry in raw.replace("\n", ";").split(";"):
        if entry.strip():
            mirrors.append(parse_mirror(entry, MIRRORS_ENV))
    return tuple(mirrors)


def resolve_url(url: str, mirrors: Iterable[Mirror]) -> str:
    """Where to fetch ``url`` from: the first matching mirror's target, or ``url`` itself.

    Exact entries are tried before prefixes; among prefixes the longest wins. A relative local
    target is made absolute, so git resolves it the same from any working directory.
    """
    wanted = normalize_url(url)
    mirrors = tuple(mirrors)
    for mirror in mirrors:
        if not mirror.is_prefix and normalize_url(mirror.source) == wanted:
            return _absolute(mirror.target)
    best: Mirror | None = None
    for mirror in mirrors:
        prefix = normalize_url(mirror.source) + "/"
        longer = best is None or len(mirror.source) > len(best.source)
        if mirror.is_prefix and (wanted + "/").startswith(prefix) and longer:
            best = mirror
    if best is None:
        return url
    rest = wanted[len(normalize_url(best.source)) + 1 :]
    return _absolute(best.target + rest)


_SCP_LIKE = re.compile(r"[^/:]{2,}:")  # user@host:path (git's scp syntax), not C:\\


def _absolute(target: str) -> str:
    if "://" in target or _SCP_LIKE.match(target) or Path(target).is_absolute():
        return target
    return str(Path(target).resolve())
