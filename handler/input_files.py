"""Input files: downloaded safely, written into the job's own folder, referenced by the workflow.

Every file of a job lands in ``<input dir>/runpod-jobs/<job>/<name>``; nothing is written
anywhere else. Names were checked by ``job_input.check_file_name``; here the writes also
refuse to follow symlinks, so a planted link cannot redirect a write outside the folder.
URL inputs are http(s) only, time-limited, share one byte budget per job (checked per
chunk, a few downloads at a time, the first failure cancels the rest), and may only reach
public addresses (``handler.addresses``; each redirect is checked again).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import yarl

from handler.addresses import BlockedAddress, check_literal_host
from handler.addresses import connector as address_policy_connector
from handler.errors import InputFileError
from handler.job_input import InputFile

JOBS_SUBFOLDER = "runpod-jobs"
MAX_REDIRECTS = 5
#: URL inputs downloaded at once per job; the rest wait their turn.
MAX_PARALLEL_DOWNLOADS = 4
CHUNK_BYTES = 256 * 1024
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


class ByteBudget:
    """The bytes a job's input files may still take: one budget shared by all its downloads.

    Every chunk is charged as it arrives, so the job stops at ``MAX_INPUT_BYTES`` in total,
    whatever the number of URLs, instead of after all of them were held in memory.
    """

    def __init__(self, limit: int, used: int = 0) -> None:
        self.limit = limit
        self.used = used

    @property
    def left(self) -> int:
        return self.limit - self.used

    def charge(self, size: int, shown: str) -> None:
        if self.used + size > self.limit:
            raise InputFileError(
                f"input files total more than MAX_INPUT_BYTES={self.limit} bytes (at {shown}); "
                "send fewer or smaller files"
            )
        self.used += size


async def download(
    session: aiohttp.ClientSession, url: str, *, budget: ByteBudget, timeout_s: float, allow_private: bool
) -> bytes:
    """Fetch ``url`` into memory, charging ``budget``; raises InputFileError naming the URL.

    Redirects are followed here, not by aiohttp, so every hop is checked the same way.
    """
    shown = url if len(url) <= 200 else url[:200] + "..."
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            if not allow_private:
                check_literal_host(url)
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
                return await _read_capped(response, budget, shown)
        raise InputFileError(f"cannot download {shown}: more than {MAX_REDIRECTS} redirects")
    except InputFileError:
        raise
    except (aiohttp.ClientConnectorError, BlockedAddress) as exc:
        cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
        raise InputFileError(f"cannot download {shown}: {cause}") from None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        kind = "timed out" if isinstance(exc, TimeoutError) else repr(exc)
        raise InputFileError(f"cannot download {shown}: {kind} (INPUT_URL_TIMEOUT={timeout_s:g}s)") from None


async def _read_capped(response: aiohttp.ClientResponse, budget: ByteBudget, shown: str) -> bytes:
    if (response.content_length or 0) > budget.left:
        budget.charge(response.content_length or 0, shown)
    chunks: list[bytes] = []
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        budget.charge(len(chunk), shown)
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
    """The bytes of every input file, downloading URL inputs a few at a time.

    All downloads share one byte budget (``max_bytes`` less the inline files), at most
    ``MAX_PARALLEL_DOWNLOADS`` run at once, and the first failure cancels the others.
    """
    inline = {f.name: f.data for f in files if f.data is not None}
    remote = [f for f in files if f.data is None]
    fetched: dict[str, bytes] = {}
    if remote:
        budget = ByteBudget(max_bytes, used=sum(len(d) for d in inline.values()))
        gate = asyncio.Semaphore(MAX_PARALLEL_DOWNLOADS)
        connector, resolver = address_policy_connector(allow_private=allow_private)
        try:
            timeout = aiohttp.ClientTimeout(total=timeout_s)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

                async def one(f: InputFile) -> None:
                    assert f.url is not None
                    async with gate:
                        fetched[f.name] = await download(
                            session, f.url, budget=budget, timeout_s=timeout_s, allow_private=allow_private
                        )

                await _all_or_first_failure([one(f) for f in remote])
        finally:
            await resolver.close()
    return [(f.name, inline[f.name] if f.name in inline else fetched[f.name]) for f in files]


async def _all_or_first_failure(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    """Run them concurrently; on the first exception cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    failed = [t for t in tasks if not t.cancelled() and t.exception() is not None]
    if failed:
        raise failed[0].exception()  # type: ignore[misc]


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
