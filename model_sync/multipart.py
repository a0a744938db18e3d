"""Resumable multipart uploads: a large model continues from its last stored part.

A 20 GB checkpoint over a home uplink takes hours, and losing all of it to one dropped
connection is what people hate most in sync tools. S3 keeps the parts of an unfinished
multipart upload, invisible under the final key until CompleteMultipartUpload, so the upload
id goes into the sync state as soon as it exists. The next run asks ListParts what the server
holds, checks each part's ETag against the MD5 of the same local byte range (a part that does
not match is sent again), and uploads only the rest. A file that changed since is started over
and its old upload aborted.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, cast

from s3transfer.utils import ReadFileChunk

from model_sync.local import HASH_CHUNK, LocalFile
from model_sync.plan import SyncState

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef


@dataclass(frozen=True)
class PartRange:
    number: int  # 1-based, as S3 counts
    start: int
    size: int


def part_ranges(size: int, part_size: int) -> list[PartRange]:
    """The byte ranges of a file cut into ``part_size`` parts (the last one shorter)."""
    count = max(1, -(-size // part_size))
    return [PartRange(n + 1, n * part_size, min(part_size, size - n * part_size)) for n in range(count)]


def md5_of_range(f: LocalFile, part: PartRange) -> str:
    """The MD5 hex of one part of a local file: S3's ETag for a part uploaded in one piece."""
    digest = hashlib.md5(usedforsecurity=False)
    with f.path.open("rb") as fh:
        fh.seek(part.start)
        left = part.size
        while left:
            block = fh.read(min(HASH_CHUNK, left))
            if not block:
                break
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def _resume_record(f: LocalFile, part_size: int, upload_id: str) -> dict[str, Any]:
    return {
        "upload_id": upload_id,
        "size": f.size,
        "mtime_ns": f.mtime_ns,
        "sha256": f.sha256,
        "part_size": part_size,
    }


def resumable(record: dict[str, Any] | None, f: LocalFile, part_size: int) -> bool:
    """Whether a recorded unfinished upload belongs to exactly this version of the file."""
    if not record or not record.get("upload_id"):
        return False
    same = record.get("size") == f.size and record.get("mtime_ns") == f.mtime_ns
    if record.get("sha256") and f.sha256:
        same = same and record["sha256"] == f.sha256
    return same and record.get("part_size") == part_size


class MultipartUploader:
    """Uploads large files part by part on a shared thread pool, resuming recorded uploads.

    ``on_bytes`` is called with each part's size once the server has it (or once a part kept
    from an earlier run is verified), so a progress bar counts resumed bytes as done.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        state: SyncState,
        pool: ThreadPoolExecutor,
        part_size: int,
        on_bytes: Callable[[int], None],
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.state = state
        self.pool = pool
        self.part_size = part_size
        self.on_bytes = on_bytes
        self.resumed_bytes = 0  # bytes kept from earlier runs, not sent again

    def upload(self, key: str, f: LocalFile) -> None:
        """Make ``key`` hold ``f``; on failure the upload stays recorded for the next run."""
        record = self.state.uploads.get(key)
        have: dict[int, tuple[str, int]] = {}
        upload_id = ""
        if resumable(record, f, self.part_size):
            assert record is not None
            upload_id = str(record["upload_id"])
            stored = self._stored_parts(key, upload_id)
            if stored is None:  # the server no longer knows it (aborted, expired)
                upload_id = ""
            else:
                have = stored
        elif record:
            self.abort(key, str(record.get("upload_id", "")))
        if not upload_id:
            extra: dict[str, Any] = {"Metadata": {"sha256": f.sha256}} if f.sha256 else {}
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **extra)["UploadId"]
            self.state.uploads[key] = _resume_record(f, self.part_size, upload_id)
            self.state.save()  # before the first part: a killed run can resume from here

        ranges = part_ranges(f.size, self.part_size)
        futures: list[Future[str]] = [
            self.pool.submit(self._ensure_part, key, upload_id, f, part, have.get(part.number))
            for part in ranges
        ]
        etags = [future.result() for future in futures]  # the first failure raises
        done: list[CompletedPartTypeDef] = [
            {"ETag": etag, "PartNumber": part.number} for part, etag in zip(ranges, etags, strict=True)
        ]
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
        )
        self.state.uploads.pop(key, None)
        self.state.record(key, f)

    def abort(self, key: str, upload_id: str) -> None:
        """Abort a recorded upload that can no longer be resumed (gone already is fine)."""
        self.state.uploads.pop(key, None)
        if not upload_id:
            return
        with contextlib.suppress(self.client.exceptions.ClientError):  # NoSuchUpload: nothing to free
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def _stored_parts(self, key: str, upload_id: str) -> dict[int, tuple[str, int]] | None:
        """Part number -> (ETag, size) the server holds for the upload; None if it is gone."""
        parts: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            try:
                page = self.client.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
            except self.client.exceptions.ClientError:
                return None
            for p in page.get("Parts", []):
                parts[int(p["PartNumber"])] = (str(p.get("ETag", "")).strip('"'), int(p.get("Size", -1)))
            next_marker = int(page.get("NextPartNumberMarker") or 0)
            if not page.get("IsTruncated") or next_marker <= marker:
                return parts
            marker = next_marker

    def _ensure_part(
        self, key: str, upload_id: str, f: LocalFile, part: PartRange, stored: tuple[str, int] | None
    ) -> str:
        """The ETag of the part on the server: the stored one when it matches the local bytes."""
        if stored is not None and stored[1] == part.size:
            local = md5_of_range(f, part)
            if stored[0] == local:
                self.resumed_bytes += part.size
                self.on_bytes(part.size)
                return stored[0]
        # a file-backed, seekable window on the part: memory stays small with many parts in flight
        with ReadFileChunk.from_filename(str(f.path), part.start, part.size) as chunk:
            body = cast("IO[bytes]", chunk)
            answer = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=part.number, Body=body
            )
        self.on_bytes(part.size)
        return str(answer["ETag"]).strip('"')
