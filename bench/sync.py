"""Model sync speed: first sync and no-op re-sync of a synthetic models tree, against rclone.

Per S3 server (moto, and SeaweedFS once ``uv run invoke dev-tools`` built it), prints::

    server=moto first_sync_s=… noop_resync_s=… throughput_MBps=… noop_listing_s=… noop_client_s=…
    server=moto rclone first_sync_s=… noop_resync_s=… throughput_MBps=…   (or a note: no rclone)

``noop_listing_s`` is the part of the no-op spent waiting for the server's listing (moto needs
~2 s to list 10k keys, in any page size), ``noop_client_s`` the rest: scan, state, plan.

The tree is ``--small`` files of ``--small-kb`` KiB spread over the model folders plus
``--large`` files of ``--large-mb`` MiB (multipart); each server runs on loopback in its own
process, started here, so the numbers measure the client's work and the loopback server, not a
network. Targets: no-op re-sync of 10k files <= 1 s, first-sync throughput >= rclone's (on the
same server). Scale up with the flags (e.g. ``--large 4 --large-mb 1024``); ``--servers moto``
picks servers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model_sync.remote import make_client  # noqa: E402
from model_sync.s3sync import MiB, SyncOptions, sync_s3  # noqa: E402
from tasks.s3_servers import CREDENTIALS, WEED, seaweedfs  # noqa: E402

ACCESS_KEY = "bench"
SECRET_KEY = CREDENTIALS[ACCESS_KEY]

FOLDERS = ("checkpoints", "loras", "vae", "embeddings", "controlnet", "upscale_models")


def build_tree(root: Path, small: int, small_kb: int, large: int, large_mb: int) -> int:
    """Write the synthetic tree; returns its total size in bytes."""
    total = 0
    block = os.urandom(small_kb * 1024)
    for i in range(small):
        folder = root / FOLDERS[i % len(FOLDERS)] / f"set{i % 50:02}"
        folder.mkdir(parents=True, exist_ok=True)
        data = i.to_bytes(4, "big") + block[4:]
        (folder / f"model{i:05}.safetensors").write_bytes(data)
        total += len(data)
    chunk = os.urandom(MiB)
    for j in range(large):
        path = root / "diffusion_models" / f"large{j}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            for _ in range(large_mb):
                fh.write(chunk)
        total += large_mb * MiB
    return total


def run_rclone(src: Path, url: str, bucket: str, total: int, transfers: int) -> str:
    """rclone sync on the same server and tree: first sync, then a no-op re-sync."""
    rclone = shutil.which("rclone")
    if rclone is None:
        return "rclone: not installed, skipped (Debian: apt-get install rclone)"
    # AWS_* of the caller (a CA bundle, a profile) would reach rclone's SDK and break a loopback run
    env = dict(
        {k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        RCLONE_CONFIG=os.devnull,
        RCLONE_CONFIG_BENCH_TYPE="s3",
        RCLONE_CONFIG_BENCH_PROVIDER="Other",
        RCLONE_CONFIG_BENCH_ENDPOINT=url,
        RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=ACCESS_KEY,
        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=SECRET_KEY,
        RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true",
    )
    cmd = [
        rclone,
        "sync",
        str(src),
        f"bench:{bucket}/comfyui/models",
        f"--transfers={transfers}",
        f"--checkers={transfers}",
        "--s3-upload-cutoff=128M",
        "--s3-chunk-size=64M",
        f"--s3-upload-concurrency={transfers}",
        # rclone at its best for this job: one recursive listing, compare by size + md5 (the
        # listing's ETag) instead of a HeadObject per file for its mtime metadata
        "--fast-list",
        "--checksum",
    ]
    times = []
    for _ in range(2):
        started = time.perf_counter()
        done = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            return f"rclone: failed ({done.returncode}): {done.stderr.strip()[-500:]}"
        times.append(time.perf_counter() - started)
    return (
        f"rclone first_sync_s={times[0]:.2f} noop_resync_s={times[1]:.2f} "
        f"throughput_MBps={total / times[0] / 1e6:.1f}"
    )


@contextmanager
def moto_server() -> Iterator[str]:
    """moto in its own process: the server's CPU must not share our GIL (nor rclone's absence of one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("moto server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


SERVERS = {"moto": moto_server, "seaweedfs": seaweedfs}


def bench_server(name: str, url: str, root: Path, total: int, args: argparse.Namespace) -> None:
    env = {
        "RUNPOD_S3_ENDPOINT_URL": url,
        "RUNPOD_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "RUNPOD_S3_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    with tempfile.TemporaryDirectory(prefix="bench-sync-cache-") as cache:
        client = make_client(None, env, max_connections=args.concurrency)
        client.create_bucket(Bucket="ours")
        client.create_bucket(Bucket="theirs")
        opts = SyncOptions(
            bucket="ours",
            folders=(*FOLDERS, "diffusion_models"),
            multipart_threshold=args.part_mb * MiB,
            part_size=args.part_mb * MiB,
            concurrency=args.concurrency,
            cache_dir=Path(cache),
        )
        first = sync_s3(root, client, opts)
        assert not first.failed and len(first.uploaded) == args.small + args.large, first.failed[:3]
        noop = sync_s3(root, client, opts)
        assert noop.uploaded == [], len(noop.uploaded)
        print(
            f"server={name} first_sync_s={first.seconds:.2f} noop_resync_s={noop.seconds:.2f} "
            f"throughput_MBps={total / first.seconds / 1e6:.1f} "
            f"noop_listing_s={noop.list_seconds:.2f} noop_client_s={noop.seconds - noop.list_seconds:.2f}",
            flush=True,
        )
        print(f"server={name} {run_rclone(root, url, 'theirs', total, args.concurrency)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=10_000, help="number of small files (default 10000)")
    ap.add_argument("--small-kb", type=int, default=4, help="size of each small file, KiB (default 4)")
    ap.add_argument("--large", type=int, default=3, help="number of large files (default 3)")
    ap.add_argument("--large-mb", type=int, default=48, help="size of each large file, MiB (default 48)")
    ap.add_argument("--part-mb", type=int, default=16, help="multipart part size, MiB (default 16)")
    ap.add_argument("--concurrency", type=int, default=16, help="parallel requests (default 16)")
    default_servers = "moto,seaweedfs" if WEED.exists() else "moto"
    ap.add_argument(
        "--servers",
        default=default_servers,
        help=f"comma list of {', '.join(SERVERS)} (default {default_servers}; SeaweedFS: invoke dev-tools)",
    )
    args = ap.parse_args()
    names = [n for n in args.servers.split(",") if n]
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        raise SystemExit(f"unknown --servers {', '.join(unknown)}: use {', '.join(SERVERS)}")

    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        root = Path(tmp) / "models"
        total = build_tree(root, args.small, args.small_kb, args.large, args.large_mb)
        print(
            f"files={args.small + args.large} small={args.small}x{args.small_kb}KiB "
            f"large={args.large}x{args.large_mb}MiB total_MB={total / 1e6:.1f} "
            f"part_MiB={args.part_mb} concurrency={args.concurrency} servers={','.join(names)} (loopback)",
            flush=True,
        )
        for name in names:
            with SERVERS[name]() as url:
                bench_server(name, url, root, total, args)


if __name__ == "__main__":
    main()
