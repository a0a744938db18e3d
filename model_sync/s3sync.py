"""Upload a plan over the S3 API: many files at once, large ones as multipart with parallel parts.

Small files (one PutObject each) go up while the large ones go one after another, their parts
in parallel; ``concurrency`` requests are in flight at most, parts and files together. Files above
``multipart_threshold`` go multipart, which keeps every request under RunPod's 500 MB
single-put limit. S3 makes a multipart object visible only on
CompleteMultipartUpload, so an interrupted run never leaves a partial object under the final
key; finished files are in the sync state, and an unfinished large file resumes from the parts
the server already holds (model_sync.multipart). Unfinished uploads that cannot be resumed are
aborted at the next start.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from model_sync.layout import DEFAULT_PREFIX, relpath_of
from model_sync.local import HashCache, LocalFile, Scan, Unreadable, default_cache_dir, scan_tree, sha256_file
from model_sync.multipart import MultipartUploader
from model_sync.plan import Plan, SyncState, make_plan
from model_sync.progress import NullReporter, Reporter
from model_sync.remote import LEAN_PUT_MAX, abort_stale_uploads, list_objects, put_small

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
    # unfinished multipart uploads not ours are aborted only past this age (another machine's
    # may be in progress)
    stale_upload_s: float = 24 * 3600.0

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
    resumed_bytes: int = 0  # parts kept from an interrupted run, not sent again
    unreadable: list[Unreadable] = field(default_factory=list)  # local paths the scan could not read


def _state_name(client: S3Client, bucket: str) -> str:
    endpoint = str(client.meta.endpoint_url)
    return "sync-" + hashlib.sha256(f"{endpoint}|{bucket}".encode()).hexdigest()[:16] + ".json"


def plan_sync(
    src: Path, client: S3Client, opts: SyncOptions, state: SyncState, cache: HashCache
) -> tuple[Plan, float, list[Unreadable]]:
    """Scan, list and diff: the plan, the seconds spent listing, and what the scan could not read.

    Nothing is changed on the volume. A remote file whose local copy could not be read is
    never planned for deletion (``plan.unknown``).
    """
    scanned = scan_tree(src, opts.folders)
    files = scanned.files
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
        unknown=scanned.covers,
    )
    cache.save()
    return plan, list_seconds, scanned.unreadable


def _drop_unresumable(
    uploader: MultipartUploader,
    plan: Plan,
    opts: SyncOptions,
    large: list[tuple[str, LocalFile, str]],
    unreadable: Scan,
) -> None:
    """Abort the recorded unfinished uploads that can never complete as they are.

    That is: the file is complete on the volume now, it will go as one PutObject, or (on a
    run over the whole selection) it is gone locally. Uploads of files this run leaves out
    (``--workflow``, ``--folder``) or could not read (``unreadable``) stay for a later run;
    a changed file's is replaced by ``MultipartUploader.upload`` itself.
    """
    planned_large = {key for key, _, _ in large}
    on_volume = {key for key, _ in plan.skip}
    selected = planned_large | on_volume | {key for key, _, _ in plan.upload}
    for key, record in list(uploader.state.uploads.items()):
        rel = relpath_of(opts.prefix, key)
        in_folders = rel is not None and rel.split("/", 1)[0] in opts.folders
        gone_locally = (
            opts.only is None and in_folders and key not in selected and not unreadable.covers(rel or "")
        )
        if key in on_volume or (key in selected and key not in planned_large) or gone_locally:
            uploader.abort(key, str(record.get("upload_id", "")))


def sync_s3(
    src: Path,
    client: S3Client,
    opts: SyncOptions,
    reporter: Reporter | None = None,
    on_plan: Callable[[SyncResult], None] | None = None,
) -> SyncResult:
    """Make the volume hold the selected local files (and, with ``delete``, nothing more).

    ``on_plan`` sees the result before anything changes (its plan and ``unreadable``); it may
    raise to stop the run there (the task does when ``--delete`` wants ``--yes``).
    """
    opts.check()
    started = time.perf_counter()
    reporter = reporter or NullReporter()
    cache_dir = opts.cache_dir or default_cache_dir()
    cache = HashCache(cache_dir / "model-hashes.json")
    state = SyncState(cache_dir / _state_name(client, opts.bucket))
    plan, list_seconds, unreadable = plan_sync(src, client, opts, state, cache)
    result = SyncResult(plan, list_seconds=list_seconds, unreadable=unreadable)
    if on_plan:
        on_plan(result)
    if opts.dry_run:
        result.seconds = time.perf_counter() - started
        return result
    large = [u for u in plan.upload if u[1].size >= opts.multipart_threshold]
    small = [u for u in plan.upload if u[1].size < opts.multipart_threshold]
    lock = threading.Lock()

    def advance(nbytes: int) -> None:
        with lock:
            reporter.advance(nbytes)

    pool = ThreadPoolExecutor(max_workers=opts.concurrency)  # the parts of large files
    small_pool = ThreadPoolExecutor(max_workers=opts.concurrency)  # one PutObject per small file
    slots = threading.Semaphore(opts.concurrency)  # requests in flight, parts and files together
    uploader = MultipartUploader(client, opts.bucket, state, pool, opts.part_size, advance, slots)
    try:
        _drop_unresumable(uploader, plan, opts, large, Scan(unreadable=result.unreadable))
        if plan.upload:
            keep = frozenset(str(r.get("upload_id")) for r in state.uploads.values())
            result.aborted_uploads = abort_stale_uploads(
                client, opts.bucket, opts.prefix, keep=keep, min_age_s=opts.stale_upload_s
            )
        reporter.start("upload", plan.upload_bytes, len(plan.upload))

        # One PutObject each (put_small's lean request where the body is small): the transfer
        # manager's per-file bookkeeping costs more than a small file's request. Each success is
        # recorded at once, so an interruption (Ctrl-C cancels what has not started) loses
        # nothing that was sent.
        def put(item: tuple[str, LocalFile, str]) -> None:
            key, f, _ = item
            metadata = {"sha256": f.sha256} if f.sha256 else {}
            try:
                with slots:
                    if f.size <= LEAN_PUT_MAX:
                        put_small(client, opts.bucket, key, f.path.read_bytes(), metadata)
                    else:
                        with f.path.open("rb") as body:
                            client.put_object(Bucket=opts.bucket, Key=key, Body=body, Metadata=metadata)
            except Exception as exc:
                with lock:
                    result.failed.append((key, f"{type(exc).__name__}: {exc}"))
                return
            state.record(key, f)
            with lock:
                result.uploaded.append(key)
                reporter.advance(f.size)
                reporter.file_done()

        # The small files go meanwhile, on their own threads: a small file is bound by the
        # client's CPU per request, a large one by the network and the server's disk, so side by
        # side each uses what the other leaves idle.
        puts = [small_pool.submit(put, item) for item in small]
        for key, f, _ in large:
            # one file at a time, its parts in parallel: a finished file is worth more than many halves
            try:
                uploader.upload(key, f)
            except Exception as exc:
                with lock:
                    result.failed.append((key, f"{type(exc).__name__}: {exc} (the next run resumes it)"))
            else:
                with lock:
                    result.uploaded.append(key)
                reporter.file_done()
            finally:
                state.save()
        result.resumed_bytes = uploader.resumed_bytes
        for pending in puts:
            pending.result()
        for obj in plan.delete:
            client.delete_object(Bucket=opts.bucket, Key=obj.key)  # one at a time: no batch delete
            state.forget(obj.key)
            result.deleted.append(obj.key)
    except BaseException:
        uploader.stop()  # parts in flight give up at their next read: Ctrl+C is prompt
        raise
    finally:
        state.save()  # first: a second Ctrl+C during the shutdown below must not lose it
        small_pool.shutdown(wait=False, cancel_futures=True)
        pool.shutdown(wait=True, cancel_futures=True)
        small_pool.shutdown(wait=True)
        state.save()
        reporter.finish()
    result.seconds = time.perf_counter() - started
    return result
