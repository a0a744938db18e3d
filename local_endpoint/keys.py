"""The client API key of a local endpoint: the configured one, or one made for this run.

Without ``RUNPOD_API_KEY`` (or ``api_key=``) the endpoint makes a random key and requires
it: a web page in the user's browser can reach 127.0.0.1 but cannot guess it. The command
line prints it once and publishes it in a 0600 file (:func:`custom_node.local_key.key_file`)
that the project's clients on this machine read, so ``invoke run``, ``invoke demo`` and the
custom node keep working with no setup.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from custom_node.local_key import key_file

#: Prefix of generated keys, so one is recognisable in a shell history (never in a log).
GENERATED_PREFIX = "local-"


def client_key(api_key: str | None, env: Mapping[str, str]) -> tuple[str, bool]:
    """``(key, generated)``: ``api_key``, else ``RUNPOD_API_KEY`` of ``env``, else a new random key.

    An empty ``api_key`` is refused: the endpoint always requires a key.
    """
    if api_key is not None and not api_key.strip():
        raise ValueError(
            "api_key must not be empty: the local endpoint always requires a key "
            "(leave it out to have one generated)"
        )
    configured = api_key or env.get("RUNPOD_API_KEY", "").strip()
    if configured:
        return configured, False
    return GENERATED_PREFIX + secrets.token_urlsafe(32), True


def publish(port: int, key: str, env: Mapping[str, str] | None = None) -> Path:
    """Write ``key`` to the key file of ``port``: a 0700 folder, a 0600 file, replaced atomically.

    The temporary file is created exclusively and without following links, so a planted
    link cannot redirect the write.
    """
    path = key_file(port, env)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(key + "\n")
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def withdraw(path: Path, key: str) -> None:
    """Remove the key file if it still holds ``key`` (another endpoint may have replaced it)."""
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8").strip() == key:
            path.unlink()
