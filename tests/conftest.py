"""Shared fixtures: a clean environment, the ComfyUI stand-in, a worker attached to it, S3."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _pytest.terminal import TerminalReporter
from hypothesis import settings as hypothesis_settings

from comfyui_standin import StandinComfyUI
from handler.environment import VARIABLES
from handler.settings import Settings
from handler.supervisor import AttachedComfyUI
from handler.worker import Worker
from local_endpoint.endpoint import LocalEndpoint
from tasks.s3_servers import MISSING_WEED, WEED, seaweedfs

# The infra tests' fixtures (the RunPod emulator, providers as the engine loads them, Pulumi's mocks).
pytest_plugins = ("tests.infra_support",)

# CI explores the same examples every run (a red CI must be reproducible); locally they vary.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

# Removed for each test so the developer's shell cannot leak in: every variable of the worker's table,
# and the prefixes of the runpod SDK's and the stand-in's own variables.
WORKER_ENV_PREFIXES = ("RUNPOD_", "STANDIN_")
WORKER_ENV_NAMES = frozenset(var.name for var in VARIABLES)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for name in list(os.environ):
        if name.startswith(WORKER_ENV_PREFIXES) or name in WORKER_ENV_NAMES:
            monkeypatch.delenv(name)
    # The local endpoint's key files (custom_node.local_key): never the developer's own.
    monkeypatch.setenv("COMFY_RUNPOD_STATE", str(tmp_path_factory.getbasetemp() / "comfy-runpod-state"))


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[StandinComfyUI]:
    """An in-process ComfyUI stand-in with one checkpoint and one LoRA on its 'volume'."""
    server = StandinComfyUI(
        tmp_path / "comfyui",
        models={
            "checkpoints": ["sd15.safetensors", "sdxl/base.safetensors"],
            "loras": ["detail.safetensors"],
        },
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def attach_env(server: StandinComfyUI, **extra: Any) -> dict[str, str]:
    """The environment of a worker attached to ``server``."""
    env = {
        "COMFYUI_URL": server.url,
        "COMFYUI_INPUT_DIR": str(server.input_dir),
        "COMFYUI_OUTPUT_DIR": str(server.output_dir),
        "COMFYUI_TEMP_DIR": str(server.temp_dir),
        "HEALTH_CHECK_INTERVAL": "0.2",
        "COMFYUI_STARTUP_TIMEOUT": "10",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def make_worker(server: StandinComfyUI, **extra: Any) -> Worker:
    settings = Settings.from_env(attach_env(server, **extra))
    return Worker(settings, AttachedComfyUI(settings))


@pytest.fixture
def worker(standin: StandinComfyUI) -> Worker:
    return make_worker(standin)


# Every S3 test runs against moto and, once `uv run invoke dev-tools` built it, SeaweedFS.
S3_SERVERS = ("moto", "seaweedfs") if WEED.exists() else ("moto",)


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    if "seaweedfs" not in S3_SERVERS:
        terminalreporter.write_line(f"S3 tests ran against moto only: {MISSING_WEED}")


@pytest.fixture(scope="session", params=S3_SERVERS)
def s3_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A real S3 server on loopback (moto in server mode, or SeaweedFS's gateway); yields its URL."""
    if request.param == "seaweedfs":
        with seaweedfs() as url:
            yield url
        return
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


# One ComfyUI stand-in and one local endpoint with a real worker attached to it, per test
# module: starting a worker costs ~3 s (import runpod).
@pytest.fixture(scope="module")
def comfy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandinComfyUI]:
    with StandinComfyUI(tmp_path_factory.mktemp("comfy") / "ComfyUI") as server:
        yield server


@pytest.fixture(scope="module")
def endpoint(comfy: StandinComfyUI) -> Iterator[LocalEndpoint]:
    from tests.local_endpoint_fixtures import running_endpoint

    with running_endpoint(workers=1, worker_env=attach_env(comfy)) as ep:
        yield ep
