"""The lock file: what it accepts, how each mistake is reported, its digest, in-place commit edits.

Rule: every refusal names the file, the dotted field and the fix, in one line; an edit by
``set_commit`` changes the commit's characters and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy_install import LockError, load_lock, lock_digest, parse_lock
from comfy_install.lock import set_commit

COMFY = "a125cd84b054a57729b5eecab930ca9408719832"
NODE = "f8fea4161f19997ba07515e3afc10cee67455c94"
OTHER = "0123456789abcdef0123456789abcdef01234567"

GOOD = f"""\
# a comment that must survive edits
version: 1
python: "3.11"
comfyui:
  repo: https://github.com/Comfy-Org/ComfyUI
  commit: {COMFY}  # v0.3.64
custom_nodes:
  comfyui-loadimagewithsubfolder:
    repo: https://github.com/liangt/comfyui-loadimagewithsubfolder
    commit: "{NODE}"
  other-pack:
    repo: https://example.com/other.git
    commit: {OTHER}
    pip: [onnxruntime>=1.17]
requirements:
  extra: [requests]
  overrides: [comfyui-frontend-package==1.32.4]
"""


def test_a_complete_lock_parses_into_typed_values() -> None:
    lock = parse_lock(GOOD)
    assert lock.python == "3.11"
    assert (lock.comfyui_repo, lock.comfyui_commit) == ("https://github.com/Comfy-Org/ComfyUI", COMFY)
    assert lock.node_names() == ("comfyui-loadimagewithsubfolder", "other-pack")
    assert lock.node("other-pack").pip == ("onnxruntime>=1.17",)
    assert lock.extra == ("requests",)
    assert lock.overrides == ("comfyui-frontend-package==1.32.4",)


def test_the_repository_lock_is_valid_and_pins_the_agreed_commits() -> None:
    lock = load_lock(Path(__file__).resolve().parents[2] / "image" / "comfyui.lock.yaml")
    assert lock.comfyui_commit == COMFY
    pack = lock.node("comfyui-loadimagewithsubfolder")
    assert (pack.repo, pack.commit) == ("https://github.com/liangt/comfyui-loadimagewithsubfolder", NODE)


def test_minimal_lock_needs_only_python_and_comfyui() -> None:
    lock = parse_lock(f'python: "3.12"\ncomfyui: {{repo: /srv/ComfyUI, commit: {COMFY}}}\n')
    assert lock.nodes == () and lock.extra == () and lock.overrides == ()


@pytest.mark.parametrize(
    ("text", "field", "fix"),
    [
        (GOOD.replace(f"commit: {COMFY}", "commit: a125cd8"), "comfyui.commit", "short commit"),
        (GOOD.replace(f"commit: {COMFY}", "commit: master"), "comfyui.commit", "branches and tags move"),
        (GOOD.replace(f"commit: {COMFY}", f"commit: {COMFY.upper()}"), "comfyui.commit", "lower case"),
        (GOOD.replace(f"  commit: {COMFY}  # v0.3.64\n", ""), "comfyui.commit", "missing"),
        (GOOD.replace("  repo: https://github.com/Comfy-Org/ComfyUI\n", ""), "comfyui.repo", "missing"),
        (GOOD.replace('python: "3.11"', "python: 3.10"), "python", "quoted"),
        (GOOD.replace('python: "3.11"', 'python: "three"'), "python", "major.minor"),
        (GOOD.replace("version: 1", "version: 2"), "version", "reads version 1"),
        (GOOD.replace("version: 1", "versoin: 1"), "versoin", "accepted keys"),
        (GOOD.replace("pip: [onnxruntime>=1.17]", "pip: onnxruntime"), "custom_nodes.other-pack.pip", "list"),
        (GOOD.replace("[onnxruntime>=1.17]", "[--index-url=x]"), "other-pack.pip[0]", "no pip options"),
        (GOOD.replace("other-pack:", "comfy-runpod:"), "custom_nodes.comfy-runpod", "reserved"),
        (GOOD.replace("other-pack:", "../escape:"), "custom_nodes.../escape", "folder name"),
        (GOOD.replace("other-pack:", "ComfyUI-LoadImageWithSubfolder:"), "ComfyUI-", "in case"),
        (GOOD.replace("https://example.com/other.git", "--upload-pack"), "other-pack.repo", "not a git URL"),
        (GOOD.replace(f"    commit: {OTHER}\n", ""), "other-pack.commit", "missing"),
        (GOOD.replace("  extra: [requests]", "  extra: requests"), "requirements.extra", "list"),
        (GOOD.replace("  other-pack:", "  comfyui-loadimagewithsubfolder:"), "withsubfolder", "twice"),
        ("comfyui: [unclosed", "yaml", "not valid YAML at line"),
        ("", "file", "empty"),
    ],
)  # fmt: skip
def test_each_mistake_names_the_field_and_the_fix(text: str, field: str, fix: str) -> None:
    with pytest.raises(LockError) as caught:
        parse_lock(text, source="image/comfyui.lock.yaml")
    message = str(caught.value)
    assert message.startswith("image/comfyui.lock.yaml: "), message
    assert field in caught.value.field or field in message, message
    assert fix in message, message
    assert "\n" not in message


def test_a_missing_lock_file_says_where_it_belongs(tmp_path: Path) -> None:
    with pytest.raises(LockError, match=r"not found; the lock lives at image/comfyui.lock.yaml"):
        load_lock(tmp_path / "nope.yaml")


def test_set_commit_changes_only_that_commit_and_keeps_comments_and_quotes() -> None:
    updated = set_commit(GOOD, OTHER)
    assert updated == GOOD.replace(f"commit: {COMFY}  # v0.3.64", f"commit: {OTHER}  # v0.3.64")
    node_updated = set_commit(GOOD, OTHER, node="comfyui-loadimagewithsubfolder")
    assert node_updated == GOOD.replace(f'commit: "{NODE}"', f"commit: {OTHER}")
    assert parse_lock(node_updated).node("comfyui-loadimagewithsubfolder").commit == OTHER


def test_set_commit_refuses_unknown_packs_and_short_commits() -> None:
    with pytest.raises(LockError, match=r"custom_nodes.nope.commit: not found"):
        set_commit(GOOD, OTHER, node="nope")
    with pytest.raises(ValueError, match="not a full 40-hex commit"):
        set_commit(GOOD, "abc123")


def test_the_digest_follows_what_decides_the_packages_and_nothing_else() -> None:
    lock = parse_lock(GOOD)
    base = lock_digest(lock, ["runpod==1.12.0"])
    assert base == lock_digest(
        parse_lock(GOOD.replace("# a comment", "# another comment")), ["runpod==1.12.0"]
    )
    assert base.startswith("sha256:")
    changed = [
        lock_digest(parse_lock(set_commit(GOOD, OTHER)), ["runpod==1.12.0"]),
        lock_digest(parse_lock(GOOD.replace("[requests]", "[requests, tqdm]")), ["runpod==1.12.0"]),
        lock_digest(parse_lock(GOOD.replace("1.32.4", "1.33.0")), ["runpod==1.12.0"]),
        lock_digest(parse_lock(GOOD.replace('"3.11"', '"3.12"')), ["runpod==1.12.0"]),
        lock_digest(lock, ["runpod==1.13.0"]),
    ]
    assert base not in changed and len(set(changed)) == len(changed)
