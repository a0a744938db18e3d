"""Model sync over the S3 API, against a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from model_sync import layout, local
from model_sync import workflow as wf
from model_sync.remote import abort_stale_uploads, endpoint_for, list_objects, make_client
from model_sync.s3sync import MiB, SyncOptions, sync_s3
from tests.helpers import write_file


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_file(root / "checkpoints" / "sd15.safetensors", b"ckpt" * 1000)
    write_file(root / "checkpoints" / "sdxl" / "base.safetensors", b"base" * 500)
    write_file(root / "loras" / "detail.safetensors", b"lora" * 300)
    write_file(root / "clip" / "t5.safetensors", b"t5" * 100)
    write_file(root / "loras" / ".DS_Store", b"x")
    write_file(root / "not_a_model_folder" / "x.bin", b"x")
    return root


def opts(bucket: str, tmp_path: Path, **kw: Any) -> SyncOptions:
    return SyncOptions(bucket=bucket, folders=layout.all_subfolders(), cache_dir=tmp_path / "cache", **kw)


def remote_body(client: Any, bucket: str, key: str) -> bytes:
    data: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def test_first_sync_noop_and_one_changed_file(s3: tuple[Any, str], tree: Path, tmp_path: Path) -> None:
    client, bucket = s3
    first = sync_s3(tree, client, opts(bucket, tmp_path))
    assert sorted(first.uploaded) == [
        "comfyui/models/checkpoints/sd15.safetensors",
        "comfyui/models/checkpoints/sdxl/base.safetensors",
        "comfyui/models/clip/t5.safetensors",
        "comfyui/models/loras/detail.safetensors",
    ]
    assert not first.failed
    assert remote_body(client, bucket, "comfyui/models/loras/detail.safetensors") == b"lora" * 300

    again = sync_s3(tree, client, opts(bucket, tmp_path))
    assert again.uploaded == [] and len(again.plan.skip) == 4

    write_file(tree / "loras" / "detail.safetensors", b"LORA" * 301)  # new size
    changed = sync_s3(tree, client, opts(bucket, tmp_path))
    assert changed.uploaded == ["comfyui/models/loras/detail.safetensors"]
    assert remote_body(client, bucket, "comfyui/models/loras/detail.safetensors") == b"LORA" * 301


def test_same_size_edit_is_found_by_hash_and_touch_is_not_uploaded(
    s3: tuple[Any, str], tree: Path, tmp_path: Path
) -> None:
    client, bucket = s3
    sync_s3(tree, client, opts(bucket, tmp_path))
    path = tree / "checkpoints" / "sd15.safetensors"
    path.write_bytes(b"CKPT" * 1000)  # same size, new content
    os.utime(path, ns=(1, 1_000_000_000))
    result = sync_s3(tree, client, opts(bucket, tmp_path))
    assert result.uploaded == ["comfyui/models/checkpoints/sd15.safetensors"]
    assert remote_body(client, bucket, result.uploaded[0]) == b"CKPT" * 1000
    head = client.head_object(Bucket=bucket, Key=result.uploaded[0])
    assert head["Metadata"]["sha256"] == hashlib.sha256(b"CKPT" * 1000).hexdigest()

    os.utime(path, ns=(2, 2_000_000_000))  # touched, same content: hashed, not sent
    touched = sync_s3(tree, client, opts(bucket, tmp_path))
    assert touched.uploaded == []


def test_other_machine_objects_are_verified_by_metadata(
    s3: tuple[Any, str], tree: Path, tmp_path: Path
) -> None:
    """A fresh cache (another machine) skips objects whose sha256 metadata matches."""
    client, bucket = s3
    sync_s3(tree, client, opts(bucket, tmp_path))
    (tree / "loras" / "detail.safetensors").write_bytes(b"lora" * 300)  # hashed at upload
    sync_s3(tree, client, opts(bucket, tmp_path))
    fresh = SyncOptions(bucket=bucket, folders=("loras",), cache_dir=tmp_path / "other-cache")
    result = sync_s3(tree, client, fresh)
    assert result.uploaded == [] and len(result.plan.skip) == 1


def test_multipart_above_threshold(s3: tuple[Any, str], tmp_path: Path) -> None:
    client, bucket = s3
    root = tmp_path / "models"
    data = os.urandom(12 * MiB + 123)
    write_file(root / "diffusion_models" / "big.safetensors", data)
    write_file(root / "vae" / "small.safetensors", b"v" * 10)
    calls: list[str] = []
    client.meta.events.register("before-call.s3.UploadPart", lambda **kw: calls.append("part"))
    result = sync_s3(root, client, opts(bucket, tmp_path, multipart_threshold=5 * MiB, part_size=5 * MiB))
    assert not result.failed
    assert len(calls) == 3
    key = "comfyui/models/diffusion_models/big.safetensors"
    assert client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"').endswith("-3")
    assert remote_body(client, bucket, key) == data


def count_parts(client: Any) -> list[int]:
    """Part numbers sent with UploadPart from now on, in order."""
    sent: list[int] = []
    client.meta.events.register(
        "before-parameter-build.s3.UploadPart", lambda params, **kw: sent.append(params["PartNumber"])
    )
    return sent


def test_interrupted_upload_leaves_no_partial_object_and_resumes_from_stored_parts(
    s3: tuple[Any, str], tmp_path: Path
) -> None:
    client, bucket = s3
    root = tmp_path / "models"
    data = os.urandom(21 * MiB)  # 5 parts of 5 MiB
    write_file(root / "checkpoints" / "big.safetensors", data)
    for i in range(5):
        write_file(root / "loras" / f"l{i}.safetensors", bytes([i]) * 1000)
    parts = itertools.count()

    def fail_third_part(**kwargs: Any) -> None:
        if next(parts) == 2:
            raise ConnectionError("injected: network gone mid-upload")

    client.meta.events.register("before-call.s3.UploadPart", fail_third_part)
    o = opts(bucket, tmp_path, multipart_threshold=5 * MiB, part_size=5 * MiB, concurrency=1)
    broken = sync_s3(root, client, o)
    key = "comfyui/models/checkpoints/big.safetensors"
    assert [k for k, _ in broken.failed] == [key]
    assert "resumes" in broken.failed[0][1]
    assert len(broken.uploaded) == 5  # the small files still went
    assert key not in list_objects(client, bucket, layout.DEFAULT_PREFIX)  # nothing partial visible
    (pending,) = client.list_multipart_uploads(Bucket=bucket)["Uploads"]  # kept for the next run
    assert pending["Key"] == key
    client.meta.events.unregister("before-call.s3.UploadPart", fail_third_part)

    stored = client.list_parts(Bucket=bucket, Key=key, UploadId=pending["UploadId"])["Parts"]
    kept = {p["PartNumber"] for p in stored}
    assert {1, 2} <= kept and 3 not in kept  # what went before the failure stays on the server
    sent = count_parts(client)
    resumed = sync_s3(root, client, o)
    assert resumed.failed == []
    assert resumed.uploaded == [key]
    assert sent == sorted({1, 2, 3, 4, 5} - kept)  # only what the server lacks
    assert resumed.resumed_bytes == sum(p["Size"] for p in stored)
    assert remote_body(client, bucket, key) == data
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    again = sync_s3(root, client, o)
    assert again.uploaded == [] and again.failed == []


def test_killed_run_resumes_and_a_wrong_stored_part_is_sent_again(
    s3: tuple[Any, str], tmp_path: Path
) -> None:
    """A run killed outright (no cleanup at all) resumes; a stored part whose bytes differ is redone.

    SeaweedFS then lists part 2 twice (the first and the overwriting ETag, in no fixed order):
    either way it is sent again.
    """
    client, bucket = s3
    root = tmp_path / "models"
    data = os.urandom(12 * MiB)
    big = write_file(root / "checkpoints" / "big.safetensors", data)
    o = opts(bucket, tmp_path, multipart_threshold=5 * MiB, part_size=5 * MiB, concurrency=1)

    class Killed(BaseException):
        """Like SIGKILL for the code under test: nothing it can catch as an Exception."""

    calls = itertools.count()

    def kill_on_third(**kwargs: Any) -> None:
        if next(calls) == 2:
            raise Killed

    client.meta.events.register("before-call.s3.UploadPart", kill_on_third)
    with pytest.raises(Killed):
        sync_s3(root, client, o)
    client.meta.events.unregister("before-call.s3.UploadPart", kill_on_third)
    key = "comfyui/models/checkpoints/big.safetensors"
    (pending,) = client.list_multipart_uploads(Bucket=bucket)["Uploads"]
    # part 2 on the server now holds other bytes (as if the local file had been rewritten in place
    # between the runs with its size and mtime restored)
    client.upload_part(
        Bucket=bucket, Key=key, UploadId=pending["UploadId"], PartNumber=2, Body=b"x" * (5 * MiB)
    )
    sent = count_parts(client)
    resumed = sync_s3(root, client, o)
    assert resumed.uploaded == [key] and not resumed.failed
    assert sent == [2, 3]
    assert remote_body(client, bucket, key) == data
    assert big.read_bytes() == data


def parts_missing(client: Any, bucket: str, key: str, total: int = 3) -> list[int]:
    """The part numbers the key's one unfinished upload lacks (part 2 always: it failed)."""
    (upload,) = client.list_multipart_uploads(Bucket=bucket)["Uploads"]
    stored = client.list_parts(Bucket=bucket, Key=key, UploadId=upload["UploadId"]).get("Parts", [])
    missing = sorted(set(range(1, total + 1)) - {p["PartNumber"] for p in stored})
    assert 1 not in missing and 2 in missing
    return missing


def interrupt_big_upload(client: Any, bucket: str, tmp_path: Path) -> tuple[Path, SyncOptions, str]:
    """A models tree whose 11 MiB checkpoint failed after its first part; returns (root, options, key)."""
    root = tmp_path / "models"
    write_file(root / "checkpoints" / "big.safetensors", os.urandom(11 * MiB))
    write_file(root / "loras" / "small.safetensors", b"s" * 100)
    o = opts(bucket, tmp_path, multipart_threshold=5 * MiB, part_size=5 * MiB, concurrency=1)
    calls = itertools.count()

    def fail_second(**kwargs: Any) -> None:
        if next(calls) == 1:
            raise ConnectionError("injected")

    client.meta.events.register("before-call.s3.UploadPart", fail_second)
    assert sync_s3(root, client, o).failed
    client.meta.events.unregister("before-call.s3.UploadPart", fail_second)
    return root, o, "comfyui/models/checkpoints/big.safetensors"


def test_a_throttled_part_listing_keeps_the_upload_for_later(s3: tuple[Any, str], tmp_path: Path) -> None:
    client, bucket = s3
    root, o, key = interrupt_big_upload(client, bucket, tmp_path)
    (pending,) = client.list_multipart_uploads(Bucket=bucket)["Uploads"]

    def throttled(**kwargs: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "ListParts"
        )

    client.meta.events.register("before-call.s3.ListParts", throttled)
    hiccup = sync_s3(root, client, o)
    client.meta.events.unregister("before-call.s3.ListParts", throttled)
    assert [k for k, _ in hiccup.failed] == [key]
    # not mistaken for a lost upload: no second upload, the first one and its part are kept
    uploads = client.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [u["UploadId"] for u in uploads] == [pending["UploadId"]]
    missing = parts_missing(client, bucket, key)
    sent = count_parts(client)
    assert sync_s3(root, client, o).uploaded == [key]
    assert sent == missing


def test_a_narrower_run_leaves_other_files_unfinished_uploads_alone(
    s3: tuple[Any, str], tmp_path: Path
) -> None:
    """Stopping a full sync mid-checkpoint, then syncing one workflow's models first, loses nothing."""
    client, bucket = s3
    root, o, key = interrupt_big_upload(client, bucket, tmp_path)
    write_file(root / "loras" / "other.safetensors", b"o" * 100)
    only_loras = dataclasses.replace(o, only=frozenset({"loras/other.safetensors"}))
    assert sync_s3(root, client, only_loras).uploaded == ["comfyui/models/loras/other.safetensors"]
    assert len(client.list_multipart_uploads(Bucket=bucket)["Uploads"]) == 1
    missing = parts_missing(client, bucket, key)
    sent = count_parts(client)
    assert sync_s3(root, client, o).uploaded == [key]
    assert sent == missing


def test_changed_file_starts_a_new_upload_and_aborts_the_old(s3: tuple[Any, str], tmp_path: Path) -> None:
    client, bucket = s3
    root, o, key = interrupt_big_upload(client, bucket, tmp_path)
    big = root / "checkpoints" / "big.safetensors"
    (old,) = client.list_multipart_uploads(Bucket=bucket)["Uploads"]
    new_data = os.urandom(11 * MiB)
    big.write_bytes(new_data)
    os.utime(big, ns=(1, 1))
    sent = count_parts(client)
    result = sync_s3(root, client, o)
    assert result.uploaded == [key] and not result.failed
    assert sent == [1, 2, 3] and result.resumed_bytes == 0
    assert remote_body(client, bucket, key) == new_data
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert old["UploadId"] not in {u["UploadId"] for u in uploads} and uploads == []


def test_stale_multipart_upload_is_aborted(s3: tuple[Any, str], tree: Path, tmp_path: Path) -> None:
    client, bucket = s3
    # moto reports every upload as initiated in 2010, a real server as now: no grace, so both count as stale
    client.create_multipart_upload(Bucket=bucket, Key="comfyui/models/checkpoints/killed.safetensors")
    result = sync_s3(tree, client, opts(bucket, tmp_path, stale_upload_s=0))
    assert result.aborted_uploads == 1
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_recent_or_active_foreign_upload_and_our_own_are_left_alone() -> None:
    """Another machine may be uploading right now; ours is resumed, not aborted."""
    env = {"RUNPOD_S3_ACCESS_KEY_ID": "a", "RUNPOD_S3_SECRET_ACCESS_KEY": "b"}
    client = make_client(None, {"RUNPOD_S3_ENDPOINT_URL": "http://127.0.0.1:9", **env})
    now = datetime.now(UTC)
    old = now - timedelta(days=2)
    uploads = [
        {"Key": "comfyui/models/a", "UploadId": "recent", "Initiated": now - timedelta(minutes=5)},
        {"Key": "comfyui/models/b", "UploadId": "ours", "Initiated": now - timedelta(days=3)},
        {"Key": "comfyui/models/c", "UploadId": "old", "Initiated": old},
        {"Key": "comfyui/models/d", "UploadId": "active", "Initiated": old},  # started long ago, busy now
        {"Key": "comfyui/models/e", "UploadId": "undated"},  # the server does not say: leave it
    ]

    def parts_of(key: str, upload_id: str, newest: datetime | None) -> tuple[dict[str, Any], dict[str, Any]]:
        found = [{"PartNumber": 1, "ETag": '"x"', "Size": 5, "LastModified": newest}] if newest else []
        return {"Parts": found}, {"Bucket": "vol", "Key": key, "UploadId": upload_id}

    with Stubber(client) as stub:
        listed = {"Bucket": "vol", "Prefix": "comfyui/models/"}
        stub.add_response(
            "list_multipart_uploads",
            {
                "Uploads": uploads[:3],
                "IsTruncated": True,
                "NextKeyMarker": "comfyui/models/c",
                "NextUploadIdMarker": "old",
            },
            listed,
        )
        stub.add_response("list_parts", *parts_of("comfyui/models/a", "recent", None))
        stub.add_response("list_parts", *parts_of("comfyui/models/c", "old", old))
        only_old = {"Bucket": "vol", "Key": "comfyui/models/c", "UploadId": "old"}
        stub.add_response("abort_multipart_upload", {}, only_old)
        page_two = {**listed, "KeyMarker": "comfyui/models/c", "UploadIdMarker": "old"}
        stub.add_response("list_multipart_uploads", {"Uploads": uploads[3:], "IsTruncated": False}, page_two)
        stub.add_response("list_parts", *parts_of("comfyui/models/d", "active", now - timedelta(minutes=1)))
        stub.add_response("list_parts", *parts_of("comfyui/models/e", "undated", None))
        aborted = abort_stale_uploads(
            client, "vol", "comfyui/models", keep=frozenset({"ours"}), min_age_s=86400
        )
        stub.assert_no_pending_responses()
    assert aborted == 1


def test_delete_removes_only_gone_files_in_selected_folders(
    s3: tuple[Any, str], tree: Path, tmp_path: Path
) -> None:
    client, bucket = s3
    sync_s3(tree, client, opts(bucket, tmp_path))
    client.put_object(Bucket=bucket, Key="comfyui/models/vae/remote_only.safetensors", Body=b"r")
    client.put_object(Bucket=bucket, Key="other/keep.txt", Body=b"k")
    (tree / "loras" / "detail.safetensors").unlink()

    lora_only = SyncOptions(bucket=bucket, folders=("loras",), delete=True, cache_dir=tmp_path / "cache")
    dry = sync_s3(tree, client, SyncOptions(**{**lora_only.__dict__, "dry_run": True}))
    assert [o.key for o in dry.plan.delete] == ["comfyui/models/loras/detail.safetensors"]
    assert "comfyui/models/loras/detail.safetensors" in list_objects(client, bucket, "comfyui/models")

    result = sync_s3(tree, client, lora_only)
    assert result.deleted == ["comfyui/models/loras/detail.safetensors"]
    keys = set(list_objects(client, bucket, ""))
    assert "comfyui/models/vae/remote_only.safetensors" in keys and "other/keep.txt" in keys

    everything = sync_s3(tree, client, opts(bucket, tmp_path, delete=True))
    assert everything.deleted == ["comfyui/models/vae/remote_only.safetensors"]


def test_dry_run_changes_nothing(s3: tuple[Any, str], tree: Path, tmp_path: Path) -> None:
    client, bucket = s3
    result = sync_s3(tree, client, opts(bucket, tmp_path, dry_run=True))
    assert len(result.plan.upload) == 4 and result.uploaded == []
    assert list_objects(client, bucket, "") == {}


def test_workflow_selects_only_its_models(s3: tuple[Any, str], tree: Path, tmp_path: Path) -> None:
    client, bucket = s3
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl\\base.safetensors"}},
        "2": {"class_type": "LoraLoader", "inputs": {"lora_name": "detail.safetensors", "model": ["1", 0]}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "missing.safetensors"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat"}},
    }
    refs = wf.model_refs(graph)
    assert [(r.name, r.folder) for r in refs] == [
        ("sdxl/base.safetensors", "checkpoints"),
        ("detail.safetensors", "loras"),
        ("missing.safetensors", "vae"),
    ]
    files = local.scan(tree, layout.all_subfolders())
    found, missing = wf.match(refs, [f.relpath for f in files])
    assert found == {"checkpoints/sdxl/base.safetensors", "loras/detail.safetensors"}
    assert [m.name for m in missing] == ["missing.safetensors"]
    result = sync_s3(tree, client, opts(bucket, tmp_path, only=frozenset(found)))
    assert sorted(result.uploaded) == [
        "comfyui/models/checkpoints/sdxl/base.safetensors",
        "comfyui/models/loras/detail.safetensors",
    ]


def test_keys_with_spaces_plus_and_unicode_round_trip(s3: tuple[Any, str], tmp_path: Path) -> None:
    """The listing is URL-encoded on the wire; a misdecoded key would re-upload on every run."""
    client, bucket = s3
    root = tmp_path / "models"
    write_file(root / "loras" / "my lora+v2 (é) %41.safetensors", b"x" * 10)
    first = sync_s3(root, client, opts(bucket, tmp_path))
    assert first.uploaded == ["comfyui/models/loras/my lora+v2 (é) %41.safetensors"]
    assert sync_s3(root, client, opts(bucket, tmp_path)).uploaded == []


def test_listing_paginates(s3: tuple[Any, str], tmp_path: Path) -> None:
    client, bucket = s3
    for i in range(23):
        client.put_object(Bucket=bucket, Key=f"comfyui/models/loras/{i:03}.safetensors", Body=b"x" * i)
    client.put_object(Bucket=bucket, Key="comfyui/models/loras/", Body=b"")  # a directory marker
    pages: list[int] = []
    client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: pages.append(1))
    listed = list_objects(client, bucket, "comfyui/models", page_size=5)
    assert len(listed) == 23 and len(pages) == 5
    assert listed["comfyui/models/loras/007.safetensors"].size == 7


def test_hash_cache_avoids_rereading(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = local.HashCache(tmp_path / "hashes.json")
    files = local.scan(tree, layout.all_subfolders())
    assert [f.relpath for f in files] == [
        "checkpoints/sd15.safetensors",
        "checkpoints/sdxl/base.safetensors",
        "clip/t5.safetensors",
        "loras/detail.safetensors",
    ]
    first = local.with_hashes(files, cache)
    assert first[0].sha256 == hashlib.sha256(b"ckpt" * 1000).hexdigest()
    reads: list[Path] = []
    original = local.sha256_file

    def counting(path: Path, on_bytes: Any = None) -> str:
        reads.append(path)
        return original(path, on_bytes)

    monkeypatch.setattr(local, "sha256_file", counting)
    again = local.with_hashes(
        local.scan(tree, layout.all_subfolders()), local.HashCache(tmp_path / "hashes.json")
    )
    assert reads == [] and again == first
    write_file(tree / "clip" / "t5.safetensors", b"T5" * 101)
    local.with_hashes(local.scan(tree, layout.all_subfolders()), local.HashCache(tmp_path / "hashes.json"))
    assert reads == [tree / "clip" / "t5.safetensors"]


def test_options_and_endpoint_checks() -> None:
    with pytest.raises(ValueError, match="put limit"):
        SyncOptions(bucket="v", multipart_threshold=600 * 1000 * 1000).check()
    with pytest.raises(ValueError, match="part size"):
        SyncOptions(bucket="v", part_size=MiB).check()
    with pytest.raises(ValueError, match="--delete"):
        SyncOptions(bucket="v", delete=True, only=frozenset()).check()
    assert endpoint_for("EUR-IS-1", {}) == ("https://s3api-eur-is-1.runpod.io/", "EUR-IS-1")
    assert layout.expand_folders(["text_encoders", "loras"]) == ("clip", "loras", "text_encoders")
    with pytest.raises(ValueError, match="unknown model folder"):
        layout.expand_folders(["lora"])
