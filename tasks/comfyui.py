"""Tasks for the local ComfyUI that mirrors the worker: setup, launch, doctor, lock-update.

Thin wrappers: the logic is in ``comfy_install`` (tested without invoke). Expected failures
end with one line (``error: ...``): exit 2 for a bad argument, 1 for anything else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from comfy_install import InstallError, LockError, MirrorError, load_lock, lock_digest
from comfy_install.drift import find_drift, inspect_install
from comfy_install.install import SetupOptions
from comfy_install.install import setup as run_setup
from comfy_install.launch import (
    LaunchOptions,
    check_launchable,
    launch_command,
    parse_port,
    prepare,
    split_args,
)
from comfy_install.layout import Layout
from comfy_install.lock import Lock
from comfy_install.mirrors import MIRRORS_ENV, Mirror, parse_mirrors
from comfy_install.parity import describe, disagreements, project_pins
from comfy_install.pins import parse_pins, project_requirements, recorded_digest
from comfy_install.process import command_line
from comfy_install.update import bump_commits, parse_node_refs, refresh_pins

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "image" / "comfyui.lock.yaml"
MIRROR_HELP = (
    f"redirect a locked repository: URL=PATH or URL=URL, repeatable (also ${MIRRORS_ENV}, ';'-separated)"
)
DIR_HELP = "the local ComfyUI folder (default comfyui/, git-ignored)"
VENV_HELP = "the virtual environment (default: the project's .venv, or $UV_PROJECT_ENVIRONMENT)"
LOCK_HELP = "the lock file (default image/comfyui.lock.yaml)"


@contextmanager
def _errors(bad_argument: tuple[type[Exception], ...] = (LockError, MirrorError)) -> Iterator[None]:
    """comfy_install's errors as one-line exits: 2 for what the user typed or wrote, else 1."""
    try:
        yield
    except bad_argument as exc:
        raise Exit(f"error: {exc}", code=2) from None
    except InstallError as exc:
        raise Exit(f"error: {exc}", code=1) from None


def _path(value: str, default: Path) -> Path:
    return (Path(value).expanduser() if value else default).absolute()


def venv_dir(value: str) -> Path:
    """The project's virtual environment (``--venv``, else ``$UV_PROJECT_ENVIRONMENT``, else .venv)."""
    env = os.environ.get("UV_PROJECT_ENVIRONMENT", "")
    return _path(value, Path(env) if env else REPO / ".venv")


def _load(lock: str, mirror: list[str] | None) -> tuple[Lock, tuple[Mirror, ...]]:
    return load_lock(_path(lock, LOCK)), parse_mirrors(mirror or [])


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        print(line)


@task(
    help={
        "dir": DIR_HELP,
        "copy": "install custom_node/ as a copy instead of a link (re-run setup after editing it)",
        "packages": "install the pinned Python packages into the venv (default); --no-packages skips it",
        "force": "discard local changes in the checkouts instead of stopping",
        "mirror": MIRROR_HELP,
        "venv": VENV_HELP,
        "lock": LOCK_HELP,
    },
    iterable=["mirror"],
)
def setup(
    c: Context,
    dir: str = "",
    copy: bool = False,
    packages: bool = True,
    force: bool = False,
    mirror: list[str] | None = None,
    venv: str = "",
    lock: str = "",
) -> None:
    """Install the locked ComfyUI and node packs locally, with custom_node/ and the pinned packages.

    Clones (or moves) ComfyUI and each locked pack to its commit in --dir, removes packs no
    longer locked, links custom_node/ as custom_nodes/comfy-runpod and ComfyUI's workflows to
    workflows/, and installs image/requirements.lock.txt into the venv. Safe to re-run.
    """
    with _errors():
        parsed, mirrors = _load(lock, mirror)
        options = SetupOptions(repo_root=REPO, venv=venv_dir(venv), packages=packages, copy=copy, force=force)
        layout = Layout(_path(dir, REPO / "comfyui"))
        _print_lines(run_setup(parsed, layout, options, mirrors, echo=print))
    print("ready: `uv run invoke launch` starts it; `uv run invoke doctor` compares it with the lock")


@task(
    help={
        "models": "your models folder, laid out like the volume (checkpoints/, loras/, ...); "
        "default $COMFY_RUNPOD_MODELS, else ComfyUI's own models/",
        "input": "ComfyUI's input folder (default: comfyui/input)",
        "output": "ComfyUI's output folder (default: comfyui/output)",
        "port": "port to listen on (default 8188)",
        "host": "address to listen on (default 127.0.0.1; 0.0.0.0 for the whole network)",
        "cpu": "run on the CPU (no GPU needed)",
        "arg": "more ComfyUI flags, e.g. --arg='--lowvram' (repeatable)",
        "dir": DIR_HELP,
        "venv": VENV_HELP,
        "lock": LOCK_HELP + "; launch warns when the install differs from it",
        "dry_run": "print the command and stop",
    },
    iterable=["arg"],
    auto_shortflags=False,  # -h would be --host, not help
)
def launch(
    c: Context,
    models: str = "",
    input: str = "",  # the CLI flag is --input
    output: str = "",
    port: str = "8188",
    host: str = "127.0.0.1",
    cpu: bool = False,
    arg: list[str] | None = None,
    dir: str = "",
    venv: str = "",
    lock: str = "",
    dry_run: bool = False,
) -> None:
    """Start the local ComfyUI with your models, input and output folders; prints its URL."""
    from comfy_install.layout import venv_python

    with _errors(bad_argument=(InstallError,)):
        comfyui = _path(dir, REPO / "comfyui")
        layout = Layout(comfyui)
        models = models or os.environ.get("COMFY_RUNPOD_MODELS", "")
        options = LaunchOptions(
            python=venv_python(venv_dir(venv)),
            comfyui=comfyui,
            input_dir=_path(input, comfyui / "input"),
            output_dir=_path(output, comfyui / "output"),
            models=_path(models, comfyui) if models else None,
            model_paths_file=layout.launch_model_paths if models else None,
            host=host,
            port=parse_port(port),
            cpu=cpu,
            extra_args=split_args(arg or []),
        )
    with _errors():
        check_launchable(options)
    _warn_commit_drift(layout, _path(lock, LOCK), venv_dir(venv))
    command = launch_command(options)
    print(f"$ {command_line(command, comfyui)}")
    if dry_run:
        return
    prepare(options)
    print(f"ComfyUI: {options.url}  (Ctrl+C stops it)")
    try:
        code = subprocess.run(command, cwd=comfyui, check=False).returncode
    except KeyboardInterrupt:
        return
    if code in (-signal.SIGINT, -signal.SIGTERM):
        return  # stopped on purpose
    if code != 0:
        raise Exit(f"error: ComfyUI exited with {code}", code=128 - code if code < 0 else code)


def _warn_commit_drift(layout: Layout, lock_path: Path, venv: Path) -> None:
    """A quick commit check before launching; ``doctor`` does the full comparison."""
    try:
        lock = load_lock(lock_path)
        state = inspect_install(lock, layout, repo_root=REPO, venv=venv, packages=False)
    except InstallError:
        return
    subjects = ("comfyui", *(f"custom_nodes.{name}" for name in lock.node_names()))
    digest = recorded_digest(lock.pins_path.read_text(encoding="utf-8")) if lock.pins_path.exists() else ""
    for drift in find_drift(lock, state, digest or ""):
        if drift.subject in subjects:
            print(f"warning: {drift}")


@task(
    help={
        "dir": DIR_HELP,
        "venv": VENV_HELP,
        "lock": LOCK_HELP,
        "packages": "compare the venv's packages with the pins (default); --no-packages skips it",
    }
)
def doctor(c: Context, dir: str = "", venv: str = "", lock: str = "", packages: bool = True) -> None:
    """Compare the local install with the lock and print every difference (exit 1 if any).

    Checks the ComfyUI and pack commits, local changes, packs installed but not locked, the
    active copy of custom_node/, the workflows link, the venv's Python and every pinned package.
    """
    with _errors():
        parsed = load_lock(_path(lock, LOCK))
        layout = Layout(_path(dir, REPO / "comfyui"))
        state = inspect_install(parsed, layout, repo_root=REPO, venv=venv_dir(venv), packages=packages)
        expected = lock_digest(parsed, project_requirements(REPO / "pyproject.toml"))
        drifts = find_drift(parsed, state, expected)
    packs = len(parsed.nodes)
    print(f"lock: ComfyUI {parsed.comfyui_commit[:12]}, {packs} node pack(s), Python {parsed.python}")
    for drift in drifts:
        print(f"drift: {drift}")
    if drifts:
        raise Exit(f"{len(drifts)} difference(s) between {layout.comfyui} and the lock", code=1)
    print(f"no drift: {layout.comfyui} runs what the worker image runs")


@task(
    help={
        "comfyui": "first move ComfyUI to REF: a branch, tag, HEAD or a commit",
        "node": "first move pack NAME to REF: NAME=REF (repeatable)",
        "upgrade": "re-resolve every package to its newest allowed version (default: change only what must)",
        "check": "only check, offline, that requirements.lock.txt was resolved for this lock and agrees "
        "with uv.lock (exit 1 if not)",
        "mirror": MIRROR_HELP,
        "dir": "a local install whose checkouts are reused instead of fetching (default comfyui/)",
        "lock": LOCK_HELP,
    },
    iterable=["node", "mirror"],
    auto_shortflags=False,  # -h would be --check, not help
)
def lock_update(
    c: Context,
    comfyui: str = "",
    node: list[str] | None = None,
    upgrade: bool = False,
    check: bool = False,
    mirror: list[str] | None = None,
    dir: str = "",
    lock: str = "",
) -> None:
    """Move ComfyUI or node packs to new commits, then re-resolve requirements.lock.txt (needs network).

    Edit image/comfyui.lock.yaml by hand (or use --comfyui/--node), run this, then
    `invoke setup` (local) and `invoke build` (image) install the same thing. uv.lock's versions
    are constraints, so the local ComfyUI, which shares .venv, keeps them: run this again after
    `uv lock` moves a package both use (`--check` tells).
    """
    lock_path = _path(lock, LOCK)
    with _errors(bad_argument=(LockError, MirrorError, ValueError)):
        if check:
            _check_pins(load_lock(lock_path))
            return
        mirrors = parse_mirrors(mirror or [])
        for change in bump_commits(
            lock_path, comfyui_ref=comfyui, node_refs=parse_node_refs(node or []), mirrors=mirrors
        ):
            print(f"lock: {change}")
        parsed = load_lock(lock_path)
        with tempfile.TemporaryDirectory(prefix="comfy-lock-") as work:
            update = refresh_pins(
                parsed, repo_root=REPO, work=Path(work), mirrors=mirrors,
                local=Layout(_path(dir, REPO / "comfyui")), upgrade=upgrade, echo=print,
            )  # fmt: skip
    if len(update.added) < update.total:  # not a first resolution: show what moved
        _print_lines([f"  {line}" for line in (*update.changed, *(f"+ {a}" for a in update.added))])
        _print_lines([f"  - {line}" for line in update.removed])
    print(f"{parsed.pins_path.name}: {update.summary()}")
    print("next: `uv run invoke setup` (local) and `uv run invoke build` (image)")


def _check_pins(lock: Lock) -> None:
    """Offline: the pins were resolved for this lock, and agree with uv.lock on every shared package."""
    text = lock.pins_path.read_text(encoding="utf-8") if lock.pins_path.exists() else ""
    if recorded_digest(text) != lock_digest(lock, project_requirements(REPO / "pyproject.toml")):
        raise Exit(
            f"{lock.pins_path.name} is out of date with the lock: run `uv run invoke lock-update`", code=1
        )
    project = project_pins(REPO)
    conflicts = disagreements(parse_pins(text), project, lock.python) if project is not None else []
    if conflicts:
        raise Exit(
            f"{lock.pins_path.name} and uv.lock disagree on {describe(conflicts)}; `uv run` would swap "
            "them in the local ComfyUI: run `uv run invoke lock-update`",
            code=1,
        )
    print(f"{lock.pins_path.name} matches the lock and uv.lock")
