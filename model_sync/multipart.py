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
import threading
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


MAX_PARTS = 10_000  # S3's limit on parts per upload


def effective_part_size(size: int, part_size: int) -> int:
    """``part_size``, raised where a huge file would need more than S3's 10,000 parts."""
    return max(part_size, -(-size // MAX_PARTS))


def _resume_record(f: LocalFile, part_size: int, upload_id: str) -> dict[str, Any]:
    return {
        "upload_id": upload_id,
        "size": f.size,
        "mtime_ns": f.mtime_ns,
        "sha256": f.sha256,
        "part_size": part_size,
    }


def resumable(record: dict[str, Any] | None, f: LocalFile) -> bool:
    """Whether a recorded unfinished upload belongs to exactly this version of the file.

    The recorded part size is kept when resuming, so changing ``--part-size`` between runs
    does not throw the stored parts away.
    """
    if not record or not record.get("upload_id") or not isinstance(record.get("part_size"), int):
        return False
    same = record.get("size") == f.size and record.get("mtime_ns") == f.mtime_ns
    if record.get("sha256") and f.sha256:
        same = same and record["sha256"] == f.sha256
    return same


def _etag(value: object) -> str:
    """An ETag for comparing: quotes off, lower case (servers differ on both)."""
    return str(value or "").strip('"').lower()


class Stopped(BaseException):
    """The sync is being stopped (Ctrl+C): parts in flight give up at their next read.

    A BaseException, like KeyboardInterrupt itself: botocore turns an ``Exception`` raised while
    sending into a retryable HTTPClientError, and its retries would keep Ctrl+C waiting.
    """


class MultipartUploader:
    """Uploads large files part by part on a shared thread pool, resuming recorded uploads.

    ``on_bytes`` is called with each part's size once the server has it (or once a part kept
    from an earlier run is verified), so a progress bar counts resumed bytes as done. ``stop()``
    makes parts in flight fail at their next read, so Ctrl+C does not wait for them to finish.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        state: SyncState,
        pool: ThreadPoolExecutor,
        part_size: int,
        on_bytes: Callable[[int], None],
        slots: threading.Semaphore | None = None,
    ) -> None:
        self.client = client
        # one slot per request in flight, shared with whatever else sends beside the parts
        self.slots: contextlib.AbstractContextManager[Any] = slots or contextlib.nullcontext()
        self.bucket = bucket
        self.state = state
        self.pool = pool
        self.part_size = part_size
        self.on_bytes = on_bytes
        self.resumed_bytes = 0  # bytes kept from earlier runs of completed files, not sent again
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def upload(self, key: str, f: LocalFile) -> None:
        """Make ``key`` hold ``f``; on failure the upload stays recorded for the next run."""
        record = self.state.uploads.get(key)
        have: dict[int, tuple[str, int]] = {}
        upload_id = ""
        part_size = effective_part_size(f.size, self.part_size)
        if record is not None and resumable(record, f):
            stored = self._stored_parts(key, str(record["upload_id"]))
            if stored is not None:
                upload_id, have, part_size = str(record["upload_id"]), stored, int(record["part_size"])
        elif record is not None:
            self.abort(key, str(record.get("upload_id", "")))
        if not upload_id:
            extra: dict[str, Any] = {"Metadata": {"sha256": f.sha256}} if f.sha256 else {}
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **extra)["UploadId"]
            self.state.uploads[key] = _resume_record(f, part_size, upload_id)
            self.state.save()  # before the first part: a killed run can resume from here

        ranges = part_ranges(f.size, part_size)
        futures: list[Future[tuple[str, int]]] = [
            self.pool.submit(self._ensure_part, key, upload_id, f, part, have.get(part.number))
            for part in ranges
        ]
        try:
            answers = [future.result() for future in futures]  # the first failure raises
        except BaseException:
            for future in futures:  # the file's other parts would only fail the same way
                future.cancel()
            raise
        done: list[CompletedPartTypeDef] = [
            {"ETag": etag, "PartNumber": part.number} for part, (etag, _) in zip(ranges, answers, strict=True)
        ]
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
        )
        self.state.uploads.pop(key, None)
        self.state.record(key, f)
        with self._lock:
            self.resumed_bytes += sum(kept for _, kept in answers)

    def abort(self, key: str, upload_id: str) -> None:
        """Abort a recorded upload that can no longer be resumed (gone already is fine)."""
        self.state.uploads.pop(key, None)
        if not upload_id:
            return
        with contextlib.suppress(self.client.exceptions.ClientError):  # NoSuchUpload: nothing to free
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def _stored_parts(self, key: str, upload_id: str) -> dict[int, tuple[str, int]] | None:
        """Part number -> (ETag, size) the server holds for the upload; None if it is gone.

        Only "no such upload" means gone; any other error (throttling, a 503) is raised, so the
        file fails this run and its record, and the parts, are kept for the next.

        A part number listed more than once with different ETags or sizes is left out (sent
        again): SeaweedFS lists a re-uploaded part under both its old and new ETag, in no fixed
        order, and which one CompleteMultipartUpload would take cannot be known. Listed twice
        with the same ETag and size, it is one set of bytes and is kept (checked as any other).
        """
        parts: dict[int, tuple[str, int]] = {}
        conflicting: set[int] = set()
        marker = 0
        while True:
            try:
                page = self.client.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
            except self.client.exceptions.ClientError as exc:
                error = exc.response.get("Error", {})
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if error.get("Code") == "NoSuchUpload" or status == 404:
                    return None
                raise
            for p in page.get("Parts", []):
                number, listed = int(p["PartNumber"]), (str(p.get("ETag", "")), int(p.get("Size", -1)))
                if parts.setdefault(number, listed) != listed:
                    conflicting.add(number)
            next_marker = int(page.get("NextPartNumberMarker") or 0)
            if not page.get("IsTruncated") or next_marker <= marker:
                return {n: part for n, part in parts.items() if n not in conflicting}
            marker = next_marker

    def _check_stop(self, bytes_transferred: int = 0) -> None:
        if self._stop.is_set():
            raise Stopped("the sync was stopped")

    def _ensure_part(
        self, key: str, upload_id: str, f: LocalFile, part: PartRange, stored: tuple[str, int] | None
    ) -> tuple[str, int]:
        """The part's ETag on the server (as the server wrote it) and the bytes kept, not sent.

        A stored part is kept when its size and ETag match the local bytes' MD5.
        """
        self._check_stop()
        if stored is not None and stored[1] == part.size and _etag(stored[0]) == md5_of_range(f, part):
            self.on_bytes(part.size)
            return stored[0], part.size
        # A file-backed, seekable window on the part: memory stays small with many parts in
        # flight, and botocore's retries rewind it to the part's start. Each read checks stop().
        chunk = ReadFileChunk.from_filename(str(f.path), part.start, part.size, callbacks=[self._check_stop])
        with self.slots, chunk:
            self._check_stop()
            answer = self.client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=part.number,
                Body=cast("IO[bytes]", chunk),
            )
        self.on_bytes(part.size)
        return str(answer["ETag"]), 0
