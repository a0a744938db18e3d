"""The S3 servers the S3 tests and bench/sync.py run against, on loopback: moto and SeaweedFS.

moto is a Python S3 implementation; SeaweedFS (``weed``, built by ``uv run invoke dev-tools`` into
.tools/bin/) is a real S3 gateway in Go with its own storage, signature checks and multipart code.
SeaweedFS checks credentials: only the identities in ``CREDENTIALS`` may sign requests (the access
key / secret pairs the tests use).
"""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks.devtools import TOOLS_BIN

WEED = TOOLS_BIN / "weed"
MISSING_WEED = "SeaweedFS is not built here: run `uv run invoke dev-tools` (it builds into .tools/bin/)"
# access key -> secret key of the identities SeaweedFS accepts (every test's and the bench's pair)
CREDENTIALS = {
    "user_test": "rps_test",
    "user_tasks": "rps_secret_value",
    "AKIDTEST": "SECRETTEST",
    "bench": "bench-secret",
}
START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A loopback port that is free, and whose +10000 (SeaweedFS's gRPC port for it) is free too."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as grpc_probe:
            try:
                grpc_probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``url`` answers anything (an S3 error is fine: the gateway is up)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (our own http://127.0.0.1 URL)
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{url} did not come up; its log:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.2)


def _bucket_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until a bucket can be created and written: SeaweedFS's volume server joins the master a bit later."""
    import boto3

    access, secret = next(iter(CREDENTIALS.items()))
    client = boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            client.create_bucket(Bucket="startup-probe")
            client.put_object(Bucket="startup-probe", Key="probe", Body=b"x")
            client.delete_object(Bucket="startup-probe", Key="probe")
            client.delete_bucket(Bucket="startup-probe")
            return
        except Exception as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = log.read_text()[-3000:]
                raise RuntimeError(f"SeaweedFS at {url} never took a write ({exc}):\n{tail}") from exc
            time.sleep(0.3)


@contextmanager
def seaweedfs() -> Iterator[str]:
    """``weed server`` (master, volume, filer, S3 gateway) on loopback in a temp dir; yields the S3 URL."""
    if not WEED.exists():
        raise RuntimeError(MISSING_WEED)
    with tempfile.TemporaryDirectory(prefix="seaweedfs-") as tmp:
        root = Path(tmp)
        config = root / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": access,
                            "credentials": [{"accessKey": access, "secretKey": secret}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                        for access, secret in CREDENTIALS.items()
                    ]
                }
            )
        )
        (root / "data").mkdir()
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        log = root / "weed.log"
        argv = [
            str(WEED),
            "server",
            f"-dir={root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            "-master.volumeSizeLimitMB=256",
            f"-volume.port={ports['volume']}",
            "-volume.max=0",
            "-filer",
            f"-filer.port={ports['filer']}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.config={config}",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=root)
        url = f"http://127.0.0.1:{ports['s3']}"
        try:
            _wait_http(url, process, log)
            _bucket_ready(url, process, log)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
