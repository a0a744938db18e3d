"""Saving a completed job's outputs on this machine, never outside the folder given.

The endpoint's answers choose the names here (the job id, each output's subfolder and file
name), so every one is checked before it becomes a path: ``job_folder`` for the job id (the
CLI's ``run_workflow`` and the custom node's job tracker both use it), ``_safe_relative`` for
the outputs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp

from .errors import OutputSaveError, UnusableJobId

# RunPod's job ids are UUID-like ("a1b2...-u1"); anything else is refused rather than cleaned.
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def valid_job_id(job_id: str) -> bool:
    """Whether ``job_id`` can be a folder name: no separator, no ``..``, not absolute."""
    return bool(_JOB_ID.match(job_id)) and ".." not in job_id


def job_folder(base: Path, job_id: Any) -> Path:
    """``base/<job id>``; raises UnusableJobId for an id that could name a path outside ``base``."""
    text = str(job_id)
    if not isinstance(job_id, str) or not valid_job_id(text):
        raise UnusableJobId(
            f"the endpoint answered a job id that cannot be a folder name: {text[:200]!r} "
            "(expected letters, digits, '.', '_' or '-'); is RUNPOD_ENDPOINT_URL a RunPod job API?"
        )
    return base / text


def _safe_relative(*parts: str) -> PurePosixPath:
    """Join server-provided path parts, refusing anything that could leave the output folder."""
    joined = PurePosixPath(*[p for p in parts if p])
    if joined.is_absolute() or any(p in ("..", "") for p in joined.parts) or "\\" in str(joined):
        raise OutputSaveError(f"refusing to save an output named {str(joined)!r}")
    return joined


async def save_outputs(
    output: dict[str, Any], folder: Path, session: aiohttp.ClientSession | None = None
) -> list[Path]:
    """Write every output of a completed job under ``folder``, keeping subfolders.

    Base64 outputs are decoded; URL outputs are downloaded; text outputs become
    ``<node id>.txt``. Returns the files written; raises OutputSaveError.
    """
    written: list[Path] = []
    own_session = session is None
    session = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))
    try:
        for entry in output.get("outputs") or []:
            if entry.get("kind") == "text" and "text" in entry:
                target = folder / _safe_relative(f"{entry.get('node_id', 'text')}.txt")
                data = str(entry["text"]).encode("utf-8")
            else:
                target = folder / _safe_relative(str(entry.get("subfolder") or ""), str(entry["filename"]))
                if "data" in entry:
                    data = base64.b64decode(entry["data"])
                elif "url" in entry:
                    async with session.get(entry["url"]) as response:
                        response.raise_for_status()
                        data = await response.read()
                else:
                    continue
            # Off the event loop: inside ComfyUI this loop also serves the UI.
            await asyncio.to_thread(_write_file, target, data)
            written.append(target)
    except (OSError, aiohttp.ClientError, binascii.Error, ValueError, KeyError) as exc:
        raise OutputSaveError(f"cannot save the outputs: {type(exc).__name__}: {exc}") from exc
    finally:
        if own_session:
            await session.close()
    return written


def _write_file(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
