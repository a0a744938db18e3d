"""Installing the lock: the checkouts (image and local alike) and the local install around them.

``checkout_sources`` is what the image build runs (``python -m comfy_install checkout``):
ComfyUI and each pack at their commits, nothing else. ``setup`` is ``invoke setup``: the same
checkouts in the user's folder, plus the project's ``custom_node/`` as the active copy, the
workflows link and the pinned packages in the project's venv. Both converge: run again after
a lock change, they fetch and check out the new commits and remove packs no longer locked.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from comfy_install import git
from comfy_install.drift import venv_python_version
from comfy_install.errors import InstallError, WorkTreeError
from comfy_install.layout import (
    Layout,
    install_active_node,
    link_workflows,
    read_manifest,
    stale_nodes,
    venv_python,
    write_manifest,
)
from comfy_install.lock import Lock, lock_digest
from comfy_install.mirrors import Mirror, resolve_url
from comfy_install.pins import install_command, project_requirements, recorded_digest
from comfy_install.process import Echo, quiet, run


def checkout_sources(
    lock: Lock, layout: Layout, mirrors: Sequence[Mirror] = (), *, force: bool = False, echo: Echo = quiet
) -> list[str]:
    """ComfyUI and every locked pack at their commits; drops packs a previous run installed.

    Returns one line per checkout for the user (``ComfyUI a125cd84b054: cloned``).
    """
    report = []
    comfy = git.sync_checkout(
        layout.comfyui, resolve_url(lock.comfyui_repo, mirrors), lock.comfyui_commit,
        lock_url=lock.comfyui_repo, force=force, echo=echo,
    )  # fmt: skip
    report.append(f"ComfyUI {lock.comfyui_commit[:12]}: {comfy.action.value}")
    if comfy.local_changes:
        report.append(f"  warning: {len(comfy.local_changes)} changed file(s) in {layout.comfyui} kept")
    previous = read_manifest(layout.manifest).get("nodes", {})
    for name in stale_nodes(previous, lock.node_names()):
        folder = layout.node_dir(name)
        if folder.exists():
            if git.local_changes(folder) and not force:
                raise WorkTreeError(
                    f"{folder} is no longer locked but has local changes; save them or re-run with --force"
                )
            echo(f"$ rm -rf {folder}")
            shutil.rmtree(folder)
            report.append(f"custom_nodes/{name}: removed (no longer in the lock)")
    for pack in lock.nodes:
        result = git.sync_checkout(
            layout.node_dir(pack.name), resolve_url(pack.repo, mirrors), pack.commit,
            lock_url=pack.repo, force=force, echo=echo,
        )  # fmt: skip
        report.append(f"custom_nodes/{pack.name} {pack.commit[:12]}: {result.action.value}")
        if result.local_changes:
            report.append(f"  warning: {len(result.local_changes)} changed file(s) in {result.dest} kept")
    return report


@dataclass(frozen=True)
class SetupOptions:
    """``invoke setup``'s choices."""

    repo_root: Path
    venv: Path
    packages: bool = True  # False: skip `uv pip install` (tests, or packages managed by hand)
    copy: bool = False  # the active copy as a copy instead of a link
    force: bool = False  # discard local changes in checkouts
    index_args: tuple[str, ...] = ()  # extra `uv pip install` options (tests: --offline, --find-links)


def check_pins(lock: Lock, repo_root: Path) -> None:
    """Refuse pins resolved for another lock: installing them would not match the image."""
    if not lock.pins_path.exists():
        raise InstallError(f"{lock.pins_path} is missing; run `invoke lock-update` to resolve the packages")
    expected = lock_digest(lock, project_requirements(repo_root / "pyproject.toml"))
    if recorded_digest(lock.pins_path.read_text(encoding="utf-8")) != expected:
        raise InstallError(
            f"{lock.pins_path.name} was resolved for another version of the lock; run "
            "`invoke lock-update` (or `invoke setup --no-packages`)"
        )


def check_python(lock: Lock, venv: Path) -> None:
    """The venv must run the image's Python: the pins differ per Python version (numpy, ...)."""
    version = venv_python_version(venv)
    if version is None:
        raise InstallError(f"no virtual environment at {venv}; run `uv sync` first")
    if version != lock.python:
        raise InstallError(
            f"{venv} runs Python {version} but the image runs {lock.python}; recreate it with "
            f"`uv sync --python {lock.python}`, then re-run"
        )


def setup(
    lock: Lock, layout: Layout, options: SetupOptions, mirrors: Sequence[Mirror] = (), *, echo: Echo = quiet
) -> list[str]:
    """``invoke setup``: checkouts, active copy, workflows link, packages, then the manifest."""
    if options.packages:
        check_pins(lock, options.repo_root)
        check_python(lock, options.venv)
    report = checkout_sources(lock, layout, mirrors, force=options.force, echo=echo)
    action = install_active_node(options.repo_root / "custom_node", layout.active_node, copy=options.copy)
    report.append(
        f"custom_nodes/comfy-runpod: {action} ({'copy' if options.copy else 'link'} of custom_node/)"
    )
    action = link_workflows(options.repo_root / "workflows", layout.workflows_link)
    report.append(f"user/default/workflows: {action} to workflows/")
    if options.packages:
        run(install_command(lock.pins_path, venv_python(options.venv), index_args=options.index_args),
            echo=echo, stream=True, hint="the pinned packages could not be installed")  # fmt: skip
        report.append(f"packages: {lock.pins_path.name} installed into {options.venv}")
    else:
        report.append("packages: skipped (--no-packages)")
    write_manifest(
        layout.manifest,
        {
            "comfyui": lock.comfyui_commit,
            "nodes": {pack.name: pack.commit for pack in lock.nodes},
            "active_node": "copy" if options.copy else "link",
            "packages": options.packages,
        },
    )
    return report
