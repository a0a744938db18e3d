"""Tasks for the worker image: build and push (Docker with BuildKit).

The image reference is ``[REGISTRY/]IMAGE:TAG``: flags first, then ``DOCKER_REGISTRY``,
``DOCKER_IMAGE``, ``DOCKER_TAG``, then the defaults (image ``comfy-runpod``, tag = this
repository's commit). Each docker command is printed before it runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from comfy_install import InstallError, LockError, load_lock
from comfy_install.docker import (
    BUILD_ENV,
    ImageRef,
    build_command,
    engine_problem,
    image_ref,
    probe_engine,
    push_commands,
    repository_tag,
)
from comfy_install.install import check_pins
from comfy_install.process import command_line, run

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "image" / "Dockerfile"
TAG_HELP = "image tag (default $DOCKER_TAG, else this repository's commit, e.g. 3f2a9c1b7d4e)"
REGISTRY_HELP = "registry and namespace, e.g. docker.io/me or ghcr.io/me (default $DOCKER_REGISTRY)"


def _ref(tag: str, registry: str) -> ImageRef:
    try:
        default_tag = "" if tag or os.environ.get("DOCKER_TAG") else repository_tag(REPO)
        return image_ref(os.environ, tag=tag, registry=registry, default_tag=default_tag or "latest")
    except InstallError as exc:
        raise Exit(f"error: {exc}", code=2) from None


def _require_engine() -> None:
    problem = engine_problem(probe_engine())
    if problem:
        raise Exit(f"error: {problem}", code=1)


def _docker(argv: list[str], env: dict[str, str] | None = None) -> None:
    prefix = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    print(f"$ {prefix + ' ' if prefix else ''}{command_line(argv)}", flush=True)
    done = run(argv, cwd=REPO, env=env, check=False, stream=True)
    if not done.ok:
        raise Exit(
            f"error: `{argv[0]} {argv[1]}` failed (exit {done.returncode}); see its output above", code=1
        )


@task(
    help={
        "tag": TAG_HELP,
        "registry": REGISTRY_HELP + "; also tags the image for it",
        "no_cache": "rebuild every layer (default: reuse BuildKit's cache)",
    }
)
def build(c: Context, tag: str = "", registry: str = "", no_cache: bool = False) -> None:
    """Build the worker image (image/Dockerfile) for linux/amd64 with BuildKit.

    The build clones ComfyUI and the node packs at the locked commits, installs
    image/requirements.lock.txt, and fails unless every locked pack imports.
    """
    ref = _ref(tag, registry)
    try:
        check_pins(load_lock(REPO / "image" / "comfyui.lock.yaml"), REPO)
    except LockError as exc:
        raise Exit(f"error: {exc}", code=2) from None
    except InstallError as exc:
        raise Exit(f"error: {exc}", code=1) from None
    _require_engine()
    _docker(build_command(ref, dockerfile=DOCKERFILE, context=REPO, no_cache=no_cache), env=BUILD_ENV)
    print(f"built {ref.remote}; `uv run invoke push --tag {ref.tag}` publishes it")


@task(help={"tag": TAG_HELP, "registry": REGISTRY_HELP})
def push(c: Context, tag: str = "", registry: str = "") -> None:
    """Push the built image to the registry (tags it for the registry first)."""
    ref = _ref(tag, registry)
    try:
        commands = push_commands(ref)
    except InstallError as exc:
        raise Exit(f"error: {exc}", code=2) from None
    _require_engine()
    for argv in commands:
        _docker(argv)
    print(f"pushed {ref.remote}")
