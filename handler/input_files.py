"""Input files: downloaded safely, written into the job's own folder, referenced by the workflow.

Every file of a job lands in ``<input dir>/runpod-jobs/<job>/<name>``; nothing is written
anywhere else. Names were checked by ``job_input.check_file_name``; here the writes also
refuse to follow symlinks, so a planted link cannot redirect a write outside the folder.
URL inputs are http(s) only, size-capped, time-limited, and may not reach private,
loopback or link-local addresses (each redirect is checked again).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from handler.errors import InputFileError
from handler.job_input import InputFile

JOBS_SUBFOLDER = "runpod-jobs"
MAX_REDIRECTS = 5
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]")


def job_folder_name(job_id: str) -> str:
    """A folder name for ``job_id`` that is safe on any filesystem and unique per id."""
    safe = _SAFE_ID.sub("_", job_id)[:80].strip(".") or "job"
    if safe != job_id:
        safe += "-" + hashlib.sha256(job_id.encode()).hexdigest()[:8]
    return safe


def job_relpath(job_id: str) -> str:
    """The job folder relative to ComfyUI's input (and output) directory."""
    return f"{JOBS_SUBFOLDER}/{job_folder_name(job_id)}"


class BlockedAddress(OSError):
    """A URL resolved to an address inputs may not be fetched from."""


def address_allowed(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


class PublicOnlyResolver(AbstractResolver):
    """Resolves names, then refuses the connection if any address is not public.

    The checked addresses are the ones aiohttp connects to, so DNS rebinding between the
    check and the connection is not possible.
    """

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not address_allowed(result["host"]):
                raise BlockedAddress(
                    f"{host} resolves to {result['host']}, a private, loopback or link-local "
                    "address; input URLs must be public"
                )
        return results

    async def close(self) -> None:
        await self._inner.close()


def _check_literal_host(url: str) -> None:
    """aiohttp connects to IP literals without asking the resolver: check them here."""
    host = yarl.URL(url).host or ""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return  # a name: PublicOnlyResolver checks what it resolves to
    if not address_allowed(host.strip("[]")):
        raise BlockedAddress(
            f"{host} is a private, loopback or link-local address; input URLs must be public"
        )


async def download(url: str, *, max_bytes: int, timeout_s: float, allow_private: bool) -> bytes:
    """Fetch ``url`` into memory; raises InputFileError naming the URL and the cause.

    Redirects are followed here, not by aiohttp, so every hop is checked the same way.
    """
    resolver: AbstractResolver = DefaultResolver() if allow_private else PublicOnlyResolver()
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    shown = url if len(url) <= 200 else url[:200] + "..."
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for _hop in range(MAX_REDIRECTS + 1):
                if not allow_private:
                    _check_literal_host(url)
                async with session.get(url, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                        url = str(response.url.join(yarl.URL(response.headers["Location"])))
                        if response.url.scheme not in ("http", "https") or not url.startswith(
                            ("http://", "https://")
                        ):
                            raise InputFileError(f"{shown} redirects to a non-http(s) URL")
                        continue
                    if response.status != 200:
                        raise InputFileError(f"downloading {shown} answered HTTP {response.status}")
                    return await _read_capped(response, max_bytes, shown)
            raise InputFileError(f"cannot download {shown}: more than {MAX_REDIRECTS} redirects")
    except InputFileError:
        raise
    except (aiohttp.ClientConnectorError, BlockedAddress) as exc:
        cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
        raise InputFileError(f"cannot download {shown}: {cause}") from None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        kind = "timed out" if isinstance(exc, TimeoutError) else repr(exc)
        raise InputFileError(f"cannot download {shown}: {kind} (INPUT_URL_TIMEOUT={timeout_s:g}s)") from None
    finally:
        await resolver.close()  # the connector closes only resolvers it made itself


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int, shown: str) -> bytes:
    if (response.content_length or 0) > max_bytes:
        raise InputFileError(f"{shown} is {response.content_length} bytes, over MAX_INPUT_BYTES={max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise InputFileError(f"{shown} is over MAX_INPUT_BYTES={max_bytes}")
        chunks.append(chunk)
    return b"".join(chunks)


def write_job_files(input_dir: Path, job_id: str, files: list[tuple[str, bytes]]) -> Path:
    """Write ``files`` under the job's folder and return that folder.

    Any earlier folder of the same job (a retry) is removed first. Parent folders are
    created one at a time and files opened with O_NOFOLLOW | O_EXCL, so symlinks are never
    followed and nothing can be written outside the folder.
    """
    jobs_root = input_dir / JOBS_SUBFOLDER
    jobs_root.mkdir(parents=True, exist_ok=True)
    if jobs_root.is_symlink():
        raise InputFileError(f"{jobs_root} is a symlink; refusing to write input files")
    folder = jobs_root / job_folder_name(job_id)
    remove_tree(folder)
    folder.mkdir()
    for name, data in files:
        current = folder
        *parents, leaf = name.split("/")
        for part in parents:
            current = current / part
            try:
                current.mkdir()
            except FileExistsError:
                if current.is_symlink() or not current.is_dir():
                    raise InputFileError(f"input name {name!r}: {part!r} is not a folder") from None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(current / leaf, flags, 0o644)
        except FileExistsError:
            raise InputFileError(f"input name {name!r} clashes with another input") from None
        except OSError as exc:
            raise InputFileError(f"cannot write input {name!r}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    return folder


def remove_tree(path: Path) -> None:
    """Remove a file or folder without following symlinks; missing is fine."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


async def gather_files(
    files: list[InputFile], *, max_bytes: int, timeout_s: float, allow_private: bool
) -> list[tuple[str, bytes]]:
    """The bytes of every input file, downloading URL inputs concurrently."""

    async def one(f: InputFile) -> tuple[str, bytes]:
        if f.data is not None:
            return f.name, f.data
        assert f.url is not None
        data = await download(f.url, max_bytes=max_bytes, timeout_s=timeout_s, allow_private=allow_private)
        return f.name, data

    results = await asyncio.gather(*(one(f) for f in files))
    total = sum(len(d) for _, d in results)
    if total > max_bytes:
        raise InputFileError(f"input files total {total} bytes, over MAX_INPUT_BYTES={max_bytes}")
    return list(results)


_ANNOTATION = re.compile(r"^(.*?)( \[(input|output|temp)\])$")


def rewrite_references(workflow: dict[str, Any], names: list[str], job_rel: str) -> int:
    """Point the workflow's references to input files at the job folder, in place.

    ``"image": "masks/a.png"`` becomes ``"runpod-jobs/<job>/masks/a.png"`` (an ``[input]``
    annotation is kept). Nodes with a ``subfolder`` input next to a file name (e.g.
    LoadImageWithSubfolder) get the job folder prepended to the subfolder instead.
    Returns the number of inputs rewritten.
    """
    wanted = set(names)
    count = 0
    for node in workflow.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        subfolder = inputs.get("subfolder")
        if isinstance(subfolder, str):
            for key, value in inputs.items():
                if key == "subfolder" or not isinstance(value, str):
                    continue
                joined = f"{subfolder.strip('/')}/{value}" if subfolder.strip("/") else value
                if joined in wanted:
                    inputs["subfolder"] = f"{job_rel}/{subfolder.strip('/')}".rstrip("/")
                    count += 1
                    break
            else:
                subfolder = None
            if subfolder is not None:
                continue
        for key, value in list(inputs.items()):
            if not isinstance(value, str):
                continue
            match = _ANNOTATION.match(value)
            base, suffix = (match.group(1), match.group(2)) if match else (value, "")
            if base in wanted and suffix in ("", " [input]"):
                inputs[key] = f"{job_rel}/{base}{suffix}"
                count += 1
    return count
