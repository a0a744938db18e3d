"""The runpodctl transport: one zip (models + sha256 manifest + extraction script), ``runpodctl send``.

For a pod, not the S3 API: no S3 key needed, peer to peer through RunPod's relays. The zip is
stored, not deflated (models do not compress), and each file is streamed into it while its
sha256 is computed, so there is one read and one write per file and never a file in memory.
On the pod, ``extract_models.py`` (inside the zip) unpacks each file next to its final path
and renames it into place, then checks every size and sha256 against the manifest: a file
is either complete and verified, or reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

from model_sync.local import HASH_CHUNK, LocalFile

MANIFEST_NAME = "comfy-runpod-models.json"
SCRIPT_NAME = "extract_models.py"
POD_VOLUME_ROOT = "/workspace"  # where a pod mounts the network volume

INSTALL_HELP = """\
runpodctl not found. Install it (https://github.com/runpod/runpodctl):
  macOS:  brew install runpod/runpodctl/runpodctl
  Linux:  wget -qO- cli.runpod.net | sudo bash
  or download a release binary and put it on PATH (or set RUNPODCTL=/path/to/runpodctl).
runpodctl is already installed on every RunPod pod. Or use the S3 transport (--via s3)."""

EXTRACT_SCRIPT = '''\
#!/usr/bin/env python3
"""Unpack models sent by `invoke sync-models --via runpodctl` onto the volume, then verify them.

usage: python3 extract_models.py MODELS.zip [--root /workspace] [--verify-only]
Each file is written next to its final path and renamed into place; then every file in the
manifest is checked (size, sha256). Exit 1 lists the files that are missing or differ.
"""
import argparse, hashlib, json, os, shutil, sys, zipfile

MANIFEST = "comfy-runpod-models.json"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(4 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("zip")
    ap.add_argument("--root", default="/workspace")
    ap.add_argument("--verify-only", action="store_true")
    args = ap.parse_args()
    with zipfile.ZipFile(args.zip) as zf:
        manifest = json.loads(zf.read(MANIFEST))
        root = os.path.realpath(args.root)
        for entry in manifest["files"]:
            dest = os.path.realpath(os.path.join(root, entry["key"]))
            if not dest.startswith(root + os.sep):
                sys.exit(f"refusing a path outside {root}: {entry['key']}")
            if args.verify_only:
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            tmp = dest + ".partial"
            with zf.open(entry["key"]) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 4 << 20)
            os.replace(tmp, dest)
            print(f"extracted {entry['key']}", flush=True)
    bad = []
    for entry in manifest["files"]:
        path = os.path.join(root, entry["key"])
        if not os.path.isfile(path):
            bad.append(f"missing  {entry['key']}")
        elif os.path.getsize(path) != entry["size"]:
            bad.append(f"size     {entry['key']}: {os.path.getsize(path)} != {entry['size']}")
        elif sha256(path) != entry["sha256"]:
            bad.append(f"sha256   {entry['key']}")
    for line in bad:
        print(line)
    total = len(manifest["files"])
    print(f"verified {total - len(bad)}/{total} files under {root}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
'''


def find_runpodctl() -> str | None:
    """``$RUNPODCTL``, else ``runpodctl`` on PATH, else None."""
    explicit = os.environ.get("RUNPODCTL")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return shutil.which("runpodctl")


def archive_size_bound(files: list[LocalFile], key_len: int = 256) -> int:
    """An upper bound of the archive's size: the bytes, the headers (zip64) and the manifest."""
    per_entry = 2 * (30 + 46 + 32 + 24 + key_len) + 200  # headers twice, name twice, a manifest line
    return sum(f.size for f in files) + len(files) * per_entry + len(EXTRACT_SCRIPT) + 64 * 1024


def build_zip(
    files: list[tuple[str, LocalFile]], dest: Path, on_bytes: Callable[[int], None] | None = None
) -> dict[str, object]:
    """Write ``dest``: each (key, file) stored under its key, the manifest and the script.

    Returns the manifest (``{"files": [{"key", "size", "sha256"}]}``), hashed from the bytes
    actually written, so the pod checks exactly what left this machine.
    """
    entries: list[dict[str, object]] = []
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, f in files:
            digest = hashlib.sha256()
            size = 0
            info = zipfile.ZipInfo(key, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            with f.path.open("rb") as src, zf.open(info, "w", force_zip64=True) as out:
                while chunk := src.read(HASH_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
            entries.append({"key": key, "size": size, "sha256": digest.hexdigest()})
        manifest: dict[str, object] = {"version": 1, "files": entries}
        zf.writestr(MANIFEST_NAME, json.dumps(manifest, indent=1))
        zf.writestr(SCRIPT_NAME, EXTRACT_SCRIPT)
    return manifest


def pod_commands(zip_name: str, code: str, root: str = POD_VOLUME_ROOT) -> list[str]:
    """What to run on the pod: receive, take the script out of the zip, extract and verify."""
    return [
        f"runpodctl receive {code}",
        'python3 -c "import sys,zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2])" '
        f"{zip_name} {SCRIPT_NAME}",
        f"python3 {SCRIPT_NAME} {zip_name} --root {root}",
        f"# verify again later: python3 {SCRIPT_NAME} {zip_name} --root {root} --verify-only",
    ]


CODE_RE = re.compile(r"Code is:\s*(\S+)")


def send(runpodctl: str, zip_path: Path, on_line: Callable[[str], None]) -> tuple[int, str | None]:
    """Run ``runpodctl send`` (it waits until the pod has received), echoing its output.

    Returns its exit status and the one-time code it printed (None if it printed none).
    """
    code: str | None = None
    with subprocess.Popen(
        [runpodctl, "send", str(zip_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=zip_path.parent,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
            found = CODE_RE.search(line)
            if found and code is None:
                code = found.group(1)
        return proc.wait(), code
