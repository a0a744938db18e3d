"""The image's name and the docker command lines of ``invoke build`` and ``invoke push``.

The reference is ``[REGISTRY/]IMAGE:TAG``, each part from the task's flag, else the environment
(``DOCKER_REGISTRY``, ``DOCKER_IMAGE``, ``DOCKER_TAG``), else a default: no registry, image
``comfy-runpod``, tag = the repository's commit (``git rev-parse --short=12 HEAD``, ``-dirty``
with uncommitted changes). A new tag per commit matters on RunPod: workers cache images by
tag, so pushing over an old tag does not roll them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from comfy_install.errors import InstallError
from comfy_install.process import Completed, run

DEFAULT_IMAGE = "comfy-runpod"
PLATFORM = "linux/amd64"  # RunPod's GPUs are x86_64; also right when building on an ARM Mac
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_NAME = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_REGISTRY = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[a-z0-9._-]+)*")


@dataclass(frozen=True)
class ImageRef:
    """``registry`` (host, optionally with a namespace: ``ghcr.io/me``), ``name`` and ``tag``."""

    name: str
    tag: str
    registry: str | None = None

    @property
    def local(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def remote(self) -> str:
        return f"{self.registry}/{self.name}:{self.tag}" if self.registry else self.local


def image_ref(
    env: Mapping[str, str], *, tag: str = "", registry: str = "", default_tag: str = "latest"
) -> ImageRef:
    """The image reference from flags, then ``DOCKER_*``; InstallError names a malformed part."""
    name = env.get("DOCKER_IMAGE", "").strip() or DEFAULT_IMAGE
    chosen_tag = tag.strip() or env.get("DOCKER_TAG", "").strip() or default_tag
    chosen_registry = (registry.strip() or env.get("DOCKER_REGISTRY", "").strip()).rstrip("/") or None
    if not _NAME.fullmatch(name):
        raise InstallError(f"DOCKER_IMAGE={name!r} is not an image name (lower case, e.g. me/comfy-runpod)")
    if not _TAG.fullmatch(chosen_tag):
        raise InstallError(
            f"tag {chosen_tag!r} is not a docker tag (letters, digits, '.', '_', '-'; max 128)"
        )
    if chosen_registry is not None:
        if "://" in chosen_registry:
            raise InstallError(f"registry {chosen_registry!r}: drop the scheme, e.g. ghcr.io/me")
        if not _REGISTRY.fullmatch(chosen_registry):
            raise InstallError(f"registry {chosen_registry!r} is not a registry host, e.g. ghcr.io/me")
    return ImageRef(name=name, tag=chosen_tag, registry=chosen_registry)


def repository_tag(repo_root: Path) -> str:
    """The default tag: the repository's short commit, ``-dirty`` with uncommitted changes."""
    head = run(["git", "-C", str(repo_root), "rev-parse", "--short=12", "HEAD"], check=False)
    if not head.ok or not head.stdout.strip():
        return "latest"
    dirty = run(["git", "-C", str(repo_root), "status", "--porcelain", "--untracked-files=no"], check=False)
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def build_command(
    ref: ImageRef, *, dockerfile: Path, context: Path, no_cache: bool = False, platform: str = PLATFORM
) -> list[str]:
    """``docker build`` (BuildKit) of the image, tagged locally and, with a registry, remotely."""
    cmd = ["docker", "build", "--platform", platform, "--file", str(dockerfile), "--tag", ref.local]
    if ref.registry:
        cmd += ["--tag", ref.remote]
    if no_cache:
        cmd.append("--no-cache")
    return [*cmd, str(context)]


BUILD_ENV = {"DOCKER_BUILDKIT": "1"}
"""BuildKit is required (cache mounts, ``Dockerfile.dockerignore``); the default since Docker 23."""


def push_commands(ref: ImageRef) -> list[list[str]]:
    """Tag for the registry (the build may have had none) and push."""
    if not ref.registry and "/" not in ref.name:
        raise InstallError(
            f"pushing {ref.local} would go to docker.io/library; give --registry (e.g. docker.io/USER, "
            "ghcr.io/USER) or set DOCKER_REGISTRY"
        )
    if ref.registry:
        return [["docker", "tag", ref.local, ref.remote], ["docker", "push", ref.remote]]
    return [["docker", "push", ref.local]]


def engine_problem(probe: Completed) -> str | None:
    """None when ``docker version`` reached an engine, else the one-line reason and fix."""
    if probe.ok and probe.stdout.strip():
        return None
    if probe.returncode == 127:
        return "docker is not installed (https://docs.docker.com/get-docker/)"
    detail = next((line.strip() for line in probe.stderr.splitlines() if line.strip()), "no answer")
    return (
        f"no Docker engine is reachable ({detail}); start Docker (Docker Desktop, or "
        "`sudo systemctl start docker`) or point DOCKER_HOST at one"
    )


def probe_engine() -> Completed:
    """Ask the engine for its version; a client without an engine fails here in milliseconds."""
    return run(["docker", "version", "--format", "{{.Server.Version}}"], check=False, timeout=30)
