"""The import contracts between the runtimes (``[tool.importlinter]`` in pyproject.toml).

``uv run lint-imports`` (run by ``.ci/run``) checks them; here the project is checked too, and
the one contract type written for this project (``allowed_imports``, "imports only these") is
shown to catch what it must on a small tree of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, run_in_repo

LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # tests.import_contracts, from any folder
    return run_in_repo([LINT_IMPORTS, "--no-cache"], env, cwd=cwd)


def test_the_project_keeps_its_import_contracts() -> None:
    done = lint_imports(REPO)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_allowed_imports_reports_every_import_outside_the_stdlib_itself_and_the_allowed(
    tmp_path: Path,
) -> None:
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "__init__.py").write_text("from . import views\n")
    (plugin / "views.py").write_text(
        "import json\n"
        "import aiohttp.web\n"
        "from . import helpers\n"
        "\n"
        "\n"
        "def late() -> None:\n"
        "    import requests  # a third-party package nobody forbade by name\n"
        "    from other import thing  # another package of the same project\n"
    )
    (plugin / "helpers.py").write_text("import os.path\nimport server  # ComfyUI's own module\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "__init__.py").write_text("thing = 1\n")
    (tmp_path / ".importlinter").write_text(
        "[importlinter]\n"
        "root_packages =\n    plugin\n    other\n"
        "include_external_packages = True\n"
        "contract_types =\n    allowed_imports: tests.import_contracts.AllowedImportsContract\n"
        "\n[importlinter:contract:plugin-alone]\n"
        "name = plugin works alone\n"
        "type = allowed_imports\n"
        "source_module = plugin\n"
        "allowed =\n    aiohttp\n    server\n"
    )

    done = lint_imports(tmp_path)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "plugin works alone BROKEN" in done.stdout
    reported = [line for line in done.stdout.splitlines() if line.startswith("- ")]
    assert reported == ["- plugin.views -> other (l.8)", "- plugin.views -> requests (l.7)"]
