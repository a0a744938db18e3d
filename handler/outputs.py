"""Outputs: every file and text each node reported, delivered as base64 or S3 URLs.

ComfyUI's history lists outputs per node under keys that depend on the node (``images``,
``gifs``, ``audio``, ``text``, custom ones); every list of dicts carrying ``filename`` is a
file output, every list of strings under ``text`` a text output. Files are read through
``GET /view`` (the same path in attach and spawn mode).
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
import time
from dataclasses import dataclass
from typing import Any

from handler.comfy_client import ComfyClient, ComfyRequestError
from handler.error_details import OutputProblem
from handler.errors import OutputError, OutputTooLarge
from handler.settings import S3Target

# Every output node with a literal filename_prefix saves under this job's folder: each job's
# files are then new (ComfyUI's cache would otherwise hand back the previous job's file for
# an identical prompt) and removable in one go.
PREFIX_INPUT = "filename_prefix"
MAX_PARALLEL_READS = 8
_EXTRA_TYPES = {
    ".webp": "image/webp",
    ".flac": "audio/flac",
    ".webm": "video/webm",
    ".safetensors": "application/octet-stream",
    ".glb": "model/gltf-binary",
    ".latent": "application/octet-stream",
}


def rewrite_prefixes(workflow: dict[str, Any], job_rel: str) -> int:
    """Prefix every literal ``filename_prefix`` with the job folder, in place."""
    count = 0
    for node in workflow.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict) and PREFIX_INPUT in inputs and not isinstance(inputs[PREFIX_INPUT], list):
            # ComfyUI turns STRING inputs into str() too; validation refused '..' and absolutes.
            inputs[PREFIX_INPUT] = f"{job_rel}/{str(inputs[PREFIX_INPUT]).lstrip('/')}"
            count += 1
    return count


@dataclass(frozen=True)
class FileRef:
    node_id: str
    key: str
    filename: str
    subfolder: str
    type: str

    @property
    def mime(self) -> str:
        ext = "." + self.filename.rsplit(".", 1)[-1].lower() if "." in self.filename else ""
        return _EXTRA_TYPES.get(ext) or mimetypes.guess_type(self.filename)[0] or "application/octet-stream"

    @property
    def kind(self) -> str:
        major = self.mime.split("/", 1)[0]
        if major in ("image", "video", "audio", "text"):
            if major == "image" and self.key == "gifs" and self.mime != "image/gif":
                return "video"
            return major
        if major == "model":
            return "3d"
        return "latent" if self.key == "latents" else "file"


def collect(outputs: dict[str, Any], *, include_temp: bool) -> tuple[list[FileRef], list[dict[str, Any]]]:
    """The file outputs and text outputs of a history entry's ``outputs``, in node order."""
    files: list[FileRef] = []
    texts: list[dict[str, Any]] = []
    for node_id, ui in outputs.items():
        if not isinstance(ui, dict):
            continue
        for key, items in ui.items():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("filename"), str):
                    ref = FileRef(
                        node_id=str(node_id),
                        key=key,
                        filename=item["filename"],
                        subfolder=str(item.get("subfolder") or ""),
                        type=str(item.get("type") or "output"),
                    )
                    if ref.type == "temp" and not include_temp:
                        continue
                    files.append(ref)
                elif key == "text" and isinstance(item, str):
                    texts.append({"node_id": str(node_id), "kind": "text", "text": item})
    return files, texts


def public_subfolder(subfolder: str, job_rel: str) -> str:
    """The subfolder as the workflow named it, without the job folder we added."""
    if subfolder == job_rel:
        return ""
    if subfolder.startswith(job_rel + "/"):
        return subfolder[len(job_rel) + 1 :]
    return subfolder


async def read_files(client: ComfyClient, refs: list[FileRef]) -> list[bytes]:
    """The bytes of each file, read concurrently through ``/view``."""
    gate = asyncio.Semaphore(MAX_PARALLEL_READS)

    async def one(ref: FileRef) -> bytes:
        async with gate:
            try:
                return await client.view(ref.filename, ref.subfolder, ref.type)
            except ComfyRequestError as exc:
                raise OutputError(
                    f"node {ref.node_id} reported output {ref.filename!r} but it cannot be read",
                    [OutputProblem(ref.node_id, ref.filename, str(exc), ref.subfolder, ref.type)],
                ) from None

    return list(await asyncio.gather(*(one(r) for r in refs)))


def encoded_size(refs_bytes: list[bytes]) -> int:
    return sum(4 * ((len(b) + 2) // 3) for b in refs_bytes)


def choose_mode(requested: str, total_b64: int, threshold: int, bucket: S3Target | None) -> str:
    """Resolve ``auto`` to base64 or s3, and refuse what cannot be delivered."""
    if requested == "s3":
        if bucket is None:
            raise OutputError(
                "output mode 's3' needs a bucket: set BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID, "
                "BUCKET_SECRET_ACCESS_KEY and BUCKET_NAME on the endpoint, or pass output.s3 "
                "(or RunPod's s3Config) with the request"
            )
        return "s3"
    if requested == "auto" and total_b64 > threshold:
        if bucket is None:
            raise OutputTooLarge(
                f"the outputs are {total_b64} bytes as base64, over OUTPUT_AUTO_THRESHOLD="
                f"{threshold} (RunPod refuses large results); configure a bucket (BUCKET_* env "
                "or output.s3 / s3Config) so they can be uploaded"
            )
        return "s3"
    return "base64"


class S3Uploader:
    """Uploads output files with boto3 and returns presigned GET URLs."""

    def __init__(self, target: S3Target, url_expiry_s: int = 3600) -> None:
        import boto3  # imported lazily: only jobs that upload pay for it
        from botocore.config import Config

        self.target = target
        self.url_expiry_s = url_expiry_s
        self._client = boto3.client(
            "s3",
            endpoint_url=target.endpoint_url,
            aws_access_key_id=target.access_key_id,
            aws_secret_access_key=target.secret_access_key,
            region_name=target.region,
            config=Config(
                signature_version="s3v4",
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )

    def key_for(self, job_id: str, ref: FileRef, subfolder: str) -> str:
        parts = [self.target.prefix, job_id, subfolder, ref.filename]
        return "/".join(p.strip("/") for p in parts if p and p.strip("/"))

    def upload(self, key: str, data: bytes, mime: str) -> str:
        self._client.put_object(Bucket=self.target.bucket, Key=key, Body=data, ContentType=mime)
        url: str = self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.target.bucket, "Key": key},
            ExpiresIn=self.url_expiry_s,
        )
        return url


async def deliver(
    *,
    job_id: str,
    job_rel: str,
    refs: list[FileRef],
    contents: list[bytes],
    mode: str,
    bucket: S3Target | None,
    url_expiry_s: int,
) -> tuple[list[dict[str, Any]], float]:
    """The output entries for ``refs``; returns them and the seconds spent encoding/uploading."""
    started = time.perf_counter()
    uploader = S3Uploader(bucket, url_expiry_s) if mode == "s3" and bucket else None
    entries: list[dict[str, Any]] = []
    for ref, data in zip(refs, contents, strict=True):
        subfolder = public_subfolder(ref.subfolder, job_rel)
        entry: dict[str, Any] = {
            "node_id": ref.node_id,
            "kind": ref.kind,
            "filename": ref.filename,
            "subfolder": subfolder,
            "type": ref.type,
            "mime": ref.mime,
            "bytes": len(data),
        }
        if uploader is not None:
            key = uploader.key_for(job_id, ref, subfolder)
            try:
                entry["url"] = await asyncio.to_thread(uploader.upload, key, data, ref.mime)
            except Exception as exc:  # botocore raises many unrelated types
                raise OutputError(
                    f"uploading {ref.filename!r} to bucket {bucket.bucket if bucket else ''!r} "
                    f"failed: {type(exc).__name__}: {exc}",
                    [OutputProblem(ref.node_id, ref.filename, key=key)],
                ) from None
        else:
            entry["data"] = base64.b64encode(data).decode("ascii")
        entries.append(entry)
    return entries, time.perf_counter() - started
