"""``extract_models.py`` (the pod side of ``sync-models --via runpodctl``) as run on the pod.

It never writes through a symlink it finds under ``--root``, replaces a file only with bytes
that match the manifest, and works with ``--root /``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from model_sync import zipsend
from model_sync.local import LocalFile

KEY = "comfyui/models/loras/detail.safetensors"


def make_zip(tmp_path: Path, entries: dict[str, bytes], name: str = "models.zip") -> Path:
    """A zip as ``sync-models --via runpodctl`` builds it, from ``{key: bytes}``."""
    src = tmp_path / "src"
    files = []
    for i, (key, data) in enumerate(entries.items()):
        path = src / f"f{i}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files.append((key, LocalFile(key, path, len(data), 0)))
    dest = tmp_path / name
    zipsend.build_zip(files, dest)
    return dest


def run_script(tmp_path: Path, zip_path: Path, root: str, *extra: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / zipsend.SCRIPT_NAME
    script.write_text(zipsend.EXTRACT_SCRIPT)
    return subprocess.run(
        [sys.executable, str(script), str(zip_path), "--root", root, *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_a_planted_partial_symlink_is_not_followed(tmp_path: Path) -> None:
    volume = tmp_path / "workspace"
    victim = tmp_path / "elsewhere" / "authorized_keys"
    victim.parent.mkdir()
    victim.write_bytes(b"ssh-ed25519 AAAA precious\n")
    dest = volume / KEY
    dest.parent.mkdir(parents=True)
    Path(f"{dest}.partial").symlink_to(victim)
    zip_path = make_zip(tmp_path, {KEY: b"lora" * 300})

    done = run_script(tmp_path, zip_path, str(volume))

    assert done.returncode == 0, done.stdout + done.stderr
    assert victim.read_bytes() == b"ssh-ed25519 AAAA precious\n", "nothing is written outside --root"
    assert dest.read_bytes() == b"lora" * 300 and not dest.is_symlink()
    assert "verified 1/1" in done.stdout


def test_a_symlinked_folder_under_the_root_is_not_followed(tmp_path: Path) -> None:
    volume = tmp_path / "workspace"
    outside = tmp_path / "outside"
    outside.mkdir()
    (volume / "comfyui" / "models").mkdir(parents=True)
    (volume / "comfyui" / "models" / "loras").symlink_to(outside, target_is_directory=True)
    zip_path = make_zip(tmp_path, {KEY: b"lora" * 300})

    done = run_script(tmp_path, zip_path, str(volume))

    assert done.returncode == 1
    assert f"refused  {KEY}" in done.stdout
    assert list(outside.iterdir()) == []


def test_a_file_that_does_not_match_the_manifest_leaves_the_old_one(tmp_path: Path) -> None:
    volume = tmp_path / "workspace"
    dest = volume / KEY
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"the good old lora")
    zip_path = make_zip(tmp_path, {KEY: b"lora" * 300})
    # the bytes in transit differ from what was hashed on the sending machine
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(zip_path) as src, zipfile.ZipFile(tampered, "w") as out:
        manifest = json.loads(src.read(zipsend.MANIFEST_NAME))
        out.writestr(KEY, b"LORA" * 300)
        out.writestr(zipsend.MANIFEST_NAME, json.dumps(manifest))

    done = run_script(tmp_path, tampered, str(volume))

    assert done.returncode == 1
    assert f"sha256   {KEY} (not replaced)" in done.stdout
    assert dest.read_bytes() == b"the good old lora"
    assert [p.name for p in dest.parent.iterdir()] == ["detail.safetensors"], "no temporary file left"


def test_root_slash_works(tmp_path: Path) -> None:
    target = (tmp_path / "vol" / "a.safetensors").resolve()
    key = target.relative_to("/").as_posix()
    zip_path = make_zip(tmp_path, {key: b"abc" * 10})

    done = run_script(tmp_path, zip_path, "/")

    assert done.returncode == 0, done.stdout + done.stderr
    assert target.read_bytes() == b"abc" * 10
    assert "verified 1/1 files under /" in done.stdout
    check = run_script(tmp_path, zip_path, "/", "--verify-only")
    assert check.returncode == 0 and "verified 1/1" in check.stdout


def test_a_key_leaving_the_root_is_refused(tmp_path: Path) -> None:
    volume = tmp_path / "workspace"
    volume.mkdir()
    zip_path = make_zip(tmp_path, {"comfyui/../../escape.txt": b"x"})

    done = run_script(tmp_path, zip_path, str(volume))

    assert done.returncode != 0 and "refusing a path outside the root" in done.stderr
    assert not (tmp_path / "escape.txt").exists()
