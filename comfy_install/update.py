"""``invoke lock-update``: move ComfyUI or a pack to a new commit, and refresh the pins.

Two steps, each usable alone:

1. ``bump_commits`` resolves ``--comfyui REF`` / ``--node NAME=REF`` (a branch, a tag, ``HEAD``
   or a commit) with ``git ls-remote`` and writes the commits into the lock, in place;
2. ``refresh_pins`` reads ``requirements.txt`` of ComfyUI and of each pack at their locked
   commits (from the local install when it has them, else by a shallow fetch) and resolves
   everything with ``uv pip compile`` into ``requirements.lock.txt``.

Both need the network (git remotes, the package index) unless mirrors and a local index serve
them; failures say so in one line.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from comfy_install import git
from comfy_install.errors import InstallError
from comfy_install.layout import Layout
from comfy_install.lock import Lock, load_lock, lock_digest, set_commit
from comfy_install.mirrors import Mirror, resolve_url
from comfy_install.pins import (
    compile_command,
    export_command,
    parse_pins,
    project_requirements,
    render_pins,
    requirements_input,
)
from comfy_install.process import Echo, quiet, run

_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class CommitChange:
    """A commit moved in the lock (``subject`` is ``comfyui`` or ``custom_nodes.NAME``)."""

    subject: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.old[:12]} -> {self.new[:12]}"


def parse_node_refs(specs: Sequence[str]) -> dict[str, str]:
    """``--node NAME=REF`` values as a mapping; InstallError shows the expected form."""
    refs: dict[str, str] = {}
    for spec in specs:
        name, sep, ref = spec.partition("=")
        if not sep or not name.strip() or not ref.strip():
            raise InstallError(f"--node {spec!r}: expected NAME=REF, e.g. --node comfyui-foo=main")
        refs[name.strip()] = ref.strip()
    return refs


def _resolve(repo: str, ref: str, mirrors: Sequence[Mirror]) -> str:
    if _COMMIT.fullmatch(ref):
        return ref
    return git.resolve_ref(resolve_url(repo, mirrors), ref, lock_url=repo)


def bump_commits(
    lock_path: Path,
    *,
    comfyui_ref: str = "",
    node_refs: Mapping[str, str] | None = None,
    mirrors: Sequence[Mirror] = (),
) -> list[CommitChange]:
    """Point the lock at the commits the refs name now; writes the file only if something moved."""
    lock = load_lock(lock_path)
    text = lock_path.read_text(encoding="utf-8")
    changes: list[CommitChange] = []
    if comfyui_ref:
        commit = _resolve(lock.comfyui_repo, comfyui_ref, mirrors)
        if commit != lock.comfyui_commit:
            text = set_commit(text, commit)
            changes.append(CommitChange("comfyui", lock.comfyui_commit, commit))
    for name, ref in (node_refs or {}).items():
        try:
            pack = lock.node(name)
        except KeyError as exc:
            raise InstallError(
                f"--node {name}={ref}: {exc.args[0]}; add new packs to the lock by hand"
            ) from None
        commit = _resolve(pack.repo, ref, mirrors)
        if commit != pack.commit:
            text = set_commit(text, commit, node=name)
            changes.append(CommitChange(f"custom_nodes.{name}", pack.commit, commit))
    if changes:
        lock_path.write_text(text, encoding="utf-8")
    return changes


def _requirements_at(
    name: str, repo: str, commit: str, mirrors: Sequence[Mirror], work: Path, local: Path | None, echo: Echo
) -> str | None:
    """``requirements.txt`` of ``repo`` at ``commit``: read from a local copy that has it, else fetched.

    A mirror that is a local repository is read in place, one file, without a clone (a partial
    mirror, without the large files, serves as well).
    """
    if local is not None and git.head_commit(local) is not None and git.has_commit(local, commit):
        return git.show_file(local, commit, "requirements.txt")
    source = resolve_url(repo, mirrors)
    if Path(source).is_dir() and git.has_commit(Path(source), commit):
        return git.show_file(Path(source), commit, "requirements.txt")
    cache = work / name
    git.ensure_repository(cache, source, echo=echo)
    git.ensure_commit(cache, commit, lock_url=repo, echo=echo)
    return git.show_file(cache, commit, "requirements.txt")


def compile_inputs(
    lock: Lock, *, project: Sequence[str], mirrors: Sequence[Mirror], work: Path, local: Layout | None,
    echo: Echo = quiet,
) -> str:  # fmt: skip
    """The text of the compile's ``requirements.in``, gathered from every locked source."""
    comfy_text = _requirements_at(
        "comfyui",
        lock.comfyui_repo,
        lock.comfyui_commit,
        mirrors,
        work,
        local.comfyui if local else None,
        echo,
    )
    nodes = []
    for pack in lock.nodes:
        local_dir = local.node_dir(pack.name) if local else None
        text = _requirements_at(f"node-{pack.name}", pack.repo, pack.commit, mirrors, work, local_dir, echo)
        nodes.append((pack.name, text, pack.pip))
    return requirements_input((lock.comfyui_commit, comfy_text), nodes, lock.extra, project)


@dataclass(frozen=True)
class PinsUpdate:
    """What ``refresh_pins`` changed: ``name old -> new`` lines, added and removed packages."""

    changed: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    total: int

    def summary(self) -> str:
        if not (self.changed or self.added or self.removed):
            return f"{self.total} packages pinned, none changed"
        parts = [f"{len(self.changed)} changed", f"{len(self.added)} added", f"{len(self.removed)} removed"]
        return f"{self.total} packages pinned: " + ", ".join(parts)


def pins_update(old_text: str, new_text: str) -> PinsUpdate:
    """Compare two pins files by package (a package forked by markers shows all its versions)."""

    def versions(text: str) -> dict[str, str]:
        table: dict[str, set[str]] = {}
        for pin in parse_pins(text):
            table.setdefault(pin.name, set()).add(pin.version)
        return {name: "/".join(sorted(found)) for name, found in table.items()}

    old, new = versions(old_text), versions(new_text)
    changed = tuple(f"{n} {old[n]} -> {new[n]}" for n in sorted(old.keys() & new.keys()) if old[n] != new[n])
    added = tuple(f"{n} {new[n]}" for n in sorted(new.keys() - old.keys()))
    removed = tuple(f"{n} {old[n]}" for n in sorted(old.keys() - new.keys()))
    return PinsUpdate(changed, added, removed, len(new))


def refresh_pins(
    lock: Lock,
    *,
    repo_root: Path,
    work: Path,
    mirrors: Sequence[Mirror] = (),
    local: Layout | None = None,
    upgrade: bool = False,
    index_args: Sequence[str] = (),
    echo: Echo = quiet,
) -> PinsUpdate:
    """Resolve the lock's packages and write ``requirements.lock.txt`` (only when it resolves).

    The project's ``uv.lock`` versions are constraints (see ``comfy_install.parity``): a lock
    that needs another version of a package uv.lock has (an override) fails to resolve.
    """
    project = project_requirements(repo_root / "pyproject.toml")
    work.mkdir(parents=True, exist_ok=True)
    inputs = work / "requirements.in"
    inputs.write_text(
        compile_inputs(lock, project=project, mirrors=mirrors, work=work, local=local, echo=echo)
    )
    overrides = None
    if lock.overrides:
        overrides = work / "overrides.txt"
        overrides.write_text("\n".join(lock.overrides) + "\n", encoding="utf-8")
    constraint_file = None
    if (repo_root / "uv.lock").exists():
        constraint_file = work / "constraints.txt"
        run(
            export_command(repo_root, constraint_file),
            echo=echo,
            hint="the project's uv.lock could not be exported",
        )
    output = work / "compiled.txt"
    old_text = lock.pins_path.read_text(encoding="utf-8") if lock.pins_path.exists() else ""
    if old_text:
        shutil.copyfile(lock.pins_path, output)  # uv keeps these versions where it can
    command = compile_command(
        [inputs], output, python=lock.python, overrides=overrides, constraints=constraint_file,
        upgrade=upgrade, index_args=index_args,
    )  # fmt: skip
    run(
        command, echo=echo,
        hint="resolving needs the package index (PyPI, or UV_INDEX_URL): are you offline? A conflict "
        f"names the requirement; {inputs} shows where each comes from (uv.lock's versions are "
        "constraints: a [tool.uv] constraint-dependencies entry in pyproject.toml and `uv lock` move them)",
    )  # fmt: skip
    digest = lock_digest(lock, project)
    lock_name = f"{lock.path.parent.name}/{lock.path.name}" if lock.path else "the lock"
    new_text = render_pins(
        output.read_text(encoding="utf-8"), digest=digest, python=lock.python, lock_name=lock_name
    )
    lock.pins_path.write_text(new_text, encoding="utf-8")
    return pins_update(old_text, new_text)
