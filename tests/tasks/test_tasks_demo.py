"""``invoke demo``, the README's first command, run as a user runs it (``python -m invoke demo``).

ComfyUI is started by the worker's own supervisor: ``--standin`` picks the ComfyUI stand-in
even where a local install exists, and a local install that fails to start ends the demo
with that ComfyUI's own output, so the user sees why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import run_in_repo

# A local install (``invoke setup``) that cannot start: it prints why and exits, like a
# ComfyUI missing torch.
BROKEN_MAIN_PY = """\
import sys
print("Traceback (most recent call last):", file=sys.stderr)
print("ModuleNotFoundError: No module named 'torch' (broken local ComfyUI)", file=sys.stderr)
sys.exit(3)
"""


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return run_in_repo([sys.executable, "-m", "invoke", "demo", *args], os.environ, timeout=300)


def broken_local_install(tmp_path: Path) -> Path:
    local = tmp_path / "comfyui"
    local.mkdir()
    (local / "main.py").write_text(BROKEN_MAIN_PY, encoding="utf-8")
    return local


def test_demo_standin_runs_the_sample_on_the_standin_even_with_a_local_install(tmp_path: Path) -> None:
    local = broken_local_install(tmp_path)
    out = tmp_path / "outputs"

    done = demo("--standin", "--dir", str(local), "--out", str(out))

    assert done.returncode == 0, done.stderr
    assert "starting the ComfyUI stand-in" in done.stderr
    assert "broken local ComfyUI" not in done.stdout + done.stderr
    saved = list(out.glob("*/sample/inverted_*.png"))  # outputs/<job id>/<subfolder>/<file>
    assert len(saved) == 1, f"{saved}\n{done.stdout}\n{done.stderr}"
    assert saved[0].read_bytes().startswith(b"\x89PNG")


def test_demo_shows_why_the_local_comfyui_did_not_start(tmp_path: Path) -> None:
    local = broken_local_install(tmp_path)

    done = demo("--dir", str(local), "--out", str(tmp_path / "outputs"))

    assert done.returncode == 1
    assert f"starting the local ComfyUI ({local}" in done.stderr
    assert "ModuleNotFoundError: No module named 'torch' (broken local ComfyUI)" in done.stderr
    assert (
        f"error: the local ComfyUI in {local} did not start: it exited with code 3 while starting"
        in done.stderr
    )
    assert not (tmp_path / "outputs").exists()


def test_demo_refuses_a_dir_without_comfyui(tmp_path: Path) -> None:
    done = demo("--dir", str(tmp_path), "--out", str(tmp_path / "outputs"))

    assert done.returncode == 2
    assert f"error: --dir {tmp_path}: no ComfyUI there (no main.py)" in done.stderr
