"""Upload a plan over the S3 API: many files at once, large ones as multipart with parallel parts.

boto3's transfer manager does the work: one pool of ``concurrency`` threads serves both small
files (one PutObject each) and the parts of large ones. Files above ``multipart_threshold``
go multipart, which keeps every request under RunPod's 500 MB single-put limit. S3 makes a
multipart object visible only on CompleteMultipartUpload, and a failed transfer is aborted, so
an interrupted run never leaves a partial object under the final key; finished files are in
the sync state, so the next run continues with the rest (a large file restarts from its
first part). Uploads a killed process could not abort are cleaned at the next start.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s3transfer.subscribers import BaseSubscriber

from model_sync.layout import DEFAULT_PREFIX
from model_sync.local import HashCache, LocalFile, default_cache_dir, scan, sha256_file
from model_sync.plan import Plan, SyncState, make_plan
from model_sync.progress import NullReporter, Reporter
from model_sync.remote import abort_stale_uploads, list_objects

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024
SINGLE_PUT_LIMIT = 500 * 1000 * 1000  # RunPod: PutObject bodies under 500 MB
MIN_PART = 5 * MiB  # S3's smallest non-final part (RunPod does not enforce it; others do)


@dataclass
class SyncOptions:
    bucket: str
    prefix: str = DEFAULT_PREFIX
    folders: tuple[str, ...] = ()  # directories under the source (layout.expand_folders)
    only: frozenset[str] | None = None  # relpaths (<folder>/<file>) to keep, e.g. a workflow's
    delete: bool = False
    dry_run: bool = False
    multipart_threshold: int = 128 * MiB
    part_size: int = 64 * MiB
    concurrency: int = 16
    page_size: int = 1000
    cache_dir: Path | None = None  # hash cache and sync state; None = default_cache_dir()

    def check(self) -> None:
        """Raise ValueError for sizes S3 or RunPod would refuse."""
        if not self.bucket:
            raise ValueError("no volume: pass --volume (the network volume id is the bucket)")
        if not MIN_PART <= self.part_size < SINGLE_PUT_LIMIT:
            raise ValueError(f"part size must be between {MIN_PART} and {SINGLE_PUT_LIMIT - 1} bytes")
        if not 0 < self.multipart_threshold < SINGLE_PUT_LIMIT:
            raise ValueError(f"multipart threshold must be under RunPod's {SINGLE_PUT_LIMIT}-byte put limit")
        if self.concurrency < 1 or self.page_size < 1:
            raise ValueError("concurrency and page size must be positive")
        if self.delete and self.only is not None:
            raise ValueError("--delete needs the whole tree (not --workflow)")


@dataclass
class SyncResult:
    plan: Plan
    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # key, error
    aborted_uploads: int = 0
    seconds: float = 0.0
    list_seconds: float = 0.0  # of which waiting for the remote listing


def _state_name(client: S3Client, bucket: str) -> str:
    endpoint = str(client.meta.endpoint_url)
    return "sync-" + hashlib.sha256(f"{endpoint}|{bucket}".encode()).hexdigest()[:16] + ".json"


class _Progress(BaseSubscriber):
    """s3transfer subscriber: bytes to the reporter as they are sent (retries may go back)."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self.reporter.advance(bytes_transferred)

    def on_done(self, future: Any, **kwargs: Any) -> None:
        self.reporter.file_done()


def plan_sync(
    src: Path, client: S3Client, opts: SyncOptions, state: SyncState, cache: HashCache
) -> tuple[Plan, float]:
    """Scan, list and diff: the plan (and the seconds spent listing), nothing changed on the volume."""
    files = scan(src, opts.folders)
    if opts.only is not None:
        files = [f for f in files if f.relpath in opts.only]
    listed = time.perf_counter()
    remote = list_objects(client, opts.bucket, opts.prefix, folders=opts.folders, page_size=opts.page_size)
    list_seconds = time.perf_counter() - listed

    def hash_of(f: LocalFile) -> str:
        digest = cache.get(f)
        if digest is None:
            digest = sha256_file(f.path)
            cache.put(f, digest)
        return digest

    def remote_sha256(key: str) -> str | None:
        try:
            head = client.head_object(Bucket=opts.bucket, Key=key)
        except client.exceptions.ClientError:
            return None
        return head.get("Metadata", {}).get("sha256")

    plan = make_plan(
        files,
        remote,
        state,
        opts.prefix,
        hash_of=hash_of,
        remote_sha256=remote_sha256,
        delete=opts.delete,
        delete_folders=opts.folders,
    )
    cache.save()
    return plan, list_seconds


def sync_s3(
    src: Path,
    client: S3Client,
    opts: SyncOptions,
    reporter: Reporter | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> SyncResult:
    """Make the volume hold the selected local files (and, with ``delete``, nothing more)."""
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    opts.check()
    started = time.perf_counter()
    reporter = reporter or NullReporter()
    cache_dir = opts.cache_dir or default_cache_dir()
    cache = HashCache(cache_dir / "model-hashes.json")
    state = SyncState(cache_dir / _state_name(client, opts.bucket))
    plan, list_seconds = plan_sync(src, client, opts, state, cache)
    if on_plan:
        on_plan(plan)
    result = SyncResult(plan, list_seconds=list_seconds)
    if opts.dry_run:
        result.seconds = time.perf_counter() - started
        return result
    if plan.upload:
        result.aborted_uploads = abort_stale_uploads(client, opts.bucket, opts.prefix)
    config = TransferConfig(
        multipart_threshold=opts.multipart_threshold,
        multipart_chunksize=opts.part_size,
        max_concurrency=opts.concurrency,
        use_threads=True,
    )
    subscriber = _Progress(reporter)
    reporter.start("upload", plan.upload_bytes, len(plan.upload))
    large = [u for u in plan.upload if u[1].size >= opts.multipart_threshold]
    small = [u for u in plan.upload if u[1].size < opts.multipart_threshold]
    try:
        if large:
            with create_transfer_manager(client, config) as manager:
                futures = []
                for key, f, _ in large:
                    extra = {"Metadata": {"sha256": f.sha256}} if f.sha256 else {}
                    futures.append(
                        (key, f, manager.upload(str(f.path), opts.bucket, key, extra, [subscriber]))
                    )
                for key, f, future in futures:
                    try:
                        future.result()
                    except Exception as exc:
                        result.failed.append((key, f"{type(exc).__name__}: {exc}"))
                    else:
                        state.record(key, f)
                        result.uploaded.append(key)
        if small:
            # One PutObject each from a plain pool: the transfer manager's per-file bookkeeping
            # costs more than a small file's request. Each success is recorded at once, so an
            # interruption (Ctrl-C cancels what has not started) loses nothing that was sent.
            lock = threading.Lock()

            def put(item: tuple[str, LocalFile, str]) -> None:
                key, f, _ = item
                extra: dict[str, Any] = {"Metadata": {"sha256": f.sha256}} if f.sha256 else {}
                try:
                    with f.path.open("rb") as body:
                        client.put_object(Bucket=opts.bucket, Key=key, Body=body, **extra)
                except Exception as exc:
                    with lock:
                        result.failed.append((key, f"{type(exc).__name__}: {exc}"))
                    return
                with lock:
                    state.record(key, f)
                    result.uploaded.append(key)
                reporter.advance(f.size)
                reporter.file_done()

            pool = ThreadPoolExecutor(max_workers=opts.concurrency)
            try:
                for pending in [pool.submit(put, item) for item in small]:
                    pending.result()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        for obj in plan.delete:
            client.delete_object(Bucket=opts.bucket, Key=obj.key)  # one at a time: no batch delete
            state.forget(obj.key)
            result.deleted.append(obj.key)
    finally:
        state.save()
        reporter.finish()
    result.seconds = time.perf_counter() - started
    return result
