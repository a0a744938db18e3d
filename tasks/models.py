"""Tasks for the models on the network volume: sync local models there, list what is there.

The logic is in ``model_sync``; these wrappers parse flags, pick the volume and data center
(flags, else the environment, else the Pulumi stack's outputs) and print.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from model_sync import layout
from model_sync import workflow as wf
from model_sync.local import LocalFile, scan, scan_tree
from model_sync.progress import NullReporter, Reporter, RichReporter
from tasks.stack import stack_output

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


def _volume(volume: str) -> str:
    found = volume or os.environ.get("RUNPOD_VOLUME_ID") or stack_output("volumeId")
    if not found:
        raise Exit("error: no volume: pass --volume ID (or set RUNPOD_VOLUME_ID)", code=2)
    return found


def _datacenter(datacenter: str) -> str | None:
    if datacenter:
        return datacenter
    if os.environ.get("RUNPOD_S3_ENDPOINT_URL"):
        return None
    return stack_output("volumeDataCenter")


def _client(datacenter: str, concurrency: int = 16) -> S3Client:
    from model_sync.remote import RemoteError, make_client

    try:
        return make_client(_datacenter(datacenter), max_connections=max(concurrency, 10))
    except RemoteError as exc:
        raise Exit(f"error: {exc}", code=2) from None


def _folders(folder: list[str] | None) -> tuple[str, ...]:
    try:
        return layout.expand_folders(folder or [])
    except ValueError as exc:
        raise Exit(f"error: {exc}", code=2) from None


def _load_workflow(path: str) -> list[wf.ModelRef]:
    try:
        return wf.model_refs(wf.load(Path(path)))
    except (OSError, ValueError) as exc:
        raise Exit(f"error: {exc}", code=2) from None


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


@task(
    help={
        "src": "local models folder (holding checkpoints/, loras/, ...)",
        "volume": "network volume id = the bucket (default: $RUNPOD_VOLUME_ID, else the stack's volumeId)",
        "via": "s3 (default: incremental, RunPod's S3 API) or runpodctl (a zip sent to a pod)",
        "datacenter": "the volume's data center, e.g. EUR-IS-1 (default: the stack's volumeDataCenter)",
        "folder": "only this model folder (checkpoints, loras, ...); repeat for several",
        "workflow": "only the models this API-format workflow names",
        "delete": "s3: also delete volume files that are gone locally (in the selected folders); "
        "files whose local copy cannot be read are kept",
        "yes": "with --delete: delete more than 3 files, or any file over 1 GB (listed first)",
        "dry-run": "s3: print the plan, change nothing",
        "prefix": f"key prefix on the volume (default {layout.DEFAULT_PREFIX})",
        "part-size-mb": "s3: multipart part size in MiB (5..476, default 64)",
        "multipart-threshold-mb": "s3: files above this many MiB go multipart (default 128, max 476)",
        "concurrency": "s3: parallel requests, files and parts together (default 16)",
        "zip-dir": "runpodctl: where to write the zip (default: a temporary folder)",
        "quiet": "no progress bar",
    },
    iterable=["folder"],
)
def sync_models(
    c: Context,
    src: str,
    volume: str = "",
    via: str = "s3",
    datacenter: str = "",
    folder: list[str] | None = None,
    workflow: str = "",
    delete: bool = False,
    dry_run: bool = False,
    prefix: str = layout.DEFAULT_PREFIX,
    part_size_mb: int = 64,
    multipart_threshold_mb: int = 128,
    concurrency: int = 16,
    zip_dir: str = "",
    quiet: bool = False,
    yes: bool = False,
) -> None:
    """Copy local models onto the network volume: what is new or changed (s3), or a zip (runpodctl)."""
    root = Path(src).expanduser()
    if not root.is_dir():
        raise Exit(f"error: {src} is not a folder", code=2)
    if via not in ("s3", "runpodctl"):
        raise Exit("error: --via is s3 or runpodctl", code=2)
    folders = _folders(folder)
    only: frozenset[str] | None = None
    if workflow:
        refs = _load_workflow(workflow)
        found, missing = wf.match(refs, (f.relpath for f in scan(root, folders)))
        for ref in missing:
            print(
                f"warning: not found locally: {ref.folder or '?'}/{ref.name} (node {ref.node})",
                file=sys.stderr,
            )
        only = frozenset(found)
    if via == "runpodctl":
        _send_zip(root, folders, only, prefix, zip_dir, quiet)
        return
    _sync_s3(
        root,
        volume,
        datacenter,
        folders,
        only,
        delete,
        dry_run,
        prefix,
        part_size_mb,
        multipart_threshold_mb,
        concurrency,
        quiet,
        yes,
    )


def _sync_s3(
    root: Path,
    volume: str,
    datacenter: str,
    folders: tuple[str, ...],
    only: frozenset[str] | None,
    delete: bool,
    dry_run: bool,
    prefix: str,
    part_size_mb: int,
    multipart_threshold_mb: int,
    concurrency: int,
    quiet: bool,
    yes: bool,
) -> None:
    from model_sync.s3sync import SyncOptions, SyncResult, sync_s3

    opts = SyncOptions(
        bucket=_volume(volume),
        prefix=prefix,
        folders=folders,
        only=only,
        delete=delete,
        dry_run=dry_run,
        multipart_threshold=multipart_threshold_mb * MiB,
        part_size=part_size_mb * MiB,
        concurrency=concurrency,
    )
    try:
        opts.check()
    except ValueError as exc:
        raise Exit(f"error: {exc}", code=2) from None
    client = _client(datacenter, concurrency)

    def show(planned: SyncResult) -> None:
        plan = planned.plan
        for problem in planned.unreadable:
            print(f"warning: cannot read {problem.relpath}: {problem.error}", file=sys.stderr)
        if plan.unknown:
            print(
                f"kept on the volume: {len(plan.unknown)} files whose local copy cannot be read "
                "(present, unknown; never deleted)",
                file=sys.stderr,
            )
        print(
            f"plan: upload {len(plan.upload)} files ({_size(plan.upload_bytes)}), "
            f"{len(plan.skip)} unchanged, delete {len(plan.delete)}",
            file=sys.stderr,
        )
        if dry_run:
            for key, f, why in plan.upload:
                print(f"upload  {key}  {_size(f.size)}  ({why})")
        for obj in plan.delete:
            print(f"delete  {obj.key}  {_size(obj.size)}")
        if plan.delete and plan.delete_needs_confirmation and not (yes or dry_run):
            raise Exit(
                f"error: --delete would remove {len(plan.delete)} files "
                f"({_size(sum(o.size for o in plan.delete))}) from volume {opts.bucket}, listed above; "
                "nothing was changed. Run again with --yes to go ahead (or --dry-run to look first).",
                code=2,
            )

    reporter: Reporter = NullReporter()
    bar = None if quiet or dry_run else RichReporter()
    try:
        if bar is not None:
            bar.__enter__()
            reporter = bar
        result = sync_s3(root, client, opts, reporter, on_plan=show)
    except Exception as exc:
        if type(exc).__name__ in ("ClientError", "EndpointConnectionError", "NoCredentialsError"):
            raise Exit(f"error: {exc}", code=1) from None
        raise
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if dry_run:
        return
    uploaded = set(result.uploaded)
    moved = max(0, sum(f.size for key, f, _ in result.plan.upload if key in uploaded) - result.resumed_bytes)
    rate = moved / result.seconds / 1e6 if result.seconds else 0.0
    resumed = f", {_size(result.resumed_bytes)} kept from an interrupted run" if result.resumed_bytes else ""
    print(
        f"uploaded {len(result.uploaded)} files ({_size(moved)} sent{resumed}, {rate:.1f} MB/s), "
        f"deleted {len(result.deleted)}, unchanged {len(result.plan.skip)} in {result.seconds:.1f} s",
        file=sys.stderr,
    )
    if result.failed:
        lines = "\n".join(f"  {key}: {err}" for key, err in result.failed)
        raise Exit(f"error: {len(result.failed)} files failed (run again to resume):\n{lines}", code=1)


def _send_zip(
    root: Path, folders: tuple[str, ...], only: frozenset[str] | None, prefix: str, zip_dir: str, quiet: bool
) -> None:
    from model_sync import zipsend

    runpodctl = zipsend.find_runpodctl()
    if runpodctl is None:
        raise Exit(zipsend.INSTALL_HELP, code=1)
    scanned = scan_tree(root, folders)
    for problem in scanned.unreadable:
        print(f"warning: cannot read {problem.relpath}: {problem.error}; not sent", file=sys.stderr)
    files = scanned.files
    if only is not None:
        files = [f for f in files if f.relpath in only]
    if not files:
        raise Exit("error: no model files selected", code=2)
    # runpodctl sends one path and zips a folder itself, so one archive on disk is the least this
    # path can cost: stored (models do not compress), checked to fit first, and removed once sent
    # when it went to a temporary folder.
    out_dir = Path(zip_dir) if zip_dir else Path(tempfile.mkdtemp(prefix="comfy-runpod-"))
    try:
        _zip_and_send(runpodctl, files, prefix, out_dir, quiet)
    finally:
        if not zip_dir:  # sent, failed or interrupted: a temporary archive never stays behind
            shutil.rmtree(out_dir, ignore_errors=True)


def _zip_and_send(runpodctl: str, files: list[LocalFile], prefix: str, out_dir: Path, quiet: bool) -> None:
    from model_sync import zipsend

    out_dir.mkdir(parents=True, exist_ok=True)
    needed = zipsend.archive_size_bound(files)
    free = shutil.disk_usage(out_dir).free
    if free < needed:
        raise Exit(
            f"error: the archive needs {_size(needed)} and {out_dir} has {_size(free)} free; "
            "pass --zip-dir DIR on a disk with room (or use the S3 transport, which needs no copy)",
            code=1,
        )
    zip_path = out_dir / f"models-{time.strftime('%Y%m%d-%H%M%S')}.zip"
    reporter: Reporter = NullReporter()
    bar = None if quiet else RichReporter()
    if bar is not None:
        bar.__enter__()
        reporter = bar
    try:
        reporter.start("zip", sum(f.size for f in files), len(files))

        def step(n: int) -> None:
            reporter.advance(n)

        zipsend.build_zip([(layout.object_key(prefix, f.relpath), f) for f in files], zip_path, step)
        reporter.finish()
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    (out_dir / zipsend.SCRIPT_NAME).write_text(zipsend.EXTRACT_SCRIPT)
    print(f"zip: {zip_path} ({len(files)} files, {_size(zip_path.stat().st_size)})", file=sys.stderr)

    def on_line(line: str) -> None:
        print(line, file=sys.stderr)
        found = zipsend.CODE_RE.search(line)
        if found:
            print("\nOn the pod (network volume at /workspace), run:", file=sys.stderr)
            for cmd in zipsend.pod_commands(zip_path.name, found.group(1)):
                print(f"  {cmd}")

    rc, code = zipsend.send(runpodctl, zip_path, on_line)
    if rc != 0:
        raise Exit(f"error: runpodctl send exited with {rc}", code=1)
    if code is None:
        raise Exit("error: runpodctl printed no code", code=1)
    print(f"sent {zip_path.name}", file=sys.stderr)


@task(
    help={
        "volume": "network volume id (default: $RUNPOD_VOLUME_ID, else the stack's volumeId)",
        "datacenter": "the volume's data center, e.g. EUR-IS-1 (default: the stack's volumeDataCenter)",
        "workflow": "check this API-format workflow: exit 1 listing the models not on the volume",
        "prefix": f"key prefix on the volume (default {layout.DEFAULT_PREFIX})",
        "files": "list every file, not only the count per folder",
    }
)
def volume_models(
    c: Context,
    volume: str = "",
    datacenter: str = "",
    workflow: str = "",
    prefix: str = layout.DEFAULT_PREFIX,
    files: bool = False,
) -> None:
    """List the models on the network volume (folder -> files, sizes), or check a workflow's models."""
    from model_sync.remote import list_objects

    refs = _load_workflow(workflow) if workflow else None
    bucket = _volume(volume)
    client = _client(datacenter)
    try:
        remote = list_objects(client, bucket, prefix)
    except Exception as exc:
        if type(exc).__name__ in ("ClientError", "EndpointConnectionError"):
            raise Exit(f"error: {exc}", code=1) from None
        raise
    by_rel = {rel: obj for key, obj in remote.items() if (rel := layout.relpath_of(prefix, key))}
    if refs is not None:
        _found, missing = wf.match(refs, by_rel)
        if missing:
            lines = "\n".join(
                f"  {prefix}/{m.folder or '<folder>'}/{m.name}  (node {m.node}, input {m.input})"
                for m in missing
            )
            raise Exit(f"missing on volume {bucket}: {len(missing)} of {len(refs)} models\n{lines}", code=1)
        print(f"all {len(refs)} models of {workflow} are on volume {bucket}")
        return
    groups: dict[str, list[tuple[str, int]]] = {}
    for rel, obj in sorted(by_rel.items()):
        top, _, name = rel.partition("/")
        groups.setdefault(top, []).append((name, obj.size))
    for top, items in groups.items():
        print(f"{top}/  {len(items)} files, {_size(sum(s for _, s in items))}")
        if files:
            for name, size in items:
                print(f"  {name}  {_size(size)}")
    if not groups:
        print(f"no models under {prefix}/ on volume {bucket}")
