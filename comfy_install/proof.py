"""The build-time proof: ComfyUI starts, and every locked node pack imports.

``main.py --quick-test-for-ci`` initialises ComfyUI (built-in nodes, custom nodes, the server)
and exits 0 even when node packs fail to import: ComfyUI only logs ``(IMPORT FAILED)``. So the
proof reads that log: each locked pack must be listed as imported, and nothing may have failed
(a built-in node that does not import is also a worker that cannot run what a local install
can). The image build runs it and fails with the reasons; standard library only, because the
build runs it before anything else is installed.

The log lines it reads (ComfyUI 0.3.64, ``nodes.py``)::

    Cannot import /opt/comfyui/custom_nodes/broken module for custom nodes: boom
    Import times for custom nodes:
       0.0 seconds: /opt/comfyui/custom_nodes/websocket_image_save.py
       0.0 seconds (IMPORT FAILED): /opt/comfyui/custom_nodes/broken
    IMPORT FAILED: nodes_video.py
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_TIMING = re.compile(r"^\s*[0-9.]+ seconds(?P<failed> \(IMPORT FAILED\))?: (?P<path>.+?)\s*$")
_BUILTIN = re.compile(r"^IMPORT FAILED: (?P<name>\S+)\s*$")
_REASON = re.compile(r"^Cannot import (?P<path>.+?) module for custom nodes: (?P<reason>.*)$")


@dataclass(frozen=True)
class ImportReport:
    """What a ComfyUI start log says about node imports (entries by folder or file name)."""

    imported: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    builtin_failed: tuple[str, ...] = ()
    reasons: dict[str, str] = field(default_factory=dict)


def parse_startup_log(text: str) -> ImportReport:
    """Read the custom-node import table and the built-in ``IMPORT FAILED`` lines of a start log."""
    imported: list[str] = []
    failed: list[str] = []
    builtin: list[str] = []
    reasons: dict[str, str] = {}
    for line in text.splitlines():
        if match := _TIMING.match(line):
            name = Path(match.group("path")).name
            (failed if match.group("failed") else imported).append(name)
        elif match := _BUILTIN.match(line.strip()):
            builtin.append(match.group("name"))
        elif match := _REASON.match(line.strip()):
            reasons[Path(match.group("path")).name] = match.group("reason")
    return ImportReport(tuple(imported), tuple(failed), tuple(builtin), reasons)


def proof_problems(report: ImportReport, packs: Iterable[str], returncode: int = 0) -> list[str]:
    """Every reason the start does not prove the install; empty when it does."""
    problems: list[str] = []
    if returncode != 0:
        problems.append(f"ComfyUI exited with {returncode} during --quick-test-for-ci")
    for name in packs:
        if name in report.failed:
            reason = report.reasons.get(name, "see the log above")
            problems.append(f"custom node pack {name} failed to import: {reason}")
        elif name not in report.imported:
            problems.append(f"custom node pack {name} was not loaded (is custom_nodes/{name} there?)")
    for name in report.failed:
        if name not in packs:
            problems.append(f"custom node {name} failed to import: {report.reasons.get(name, 'see the log')}")
    problems += [f"built-in node module {name} failed to import" for name in report.builtin_failed]
    return problems


def quick_test_command(python: str, scratch: Path, extra_model_paths: Path | None = None) -> list[str]:
    """ComfyUI's self-test start, on CPU, with every folder it writes placed in ``scratch``."""
    cmd = [python, "main.py", "--cpu", "--quick-test-for-ci", "--disable-auto-launch",
           "--user-directory", str(scratch / "user"), "--temp-directory", str(scratch),
           "--input-directory", str(scratch / "input"), "--output-directory", str(scratch / "output"),
           "--database-url", "sqlite:///:memory:"]  # fmt: skip
    if extra_model_paths is not None:
        cmd += ["--extra-model-paths-config", str(extra_model_paths)]
    return cmd


def run_proof(
    comfyui: Path, packs: Sequence[str], *, python: str, scratch: Path, extra_model_paths: Path | None = None
) -> tuple[list[str], str]:
    """Start ComfyUI once in self-test mode; returns (problems, the start log)."""
    for folder in ("user", "input", "output"):
        (scratch / folder).mkdir(parents=True, exist_ok=True)  # ComfyUI needs them; nodes_video too
    done = subprocess.run(
        quick_test_command(python, scratch, extra_model_paths),
        cwd=comfyui,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    log = done.stdout or ""
    return proof_problems(parse_startup_log(log), packs, done.returncode), log
