"""How a local install differs from the lock: gathered once (``inspect_install``), judged purely.

``find_drift`` compares an ``InstallState`` (what is on disk) with the lock and returns every
difference as a ``Drift`` whose message says what differs, why it matters and the command that
fixes it. Keeping the judgement pure lets the tests state each rule on a hand-made state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from comfy_install import git
from comfy_install.layout import (
    COPY_MARKER,
    Layout,
    active_copy_differences,
    read_manifest,
    unmanaged_nodes,
    venv_python,
)
from comfy_install.lock import Lock
from comfy_install.parity import disagreements, project_pins
from comfy_install.pins import Pin, canonical_name, parse_pins, recorded_digest
from comfy_install.process import run


@dataclass(frozen=True)
class Checkout:
    """A checkout on disk: its commit (None: missing) and changed tracked files."""

    path: Path
    commit: str | None
    changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstallState:
    """What ``inspect_install`` found; every field is plain data."""

    comfyui: Checkout
    nodes: Mapping[str, Checkout]
    unmanaged_nodes: tuple[str, ...] = ()
    active_node: str = "link"  # link | copy | missing | foreign
    active_copy_differences: tuple[str, ...] = ()
    workflows_linked: bool = True
    python_version: str | None = None  # the venv's major.minor; None: no venv
    packages: Mapping[str, str] | None = None  # canonical name -> version; None: unknown
    pins: tuple[Pin, ...] = ()
    pins_digest: str | None = None
    venv: Path | None = None
    project_pins: tuple[Pin, ...] | None = None  # what uv.lock installs; None: not compared


@dataclass(frozen=True)
class Drift:
    """One difference: ``subject`` (``comfyui``, ``custom_nodes.X``, ``package torch``, ...)."""

    subject: str
    message: str
    fix: str = field(default="")

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}" + (f" ({self.fix})" if self.fix else "")


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "none"


def _checkout_drift(subject: str, checkout: Checkout, commit: str) -> list[Drift]:
    if checkout.commit is None:
        return [Drift(subject, f"not installed at {checkout.path}", "run `invoke setup`")]
    found: list[Drift] = []
    if checkout.commit != commit:
        found.append(
            Drift(
                subject, f"at {_short(checkout.commit)}, the lock says {_short(commit)}", "run `invoke setup`"
            )
        )
    if checkout.changes:
        found.append(
            Drift(
                subject,
                f"{len(checkout.changes)} tracked file(s) changed locally; the image has none of this",
                f"`git -C {checkout.path} status`; `invoke setup --force` discards them",
            )
        )
    return found


def versions_match(installed: str, pinned: str) -> bool:
    """PEP 440 ``==`` for the cases pins have: a local label (``+cu130``) and trailing ``.0``s."""
    if "+" not in pinned:
        installed = installed.split("+", 1)[0]

    def trimmed(version: str) -> str:
        return re.sub(r"(\.0+)+$", "", version.strip().lower())

    return trimmed(installed) == trimmed(pinned)


def package_drift(pins: Iterable[Pin], packages: Mapping[str, str]) -> list[Drift]:
    """Pinned packages that are missing or at another version in the venv.

    A pin with an environment marker (``; sys_platform == 'linux'``) may not apply here, so its
    package being absent is not drift; present at an unpinned version it is.
    """
    by_name: dict[str, list[Pin]] = {}
    for pin in pins:
        by_name.setdefault(pin.name, []).append(pin)
    missing: list[str] = []
    found: list[Drift] = []
    for name, group in sorted(by_name.items()):
        installed = packages.get(name)
        if installed is None:
            if any(pin.marker is None for pin in group):
                missing.append(name)
            continue
        if not any(versions_match(installed, pin.version) for pin in group):
            wanted = " or ".join(sorted({pin.version for pin in group}))
            found.append(
                Drift(
                    f"package {name}", f"{installed} installed, the pins say {wanted}", "run `invoke setup`"
                )
            )
    if missing:
        shown = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
        found.insert(
            0,
            Drift(
                "packages", f"{len(missing)} pinned package(s) not installed: {shown}", "run `invoke setup`"
            ),
        )
    return found


def _install_drift(lock: Lock, state: InstallState) -> list[Drift]:
    """The checks that make sense once ComfyUI is checked out: packs, unlocked nodes, links."""
    found: list[Drift] = []
    for pack in lock.nodes:
        checkout = state.nodes.get(pack.name, Checkout(Path("custom_nodes") / pack.name, None))
        found += _checkout_drift(f"custom_nodes.{pack.name}", checkout, pack.commit)
    for name in state.unmanaged_nodes:
        found.append(
            Drift(
                f"custom_nodes/{name}",
                "installed locally but not in the lock: workflows using it fail on the worker",
                "add it to image/comfyui.lock.yaml, or move it out of custom_nodes/",
            )
        )
    active = "custom_nodes/comfy-runpod"
    if state.active_node == "missing":
        found.append(Drift(active, "the project's custom_node/ is not installed", "run `invoke setup`"))
    elif state.active_node == "foreign":
        found.append(
            Drift(active, "is neither a link to custom_node/ nor a copy made by setup", "move it away")
        )
    elif state.active_copy_differences:
        files = ", ".join(state.active_copy_differences[:5])
        found.append(
            Drift(active, f"the copy is older than custom_node/ ({files})", "run `invoke setup --copy`")
        )
    if not state.workflows_linked:
        found.append(
            Drift(
                "user/default/workflows", "is not linked to the repository's workflows/", "run `invoke setup`"
            )
        )
    return found


def find_drift(lock: Lock, state: InstallState, expected_digest: str) -> list[Drift]:
    """Every way ``state`` differs from ``lock``; empty when local and remote run the same thing."""
    found: list[Drift] = []
    if state.pins_digest != expected_digest:
        found.append(
            Drift(
                "requirements.lock.txt",
                "was resolved for another version of the lock (or by hand)",
                "run `invoke lock-update`",
            )
        )
    found += _checkout_drift("comfyui", state.comfyui, lock.comfyui_commit)
    if state.comfyui.commit is not None:
        found += _install_drift(lock, state)
    if state.python_version is None:
        found.append(
            Drift("python", f"no virtual environment at {state.venv}", "run `uv sync`, then `invoke setup`")
        )
    elif state.python_version != lock.python:
        found.append(
            Drift(
                "python",
                f"the venv runs Python {state.python_version}, the image {lock.python}",
                f"`uv sync --python {lock.python}`, then `invoke setup`",
            )
        )
    pins = state.pins
    if state.project_pins is not None:
        conflicts = disagreements(state.pins, state.project_pins, lock.python)
        for conflict in conflicts:
            found.append(
                Drift(
                    f"package {conflict.name}",
                    f"requirements.lock.txt pins {' or '.join(conflict.image)}, uv.lock "
                    f"{' or '.join(conflict.project)}: every `uv run` puts uv.lock's back",
                    "run `invoke lock-update`",
                )
            )
        names = {conflict.name for conflict in conflicts}
        pins = tuple(pin for pin in pins if pin.name not in names)  # one line per package
    if state.packages is not None:
        found += package_drift(pins, state.packages)
    return found


def venv_python_version(venv: Path) -> str | None:
    """The major.minor of a venv, from its ``pyvenv.cfg`` (no interpreter is started)."""
    try:
        text = (venv / "pyvenv.cfg").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^(?:version_info|version)\s*=\s*(\d+)\.(\d+)", text, re.MULTILINE)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def installed_packages(venv: Path, *, uv: str = "uv") -> dict[str, str] | None:
    """Every distribution in the venv (canonical name -> version), listed by ``uv pip list``."""
    python = venv_python(venv)
    if not python.exists():
        return None
    done = run([uv, "pip", "list", "--python", str(python), "--format", "json", "--quiet"], check=False)
    if not done.ok:
        return None
    return {canonical_name(item["name"]): str(item["version"]) for item in json.loads(done.stdout or "[]")}


def _tracked_node_entries(comfyui: Path) -> set[str]:
    done = run(["git", "-C", str(comfyui), "ls-files", "--", "custom_nodes"], check=False)
    return (
        {line.split("/")[1] for line in done.stdout.splitlines() if line.count("/") >= 1}
        if done.ok
        else set()
    )


def inspect_install(
    lock: Lock, layout: Layout, *, repo_root: Path, venv: Path, packages: bool = True
) -> InstallState:
    """Look at a local install (git probes, ``uv pip list``, ``uv export`` of uv.lock); changes nothing."""

    def checkout(path: Path) -> Checkout:
        commit = git.head_commit(path)
        return Checkout(path, commit, tuple(git.local_changes(path)) if commit else ())

    comfy = checkout(layout.comfyui)
    nodes = {pack.name: checkout(layout.node_dir(pack.name)) for pack in lock.nodes}
    managed = set(read_manifest(layout.manifest).get("nodes", {})) | set(nodes)
    unmanaged = (
        unmanaged_nodes(layout.custom_nodes, managed, _tracked_node_entries(layout.comfyui))
        if comfy.commit
        else []
    )
    source = repo_root / "custom_node"
    active = "missing"
    differences: tuple[str, ...] = ()
    target = layout.active_node
    if target.is_symlink():
        active = "link" if target.resolve() == source.resolve() else "foreign"
    elif (target / COPY_MARKER).exists():
        active, differences = "copy", tuple(active_copy_differences(source, target))
    elif target.exists():
        active = "foreign"
    workflows = layout.workflows_link
    linked = workflows.is_symlink() and workflows.resolve() == (repo_root / "workflows").resolve()
    pins_text = lock.pins_path.read_text(encoding="utf-8") if lock.pins_path.exists() else ""
    return InstallState(
        comfyui=comfy,
        nodes=nodes,
        unmanaged_nodes=tuple(unmanaged),
        active_node=active,
        active_copy_differences=differences,
        workflows_linked=linked,
        python_version=venv_python_version(venv),
        packages=installed_packages(venv) if packages else None,
        pins=parse_pins(pins_text),
        pins_digest=recorded_digest(pins_text),
        venv=venv,
        project_pins=project_pins(repo_root) if packages else None,
    )
