"""``invoke sync-models --delete`` never deletes what it could not read, and asks before a big deletion.

Through the task, against a real S3-compatible server (moto) on loopback.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from model_sync.plan import Plan
from model_sync.remote import RemoteObject, list_objects
from model_sync.s3sync import sync_s3
from tasks import models
from tests.helpers import write_file
from tests.model_sync.test_model_sync import count_parts, interrupt_big_upload, parts_missing

PREFIX = "comfyui/models"


@pytest.fixture
def bucket(s3_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RUNPOD_S3_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("RUNPOD_S3_ACCESS_KEY_ID", "user_test")
    monkeypatch.setenv("RUNPOD_S3_SECRET_ACCESS_KEY", "rps_test")  # a pair SeaweedFS knows (tasks/s3_servers)
    monkeypatch.setenv("COMFY_RUNPOD_CACHE", str(tmp_path / "cache"))
    name = f"delsafe-{os.getpid()}-{tmp_path.name}".lower().replace("_", "-")[:60]
    models._client("").create_bucket(Bucket=name)
    return name


def volume_keys(bucket: str) -> set[str]:
    return set(list_objects(models._client(""), bucket, PREFIX))


def test_unreadable_local_models_are_kept_on_the_volume_and_reported(
    tmp_path: Path, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # loras/ lives on an external drive; checkpoints/ has a file linked from there too
    drive = tmp_path / "usb"
    write_file(drive / "loras" / "detail.safetensors", b"lora" * 300)
    write_file(drive / "big.safetensors", b"ckpt" * 1000)
    root = tmp_path / "models"
    write_file(root / "checkpoints" / "local.safetensors", b"here" * 10)
    (root / "checkpoints" / "linked.safetensors").symlink_to(drive / "big.safetensors")
    (root / "loras").symlink_to(drive / "loras", target_is_directory=True)
    write_file(root / "vae" / "gone.safetensors", b"vae")
    models.sync_models(Context(), str(root), volume=bucket, quiet=True)
    assert volume_keys(bucket) == {
        f"{PREFIX}/checkpoints/local.safetensors",
        f"{PREFIX}/checkpoints/linked.safetensors",
        f"{PREFIX}/loras/detail.safetensors",
        f"{PREFIX}/vae/gone.safetensors",
    }
    capsys.readouterr()

    # the drive is unmounted: both links now dangle; vae/gone.safetensors was really deleted
    drive.rename(tmp_path / "usb-unmounted")
    (root / "vae" / "gone.safetensors").unlink()
    models.sync_models(Context(), str(root), volume=bucket, delete=True, quiet=True)
    err = capsys.readouterr().err

    assert volume_keys(bucket) == {
        f"{PREFIX}/checkpoints/local.safetensors",
        f"{PREFIX}/checkpoints/linked.safetensors",
        f"{PREFIX}/loras/detail.safetensors",
    }, "only the file that is really gone is deleted"
    assert "warning: cannot read checkpoints/linked.safetensors" in err
    assert "warning: cannot read loras:" in err
    assert "kept on the volume: 2 files whose local copy cannot be read" in err


def test_a_big_deletion_is_listed_and_needs_yes(
    tmp_path: Path, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "models"
    for i in range(5):
        write_file(root / "loras" / f"l{i}.safetensors", b"x" * (i + 1))
    write_file(root / "vae" / "keep.safetensors", b"v")
    models.sync_models(Context(), str(root), volume=bucket, quiet=True)
    for i in range(5):
        (root / "loras" / f"l{i}.safetensors").unlink()
    capsys.readouterr()

    with pytest.raises(Exit) as refused:
        models.sync_models(Context(), str(root), volume=bucket, delete=True, quiet=True)
    assert refused.value.code == 2
    assert "--yes" in str(refused.value.message) and "nothing was changed" in str(refused.value.message)
    listed = capsys.readouterr().out
    assert all(f"delete  {PREFIX}/loras/l{i}.safetensors" in listed for i in range(5))
    assert len(volume_keys(bucket)) == 6, "nothing was deleted without --yes"

    models.sync_models(Context(), str(root), volume=bucket, delete=True, yes=True, quiet=True)
    assert volume_keys(bucket) == {f"{PREFIX}/vae/keep.safetensors"}


def test_a_few_small_deletions_need_no_yes(tmp_path: Path, bucket: str) -> None:
    root = tmp_path / "models"
    write_file(root / "loras" / "a.safetensors", b"a")
    write_file(root / "loras" / "b.safetensors", b"b")
    models.sync_models(Context(), str(root), volume=bucket, quiet=True)
    (root / "loras" / "a.safetensors").unlink()
    models.sync_models(Context(), str(root), volume=bucket, delete=True, quiet=True)
    assert volume_keys(bucket) == {f"{PREFIX}/loras/b.safetensors"}


def test_one_deletion_over_a_gigabyte_needs_yes() -> None:
    # a volume object's size is what the listing says: no need to upload a gigabyte to test it
    small = Plan(delete=[RemoteObject(f"{PREFIX}/loras/a", 10, "e")])
    big = Plan(delete=[RemoteObject(f"{PREFIX}/checkpoints/flux", 1_000_000_001, "e")])
    assert not small.delete_needs_confirmation
    assert big.delete_needs_confirmation


def test_an_unfinished_upload_of_an_unreadable_file_is_kept_for_later(tmp_path: Path, bucket: str) -> None:
    client = models._client("")
    root, o, key = interrupt_big_upload(client, bucket, tmp_path)
    big = root / "checkpoints" / "big.safetensors"
    away = tmp_path / "unmounted.safetensors"
    big.rename(away)
    big.symlink_to(tmp_path / "usb" / "big.safetensors")  # dangling: the drive is not there

    result = sync_s3(root, client, dataclasses.replace(o, delete=True))

    assert [u.relpath for u in result.unreadable] == ["checkpoints/big.safetensors"]
    assert len(client.list_multipart_uploads(Bucket=bucket)["Uploads"]) == 1, "not taken for a deleted file"
    big.unlink()
    away.rename(big)
    missing = parts_missing(client, bucket, key)
    sent = count_parts(client)
    assert sync_s3(root, client, o).uploaded == [key]
    assert sent == missing, "it resumed from the stored parts"
