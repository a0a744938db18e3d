"""The worker's environment table (handler/environment.py): every problem at once, no value quoted, the
README's configuration table made from it, and the same table guarding a deployment's templateEnv."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

import tasks.docs
from handler.environment import VARIABLES, Env, Problem, SettingsError, Var
from handler.settings import Settings

SECRET = "sk-live-0123456789abcdef"


def test_every_bad_variable_is_reported_at_once_without_its_value() -> None:
    env = {
        "COMFYUI_PORT": f"port-{SECRET}",
        "EXECUTION_TIMEOUT": "soon",
        "OUTPUT_MODE": "ftp",
        "ALLOW_PRIVATE_INPUT_URLS": "maybe",
        "COMFYUI_TEMP_DIR": "/tmp/x",
        "COMFY_RUNPOD_LOG_LEVEL": "loud",
        "BUCKET_ENDPOINT_URL": "http://s3",
        "BUCKET_SECRET_ACCESS_KEY": SECRET,
    }
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    problems = info.value.problems
    assert all(isinstance(p, Problem) for p in problems)
    assert [p.variable for p in problems] == [
        "COMFYUI_PORT",
        "COMFYUI_TEMP_DIR",
        "BUCKET_ENDPOINT_URL",
        "EXECUTION_TIMEOUT",
        "ALLOW_PRIVATE_INPUT_URLS",
        "OUTPUT_MODE",
        "COMFY_RUNPOD_LOG_LEVEL",
    ]
    assert problems[0] == (
        "COMFYUI_PORT",
        "must be a port number (1..65535); correct it, or unset it for the default (8188)",
    )
    assert "BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY and BUCKET_NAME must be set" in problems[2].message
    for value in env.values():
        assert value not in str(info.value), value


@pytest.mark.parametrize("v", VARIABLES, ids=lambda v: v.name)
def test_each_variable_names_itself_and_takes_its_default_back(v: Var[Any]) -> None:
    assert v.name and v.doc and v.kind.what
    assert v.parse({}) == v.default
    assert v.parse({v.name: "  "}) == v.default  # blank is unset
    if v.default not in (None, "", ()):
        shown = str(v.default).lower() if isinstance(v.default, bool) else v.shown
        assert v.parse({v.name: shown}) == v.default


def test_a_new_variable_is_read_and_checked_from_its_table_line_alone() -> None:
    # Settings.from_env checks every variable of the table, also those no code has read yet.
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"COMFY_RUNPOD_LOG_LEVEL": "chatty"})
    assert [p.variable for p in info.value.problems] == ["COMFY_RUNPOD_LOG_LEVEL"]
    assert Settings.from_env({"COMFY_RUNPOD_LOG_LEVEL": "debug"}).comfyui_url is None


def test_secret_variables_are_redacted_when_set() -> None:
    settings = Settings.from_env({"RUNPOD_AI_API_KEY": SECRET, "BUCKET_ACCESS_KEY_ID": "AKIA0123"})
    assert set(settings.secrets) == {SECRET, "AKIA0123"}
    assert {v.name for v in VARIABLES if v.secret} >= {"BUCKET_SECRET_ACCESS_KEY", "RUNPOD_API_KEY"}
    assert Env.BUCKET_SECRET_ACCESS_KEY.secret and not Env.BUCKET_NAME.secret


def test_the_readme_table_is_the_table() -> None:
    readme = tasks.docs.README.read_text(encoding="utf-8")
    assert tasks.docs.with_worker_env_table(readme) == readme, "run `uv run invoke readme`"
    block = readme.split(tasks.docs.BEGIN)[1].split(tasks.docs.END)[0]
    assert [line.split("`")[1] for line in block.strip().splitlines()[2:]] == [v.name for v in VARIABLES]


def test_invoke_readme_rewrites_a_stale_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = tmp_path / "README.md"
    current = tasks.docs.README.read_text(encoding="utf-8")
    readme.write_text(current.replace("| `EXECUTION_TIMEOUT` |", "| `EXEC_TIMEOUT` |"), encoding="utf-8")
    monkeypatch.setattr(tasks.docs, "README", readme)
    with pytest.raises(Exit) as info:
        tasks.docs.readme(Context(), check=True)
    assert "out of date" in str(info.value.message)
    tasks.docs.readme(Context())
    assert readme.read_text(encoding="utf-8") == current
