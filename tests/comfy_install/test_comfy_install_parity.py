"""One version per package: the image's pins and the project's uv.lock agree, and stay agreed.

The local ComfyUI shares the project's ``.venv``, which every ``uv run`` syncs to ``uv.lock``.
Rules: the repository's two locks agree on every package both install (Linux, the lock's
Python); ``lock-update`` takes uv.lock's version of a shared package and refuses a result that
differs; after ``setup`` and a plain ``uv run``, ``doctor`` finds nothing. The install tests'
fake ComfyUI, packs and wheels stand in for the real ones (no network).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from comfy_install import InstallError, load_lock
from comfy_install.drift import installed_packages
from comfy_install.mirrors import parse_mirrors
from comfy_install.parity import describe, disagreements, linux_environment, project_pins, shared_packages
from comfy_install.pins import Pin, parse_pins
from comfy_install.update import refresh_pins
from tests.comfy_install import test_comfy_install_e2e as install_e2e
from tests.comfy_install.test_comfy_install_e2e import World, make_wheel

# The install tests' fixtures: git without the developer's config, and their fake ComfyUI world.
hermetic_git = install_e2e.hermetic_git
world = install_e2e.world

REPO = Path(__file__).resolve().parents[2]


def test_every_package_the_image_pins_has_uv_locks_version() -> None:
    """The repository's files: what the image installs on Linux equals what `uv run` keeps."""
    lock = load_lock(REPO / "image" / "comfyui.lock.yaml")
    pins = parse_pins(lock.pins_path.read_text(encoding="utf-8"))
    project = project_pins(REPO)
    assert project is not None
    shared = shared_packages(pins, project, lock.python)
    assert len(shared) > 100 and "protobuf" in shared  # the comparison covers the real overlap
    assert disagreements(pins, project, lock.python) == [], (
        "requirements.lock.txt and uv.lock differ; run `uv run invoke lock-update` (README, Local ComfyUI)"
    )


def test_only_the_pins_that_install_on_the_images_platform_are_compared() -> None:
    image = parse_pins(
        "av==18.1.0 ; python_full_version < '3.12'\n"
        "av==19.0.2 ; python_full_version >= '3.12'\n"
        "Colorama==0.4.5 ; sys_platform == 'win32'\n"
        "protobuf==7.36.2\n"
        "numpy==2.0\n"
        "torch==2.9.0+cu130 ; sys_platform == 'linux'\n"
        "only-image==1.0\n"
    )
    project = parse_pins(
        "av==18.1.0 ; python_full_version < '3.12'\n"
        "av==18.1.0 ; python_full_version >= '3.12'\n"
        "colorama==0.4.6 ; sys_platform == 'win32'\n"
        "protobuf==6.33.6\n"
        "numpy==2.0.0\n"
        "torch==2.9.0 ; sys_platform == 'darwin'\n"
        "only-project==1.0\n"
    )
    assert sorted(shared_packages(image, project, "3.11")) == ["av", "numpy", "protobuf"]
    found = disagreements(image, project, "3.11")
    assert [str(d) for d in found] == ["protobuf 7.36.2 (uv.lock: 6.33.6)"]  # 2.0 == 2.0.0
    assert [d.name for d in disagreements(image, project, "3.12")] == ["av", "protobuf"]
    assert describe(found * 10, limit=2).endswith("and 8 more")


def test_the_image_environment_is_linux_cpython_at_the_locks_python() -> None:
    environment = linux_environment("3.11")
    assert (environment["sys_platform"], environment["platform_system"]) == ("linux", "Linux")
    assert environment["python_version"] == "3.11" and environment["python_full_version"].startswith("3.11.")
    assert disagreements([Pin("x", "1", "os_name == 'nt'")], [Pin("x", "2")], "3.11") == []


# --- lock-update and setup against a project with its own uv.lock ------------------------------

PROJECT = """\
[project]
name = "p"
version = "0"
requires-python = ">=3.11"
dependencies = ["projfake==1.0"]

[dependency-groups]
# Like pulumi capping protobuf below 7: the project's tools hold a package ComfyUI also uses.
infra = ["capfake"]

[tool.uv]
package = false
default-groups = ["infra"]
"""


@pytest.fixture
def project(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """The fake project with a uv.lock; uv finds packages only in a folder of wheels made here.

    ComfyUI's ``comfyfake`` needs ``sharedfake`` (newest 2.0); the project's ``capfake`` caps it
    below 2, so uv.lock has sharedfake 1.0. ``UV_NO_INDEX``/``UV_FIND_LINKS`` keep every uv
    command offline without changing its command line (a plain ``uv run`` stays plain).
    """
    dist = world.root / "dist"
    wheels = [
        ("comfyfake", "1.0", ("sharedfake",)),
        ("capfake", "1.0", ("sharedfake<2",)),
        ("sharedfake", "1.0", ()),
        ("sharedfake", "2.0", ()),
        ("nodefake", "2.0", ()),
        ("extrafake", "1.0", ()),
        ("projfake", "1.0", ()),
    ]
    for name, version, requires in wheels:
        make_wheel(dist, name, version, requires)
    monkeypatch.setenv("UV_NO_INDEX", "1")
    monkeypatch.setenv("UV_FIND_LINKS", str(dist))
    monkeypatch.setenv("UV_PYTHON", sys.executable)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)  # this test's own venv is not the project's
    (world.project / "pyproject.toml").write_text(PROJECT)
    subprocess.run(["uv", "lock", "--quiet"], cwd=world.project, check=True)
    return world


def pinned(install: World, name: str) -> list[str]:
    pins = parse_pins(load_lock(install.lock_path).pins_path.read_text())
    return [pin.version for pin in pins if pin.name == name]


def test_lock_update_takes_uv_locks_version_of_a_shared_package(project: World) -> None:
    lock_file = project.project / "uv.lock"
    locked = lock_file.read_text()
    lock_file.unlink()  # without a uv.lock, the newest version wins
    refresh_pins(load_lock(project.lock_path), repo_root=project.project, work=project.root / "w1",
                 mirrors=project.mirrors)  # fmt: skip
    assert pinned(project, "sharedfake") == ["2.0"]

    lock_file.write_text(locked)  # uv.lock leads: its version replaces the previous pin
    update = refresh_pins(load_lock(project.lock_path), repo_root=project.project, work=project.root / "w2",
                          mirrors=project.mirrors)  # fmt: skip
    assert pinned(project, "sharedfake") == ["1.0"]
    assert update.changed == ("sharedfake 2.0 -> 1.0",)


def test_an_override_that_contradicts_uv_lock_does_not_resolve(project: World) -> None:
    refresh_pins(load_lock(project.lock_path), repo_root=project.project, work=project.root / "w1",
                 mirrors=project.mirrors)  # fmt: skip
    before = load_lock(project.lock_path).pins_path.read_text()
    with project.lock_path.open("a") as lock_text:
        lock_text.write("  overrides: [sharedfake==2.0]\n")
    with pytest.raises(InstallError) as caught:
        refresh_pins(load_lock(project.lock_path), repo_root=project.project, work=project.root / "w2",
                     mirrors=project.mirrors)  # fmt: skip
    message = str(caught.value)
    assert "your requirements are unsatisfiable" in message  # uv's own conflict report, then:
    assert message.endswith("(uv.lock's versions are constraints: a [tool.uv] constraint-dependencies "
                            "entry in pyproject.toml and `uv lock` move them)")  # fmt: skip
    assert load_lock(project.lock_path).pins_path.read_text() == before


def test_setup_then_a_plain_uv_run_then_doctor_finds_no_difference(
    project: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user's sequence, through the tasks, in a project of its own (the tasks' REPO)."""
    from tasks import comfyui as tasks

    monkeypatch.setattr(tasks, "REPO", project.project)
    venv = project.project / ".venv"
    subprocess.run(["uv", "sync", "--quiet"], cwd=project.project, check=True)  # the README's first step
    # `invoke lock-update`
    refresh_pins(load_lock(project.lock_path), repo_root=project.project, work=project.root / "work",
                 mirrors=project.mirrors)  # fmt: skip
    tasks.lock_update(Context(), check=True, lock=str(project.lock_path))
    assert "matches the lock and uv.lock" in capsys.readouterr().out

    mirror = [f"{m.source}={m.target}" for m in project.mirrors]
    install = str(project.layout.comfyui)
    tasks.setup(Context(), dir=install, mirror=mirror, lock=str(project.lock_path), venv=str(venv))
    capsys.readouterr()
    # A plain `uv run`, as before any task: it syncs .venv to uv.lock first.
    code = "import comfyfake, sharedfake; print(sharedfake.VERSION)"
    done = subprocess.run(["uv", "run", "python", "-c", code], cwd=project.project, env=dict(os.environ),
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == "1.0"
    installed = installed_packages(venv) or {}
    assert {name: installed.get(name) for name in ("comfyfake", "sharedfake", "capfake")} == {
        "comfyfake": "1.0", "sharedfake": "1.0", "capfake": "1.0"
    }  # fmt: skip

    tasks.doctor(Context(), dir=install, venv=str(venv), lock=str(project.lock_path))
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("drift:")] == []
    assert "no drift: " in out

    # The same sequence with pins that contradict uv.lock (the protobuf): doctor names
    # the package once, with the fix that ends the loop.
    pins_path = load_lock(project.lock_path).pins_path
    pins_path.write_text(pins_path.read_text().replace("sharedfake==1.0", "sharedfake==2.0"))
    with pytest.raises(Exit) as caught:
        tasks.doctor(Context(), dir=install, venv=str(venv), lock=str(project.lock_path))
    drifts = [line for line in capsys.readouterr().out.splitlines() if line.startswith("drift:")]
    assert drifts == [
        "drift: package sharedfake: requirements.lock.txt pins 2.0, uv.lock 1.0: every `uv run` puts "
        "uv.lock's back (run `invoke lock-update`)"
    ]
    assert caught.value.code == 1
    with pytest.raises(Exit) as caught:
        tasks.lock_update(Context(), check=True, lock=str(project.lock_path))
    assert "disagree on sharedfake 2.0 (uv.lock: 1.0)" in str(caught.value.message)


def test_lock_update_reads_a_partial_local_mirror_in_place(project: World) -> None:
    """A mirror without its large files (a clone of it fails) still gives lock-update ComfyUI's
    requirements.txt: it is read from the mirror, not cloned."""
    partial = project.root / "partial-ComfyUI.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(project.comfy_repo), str(partial)], check=True)
    blob = subprocess.run(["git", "-C", str(partial), "rev-parse", f"{project.commits['comfyui']}:main.py"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (partial / "objects" / blob[:2] / blob[2:]).unlink()
    clone = subprocess.run(["git", "clone", "--quiet", str(partial), str(project.root / "clone")],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert clone.returncode != 0  # the mirror is really partial

    mirrors = (*[m for m in project.mirrors if "ComfyUI" not in m.source],
               *parse_mirrors([f"https://github.com/Comfy-Org/ComfyUI={partial}"], env={}))  # fmt: skip
    refresh_pins(load_lock(project.lock_path), repo_root=project.project, work=project.root / "w",
                 mirrors=mirrors)  # fmt: skip
    assert pinned(project, "comfyfake") == ["1.0"]
    assert not (project.root / "w" / "comfyui").exists()  # nothing was cloned
