"""The clone/install path end to end, against git repositories and wheels made by the test.

A fake "ComfyUI" repository (a ``main.py`` that imports ``custom_nodes/`` and prints ComfyUI's
import table, a ``requirements.txt``), fake node packs, and a fake project (``custom_node/``,
``workflows/``, ``pyproject.toml``) stand in for the real ones; mirrors point the lock's public
URLs at them. No network: git talks to local paths, uv resolves from a folder of wheels.

Rules: ``setup`` converges (a second run changes nothing; after a lock change it moves,
adds and removes exactly what changed) and never destroys local work unless forced; what
``setup`` installs, ``doctor`` finds identical to the lock; failures say what to do.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from comfy_install import FetchError, load_lock, lock_digest
from comfy_install.drift import find_drift, inspect_install, installed_packages
from comfy_install.errors import CommandError, WorkTreeError
from comfy_install.git import head_commit
from comfy_install.install import SetupOptions, setup
from comfy_install.layout import Layout, read_manifest
from comfy_install.mirrors import Mirror, parse_mirrors
from comfy_install.pins import project_requirements, recorded_digest, render_pins
from comfy_install.update import bump_commits, refresh_pins

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
COMFY_URL = "https://github.com/Comfy-Org/ComfyUI"

FAKE_MAIN = '''\
"""A stand-in for ComfyUI's main.py: imports custom_nodes/ and prints ComfyUI's import table."""
import importlib.util, os, sys

root = os.path.dirname(os.path.abspath(__file__))
custom = os.path.join(root, "custom_nodes")
rows = []
for name in sorted(os.listdir(custom)):
    path = os.path.join(custom, name)
    if name.startswith((".", "__")) or name.endswith((".example", ".disabled")):
        continue
    if os.path.isfile(path) and not name.endswith(".py"):
        continue
    init = os.path.join(path, "__init__.py") if os.path.isdir(path) else path
    try:
        spec = importlib.util.spec_from_file_location(name.replace("-", "_"), init)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        rows.append("   0.0 seconds: " + path)
    except Exception as exc:
        print(f"Cannot import {path} module for custom nodes: {exc}", file=sys.stderr)
        rows.append("   0.0 seconds (IMPORT FAILED): " + path)
print("Import times for custom nodes:", file=sys.stderr)
print("\\n".join(rows), file=sys.stderr)
sys.exit(0 if "--quick-test-for-ci" in sys.argv else 3)
'''

COMFY_GITIGNORE = "/custom_nodes/\n!custom_nodes/example_node.py.example\n/user/\n/input/\n/output/\n"


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str = "change") -> str:
    """Write ``files`` into ``repo`` (created if needed) and commit them; returns the commit."""
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        git("init", "--quiet", "--initial-branch", "main", cwd=repo)
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git("add", "--all", cwd=repo)
    git("commit", "--quiet", "-m", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


def make_wheel(dist: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """A minimal pure-Python wheel, enough for uv to resolve and install it offline."""
    info = f"{name}-{version}.dist-info"
    depends = "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{depends}",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    dist.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dist / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


@dataclass
class World:
    """The test's ComfyUI, packs, project and lock; ``mirrors`` point the lock's URLs at them."""

    root: Path
    project: Path
    lock_path: Path
    comfy_repo: Path
    packs: dict[str, Path]
    commits: dict[str, str]
    mirrors: tuple[Mirror, ...]

    @property
    def layout(self) -> Layout:
        return Layout(self.root / "install" / "comfyui")

    def write_lock(self, packs: list[str], extra: str = "[extrafake==1.0]") -> None:
        nodes = "".join(
            f"  {name}:\n    repo: https://example.com/{name}\n    commit: {self.commits[name]}\n"
            for name in packs
        )
        self.lock_path.write_text(
            f'# test lock\nversion: 1\npython: "{PYTHON}"\ncomfyui:\n  repo: {COMFY_URL}\n'
            f"  commit: {self.commits['comfyui']}\ncustom_nodes:\n{nodes}requirements:\n  extra: {extra}\n"
        )

    def write_pins(self, body: str = "") -> None:
        """Pins recorded for the current lock, as `lock-update` would leave them."""
        lock = load_lock(self.lock_path)
        digest = lock_digest(lock, project_requirements(self.project / "pyproject.toml"))
        lock.pins_path.write_text(render_pins(body, digest=digest, python=PYTHON, lock_name="image/lock"))

    def options(self, **changes: object) -> SetupOptions:
        values: dict[str, object] = {"repo_root": self.project, "venv": self.root / "venv", "packages": False}
        values.update(changes)
        return SetupOptions(**values)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def hermetic_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Git without the developer's config, with an identity; no mirrors or venv from the shell."""
    empty = tmp_path / "gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(key, "test")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(key, "test@example.com")
    for key in ("COMFY_RUNPOD_MIRRORS", "UV_PROJECT_ENVIRONMENT", "COMFY_RUNPOD_MODELS"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    if shutil.which("uv") is None:
        pytest.skip("uv is not on PATH")
    comfy_repo = tmp_path / "repos" / "ComfyUI"
    commits = {
        "comfyui": commit(
            comfy_repo,
            {
                "main.py": FAKE_MAIN,
                "requirements.txt": "comfyfake\n",
                ".gitignore": COMFY_GITIGNORE,
                "custom_nodes/example_node.py.example": "# example\n",
            },
        )
    }
    packs = {}
    for name, requirements in (("node-a", "nodefake>=1\n"), ("node-b", None), ("node-c", None)):
        files = {"__init__.py": f"NODE_CLASS_MAPPINGS = {{}}  # {name}\n"}
        if requirements:
            files["requirements.txt"] = requirements
        packs[name] = tmp_path / "repos" / name
        commits[name] = commit(packs[name], files)
    project = tmp_path / "project"
    (project / "custom_node").mkdir(parents=True)
    (project / "custom_node" / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (project / "workflows").mkdir()
    (project / "workflows" / "sample.json").write_text("{}\n")
    (project / "image").mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0"\ndependencies = ["projfake==1.0"]\n'
    )
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text(f"version_info = {PYTHON}.0\n")
    specs = [
        f"{COMFY_URL}={comfy_repo}",
        *(f"https://example.com/{name}={path}" for name, path in packs.items()),
    ]
    w = World(tmp_path, project, project / "image" / "comfyui.lock.yaml", comfy_repo, packs, commits,
              parse_mirrors(specs, env={}))  # fmt: skip
    w.write_lock(["node-a", "node-b"])
    w.write_pins()
    yield w


def test_setup_installs_the_lock_and_a_second_run_changes_nothing(world: World) -> None:
    lock = load_lock(world.lock_path)
    layout = world.layout
    report = setup(lock, layout, world.options(), world.mirrors)
    assert report[:3] == [
        f"ComfyUI {world.commits['comfyui'][:12]}: cloned",
        f"custom_nodes/node-a {world.commits['node-a'][:12]}: cloned",
        f"custom_nodes/node-b {world.commits['node-b'][:12]}: cloned",
    ]
    assert head_commit(layout.comfyui) == world.commits["comfyui"]
    assert head_commit(layout.node_dir("node-a")) == world.commits["node-a"]
    assert git("remote", "get-url", "origin", cwd=layout.comfyui) == str(world.comfy_repo)
    assert layout.active_node.resolve() == (world.project / "custom_node").resolve()
    assert (layout.workflows_link / "sample.json").read_text() == "{}\n"
    assert read_manifest(layout.manifest)["nodes"] == {
        "node-a": world.commits["node-a"],
        "node-b": world.commits["node-b"],
    }
    assert git("status", "--porcelain", cwd=layout.comfyui) == ""  # the install leaves ComfyUI's tree clean

    echoed: list[str] = []
    again = setup(lock, layout, world.options(), world.mirrors, echo=echoed.append)
    assert echoed == []  # nothing fetched, nothing checked out
    assert all(line.endswith(("unchanged", "unchanged (link of custom_node/)", "unchanged to workflows/"))
               for line in again[:5]), again  # fmt: skip

    state = inspect_install(lock, layout, repo_root=world.project, venv=world.root / "venv", packages=False)
    expected = lock_digest(lock, project_requirements(world.project / "pyproject.toml"))
    assert find_drift(lock, state, expected) == []


def test_rerunning_after_a_lock_change_moves_adds_and_removes_packs(world: World) -> None:
    setup(load_lock(world.lock_path), world.layout, world.options(), world.mirrors)
    # Upstream moves on; the lock follows ComfyUI's and node-a's main, drops node-b, adds node-c.
    new_comfy = commit(world.comfy_repo, {"requirements.txt": "comfyfake\nnewdep\n"})
    new_a = commit(world.packs["node-a"], {"extra.py": "X = 1\n"})
    changes = bump_commits(
        world.lock_path, comfyui_ref="main", node_refs={"node-a": "main"}, mirrors=world.mirrors
    )
    assert [str(c) for c in changes] == [
        f"comfyui: {world.commits['comfyui'][:12]} -> {new_comfy[:12]}",
        f"custom_nodes.node-a: {world.commits['node-a'][:12]} -> {new_a[:12]}",
    ]
    assert world.lock_path.read_text().startswith("# test lock\n")  # edited in place
    world.commits.update(comfyui=new_comfy, **{"node-a": new_a})
    world.write_lock(["node-a", "node-c"])
    world.write_pins()
    (world.layout.custom_nodes / "my-own-node").mkdir()  # the user's: never removed by setup

    lock = load_lock(world.lock_path)
    report = setup(lock, world.layout, world.options(), world.mirrors)
    assert f"ComfyUI {new_comfy[:12]}: updated" in report
    assert f"custom_nodes/node-a {new_a[:12]}: updated" in report
    assert "custom_nodes/node-b: removed (no longer in the lock)" in report
    assert f"custom_nodes/node-c {world.commits['node-c'][:12]}: cloned" in report
    assert (world.layout.node_dir("node-a") / "extra.py").exists()
    assert not world.layout.node_dir("node-b").exists()
    assert (world.layout.custom_nodes / "my-own-node").exists()

    state = inspect_install(
        lock, world.layout, repo_root=world.project, venv=world.root / "venv", packages=False
    )
    expected = lock_digest(lock, project_requirements(world.project / "pyproject.toml"))
    assert [str(d) for d in find_drift(lock, state, expected)] == [
        "custom_nodes/my-own-node: installed locally but not in the lock: workflows using it fail on the "
        "worker (add it to image/comfyui.lock.yaml, or move it out of custom_nodes/)"
    ]


def test_local_changes_stop_an_update_unless_forced(world: World) -> None:
    setup(load_lock(world.lock_path), world.layout, world.options(), world.mirrors)
    edited = world.layout.node_dir("node-a") / "__init__.py"
    edited.write_text("# my fix\n")
    world.commits["node-a"] = commit(world.packs["node-a"], {"__init__.py": "# upstream\n"})
    world.write_lock(["node-a", "node-b"])
    world.write_pins()
    lock = load_lock(world.lock_path)
    with pytest.raises(WorkTreeError, match=r"has local changes .* --force to discard them"):
        setup(lock, world.layout, world.options(), world.mirrors)
    assert edited.read_text() == "# my fix\n"
    setup(lock, world.layout, world.options(force=True), world.mirrors)
    assert edited.read_text() == "# upstream\n"


def test_an_unreachable_repository_names_the_url_and_the_mirror_fix(world: World) -> None:
    lock = load_lock(world.lock_path)
    mirrors = parse_mirrors([f"{COMFY_URL}={world.root / 'missing'}"], env={})
    with pytest.raises(FetchError) as caught:
        setup(lock, world.layout, world.options(), mirrors)
    message = str(caught.value)
    assert f"could not fetch {world.commits['comfyui'][:12]} of {COMFY_URL}" in message
    assert f"--mirror {COMFY_URL}=PATH or COMFY_RUNPOD_MIRRORS" in message and "\n" not in message


def test_lock_update_resolves_offline_and_setup_installs_exactly_the_pins(world: World) -> None:
    dist = world.root / "dist"
    for name, version in (
        ("comfyfake", "1.0"),
        ("nodefake", "2.0"),
        ("extrafake", "1.0"),
        ("projfake", "1.0"),
    ):
        make_wheel(dist, name, version)
    make_wheel(dist, "extrafake", "0.9")
    offline = ("--offline", "--no-index", "--find-links", str(dist))
    lock = load_lock(world.lock_path)
    update = refresh_pins(
        lock, repo_root=world.project, work=world.root / "work", mirrors=world.mirrors,
        index_args=offline,
    )  # fmt: skip
    pins_text = lock.pins_path.read_text()
    assert recorded_digest(pins_text) == lock_digest(lock, ["projfake==1.0"])
    for pin in ("comfyfake==1.0", "nodefake==2.0", "extrafake==1.0", "projfake==1.0"):
        assert pin in pins_text.splitlines()
    assert update.added == ("comfyfake 1.0", "extrafake 1.0", "nodefake 2.0", "projfake 1.0")

    venv = world.root / "realvenv"
    subprocess.run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    setup(lock, world.layout, world.options(venv=venv, packages=True, index_args=offline), world.mirrors)
    installed = installed_packages(venv) or {}
    assert {k: installed[k] for k in ("comfyfake", "nodefake", "extrafake", "projfake")} == {
        "comfyfake": "1.0", "nodefake": "2.0", "extrafake": "1.0", "projfake": "1.0"
    }  # fmt: skip
    state = inspect_install(lock, world.layout, repo_root=world.project, venv=venv)
    assert find_drift(lock, state, lock_digest(lock, ["projfake==1.0"])) == []

    subprocess.run(
        ["uv", "pip", "install", "--quiet", "--python", str(venv), *offline, "extrafake==0.9"], check=True
    )
    state = inspect_install(lock, world.layout, repo_root=world.project, venv=venv)
    assert [str(d) for d in find_drift(lock, state, lock_digest(lock, ["projfake==1.0"]))] == [
        "package extrafake: 0.9 installed, the pins say 1.0 (run `invoke setup`)"
    ]

    # The lock changes without a refresh: setup refuses the stale pins instead of diverging.
    world.write_lock(["node-a"], extra="[extrafake==1.0, newfake]")
    with pytest.raises(Exception, match="resolved for another version of the lock; run `invoke lock-update`"):
        setup(
            load_lock(world.lock_path), world.layout, world.options(venv=venv, packages=True), world.mirrors
        )


def test_lock_update_without_the_index_fails_with_a_clear_message(world: World) -> None:
    lock = load_lock(world.lock_path)
    with pytest.raises(CommandError) as caught:
        refresh_pins(lock, repo_root=world.project, work=world.root / "work", mirrors=world.mirrors,
                     index_args=("--offline", "--no-index"))  # fmt: skip
    assert "resolving needs the package index (PyPI, or UV_INDEX_URL): are you offline?" in str(caught.value)
    assert recorded_digest(lock.pins_path.read_text()) is not None  # the old pins are left as they were


def test_the_image_build_steps_clone_the_lock_and_prove_every_pack_imports(world: World) -> None:
    """`python -m comfy_install checkout` then `proof`, as image/Dockerfile runs them."""
    dest = world.root / "opt" / "comfyui"
    mirrors = [f"--mirror={m.source}={m.target}" for m in world.mirrors]
    cli = [sys.executable, "-m", "comfy_install"]
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([*cli, "checkout", "--lock", str(world.lock_path), "--dest", str(dest), *mirrors],
                          cwd=root, capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"custom_nodes/node-b {world.commits['node-b'][:12]}: cloned" in done.stdout
    proof = [*cli, "proof", "--lock", str(world.lock_path), "--comfyui", str(dest)]
    done = subprocess.run(proof, cwd=root, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "proof: ComfyUI starts; 2 locked node pack(s) imported" in done.stdout

    (dest / "custom_nodes" / "node-b" / "__init__.py").write_text(
        "raise ImportError('missing dependency xyz')\n"
    )
    done = subprocess.run(proof, cwd=root, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "proof failed: custom node pack node-b failed to import: missing dependency xyz" in done.stderr


def test_the_tasks_wrap_it_with_one_line_errors(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    from tasks import comfyui as tasks

    mirror = [f"{m.source}={m.target}" for m in world.mirrors]
    install = str(world.layout.comfyui)
    tasks.setup(Context(), dir=install, packages=False, mirror=mirror, lock=str(world.lock_path))
    out = capsys.readouterr().out
    assert "$ git -C" in out and "custom_nodes/comfy-runpod: linked (link of custom_node/)" in out
    # The lock's pins were recorded against the fake project; the task reads the real pyproject.
    digest = lock_digest(load_lock(world.lock_path), project_requirements(tasks.REPO / "pyproject.toml"))
    world.lock_path.parent.joinpath("requirements.lock.txt").write_text(
        render_pins("", digest=digest, python=PYTHON, lock_name="x")
    )
    doctor = {
        "dir": install,
        "venv": str(world.root / "venv"),
        "lock": str(world.lock_path),
        "packages": False,
    }
    tasks.doctor(Context(), **doctor)
    assert "no drift: " in capsys.readouterr().out
    (world.layout.comfyui / "main.py").write_text("# edited\n")
    with pytest.raises(Exit) as caught:
        tasks.doctor(Context(), **doctor)
    assert "drift: comfyui: 1 tracked file(s) changed locally" in capsys.readouterr().out
    assert caught.value.code == 1

    with pytest.raises(Exit) as caught:
        tasks.setup(
            Context(), dir=install, packages=False, mirror=["no-equals-sign"], lock=str(world.lock_path)
        )
    assert caught.value.code == 2 and "expected URL=PATH or URL=URL" in str(caught.value.message)
    assert "\n" not in str(caught.value.message)

    tasks.launch(Context(), dir=install, venv=str(Path(sys.executable).parents[1]), lock=str(world.lock_path),
                 input=str(world.root / "in"), port="8199", dry_run=True)  # fmt: skip
    out = capsys.readouterr().out
    assert f"--input-directory {world.root / 'in'}" in out and "--port 8199" in out
    with pytest.raises(Exit) as caught:
        tasks.launch(Context(), dir=install, port="http", dry_run=True)
    assert caught.value.code == 2 and "is not a port number" in str(caught.value.message)
