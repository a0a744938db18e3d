"""The custom node's pure parts: depth sort, input collection, config (no server, no network)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from custom_node.config import load_config
from custom_node.graph import GraphCycleError, node_depths, sort_by_depth, upstream_closure
from custom_node.inputs import InputTooLarge, collect_images, referenced_inputs


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


BRANCHED = {
    "1": node("LoadImage", image="a.png"),
    "2": node("ImageInvert", image=["1", 0]),
    "3": node("ImageBlur", image=["2", 0], blur_radius=1),
    "4": node("SaveImage", images=["3", 0], filename_prefix="final"),
    "5": node("PreviewImage", images=["1", 0]),
    "6": node("SaveImage", images=["2", 0], filename_prefix="mid"),
    "10": node("SaveImage", images=["2", 0], filename_prefix="mid2"),
}


def test_depth_is_the_longest_chain_of_links() -> None:
    assert node_depths(BRANCHED) == {"1": 0, "2": 1, "3": 2, "4": 3, "5": 1, "6": 2, "10": 2}


def test_outputs_sort_deepest_first_equal_depths_by_numeric_id_then_own_order() -> None:
    entries = [
        {"node_id": "5", "filename": "p"},
        {"node_id": "10", "filename": "m2"},
        {"node_id": "6", "filename": "m_a"},
        {"node_id": "4", "filename": "f"},
        {"node_id": "6", "filename": "m_b"},
        {"node_id": "99", "filename": "unknown"},
    ]
    ordered = sort_by_depth(entries, BRANCHED)
    assert [e["filename"] for e in ordered] == ["f", "m_a", "m_b", "m2", "p", "unknown"]
    assert [e["depth"] for e in ordered] == [3, 2, 2, 2, 1, -1]


def test_a_merge_takes_the_deeper_branch() -> None:
    prompt = {
        "a": node("X"),
        "b": node("Y", x=["a", 0]),
        "c": node("Y", x=["b", 0]),
        "m": node("Merge", left=["a", 0], right=["c", 0]),
    }
    assert node_depths(prompt)["m"] == 3


@pytest.mark.parametrize(
    "prompt",
    [
        {"1": node("A", x=["2", 0]), "2": node("B", x=["1", 0])},
        {"1": node("A", x=["1", 0])},
        {
            "1": node("A"),
            "2": node("B", x=["4", 0], y=["1", 0]),
            "3": node("C", x=["2", 0]),
            "4": node("D", x=["3", 0]),
        },
    ],
)
def test_cycles_are_refused_naming_the_loop(prompt: dict[str, Any]) -> None:
    with pytest.raises(GraphCycleError) as refused:
        sort_by_depth([{"node_id": "1"}], prompt)
    assert refused.value.cycle[0] == refused.value.cycle[-1]
    assert "cycle" in str(refused.value)


def test_selected_outputs_keep_exactly_the_nodes_feeding_them() -> None:
    assert list(upstream_closure(BRANCHED, ["4"])) == ["1", "2", "3", "4"]
    assert list(upstream_closure(BRANCHED, ["5", "6"])) == ["1", "2", "5", "6"]
    assert upstream_closure(BRANCHED, ["4"])["4"] is BRANCHED["4"]
    assert upstream_closure(BRANCHED, ["nope"]) == {}


def test_links_to_missing_nodes_and_literal_lists_are_ignored() -> None:
    prompt = {"1": node("A", x=["404", 0], size=[512, 512], pair=["a", "b"])}
    assert node_depths(prompt) == {"1": 0}


def test_a_long_chain_does_not_recurse() -> None:
    prompt = {str(i): node("N", x=[str(i - 1), 0]) if i else node("N") for i in range(5000)}
    assert node_depths(prompt)["4999"] == 4999


def write(path: Path, data: bytes = b"png") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_input_files_are_found_with_their_subfolders(tmp_path: Path) -> None:
    write(tmp_path / "top.png")
    write(tmp_path / "masks" / "m.png", b"mask")
    write(tmp_path / "sets" / "faces" / "f.png")
    write(tmp_path / "annot" / "x.png")
    prompt = {
        "1": node("LoadImage", image="top.png"),
        "2": node("LoadImageMask", image="masks/m.png", channel="alpha"),
        "3": node("LoadImageWithSubfolder", subfolder="sets/faces", image="f.png"),
        "4": node("LoadImage", image="annot/x.png [input]"),
        "5": node("LoadImage", image="top.png"),  # named twice, sent once
        "6": node("CLIPTextEncode", text="a cat", clip=["9", 0]),
        "7": node("LoadImage", image="not-here.png"),
        "8": node("LoadImage", image="../escape.png"),
        "9": node("LoadImage", image=str(tmp_path / "top.png")),
    }
    write(tmp_path.parent / "escape.png")
    assert referenced_inputs(prompt, tmp_path) == [
        "top.png",
        "masks/m.png",
        "sets/faces/f.png",
        "annot/x.png",
    ]
    images = collect_images(prompt, tmp_path)
    assert images[1] == {"name": "masks/m.png", "image": base64.b64encode(b"mask").decode()}


def test_long_or_odd_text_inputs_are_not_file_names(tmp_path: Path) -> None:
    texts = ["a" * 5000, ("b" * 300 + "/") * 3 + "x", "multi\nline", "nul\x00byte", "é" * 200]
    prompt = {"1": node("CLIPTextEncode", **{f"t{i}": t for i, t in enumerate(texts)})}
    assert referenced_inputs(prompt, tmp_path) == []


def test_a_symlink_out_of_the_input_folder_is_not_sent(tmp_path: Path) -> None:
    secret = write(tmp_path / "outside" / "secret.png")
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "link.png").symlink_to(secret)
    assert referenced_inputs({"1": node("LoadImage", image="link.png")}, tmp_path / "input") == []


def test_too_many_input_bytes_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "big.png", b"x" * 2000)
    with pytest.raises(InputTooLarge, match=r"big\.png"):
        collect_images({"1": node("LoadImage", image="big.png")}, tmp_path, max_bytes=1000)


def test_config_environment_wins_and_the_key_never_shows(tmp_path: Path) -> None:
    file = tmp_path / "comfy-runpod.json"
    file.write_text(json.dumps({"endpoint_id": "fromfile", "api_key": "rpa_FILEKEY", "timeout_s": 60}))
    cfg = load_config({"RUNPOD_ENDPOINT_ID": "fromenv"}, [tmp_path / "missing.json", file])
    assert cfg.url == "https://api.runpod.ai/v2/fromenv" and cfg.source == "environment"
    assert cfg.api_key == "rpa_FILEKEY" and cfg.timeout_s == 60
    assert "FILEKEY" not in repr(cfg) and "FILEKEY" not in json.dumps(cfg.public())
    assert cfg.public()["has_api_key"] is True


def test_config_from_file_and_not_configured(tmp_path: Path) -> None:
    file = tmp_path / "comfy-runpod.json"
    file.write_text(json.dumps({"endpoint_url": "http://127.0.0.1:8000/v2/local/"}))
    cfg = load_config({}, [file])
    assert cfg.url == "http://127.0.0.1:8000/v2/local" and cfg.source == str(file) and cfg.api_key is None
    empty = load_config({}, [tmp_path / "none.json"])
    assert not empty.configured and "RUNPOD_ENDPOINT_ID" in (empty.problem or "")
    file.write_text('{"api_key": "rpa_SECRET", broken')
    broken = load_config({}, [file])
    assert not broken.configured and "SECRET" not in (broken.problem or "")


def test_the_registry_metadata_is_complete() -> None:
    import tomllib

    meta = tomllib.loads((Path(__file__).parents[2] / "custom_node" / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "comfy-runpod" and meta["project"]["version"].count(".") == 2
    assert "Repository" in meta["project"]["urls"]
    assert {"PublisherId", "DisplayName", "Icon", "includes"} <= set(meta["tool"]["comfy"])
