"""The lock file (``image/comfyui.lock.yaml``): parsing, validation, its digest, commit edits.

The lock is edited by hand, so every mistake is reported with the field's dotted path and what
to write instead (``custom_nodes.foo.commit: 'a125cd8' is a short commit; write all 40 hex
digits ...``), and the file is never rewritten by a YAML dumper: ``set_commit`` replaces the
commit's characters in place, so comments and layout survive ``invoke lock-update``.

A small example::

    version: 1
    python: "3.11"
    comfyui:
      repo: https://github.com/Comfy-Org/ComfyUI
      commit: a125cd84b054a57729b5eecab930ca9408719832
    custom_nodes:
      comfyui-loadimagewithsubfolder:
        repo: https://github.com/liangt/comfyui-loadimagewithsubfolder
        commit: f8fea4161f19997ba07515e3afc10cee67455c94
        pip: []
    requirements:
      extra: [requests]
      overrides: [comfyui-frontend-package==1.32.4]
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfy_install.errors import LockError

LOCK_VERSION = 1
ACTIVE_NODE_NAME = "comfy-runpod"
"""The folder of the project's own ``custom_node/`` in a local install; no locked pack may use it."""

_COMMIT = re.compile(r"[0-9a-f]{40}")
_HEX = re.compile(r"[0-9a-fA-F]{4,40}")
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PYTHON = re.compile(r"3\.[0-9]{1,2}")
_TOP_KEYS = ("version", "python", "comfyui", "custom_nodes", "requirements")
_SOURCE_KEYS = ("repo", "commit")
_NODE_KEYS = ("repo", "commit", "pip")
_REQUIREMENTS_KEYS = ("extra", "overrides")


@dataclass(frozen=True)
class NodePack:
    """One custom node pack: cloned into ``ComfyUI/custom_nodes/<name>`` at ``commit``."""

    name: str
    repo: str
    commit: str
    pip: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lock:
    """What both installs run: ComfyUI, the node packs, the Python version and requirement tweaks."""

    python: str
    comfyui_repo: str
    comfyui_commit: str
    nodes: tuple[NodePack, ...] = ()
    extra: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    path: Path | None = field(default=None, compare=False)

    def node(self, name: str) -> NodePack:
        """The pack called ``name``; KeyError names the locked ones."""
        for pack in self.nodes:
            if pack.name == name:
                return pack
        raise KeyError(f"no node pack {name!r} in the lock; locked: {', '.join(self.node_names()) or 'none'}")

    def node_names(self) -> tuple[str, ...]:
        return tuple(pack.name for pack in self.nodes)

    @property
    def pins_path(self) -> Path:
        """``requirements.lock.txt`` beside the lock: the resolved packages of both installs."""
        if self.path is None:
            raise ValueError("this lock was not read from a file, so it has no requirements.lock.txt")
        return self.path.parent / "requirements.lock.txt"


def _yaml() -> Any:
    """PyYAML, imported lazily and untyped (it ships no stubs; only a few calls are used)."""
    return importlib.import_module("yaml")


def load_lock(path: Path) -> Lock:
    """Read and validate the lock at ``path``; raises LockError naming the field and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LockError(str(path), "file", "not found; the lock lives at image/comfyui.lock.yaml") from None
    return parse_lock(text, source=str(path), path=path)


def parse_lock(text: str, source: str = "comfyui.lock.yaml", path: Path | None = None) -> Lock:
    """Validate the lock's YAML text; every error names ``source``, the field and the fix."""
    yaml = _yaml()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _refuse_duplicate_keys(root, source)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise LockError(source, "yaml", f"not valid YAML{where}: {problem}") from None
    return _build(data, source, path)


def _refuse_duplicate_keys(node: Any, source: str, where: str = "") -> None:
    """PyYAML keeps the last of two equal keys silently; in a lock that hides a pack. Refuse it."""
    yaml = _yaml()
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            here = f"{where}.{key}" if where else key
            if key in seen:
                raise LockError(
                    source, here, f"appears twice (line {key_node.start_mark.line + 1}); keep one"
                )
            seen.add(key)
            _refuse_duplicate_keys(value_node, source, here)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, source, where)


def _mapping(value: Any, source: str, where: str, allowed: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise LockError(source, where, f"must be a mapping with keys {', '.join(allowed)}")
    unknown = [str(k) for k in value if k not in allowed]
    if unknown:
        raise LockError(
            source, f"{where}.{unknown[0]}" if where else unknown[0],
            f"unknown key; the accepted keys here are {', '.join(allowed)}",
        )  # fmt: skip
    return value


def _repo(value: Any, source: str, where: str) -> str:
    if value is None:
        raise LockError(source, where, "missing; add the git URL, e.g. https://github.com/OWNER/REPO")
    if not isinstance(value, str) or not value.strip():
        raise LockError(source, where, "must be a git URL, e.g. https://github.com/OWNER/REPO")
    repo = value.strip()
    if repo.startswith("-") or any(ch.isspace() for ch in repo):
        raise LockError(source, where, f"{repo!r} is not a git URL (no spaces, no leading '-')")
    return repo


def _commit(value: Any, source: str, where: str) -> str:
    fix = "write the full 40-hex commit (`git ls-remote URL BRANCH` prints it), or run `invoke lock-update`"
    if value is None:
        raise LockError(source, where, f"missing; {fix}")
    text = str(value).strip() if isinstance(value, str | int) else ""
    if _COMMIT.fullmatch(text):
        return text
    if _HEX.fullmatch(text) and len(text) < 40:
        raise LockError(source, where, f"{text!r} is a short commit; {fix}")
    if _HEX.fullmatch(text):
        raise LockError(source, where, f"{text!r} has upper-case hex; write it in lower case")
    raise LockError(
        source, where,
        f"{value!r} is not a commit (branches and tags move; the lock pins commits); {fix}",
    )  # fmt: skip


def _requirements(value: Any, source: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise LockError(source, where, "must be a list of requirement strings, e.g. [onnxruntime>=1.17]")
    items: list[str] = []
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(item, str) or not item.strip():
            raise LockError(source, here, "must be a requirement string, e.g. onnxruntime>=1.17")
        text = item.strip()
        if text.startswith("-") or "\n" in text:
            raise LockError(
                source,
                here,
                f"{text!r}: only requirements here, no pip options (set indexes via UV_INDEX_URL)",
            )
        items.append(text)
    return tuple(items)


def _python(value: Any, source: str) -> str:
    if value is None:
        raise LockError(source, "python", 'missing; add the image\'s Python, e.g. python: "3.11"')
    if isinstance(value, float):
        raise LockError(source, "python", f'write it quoted, e.g. python: "{value}" (YAML reads 3.10 as 3.1)')
    if not isinstance(value, str) or not _PYTHON.fullmatch(value.strip()):
        raise LockError(source, "python", f'{value!r} is not a Python major.minor; e.g. python: "3.11"')
    return value.strip()


def _build(data: Any, source: str, path: Path | None) -> Lock:
    if data is None:
        raise LockError(source, "file", "is empty; see image/comfyui.lock.yaml for the format")
    top = _mapping(data, source, "", _TOP_KEYS)
    version = top.get("version", LOCK_VERSION)
    if version != LOCK_VERSION:
        raise LockError(
            source, "version", f"{version!r} is not supported; this comfy-runpod reads version {LOCK_VERSION}"
        )
    python = _python(top.get("python"), source)
    if "comfyui" not in top:
        raise LockError(source, "comfyui", "missing; add comfyui: {repo: URL, commit: 40-hex}")
    comfy = _mapping(top["comfyui"], source, "comfyui", _SOURCE_KEYS)
    comfy_repo = _repo(comfy.get("repo"), source, "comfyui.repo")
    comfy_commit = _commit(comfy.get("commit"), source, "comfyui.commit")

    raw_nodes = top.get("custom_nodes") or {}
    if not isinstance(raw_nodes, dict):
        raise LockError(source, "custom_nodes", "must be a mapping of folder name to {repo, commit, pip}")
    nodes: list[NodePack] = []
    folded: dict[str, str] = {}
    for raw_name, raw_node in raw_nodes.items():
        name = str(raw_name)
        where = f"custom_nodes.{name}"
        if not _NODE_NAME.fullmatch(name) or name.endswith(".disabled") or name == "__pycache__":
            raise LockError(
                source, where,
                "is not a usable folder name; use letters, digits, '.', '_' and '-' (it becomes "
                "ComfyUI/custom_nodes/<name>)",
            )  # fmt: skip
        if name == ACTIVE_NODE_NAME:
            raise LockError(
                source,
                where,
                f"'{ACTIVE_NODE_NAME}' is reserved for the project's own custom_node/; rename it",
            )
        if name.lower() in folded:
            raise LockError(
                source, where, f"differs from {folded[name.lower()]!r} only in case; folders would collide"
            )
        folded[name.lower()] = name
        node = _mapping(raw_node, source, where, _NODE_KEYS)
        nodes.append(
            NodePack(
                name=name,
                repo=_repo(node.get("repo"), source, f"{where}.repo"),
                commit=_commit(node.get("commit"), source, f"{where}.commit"),
                pip=_requirements(node.get("pip"), source, f"{where}.pip"),
            )
        )

    reqs = _mapping(top.get("requirements") or {}, source, "requirements", _REQUIREMENTS_KEYS)
    return Lock(
        python=python,
        comfyui_repo=comfy_repo,
        comfyui_commit=comfy_commit,
        nodes=tuple(nodes),
        extra=_requirements(reqs.get("extra"), source, "requirements.extra"),
        overrides=_requirements(reqs.get("overrides"), source, "requirements.overrides"),
        path=path,
    )


def lock_digest(lock: Lock, project_requirements: Iterable[str] = ()) -> str:
    """A digest of everything that decides the resolved packages.

    ``requirements.lock.txt`` records it when ``invoke lock-update`` writes it, so a lock edited
    without a refresh (a new commit, a new pack, a new extra) is caught by ``doctor``, ``build``
    and the tests, offline, before an image or a local install silently diverges.
    """
    payload = {
        "python": lock.python,
        "comfyui": [lock.comfyui_repo, lock.comfyui_commit],
        "nodes": sorted([p.name, p.repo, p.commit, list(p.pip)] for p in lock.nodes),
        "extra": list(lock.extra),
        "overrides": list(lock.overrides),
        "project": list(project_requirements),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def set_commit(text: str, commit: str, node: str | None = None) -> str:
    """``text`` with ComfyUI's commit (or node pack ``node``'s) replaced, all else byte for byte.

    The value's position comes from PyYAML's parse tree, so quoting, comments and the order of
    keys are kept; the result is validated before it is returned.
    """
    if not _COMMIT.fullmatch(commit):
        raise ValueError(f"{commit!r} is not a full 40-hex commit")
    yaml = _yaml()
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    section = _child(root, "comfyui") if node is None else _child(_child(root, "custom_nodes"), node)
    where = "comfyui" if node is None else f"custom_nodes.{node}"
    value = _child(section, "commit")
    if section is None or value is None:
        raise LockError("lock", f"{where}.commit", "not found; add it to the lock by hand first")
    start, end = value.start_mark.index, value.end_mark.index
    updated = text[:start] + commit + text[end:]
    parse_lock(updated)
    return updated


def _child(node: Any, key: str) -> Any:
    yaml = _yaml()
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if str(key_node.value) == key:
            return value_node
    return None
