"""Checkouts at exact commits: the git command lines, and the idempotent sync built on them.

Every checkout is a plain repository with ``origin`` set to the (mirror-resolved) URL and a
detached HEAD at the locked commit. Commits are fetched by id, shallow (``--depth 1``), which
GitHub and local repositories serve; a server that refuses it gets a full fetch instead. A
checkout with local changes to tracked files is never overwritten unless asked (``force``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from comfy_install.errors import CommandError, FetchError, WorkTreeError
from comfy_install.process import Echo, quiet, run


def init_args(dest: Path) -> list[str]:
    return ["git", "init", "--quiet", str(dest)]


def remote_args(dest: Path, url: str, *, exists: bool) -> list[str]:
    """Add ``origin``, or point the existing one at ``url`` (a mirror may change between runs)."""
    return ["git", "-C", str(dest), "remote", "set-url" if exists else "add", "origin", url]


def fetch_args(dest: Path, commit: str, *, shallow: bool = True) -> list[str]:
    """Fetch one commit by id (shallow), or, as the fallback, every branch and tag."""
    if shallow:
        return ["git", "-C", str(dest), "fetch", "--quiet", "--depth", "1", "origin", commit]
    return [
        "git",
        "-C",
        str(dest),
        "fetch",
        "--quiet",
        "--tags",
        "origin",
        "+refs/heads/*:refs/remotes/origin/*",
    ]


def checkout_args(dest: Path, commit: str, *, force: bool = False) -> list[str]:
    return [
        "git",
        "-C",
        str(dest),
        "checkout",
        "--quiet",
        *(["--force"] if force else []),
        "--detach",
        commit,
    ]


def submodule_args(dest: Path) -> list[str]:
    return ["git", "-C", str(dest), "submodule", "update", "--quiet", "--init", "--recursive", "--depth", "1"]


def ls_remote_args(url: str, ref: str) -> list[str]:
    return ["git", "ls-remote", "--", url, ref]


def head_commit(dest: Path) -> str | None:
    """The checked-out commit, or None when ``dest`` is not a git checkout (or has no commit)."""
    if not (dest / ".git").exists():
        return None
    done = run(["git", "-C", str(dest), "rev-parse", "--verify", "--quiet", "HEAD"], check=False)
    return done.stdout.strip() or None if done.ok else None


def local_changes(dest: Path) -> list[str]:
    """Tracked files changed in ``dest`` (``git status`` lines); untracked files do not count."""
    done = run(["git", "-C", str(dest), "status", "--porcelain", "--untracked-files=no"], check=False)
    return [line for line in done.stdout.splitlines() if line.strip()] if done.ok else []


def has_commit(dest: Path, commit: str) -> bool:
    done = run(["git", "-C", str(dest), "cat-file", "-e", f"{commit}^{{commit}}"], check=False)
    return done.ok


def show_file(dest: Path, commit: str, path: str) -> str | None:
    """The text of ``path`` at ``commit``, or None when the commit has no such file."""
    done = run(["git", "-C", str(dest), "show", f"{commit}:{path}"], check=False)
    return done.stdout if done.ok else None


def parse_ls_remote(output: str, ref: str) -> str | None:
    """The commit ``ref`` names in ``git ls-remote`` output, or None.

    ls-remote matches patterns by their tail (``main`` also matches ``refs/heads/x/main``), so
    exact names are preferred: ``ref`` itself, then the branch, then the tag; an annotated tag
    resolves to the commit it points at (its ``^{}`` line), not to the tag object.
    """
    refs = {}
    for line in output.splitlines():
        sha, tab, name = line.partition("\t")
        if tab:
            refs[name.strip()] = sha.strip()
    for candidate in (f"{ref}^{{}}", ref, f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}"):
        if candidate in refs:
            return refs[candidate]
    return None


def resolve_ref(url: str, ref: str, *, lock_url: str | None = None) -> str:
    """The commit a branch, tag or ``HEAD`` of ``url`` points at now (needs the network)."""
    done = run(ls_remote_args(url, ref), check=False)
    if not done.ok:
        raise FetchError(
            done.argv, done.returncode, done.stderr,
            f"cannot reach {url}: this needs network access, or a mirror ({_mirror_hint(lock_url or url)})",
        )  # fmt: skip
    commit = parse_ls_remote(done.stdout, ref)
    if commit is None:
        raise FetchError(done.argv, 1, "", f"{url} has no branch or tag {ref!r}")
    return commit


def _mirror_hint(url: str) -> str:
    return f"--mirror {url}=PATH or COMFY_RUNPOD_MIRRORS"


class SyncAction(enum.Enum):
    """What ``sync_checkout`` did."""

    CLONED = "cloned"  # the folder did not exist
    UPDATED = "updated"  # it was at another commit
    UNCHANGED = "unchanged"  # it was already at the commit


@dataclass(frozen=True)
class SyncResult:
    dest: Path
    commit: str
    previous: str | None
    action: SyncAction
    local_changes: tuple[str, ...] = ()


def ensure_repository(dest: Path, url: str, *, echo: Echo = quiet) -> bool:
    """Make ``dest`` a git repository whose ``origin`` is ``url``; True if it was created.

    A non-empty folder that is not a checkout is refused: it may hold someone's work.
    """
    created = False
    if not (dest / ".git").exists():
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise WorkTreeError(
                f"{dest} exists and is not a git checkout; move it away (or delete it) and re-run"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        run(init_args(dest), echo=echo)
        created = True
    current = run(["git", "-C", str(dest), "remote", "get-url", "origin"], check=False)
    if not current.ok:
        run(remote_args(dest, url, exists=False), echo=echo)
    elif current.stdout.strip() != url:
        run(remote_args(dest, url, exists=True), echo=echo)
    return created


def ensure_commit(dest: Path, commit: str, *, lock_url: str, echo: Echo = quiet) -> None:
    """Fetch ``commit`` into ``dest`` unless it is already there: shallow first, then in full."""
    if has_commit(dest, commit):
        return
    try:
        run(fetch_args(dest, commit), echo=echo)
    except CommandError as shallow_error:
        full = run(fetch_args(dest, commit, shallow=False), echo=echo, check=False)
        if not full.ok or not has_commit(dest, commit):
            output = full.stderr or shallow_error.output
            raise FetchError(
                shallow_error.argv, shallow_error.returncode, output,
                f"could not fetch {commit[:12]} of {lock_url} (offline, a wrong commit, or a missing "
                f"mirror: {_mirror_hint(lock_url)})",
            ) from None  # fmt: skip


def sync_checkout(
    dest: Path, url: str, commit: str, *, lock_url: str | None = None, force: bool = False, echo: Echo = quiet
) -> SyncResult:
    """Bring ``dest`` to ``commit`` of ``url``, fetching only what is missing.

    Re-running is cheap (a commit already checked out costs two ``git`` probes). A checkout whose
    tracked files were changed is left alone (WorkTreeError) unless ``force`` discards them; at
    the right commit the changes are kept and returned, so ``doctor`` can report them.
    """
    lock_url = lock_url or url
    created = ensure_repository(dest, url, echo=echo)
    previous = None if created else head_commit(dest)
    changes = tuple(local_changes(dest)) if previous else ()
    if previous == commit and not (force and changes):
        return SyncResult(dest, commit, previous, SyncAction.UNCHANGED, changes)
    if changes and not force:
        raise WorkTreeError(
            f"{dest} has local changes ({len(changes)} file(s), see `git -C {dest} status`); commit or "
            f"stash them, or re-run with --force to discard them"
        )
    ensure_commit(dest, commit, lock_url=lock_url, echo=echo)
    run(checkout_args(dest, commit, force=force), echo=echo)
    if (dest / ".gitmodules").exists():
        run(submodule_args(dest), echo=echo, hint=f"{dest} has submodules; their URLs are not mirrored")
    action = SyncAction.CLONED if previous is None else SyncAction.UPDATED
    return SyncResult(dest, commit, previous, action)
