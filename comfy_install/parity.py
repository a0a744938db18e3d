"""One version per package: the image's pins and the project's ``uv.lock`` agree on what they share.

The local ComfyUI runs in the project's ``.venv`` (its custom nodes and the tasks import from one
environment), and every ``uv run`` syncs that venv to ``uv.lock``. A package pinned at one
version in ``requirements.lock.txt`` and another in ``uv.lock`` would be swapped by each
``invoke setup`` and swapped back by the next ``uv run``: the local ComfyUI would never run the
image's packages. So ``uv.lock`` leads: ``invoke lock-update`` resolves the pins with its
versions as constraints (a lock that needs another version, e.g. by an override, does not
resolve); ``lock-update --check``, ``doctor`` and the tests compare the two files again,
offline, since ``uv lock`` (a new dependency) can move a version after the pins were made.

What counts is what each file installs in the image's environment: Linux x86_64, CPython at the
lock's Python; a pin whose marker excludes it (``; sys_platform == 'win32'``) is not compared.
The project's side is ``uv export`` of ``uv.lock``: uv's own answer to "which version on which
platform", markers included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from comfy_install.pins import Pin, export_command, parse_pins
from comfy_install.process import run


def linux_environment(python: str) -> dict[str, str]:
    """The marker environment of the image: CPython ``python`` (major.minor) on Linux x86_64."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{python}.0",
        "python_version": python,
        "sys_platform": "linux",
    }


def applies(pin: Pin, environment: Mapping[str, str]) -> bool:
    """Whether ``pin`` installs in ``environment`` (no marker: everywhere)."""
    if pin.marker is None:
        return True
    from packaging.markers import Marker  # imported here: the image build never needs it

    return bool(Marker(pin.marker).evaluate(dict(environment)))


def _normal(version: str) -> object:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version)  # 2.0 and 2.0.0 are one version (equal and hashed alike)
    except InvalidVersion:
        return version


def versions_in(pins: Iterable[Pin], environment: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Each package's version(s) in ``environment`` (canonical name -> sorted versions)."""
    found: dict[str, set[str]] = {}
    for pin in pins:
        if applies(pin, environment):
            found.setdefault(pin.name, set()).add(pin.version)
    return {name: tuple(sorted(versions)) for name, versions in found.items()}


@dataclass(frozen=True)
class Disagreement:
    """A package both files install, at different versions."""

    name: str
    image: tuple[str, ...]  # requirements.lock.txt
    project: tuple[str, ...]  # uv.lock

    def __str__(self) -> str:
        return f"{self.name} {' or '.join(self.image)} (uv.lock: {' or '.join(self.project)})"


def shared_packages(
    image: Iterable[Pin], project: Iterable[Pin], python: str
) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """The packages both install on the image's platform: name -> (image versions, uv.lock versions)."""
    environment = linux_environment(python)
    ours, theirs = versions_in(image, environment), versions_in(project, environment)
    return {name: (ours[name], theirs[name]) for name in sorted(ours.keys() & theirs.keys())}


def disagreements(image: Iterable[Pin], project: Iterable[Pin], python: str) -> list[Disagreement]:
    """The shared packages whose versions differ (empty: ``uv run`` keeps the image's set)."""
    return [
        Disagreement(name, ours, theirs)
        for name, (ours, theirs) in shared_packages(image, project, python).items()
        if {_normal(v) for v in ours} != {_normal(v) for v in theirs}
    ]


def describe(found: Iterable[Disagreement], limit: int = 8) -> str:
    """``protobuf 7.36.2 (uv.lock: 6.33.6), ...`` for one-line messages; long lists are cut."""
    items = [str(d) for d in found]
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def project_pins(repo_root: Path, *, uv: str = "uv") -> tuple[Pin, ...] | None:
    """The packages ``uv.lock`` installs (every group, with markers), or None without a uv.lock.

    ``uv export --frozen`` reads the lock as it is, offline; a lock it cannot read raises.
    """
    if not (repo_root / "uv.lock").is_file():
        return None
    done = run(
        export_command(repo_root, None, uv=uv),
        hint=f"{repo_root / 'uv.lock'} could not be read; `uv lock` rewrites it",
    )
    return parse_pins(done.stdout)
