"""Pulumi.yaml and Pulumi.dev.yaml, checked without the Pulumi CLI.

The JSON schema is Pulumi's own (copied in tests/fixtures/pulumi/); the rules after it are the ones only the
Go ``Project.Validate()`` and the stack loader enforce (shared pulumi notes, section 1), re-stated here
so a broken project file fails in CI rather than at the first `pulumi up`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "tests" / "fixtures" / "pulumi" / "project.schema.json").read_text())
TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "boolean": bool,
    "array": list,
    "object": dict,
}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return data


def test_the_project_file_validates_against_pulumis_schema() -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(load("Pulumi.yaml"))


def test_the_schema_check_is_real() -> None:
    broken = load("Pulumi.yaml") | {"backend": {"url": "file://x", "extra": 1}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(broken)


def test_runtime_is_python_with_uv_and_no_main() -> None:
    project = load("Pulumi.yaml")
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["toolchain"] == "uv"
    # pulumi #7061: with `main: infra/` the dynamic-provider process would look for infra/.venv.
    assert "main" not in project
    assert project["backend"]["url"].startswith("file://")


def test_config_declarations_follow_the_go_rules() -> None:
    config = load("Pulumi.yaml")["config"]
    for key, decl in config.items():
        assert ":" not in key, "keys of other namespaces must use `value`, not declarations"
        assert decl.get("description"), f"{key} needs a description"
        assert not ("default" in decl and "value" in decl)
        if decl["type"] == "array":
            assert "items" in decl
        if "default" in decl:
            value = decl["default"]
            assert isinstance(value, TYPES[decl["type"]]) and not (
                decl["type"] == "integer" and isinstance(value, bool)
            ), f"{key}: default does not match its type"
    assert config["runpodApiKey"]["secret"] is True
    assert "default" not in config["runpodApiKey"]


def test_the_dev_stack_matches_the_declarations_and_holds_no_plaintext_secret() -> None:
    project = load("Pulumi.yaml")
    declared = project["config"]
    stack = load("Pulumi.dev.yaml")
    for key, value in (stack.get("config") or {}).items():
        namespace, _, name = key.partition(":")
        assert namespace == project["name"], f"{key}: stack keys are <project>:<key>"
        assert name in declared, f"{key} is not declared in Pulumi.yaml"
        if declared[name].get("secret"):
            assert isinstance(value, dict) and "secure" in value, f"{key} must be encrypted"
        else:
            assert isinstance(value, TYPES[declared[name]["type"]])
