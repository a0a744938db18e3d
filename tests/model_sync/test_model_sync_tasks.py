"""The model tasks: runpodctl transport (a fake runpodctl), volume listing and workflow check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from model_sync import zipsend
from tasks import models
from tests.helpers import write_file

FAKE_RUNPODCTL = """#!/bin/sh
echo "$@" > "$(dirname "$0")/args.txt"
echo "Sending '$2' (1.0 MB)"
echo "Code is: 8338-galileo-collect-fidel"
echo "On the other computer run"
exit "${FAKE_RUNPODCTL_EXIT:-0}"
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_file(root / "checkpoints" / "sdxl" / "base.safetensors", b"base" * 5000)
    write_file(root / "loras" / "detail.safetensors", b"lora" * 300)
    write_file(root / "unet" / "flux.gguf", b"flux" * 100)
    return root


@pytest.fixture
def fake_runpodctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    write_file(bindir / "runpodctl", FAKE_RUNPODCTL.encode()).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("RUNPODCTL", raising=False)
    return bindir


def extract_script(zip_path: Path, into: Path) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        return Path(zf.extract(zipsend.SCRIPT_NAME, into))


def test_runpodctl_zip_manifest_and_extraction(
    tree: Path, tmp_path: Path, fake_runpodctl: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "zips"
    models.sync_models(Context(), str(tree), via="runpodctl", zip_dir=str(out), quiet=True)
    (zip_path,) = out.glob("models-*.zip")
    args = (fake_runpodctl / "args.txt").read_text().split()
    assert args == ["send", str(zip_path)]
    stdout = capsys.readouterr().out
    assert "runpodctl receive 8338-galileo-collect-fidel" in stdout
    assert f"python3 {zipsend.SCRIPT_NAME} {zip_path.name} --root /workspace" in stdout

    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read(zipsend.MANIFEST_NAME))
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    keys = {
        "comfyui/models/checkpoints/sdxl/base.safetensors",
        "comfyui/models/loras/detail.safetensors",
        "comfyui/models/unet/flux.gguf",
    }
    assert names == keys | {zipsend.MANIFEST_NAME, zipsend.SCRIPT_NAME}
    assert {e["key"] for e in manifest["files"]} == keys

    # the pod side, in a temp dir: unpack, verify, then catch a corrupted file
    pod = tmp_path / "pod"
    script = extract_script(zip_path, pod)
    volume = pod / "workspace"
    done = subprocess.run(
        [sys.executable, str(script), str(zip_path), "--root", str(volume)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified 3/3" in done.stdout
    for key in keys:
        rel = key.removeprefix("comfyui/models/")
        assert (volume / key).read_bytes() == (tree / rel).read_bytes()

    (volume / "comfyui/models/loras/detail.safetensors").write_bytes(b"LORA" * 300)  # same size
    (volume / "comfyui/models/unet/flux.gguf").unlink()
    check = subprocess.run(
        [sys.executable, str(script), str(zip_path), "--root", str(volume), "--verify-only"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 1
    assert "sha256   comfyui/models/loras/detail.safetensors" in check.stdout
    assert "missing  comfyui/models/unet/flux.gguf" in check.stdout


def test_runpodctl_folder_and_workflow_selection(tree: Path, tmp_path: Path, fake_runpodctl: Path) -> None:
    graph = {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux.gguf"}}}
    workflow = write_file(tmp_path / "wf.json", json.dumps(graph).encode())
    out = tmp_path / "zips"
    models.sync_models(
        Context(), str(tree), via="runpodctl", workflow=str(workflow), zip_dir=str(out), quiet=True
    )
    (zip_path,) = out.glob("*.zip")
    with zipfile.ZipFile(zip_path) as zf:
        assert "comfyui/models/unet/flux.gguf" in zf.namelist()
        assert len(zf.namelist()) == 3
    out2 = tmp_path / "zips2"
    models.sync_models(Context(), str(tree), via="runpodctl", folder=["loras"], zip_dir=str(out2), quiet=True)
    (zip2,) = out2.glob("*.zip")
    with zipfile.ZipFile(zip2) as zf:
        assert {n for n in zf.namelist() if n.startswith("comfyui/")} == {
            "comfyui/models/loras/detail.safetensors"
        }


def test_runpodctl_missing_explains_install(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("RUNPODCTL", raising=False)
    with pytest.raises(Exit) as exc:
        models.sync_models(Context(), str(tree), via="runpodctl", quiet=True)
    assert "runpodctl not found" in str(exc.value.message) and "brew install" in str(exc.value.message)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"via": "ftp"}, "--via"),
        ({"folder": ["lora"]}, "unknown model folder"),
        ({"volume": "v", "part_size_mb": 1}, "part size"),
        ({"volume": "v", "multipart_threshold_mb": 600}, "put limit"),
        ({}, "no volume"),
    ],
)
def test_bad_arguments_exit_2(tree: Path, kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(Exit) as exc:
        models.sync_models(Context(), str(tree), **kwargs)
    assert exc.value.code == 2 and needle in str(exc.value.message)
    assert str(exc.value.message).startswith("error: ")


def test_missing_credentials_exit_2(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(Exit) as exc:
        models.sync_models(Context(), str(tree), volume="v", quiet=True)
    assert exc.value.code == 2 and "RUNPOD_S3_ACCESS_KEY_ID" in str(exc.value.message)


@pytest.fixture
def s3_env(s3_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RUNPOD_S3_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("RUNPOD_S3_ACCESS_KEY_ID", "user_tasks")  # an identity of tasks/s3_servers.py
    monkeypatch.setenv("RUNPOD_S3_SECRET_ACCESS_KEY", "rps_secret_value")
    monkeypatch.setenv("COMFY_RUNPOD_CACHE", str(tmp_path / "cache"))
    return s3_server


def test_sync_task_then_volume_models_and_workflow_check(
    tree: Path, tmp_path: Path, s3_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = f"tasks-{os.getpid()}"
    models._client("").create_bucket(Bucket=bucket)

    models.sync_models(Context(), str(tree), volume=bucket, dry_run=True)
    captured = capsys.readouterr()
    assert "upload  comfyui/models/loras/detail.safetensors" in captured.out
    assert "plan: upload 3 files" in captured.err

    models.sync_models(Context(), str(tree), volume=bucket, folder=["checkpoints", "loras"])  # rich bar
    captured = capsys.readouterr()
    assert "uploaded 2 files" in captured.err
    assert "rps_secret_value" not in captured.out + captured.err

    models.volume_models(Context(), volume=bucket, files=True)
    listing = capsys.readouterr().out
    assert "checkpoints/  1 files" in listing and "  sdxl/base.safetensors" in listing
    assert "loras/  1 files" in listing and "unet" not in listing

    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl/base.safetensors"}},
        "2": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux.gguf"}},
    }
    workflow = write_file(tmp_path / "wf.json", json.dumps(graph).encode())
    with pytest.raises(Exit) as exc:
        models.volume_models(Context(), volume=bucket, workflow=str(workflow))
    assert exc.value.code == 1
    assert "comfyui/models/diffusion_models/flux.gguf  (node 2, input unet_name)" in str(exc.value.message)

    models.sync_models(Context(), str(tree), volume=bucket, quiet=True, workflow=str(workflow))
    models.volume_models(Context(), volume=bucket, workflow=str(workflow))
    assert "all 2 models" in capsys.readouterr().out


def test_runpodctl_archive_is_checked_to_fit_and_removed_once_sent(
    tree: Path,
    tmp_path: Path,
    fake_runpodctl: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    models.sync_models(Context(), str(tree), via="runpodctl", quiet=True)
    assert "sent models-" in capsys.readouterr().err
    assert list(scratch.iterdir()) == []  # no second copy of the models left behind

    real = shutil.disk_usage
    monkeypatch.setattr(
        shutil,
        "disk_usage",
        lambda path: real(path)._replace(free=100),  # a nearly full disk
    )
    with pytest.raises(Exit) as info:
        models.sync_models(Context(), str(tree), via="runpodctl", quiet=True)
    assert "free; pass --zip-dir DIR on a disk with room" in str(info.value.message)
    assert list(scratch.iterdir()) == []

    monkeypatch.setattr(shutil, "disk_usage", real)
    monkeypatch.setenv("FAKE_RUNPODCTL_EXIT", "3")  # the send fails
    with pytest.raises(Exit):
        models.sync_models(Context(), str(tree), via="runpodctl", quiet=True)
    assert list(scratch.iterdir()) == []  # nor after a failed send
