"""Input files land in the job's folder and nowhere else; the workflow is pointed at them."""

from __future__ import annotations

from pathlib import Path

import pytest

from handler.addresses import address_allowed
from handler.errors import InputFileError
from handler.input_files import job_folder_name, rewrite_references, write_job_files


def test_files_are_written_under_the_job_folder_with_subfolders(tmp_path: Path) -> None:
    folder = write_job_files(tmp_path, "job-1", [("a.png", b"A"), ("masks/m.png", b"M")])
    assert folder == tmp_path / "runpod-jobs" / "job-1"
    assert (folder / "a.png").read_bytes() == b"A"
    assert (folder / "masks" / "m.png").read_bytes() == b"M"


def test_a_retry_replaces_the_previous_folder(tmp_path: Path) -> None:
    write_job_files(tmp_path, "job-1", [("old.png", b"A")])
    folder = write_job_files(tmp_path, "job-1", [("new.png", b"B")])
    assert sorted(p.name for p in folder.iterdir()) == ["new.png"]


def test_symlinked_parent_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    inputs = tmp_path / "input"
    # A job folder name whose "masks" is a planted symlink from a previous, hostile job.
    folder = write_job_files(inputs, "job-2", [("x.png", b"x")])
    (folder / "masks").symlink_to(outside)
    # write_job_files removes the old folder first, so the planted link is gone...
    write_job_files(inputs, "job-2", [("masks/a.png", b"A")])
    assert list(outside.iterdir()) == []


def test_jobs_root_symlink_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    inputs = tmp_path / "input"
    inputs.mkdir()
    (inputs / "runpod-jobs").symlink_to(outside)
    with pytest.raises(InputFileError, match="symlink"):
        write_job_files(inputs, "j", [("a.png", b"A")])
    assert list(outside.iterdir()) == []


def test_hostile_job_ids_become_safe_folder_names() -> None:
    for job_id in ["../../etc", "a/b", "..", "x" * 500, "ok-id_1.2"]:
        name = job_folder_name(job_id)
        assert "/" not in name and name not in (".", "..") and len(name) < 100
    assert job_folder_name("ok-id_1.2") == "ok-id_1.2"
    assert job_folder_name("a/b") != job_folder_name("a_b")


def test_references_are_rewritten_including_annotations_and_subfolder_nodes() -> None:
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "masks/a.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "b.png [input]"}},
        "3": {"class_type": "LoadImageWithSubfolder", "inputs": {"subfolder": "masks", "image": "a.png"}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "not-sent.png"}},
        "5": {"class_type": "LoadImage", "inputs": {"image": "b.png [output]"}},
    }
    count = rewrite_references(workflow, ["masks/a.png", "b.png"], "runpod-jobs/j")
    assert count == 3
    assert workflow["1"]["inputs"]["image"] == "runpod-jobs/j/masks/a.png"
    assert workflow["2"]["inputs"]["image"] == "runpod-jobs/j/b.png [input]"
    assert workflow["3"]["inputs"] == {"subfolder": "runpod-jobs/j/masks", "image": "a.png"}
    assert workflow["4"]["inputs"]["image"] == "not-sent.png"
    assert workflow["5"]["inputs"]["image"] == "b.png [output]"


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("fe80::1", False),
        ("0.0.0.0", False),  # noqa: S104
        ("100.64.0.1", False),  # carrier-grade NAT: cloud metadata on some providers
        ("198.18.0.1", False),  # benchmarking
        ("192.0.0.1", False),
        ("224.0.0.1", False),  # multicast
        ("240.0.0.1", False),
        ("fc00::1", False),
        ("ff0e::1", False),
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b:1::a9fe:a9fe", False),  # local-use NAT64 of 169.254.169.254
        ("::7f00:1", False),  # IPv4-compatible 127.0.0.1 (Python calls it global)
        ("::a9fe:a9fe", False),  # IPv4-compatible 169.254.169.254
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("::ffff:8.8.8.8", True),
        ("2606:4700::1", True),
        ("93.184.216.34", True),
    ],
)
def test_private_addresses_are_not_allowed(ip: str, allowed: bool) -> None:
    assert address_allowed(ip) is allowed
