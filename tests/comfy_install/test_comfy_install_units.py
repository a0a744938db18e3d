"""comfy_install's pure parts: argument building, path handling, mirrors, pins, proof, drift.

Each test states one rule; none touches the network, docker or the project's venv.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy_install import MirrorError, parse_lock
from comfy_install.docker import (
    ImageRef,
    build_command,
    engine_problem,
    image_ref,
    push_commands,
)
from comfy_install.drift import Checkout, InstallState, find_drift, package_drift, versions_match
from comfy_install.errors import CommandError, InstallError, WorkTreeError
from comfy_install.git import checkout_args, fetch_args, parse_ls_remote, remote_args, submodule_args
from comfy_install.launch import LaunchOptions, launch_command, local_model_paths, parse_port, split_args
from comfy_install.layout import (
    COPY_MARKER,
    Layout,
    active_copy_differences,
    install_active_node,
    link_workflows,
    stale_nodes,
    unmanaged_nodes,
    venv_python,
)
from comfy_install.mirrors import normalize_url, parse_mirror, parse_mirrors, resolve_url
from comfy_install.models import MODEL_FOLDERS, extra_model_paths_yaml, model_folder_names
from comfy_install.pins import (
    Pin,
    compile_command,
    export_command,
    install_command,
    parse_pins,
    recorded_digest,
    render_pins,
    requirements_input,
)
from comfy_install.process import Completed, command_line, run
from comfy_install.proof import parse_startup_log, proof_problems, quick_test_command

COMFY = "a125cd84b054a57729b5eecab930ca9408719832"
NODE = "f8fea4161f19997ba07515e3afc10cee67455c94"
LOCK = parse_lock(
    f"""python: "3.11"
comfyui: {{repo: https://github.com/Comfy-Org/ComfyUI, commit: {COMFY}}}
custom_nodes:
  subfolder: {{repo: https://github.com/liangt/comfyui-loadimagewithsubfolder, commit: {NODE}}}
"""
)


# ---- mirrors


def test_urls_that_name_the_same_repository_normalize_alike() -> None:
    forms = [
        "https://github.com/Comfy-Org/ComfyUI",
        "https://GitHub.com/Comfy-Org/ComfyUI.git",
        "https://github.com/Comfy-Org/ComfyUI/",
    ]
    assert {normalize_url(url) for url in forms} == {"https://github.com/Comfy-Org/ComfyUI"}


def test_exact_mirrors_beat_prefixes_and_the_longest_prefix_wins(tmp_path: Path) -> None:
    mirrors = parse_mirrors(
        [
            "https://github.com/=https://git.corp/github/",
            "https://github.com/liangt/=https://git.corp/liangt-fork/",
            f"https://github.com/Comfy-Org/ComfyUI.git={tmp_path / 'ComfyUI'}",
        ],
        env={},
    )
    assert resolve_url("https://github.com/Comfy-Org/ComfyUI", mirrors) == str(tmp_path / "ComfyUI")
    assert resolve_url("https://github.com/liangt/x", mirrors) == "https://git.corp/liangt-fork/x"
    assert resolve_url("https://github.com/other/y.git", mirrors) == "https://git.corp/github/other/y"
    assert resolve_url("https://gitlab.com/z/w", mirrors) == "https://gitlab.com/z/w"


def test_mirrors_come_from_the_flag_first_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {
        "COMFY_RUNPOD_MIRRORS": "https://a/x=https://env/x ; https://b/y=https://env/y\nhttps://c/z=https://env/z"
    }
    mirrors = parse_mirrors(["https://a/x=https://flag/x"], env=env)
    assert resolve_url("https://a/x", mirrors) == "https://flag/x"
    assert resolve_url("https://b/y", mirrors) == "https://env/y"
    assert resolve_url("https://c/z", mirrors) == "https://env/z"
    monkeypatch.chdir(tmp_path)
    relative = parse_mirrors(["https://a/x=mirrors/x"], env={})
    assert resolve_url("https://a/x", relative) == str(tmp_path / "mirrors" / "x")
    assert (
        resolve_url("https://a/x", parse_mirrors(["https://a/x=git@host:x.git"], env={})) == "git@host:x.git"
    )


@pytest.mark.parametrize("spec", ["https://a/x", "=path", "https://a/x=", "https://a/x=--upload-pack=evil"])
def test_a_malformed_mirror_is_refused_with_the_expected_form(spec: str) -> None:
    with pytest.raises(MirrorError) as caught:
        parse_mirror(spec)
    assert spec.strip() in str(caught.value) or "'-'" in str(caught.value)


# ---- git command lines


def test_git_command_lines_fetch_one_commit_shallow_and_check_it_out_detached(tmp_path: Path) -> None:
    dest = tmp_path / "ComfyUI"
    assert fetch_args(dest, COMFY) == [
        "git",
        "-C",
        str(dest),
        "fetch",
        "--quiet",
        "--depth",
        "1",
        "origin",
        COMFY,
    ]
    assert fetch_args(dest, COMFY, shallow=False)[-3:] == [
        "--tags",
        "origin",
        "+refs/heads/*:refs/remotes/origin/*",
    ]
    assert checkout_args(dest, COMFY) == ["git", "-C", str(dest), "checkout", "--quiet", "--detach", COMFY]
    assert "--force" in checkout_args(dest, COMFY, force=True)
    assert remote_args(dest, "/m", exists=False)[3:] == ["remote", "add", "origin", "/m"]
    assert remote_args(dest, "/m", exists=True)[3:] == ["remote", "set-url", "origin", "/m"]
    assert submodule_args(dest)[3:6] == ["submodule", "update", "--quiet"]


def test_ls_remote_prefers_exact_names_and_peeled_tags() -> None:
    output = (
        f"{'1' * 40}\trefs/heads/feature/main\n"
        f"{'2' * 40}\trefs/heads/main\n"
        f"{'3' * 40}\trefs/tags/v1\n"
        f"{'4' * 40}\trefs/tags/v1^{{}}\n"
        f"{'5' * 40}\tHEAD\n"
    )
    assert parse_ls_remote(output, "main") == "2" * 40
    assert parse_ls_remote(output, "v1") == "4" * 40
    assert parse_ls_remote(output, "HEAD") == "5" * 40
    assert parse_ls_remote(output, "nope") is None


# ---- running commands


def test_a_failed_command_reports_its_line_exit_code_and_last_output(tmp_path: Path) -> None:
    script = (
        "import sys; print('detail one', file=sys.stderr); print('the reason', file=sys.stderr); sys.exit(3)"
    )
    with pytest.raises(CommandError) as caught:
        run(["python3", "-c", script], hint="what to do")
    message = str(caught.value)
    assert "failed (exit 3): the reason; what to do" in message
    missing = run(["no-such-tool-xyz"], check=False)
    assert missing.returncode == 127 and "not installed" in missing.stderr
    echoed: list[str] = []
    run(["true"], cwd=tmp_path, echo=echoed.append)
    assert echoed == [f"$ (cd {tmp_path} && true)"]
    assert command_line(["echo", "a b"]) == "echo 'a b'"


# ---- pins


PINS = """\
# header
# lock-digest: sha256:abc
numpy==2.4.6 ; python_full_version < '3.12'
numpy==2.5.5 ; python_full_version >= '3.12'
Pillow==13.0.0
torch==2.15.0
nvidia-cudnn-cu13==9.26.0.51 ; sys_platform == 'linux'
ruamel.yaml==0.18.0
uvicorn[standard]==0.30.0
--index-url https://example.com/simple
"""


def test_pins_are_parsed_with_canonical_names_and_markers() -> None:
    pins = parse_pins(PINS)
    assert Pin("pillow", "13.0.0") in pins
    assert Pin("ruamel-yaml", "0.18.0") in pins
    assert Pin("uvicorn", "0.30.0") in pins
    assert Pin("numpy", "2.5.5", "python_full_version >= '3.12'") in pins
    assert recorded_digest(PINS) == "sha256:abc"
    assert recorded_digest("torch==2.0\n# lock-digest: sha256:late\n") is None


def test_rendered_pins_carry_the_digest_and_drop_blank_lines() -> None:
    text = render_pins(
        "a==1\n\nb==2\n", digest="sha256:d", python="3.11", lock_name="image/comfyui.lock.yaml"
    )
    assert recorded_digest(text) == "sha256:d"
    assert text.endswith("a==1\nb==2\n")
    assert "`uv run invoke lock-update` from image/comfyui.lock.yaml" in text


def test_uv_command_lines(tmp_path: Path) -> None:
    compile_ = compile_command(
        [tmp_path / "in.txt"], tmp_path / "out.txt", python="3.11", overrides=tmp_path / "o.txt",
        constraints=tmp_path / "c.txt", upgrade=True, index_args=["--offline"],
    )  # fmt: skip
    assert compile_[:4] == ["uv", "pip", "compile", str(tmp_path / "in.txt")]
    for flag in ("--universal", "--no-header", "--no-annotate", "--upgrade", "--offline"):
        assert flag in compile_
    assert compile_[compile_.index("--python-version") + 1] == "3.11"
    assert compile_[compile_.index("--override") + 1] == str(tmp_path / "o.txt")
    assert compile_[compile_.index("--constraint") + 1] == str(tmp_path / "c.txt")
    assert "--upgrade" not in compile_command([tmp_path / "in"], tmp_path / "out", python="3.11")
    install = install_command(tmp_path / "pins.txt", tmp_path / "venv/bin/python")
    assert install == ["uv", "pip", "install", "--python", str(tmp_path / "venv/bin/python"),
                       "--requirements", str(tmp_path / "pins.txt")]  # fmt: skip
    export = export_command(tmp_path, tmp_path / "c.txt")
    assert {"--frozen", "--all-groups", "--no-emit-project", "--no-hashes"} <= set(export)


def test_the_compile_input_names_where_each_requirement_comes_from() -> None:
    text = requirements_input(
        (COMFY, "torch\n# comment\nnumpy>=1.25.0  # inline\n\n"),
        [("subfolder", None, ()), ("other", "onnx\n", ("extra-dep>=1",))],
        ["requests"],
        ["runpod==1.12.0"],
    )
    lines = text.splitlines()
    assert lines[0] == f"# ComfyUI {COMFY[:12]} requirements.txt"
    assert lines[1:3] == ["torch", "numpy>=1.25.0"]
    assert "# custom node other: pip (lock)" in lines and "extra-dep>=1" in lines
    assert lines[-2:] == ["# pyproject.toml [project].dependencies (the worker handler)", "runpod==1.12.0"]


# ---- docker


def test_the_image_reference_comes_from_flags_then_environment_then_defaults() -> None:
    assert image_ref({}, default_tag="abc").local == "comfy-runpod:abc"
    env = {"DOCKER_REGISTRY": "ghcr.io/me/", "DOCKER_IMAGE": "worker", "DOCKER_TAG": "v1"}
    ref = image_ref(env)
    assert (ref.local, ref.remote) == ("worker:v1", "ghcr.io/me/worker:v1")
    ref = image_ref(env, tag="v2", registry="docker.io/you")
    assert ref.remote == "docker.io/you/worker:v2"


@pytest.mark.parametrize(
    ("env", "kwargs", "message"),
    [
        ({"DOCKER_IMAGE": "Worker"}, {}, "not an image name"),
        ({}, {"tag": "has space"}, "not a docker tag"),
        ({}, {"registry": "https://ghcr.io/me"}, "drop the scheme"),
        ({"DOCKER_REGISTRY": "ghcr.io/me me"}, {}, "not a registry host"),
    ],
)
def test_a_malformed_image_reference_is_refused(
    env: dict[str, str], kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(InstallError, match=message):
        image_ref(env, **kwargs)


def test_docker_command_lines(tmp_path: Path) -> None:
    ref = ImageRef("comfy-runpod", "abc", "ghcr.io/me")
    cmd = build_command(ref, dockerfile=tmp_path / "image/Dockerfile", context=tmp_path, no_cache=True)
    assert cmd == ["docker", "build", "--platform", "linux/amd64",
                   "--file", str(tmp_path / "image/Dockerfile"), "--tag", "comfy-runpod:abc",
                   "--tag", "ghcr.io/me/comfy-runpod:abc", "--no-cache", str(tmp_path)]  # fmt: skip
    assert push_commands(ref) == [
        ["docker", "tag", "comfy-runpod:abc", "ghcr.io/me/comfy-runpod:abc"],
        ["docker", "push", "ghcr.io/me/comfy-runpod:abc"],
    ]
    assert push_commands(ImageRef("me/worker", "t")) == [["docker", "push", "me/worker:t"]]
    with pytest.raises(InstallError, match=r"would go to docker\.io/library"):
        push_commands(ImageRef("comfy-runpod", "t"))


def test_no_engine_gives_one_line_with_the_reason_and_the_fix() -> None:
    refused = Completed(
        ("docker",), 1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.\n"
    )
    problem = engine_problem(refused)
    assert problem is not None and "\n" not in problem
    assert "no Docker engine is reachable (Cannot connect" in problem and "DOCKER_HOST" in problem
    assert "not installed" in (engine_problem(Completed(("docker",), 127, "", "")) or "")
    assert engine_problem(Completed(("docker",), 0, "27.3.1\n", "")) is None


# ---- launch and models


def test_launch_command_passes_folders_models_and_flags(tmp_path: Path) -> None:
    options = LaunchOptions(
        python=tmp_path / ".venv/bin/python", comfyui=tmp_path / "comfyui", input_dir=tmp_path / "in",
        output_dir=tmp_path / "out", models=tmp_path / "models", model_paths_file=tmp_path / "emp.yaml",
        host="0.0.0.0", port=8190, cpu=True,  # noqa: S104
        extra_args=split_args(["--lowvram --preview-method auto"]),
    )  # fmt: skip
    cmd = launch_command(options)
    assert cmd[:2] == [str(tmp_path / ".venv/bin/python"), "main.py"]
    assert cmd[cmd.index("--input-directory") + 1] == str(tmp_path / "in")
    assert cmd[cmd.index("--output-directory") + 1] == str(tmp_path / "out")
    assert cmd[cmd.index("--extra-model-paths-config") + 1] == str(tmp_path / "emp.yaml")
    assert cmd[-4:] == ["--cpu", "--lowvram", "--preview-method", "auto"]
    assert options.url == "http://127.0.0.1:8190"


@pytest.mark.parametrize("value", ["abc", "0", "65536", "-1", ""])
def test_a_bad_port_is_refused_in_one_line(value: str) -> None:
    with pytest.raises(InstallError, match="is not a port number"):
        parse_port(value)
    assert parse_port(" 8188 ") == 8188


# ComfyUI 0.3.64 folder_paths.py, folder_names_and_paths (custom_nodes excepted: not a model folder).
COMFYUI_0_3_64_MODEL_FOLDERS = {
    "checkpoints": ["checkpoints"], "configs": ["configs"], "loras": ["loras"], "vae": ["vae"],
    "text_encoders": ["text_encoders", "clip"], "diffusion_models": ["unet", "diffusion_models"],
    "clip_vision": ["clip_vision"], "style_models": ["style_models"], "embeddings": ["embeddings"],
    "diffusers": ["diffusers"], "vae_approx": ["vae_approx"], "controlnet": ["controlnet", "t2i_adapter"],
    "gligen": ["gligen"], "upscale_models": ["upscale_models"], "hypernetworks": ["hypernetworks"],
    "photomaker": ["photomaker"], "classifiers": ["classifiers"], "model_patches": ["model_patches"],
    "audio_encoders": ["audio_encoders"],
}  # fmt: skip


def test_every_comfyui_model_folder_is_mapped_with_its_legacy_subfolders() -> None:
    assert {key: list(dirs) for key, dirs in MODEL_FOLDERS} == COMFYUI_0_3_64_MODEL_FOLDERS
    assert "custom_nodes" not in model_folder_names()


def test_the_generated_yaml_reproduces_comfyuis_search_order_under_the_root() -> None:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(extra_model_paths_yaml("/runpod-volume/comfyui/models", header="h"))
    section = data["comfy_runpod"]
    assert section.pop("base_path") == "/runpod-volume/comfyui/models"
    assert section.pop("is_default") is True
    for key, dirs in COMFYUI_0_3_64_MODEL_FOLDERS.items():
        # ComfyUI inserts each line at the front (is_default), so the final order is the reverse.
        lines = [line.rstrip("/") for line in section[key].split("\n") if line]
        assert list(reversed(lines)) == dirs, key
    assert "base_path: /data/models" in local_model_paths(Path("/data/models"))


# ---- layout


def _extension(root: Path) -> Path:
    source = root / "custom_node"
    (source / "web").mkdir(parents=True)
    (source / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (source / "web" / "button.js").write_text("// js\n")
    return source


def test_the_active_copy_is_a_relative_link_and_relinking_is_a_no_op(tmp_path: Path) -> None:
    source = _extension(tmp_path / "repo")
    dest = Layout(tmp_path / "repo" / "comfyui").active_node
    assert install_active_node(source, dest, copy=False) == "linked"
    assert dest.is_symlink() and not dest.readlink().is_absolute()
    assert (dest / "web" / "button.js").read_text() == "// js\n"
    assert install_active_node(source, dest, copy=False) == "unchanged"


def test_copy_mode_marks_its_copy_refreshes_it_and_switches_back_to_a_link(tmp_path: Path) -> None:
    source = _extension(tmp_path)
    dest = tmp_path / "comfyui" / "custom_nodes" / "comfy-runpod"
    assert install_active_node(source, dest, copy=True) == "copied"
    assert (dest / COPY_MARKER).exists() and not dest.is_symlink()
    assert install_active_node(source, dest, copy=True) == "unchanged"
    (source / "web" / "button.js").write_text("// changed\n")
    assert active_copy_differences(source, dest) == ["web/button.js"]
    assert install_active_node(source, dest, copy=True) == "copied"
    assert active_copy_differences(source, dest) == []
    assert install_active_node(source, dest, copy=False) == "linked"


def test_a_folder_setup_did_not_make_is_never_replaced(tmp_path: Path) -> None:
    source = _extension(tmp_path)
    dest = tmp_path / "custom_nodes" / "comfy-runpod"
    dest.mkdir(parents=True)
    (dest / "mine.py").write_text("")
    with pytest.raises(WorkTreeError, match="was not installed by comfy-runpod"):
        install_active_node(source, dest, copy=False)
    assert (dest / "mine.py").exists()


def test_workflows_link_keeps_saved_workflows(tmp_path: Path) -> None:
    workflows, link = tmp_path / "workflows", tmp_path / "comfyui" / "user" / "default" / "workflows"
    link.mkdir(parents=True)
    assert link_workflows(workflows, link) == "linked"  # an empty folder is replaced
    assert link_workflows(workflows, link) == "unchanged"
    (link / "saved.json").write_text("{}")
    assert (workflows / "saved.json").exists()
    link.unlink()
    link.mkdir()
    (link / "old.json").write_text("{}")
    with pytest.raises(WorkTreeError, match="move them into"):
        link_workflows(workflows, link)
    assert (link / "old.json").exists()


def test_nodes_to_remove_and_nodes_nobody_locked(tmp_path: Path) -> None:
    assert stale_nodes(["a", "b", "comfy-runpod"], ["b"]) == ["a"]
    custom = tmp_path / "custom_nodes"
    for name in ("locked", "comfy-runpod", "extra-pack", "old.disabled", "__pycache__"):
        (custom / name).mkdir(parents=True)
    for name in ("websocket_image_save.py", "example_node.py.example", "loose.py", "notes.txt"):
        (custom / name).write_text("")
    assert unmanaged_nodes(custom, ["locked"], ["websocket_image_save.py"]) == ["extra-pack", "loose.py"]
    assert venv_python(tmp_path / ".venv").name.startswith("python")


# ---- proof (log lines as ComfyUI 0.3.64 prints them; captured from a CPU run)

FAILED_LOG = """\
Traceback (most recent call last):
  File "/opt/comfyui/custom_nodes/broken/__init__.py", line 1, in <module>
    raise ImportError("boom")
ImportError: boom

Cannot import /opt/comfyui/custom_nodes/broken module for custom nodes: boom

Import times for custom nodes:
   0.0 seconds: /opt/comfyui/custom_nodes/websocket_image_save.py
   0.0 seconds (IMPORT FAILED): /opt/comfyui/custom_nodes/broken
   0.3 seconds: /opt/comfyui/custom_nodes/comfyui-loadimagewithsubfolder

WARNING: some comfy_extras/ nodes did not import correctly. This may be because they are missing some \
dependencies.

IMPORT FAILED: nodes_video.py

This issue might be caused by new missing dependencies added the last time you updated ComfyUI.
"""


def test_the_proof_reads_comfyuis_import_table() -> None:
    report = parse_startup_log(FAILED_LOG)
    assert report.imported == ("websocket_image_save.py", "comfyui-loadimagewithsubfolder")
    assert report.failed == ("broken",)
    assert report.builtin_failed == ("nodes_video.py",)
    assert report.reasons == {"broken": "boom"}


def test_the_proof_fails_for_a_failed_or_absent_pack_and_for_builtins() -> None:
    report = parse_startup_log(FAILED_LOG)
    problems = proof_problems(report, ["broken", "comfyui-loadimagewithsubfolder", "absent"])
    assert problems == [
        "custom node pack broken failed to import: boom",
        "custom node pack absent was not loaded (is custom_nodes/absent there?)",
        "built-in node module nodes_video.py failed to import",
    ]
    ok = FAILED_LOG.replace("   0.0 seconds (IMPORT FAILED): /opt/comfyui/custom_nodes/broken\n", "")
    ok = ok.replace("IMPORT FAILED: nodes_video.py", "")
    assert proof_problems(parse_startup_log(ok), ["comfyui-loadimagewithsubfolder"]) == []
    assert proof_problems(parse_startup_log(ok), [], returncode=1) == [
        "ComfyUI exited with 1 during --quick-test-for-ci"
    ]


def test_the_proof_starts_comfyui_on_the_cpu_in_self_test_mode_outside_its_tree(tmp_path: Path) -> None:
    cmd = quick_test_command(
        "/opt/venv/bin/python", tmp_path, Path("/opt/comfy-runpod/extra_model_paths.yaml")
    )
    assert cmd[:4] == ["/opt/venv/bin/python", "main.py", "--cpu", "--quick-test-for-ci"]
    for flag in ("--user-directory", "--temp-directory", "--input-directory", "--output-directory"):
        assert cmd[cmd.index(flag) + 1].startswith(str(tmp_path))
    assert cmd[cmd.index("--database-url") + 1] == "sqlite:///:memory:"


# ---- drift (hand-made states)


HERE = Path()


def _state(**changes: object) -> InstallState:
    base: dict[str, object] = {
        "comfyui": Checkout(Path("comfyui"), COMFY),
        "nodes": {"subfolder": Checkout(Path("comfyui/custom_nodes/subfolder"), NODE)},
        "python_version": "3.11",
        "packages": {"torch": "2.15.0", "numpy": "2.4.6"},
        "pins": (Pin("torch", "2.15.0"), Pin("numpy", "2.4.6", "python_full_version < '3.12'")),
        "pins_digest": "sha256:ok",
    }
    base.update(changes)
    return InstallState(**base)  # type: ignore[arg-type]


def test_an_install_that_matches_the_lock_has_no_drift() -> None:
    assert find_drift(LOCK, _state(), "sha256:ok") == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"comfyui": Checkout(HERE, "b" * 40)}, f"comfyui: at {'b' * 12}, the lock says {COMFY[:12]}"),
        ({"comfyui": Checkout(HERE, None)}, "comfyui: not installed at ."),
        ({"comfyui": Checkout(HERE, COMFY, (" M nodes.py",))}, "comfyui: 1 tracked file(s) changed locally"),
        ({"nodes": {}}, "custom_nodes.subfolder: not installed"),
        ({"nodes": {"subfolder": Checkout(HERE, "c" * 40)}}, f"custom_nodes.subfolder: at {'c' * 12}"),
        ({"unmanaged_nodes": ("Manager",)}, "custom_nodes/Manager: installed locally but not in"),
        ({"active_node": "missing"}, "custom_nodes/comfy-runpod: the project's custom_node/ is not"),
        ({"active_node": "copy", "active_copy_differences": ("a.js",)}, "custom_nodes/comfy-runpod: the"),
        ({"workflows_linked": False}, "user/default/workflows: is not linked"),
        ({"python_version": "3.12"}, "python: the venv runs Python 3.12, the image 3.11"),
        ({"python_version": None}, "python: no virtual environment"),
        ({"pins_digest": "sha256:old"}, "requirements.lock.txt: was resolved for another version"),
        ({"packages": {"numpy": "2.4.6"}}, "packages: 1 pinned package(s) not installed: torch"),
        ({"packages": {"torch": "2.1.0", "numpy": "2.4.6"}}, "package torch: 2.1.0 installed, the pins say"),
    ],
)  # fmt: skip
def test_each_kind_of_drift_is_reported_with_its_fix(changes: dict[str, object], expected: str) -> None:
    drifts = find_drift(LOCK, _state(**changes), "sha256:ok")
    assert len(drifts) == 1, drifts
    assert str(drifts[0]).startswith(expected), str(drifts[0])
    assert "(" in str(drifts[0])  # every drift names its fix


def test_package_versions_compare_like_pep_440_equality() -> None:
    assert versions_match("2.15.0+cu130", "2.15.0")
    assert versions_match("2.0", "2.0.0")
    assert not versions_match("2.15.0+cu130", "2.15.0+cu128")
    assert not versions_match("2.15.1", "2.15.0")
    # A marker-only pin may not apply here: absent is fine, another version is not.
    pins = [Pin("nvidia-cudnn-cu13", "9.26.0.51", "sys_platform == 'linux'")]
    assert package_drift(pins, {}) == []
    assert len(package_drift(pins, {"nvidia-cudnn-cu13": "9.0"})) == 1
    forked = [
        Pin("numpy", "2.4.6", "python_full_version < '3.12'"),
        Pin("numpy", "2.5.5", "python_full_version >= '3.12'"),
    ]
    assert package_drift(forked, {"numpy": "2.5.5"}) == []
