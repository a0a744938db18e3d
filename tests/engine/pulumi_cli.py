"""The real Pulumi CLI on the project's own Pulumi.yaml and program, against the RunPod emulator.

Black-box on purpose: tests drive ``pulumi`` as a user does (file backend in a temp dir, passphrase
secrets, the API key only in stack config) and look at what a user can see: the CLI's output, stack
outputs, ``pulumi stack export``, and the emulated RunPod account. The binaries come from
``uv run invoke dev-tools`` (.tools/bin/); this module never builds anything.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.devtools import DYNAMIC_PROVIDER, TOOLS_BIN
from tests.infra_support import Backend

REPO = Path(__file__).resolve().parents[2]
ENGINE_TOOLS = ("pulumi", "pulumi-language-python", DYNAMIC_PROVIDER)
MISSING_TOOLS = "the Pulumi CLI is not built here: run `uv run invoke dev-tools` (it builds into .tools/bin/)"
IMAGE = "ghcr.io/example/comfy-runpod@sha256:" + "a" * 64
NEW_IMAGE = "ghcr.io/example/comfy-runpod@sha256:" + "b" * 64
COMMAND_TIMEOUT_S = 300
# Where a provider would reach an API no emulator serves in this run: a loopback port nothing listens on (a
# connection refused, never api.runpod.io). Both URLs are always set; the backend's points at its emulator.
NOWHERE = {"RUNPOD_GRAPHQL_URL": "http://127.0.0.1:1/graphql", "RUNPOD_REST_URL": "http://127.0.0.1:1"}


def tools_missing() -> bool:
    return not all((TOOLS_BIN / name).exists() for name in ENGINE_TOOLS)


@dataclass
class PulumiStack:
    """One stack of the project in its own state directory; ``run`` is ``pulumi ARGS`` in the repo root.

    ``backend``: the emulated RunPod account and the API the providers reach it by (stack config
    ``runpodApi``); a test switching the stack's transport replaces it."""

    home: Path
    backend: Backend
    name: str = field(default_factory=lambda: "engine-" + secrets.token_hex(4))
    outputs: list[str] = field(default_factory=list)  # every command's stdout+stderr, for the secret checks

    @property
    def config_file(self) -> Path:
        return self.home / f"Pulumi.{self.name}.yaml"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "PULUMI_"))}
        env.update(
            PATH=f"{TOOLS_BIN}:{REPO / '.venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
            PULUMI_HOME=str(self.home / "pulumi-home"),
            PULUMI_BACKEND_URL=f"file://{self.home / 'state'}",
            PULUMI_CONFIG_PASSPHRASE="engine-test-passphrase",
            PULUMI_SKIP_UPDATE_CHECK="true",
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
            PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK="true",
            RUNPOD_GRAPHQL_BACKOFF_S="0",
            RUNPOD_REST_BACKOFF_S="0",
            NO_COLOR="1",
        )
        return env | NOWHERE | self.backend.env

    def command(self, *args: str) -> list[str]:
        argv = [str(TOOLS_BIN / "pulumi"), *args, "--non-interactive", "--color", "never"]
        if args[0] in ("config", "preview", "up", "refresh", "destroy"):
            argv += ["--config-file", str(self.config_file)]
        if args[:2] != ("stack", "init"):
            argv += ["--stack", self.name]
        return argv

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(*args),
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        self.outputs.append(done.stdout + done.stderr)
        if check and done.returncode != 0:
            command = " ".join(args)
            output = f"{done.stdout}\n{done.stderr}"
            raise AssertionError(f"pulumi {command} failed ({done.returncode}):\n{output}")
        return done

    def start(self, *args: str) -> subprocess.Popen[str]:
        """``pulumi ARGS`` in the background, in its own process group (a test may kill it whole)."""
        return subprocess.Popen(
            self.command(*args),
            cwd=REPO,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    @staticmethod
    def kill(process: subprocess.Popen[str]) -> None:
        """SIGKILL the engine and everything it started (language host, program, providers)."""
        os.killpg(process.pid, signal.SIGKILL)

    def init(self, api_key: str, **config: str) -> None:
        """``pulumi stack init`` and the config a user sets: the key only as a secret, a pinned image; over
        GraphQL ``runpodApi: graphql`` (REST is the default a new stack gets, so it is left unset)."""
        (self.home / "state").mkdir(exist_ok=True)
        # `stack init` writes the stack file (the passphrase's salt) next to Pulumi.yaml, as for a user; the
        # tests keep it in their temp dir (every other command gets --config-file), not in the checkout.
        written = REPO / f"Pulumi.{self.name}.yaml"
        try:
            self.run("stack", "init", self.name, "--secrets-provider", "passphrase")
        finally:
            if written.exists():
                shutil.move(written, self.config_file)
        self.run("config", "set", "--secret", "runpodApiKey", api_key)
        if not self.backend.rest:
            config = {"runpodApi": "graphql", **config}
        self.set(imageRef=IMAGE, **config)

    def set(self, **config: str) -> None:
        for key, value in config.items():
            self.run("config", "set", key, value)

    def outputs_json(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.run("stack", "output", "--json").stdout)
        return result

    def export(self) -> str:
        return self.run("stack", "export").stdout

    def last_changes(self) -> dict[str, int]:
        """The resource changes of the newest update/refresh/destroy, as ``pulumi stack history`` has them."""
        history = json.loads(self.run("stack", "history", "--json").stdout)
        changes: dict[str, int] = history[0]["resourceChanges"]
        return changes

    def state_files(self) -> list[Path]:
        return [p for p in (self.home / "state").rglob("*") if p.is_file()]
