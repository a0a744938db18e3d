"""Task ``dev-tools``: the real Pulumi CLI and a real S3 server for the engine and S3 tests.

The tests run what users run: the Pulumi CLI (and its Python language host) and a SeaweedFS S3
gateway, both built from their Go modules at the versions pinned in ``tools/go/*/go.mod``. One
command builds what is missing into a cache keyed by those pins (``~/.cache/comfy-runpod/tools``)
and links it into ``.tools/bin/`` (git-ignored), where ``tests/engine`` and the S3 tests look.
Nothing here is needed to deploy: users install the Pulumi CLI the usual way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

REPO = Path(__file__).resolve().parents[1]
TOOLS_BIN = REPO / ".tools" / "bin"
GO_MODULES = REPO / "tools" / "go"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "comfy-runpod"
DYNAMIC_PROVIDER = "pulumi-resource-pulumi-python"

# Pulumi starts dynamic providers (infra/providers/) through this name on PATH. Like Pulumi's own
# script it runs `python -m pulumi.dynamic` in the project's venv: PULUMI_RUNTIME_VIRTUALENV, else
# `.venv` of the working directory (the engine starts providers in the project root) when
# Pulumi.yaml says `toolchain: uv`.
DYNAMIC_PROVIDER_SCRIPT = """#!/bin/sh
# Written by `uv run invoke dev-tools` (tasks/devtools.py): Pulumi's dynamic-provider launcher.
venv="${PULUMI_RUNTIME_VIRTUALENV:-}"
if [ -z "$venv" ] && [ "${PULUMI_RUNTIME_TOOLCHAIN:-}" = "uv" ]; then venv=.venv; fi
if [ -n "$venv" ]; then
    case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
    if [ ! -x "$venv/bin/python" ]; then
        echo "pulumi-resource-pulumi-python: no Python in $venv (run 'uv sync' in the project)" >&2
        exit 1
    fi
    PATH="$venv/bin:$PATH"; export PATH; unset PYTHONHOME
    exec "$venv/bin/python" -u -m pulumi.dynamic "$@"
fi
exec "${PULUMI_PYTHON_CMD:-python3}" -u -m pulumi.dynamic "$@"
"""


@dataclass(frozen=True)
class GoTool:
    """One executable built from a package of a wrapper module under tools/go/."""

    name: str
    module: str  # folder under tools/go/ holding the wrapper go.mod
    package: str  # what `go build` builds there
    pinned: str  # the required module whose version names the build

    @property
    def module_dir(self) -> Path:
        return GO_MODULES / self.module

    def version(self) -> str:
        """The pinned version, as the wrapper's go.mod requires it."""
        for line in (self.module_dir / "go.mod").read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in (self.pinned, "require") and self.pinned in words:
                return words[words.index(self.pinned) + 1]
        raise Exit(f"error: {self.module_dir / 'go.mod'} does not require {self.pinned}", code=1)

    def cache_key(self) -> str:
        """Version plus a digest of the wrapper module (go.mod, go.sum, own sources): a change rebuilds."""
        digest = hashlib.sha256()
        for path in sorted(self.module_dir.rglob("*")):
            if path.is_file():
                digest.update(path.relative_to(self.module_dir).as_posix().encode())
                digest.update(path.read_bytes())
        # Per wrapper module: the CLI finds its language host next to itself (no "from $PATH" warning).
        return f"{self.module}-{self.version()}-{digest.hexdigest()[:12]}"


PULUMI_PKG = "github.com/pulumi/pulumi/pkg/v3"
TOOLS = (
    GoTool("pulumi", "pulumi", f"{PULUMI_PKG}/cmd/pulumi", PULUMI_PKG),
    GoTool("pulumi-language-python", "pulumi", "./languagehost", "github.com/pulumi/pulumi/sdk/v3"),
    GoTool("weed", "seaweedfs", "github.com/seaweedfs/seaweedfs/weed", "github.com/seaweedfs/seaweedfs"),
)


def go_env() -> dict[str, str]:
    """Go's caches under ~/.cache/comfy-runpod/go, so a rerun (and CI on the same machine) reuses them."""
    env = dict(os.environ)
    env.update(
        GOMODCACHE=str(CACHE / "go" / "mod"),
        GOCACHE=str(CACHE / "go" / "build"),
        GOFLAGS="-trimpath -buildvcs=false -mod=readonly",
        # A module that needs a newer Go than the installed one fetches it (through the module proxy).
        GOTOOLCHAIN="auto",
    )
    return env


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else "")
    if not go:
        raise Exit("error: `go` (1.26 or newer) is needed to build the dev tools: install Go, rerun", code=1)
    return go


def _build(tool: GoTool, target: Path) -> float:
    """Build ``tool`` into ``target`` with `nice go build`; returns the seconds it took."""
    started = time.monotonic()
    partial = target.with_name(target.name + ".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    argv = ["nice", _go(), "build", "-o", str(partial), tool.package]
    print(f"$ (cd {tool.module_dir.relative_to(REPO)} && {' '.join(argv)})", flush=True)
    done = subprocess.run(argv, cwd=tool.module_dir, env=go_env(), check=False)
    if done.returncode != 0:
        raise Exit(f"error: building {tool.name} failed (exit {done.returncode}); see go's output", code=1)
    partial.replace(target)
    return time.monotonic() - started


def _prune(keep: set[str]) -> None:
    """Drop cached builds of older pins of the same wrapper modules (hundreds of MB each)."""
    modules = {tool.module for tool in TOOLS}
    for entry in (CACHE / "tools").iterdir():
        if entry.name not in keep and entry.name.split("-v", 1)[0] in modules:
            print(f"removing the outdated build {entry}", flush=True)
            shutil.rmtree(entry, ignore_errors=True)


def _link(source: Path, name: str) -> None:
    link = TOOLS_BIN / name
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(source)


@task(name="dev-tools")
def dev_tools(c: Context) -> None:
    """Build the pinned Pulumi CLI, its Python language host and SeaweedFS into .tools/bin/.

    Only what the cache (~/.cache/comfy-runpod/tools, keyed by the pins in tools/go/*/go.mod)
    lacks is built; a cold build takes many minutes on two cores, a cached run about a second.
    The engine tests (tests/engine/) and the real-S3 tests use these binaries.
    """
    started = time.monotonic()
    TOOLS_BIN.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        target = CACHE / "tools" / tool.cache_key() / tool.name
        if target.exists():
            print(f"{tool.name} {tool.version()}: cached ({target.parent.name})", flush=True)
        else:
            print(f"{tool.name} {tool.version()}: building {tool.package} ...", flush=True)
            seconds = _build(tool, target)
            print(f"{tool.name} {tool.version()}: built in {seconds:.1f} s", flush=True)
        _link(target, tool.name)
    # Next to the CLI's real location: the engine looks for its bundled plugins there first.
    script = CACHE / "tools" / TOOLS[0].cache_key() / DYNAMIC_PROVIDER
    script.write_text(DYNAMIC_PROVIDER_SCRIPT)
    script.chmod(0o755)
    _link(script, DYNAMIC_PROVIDER)
    print(f"{DYNAMIC_PROVIDER}: written", flush=True)
    _prune({tool.cache_key() for tool in TOOLS})
    took = time.monotonic() - started
    print(f"dev tools ready in {TOOLS_BIN.relative_to(REPO)}/ ({took:.1f} s)", flush=True)
