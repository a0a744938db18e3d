"""The runpodctl transport: one zip (models + sha256 manifest + extraction script), ``runpodctl send``.

For a pod, not the S3 API: no S3 key needed, peer to peer through RunPod's relays. The zip is
stored, not deflated (models do not compress), and each file is streamed into it while its
sha256 is computed, so there is one read and one write per file and never a file in memory.
On the pod, ``extract_models.py`` (inside the zip) copies each file into a new temporary file
next to its final path (created exclusively, no symlink followed under ``--root``), hashing
as it copies, and renames it into place only when size and sha256 match the manifest: a file
is either complete and verified, or reported and the old one left as it was.
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
Each file is copied into a new temporary file next to its final path (created exclusively,
never through a symlink), hashed while copying, and renamed into place only when its size
and sha256 match the manifest; a file that does not match leaves the old one untouched.
Folders under --root are never followed through symlinks. Exit 1 lists the files that are
missing or differ.
"""
import argparse, hashlib, json, os, secrets, sys, zipfile

MANIFEST = "comfy-runpod-models.json"
CHUNK = 4 << 20
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class Refused(Exception):
    pass


def parts_of(key):
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise Refused(f"refusing a path outside the root: {key}")
    return parts


def open_folder(root_fd, parts, create):
    """A descriptor of root/parts..., each step opened without following a symlink."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                child = os.open(part, os.O_RDONLY | DIRECTORY | NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise Refused(f"folder {part!r}: {exc.strerror} (a symlink, or not a folder)") from None
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def extract(zf, entry, root_fd):
    """Copy one entry next to its destination, hashing; rename into place only on a match."""
    *folders, name = parts_of(entry["key"])
    dir_fd = open_folder(root_fd, folders, create=True)
    tmp = f".{name}.{secrets.token_hex(6)}.partial"
    try:
        out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644, dir_fd=dir_fd)
        digest, size = hashlib.sha256(), 0
        try:
            with zf.open(entry["key"]) as src, os.fdopen(out_fd, "wb") as out:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if size != entry["size"]:
                return f"size     {entry['key']}: {size} != {entry['size']} (not replaced)"
            if digest.hexdigest() != entry["sha256"]:
                return f"sha256   {entry['key']} (not replaced)"
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            tmp = None
            return None
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp, dir_fd=dir_fd)
                except FileNotFoundError:
                    pass
    finally:
        os.close(dir_fd)


def verify(entry, root_fd):
    """Size and sha256 of the file on the volume (reached without following symlinks)."""
    *folders, name = parts_of(entry["key"])
    try:
        dir_fd = open_folder(root_fd, folders, create=False)
    except Refused:
        return f"missing  {entry['key']}"
    try:
        fd = os.open(name, os.O_RDONLY | NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return f"missing  {entry['key']}"
    finally:
        os.close(dir_fd)
    digest, size = hashlib.sha256(), 0
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    if size != entry["size"]:
        return f"size     {entry['key']}: {size} != {entry['size']}"
    if digest.hexdigest() != entry["sha256"]:
        return f"sha256   {entry['key']}"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("zip")
    ap.add_argument("--root", default="/workspace")
    ap.add_argument("--verify-only", action="store_true")
    args = ap.parse_args()
    root = os.path.realpath(args.root)
    if not args.verify_only:
        os.makedirs(root, exist_ok=True)
    try:
        root_fd = os.open(root, os.O_RDONLY | DIRECTORY)
    except OSError as exc:
        sys.exit(f"cannot open --root {root}: {exc.strerror}")
    bad = []
    with zipfile.ZipFile(args.zip) as zf:
        manifest = json.loads(zf.read(MANIFEST))
        for entry in manifest["files"]:
            try:
                parts_of(entry["key"])
            except Refused as exc:
                sys.exit(str(exc))
        for entry in manifest["files"]:
            try:
                problem = verify(entry, root_fd) if args.verify_only else extract(zf, entry, root_fd)
            except (Refused, OSError) as exc:
                problem = f"refused  {entry['key']}: {exc}"
            if problem:
                bad.append(problem)
            elif not args.verify_only:
                print(f"extracted {entry['key']}", flush=True)
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
