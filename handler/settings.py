"""Worker configuration, read once from the environment at startup.

Only the standard library is imported here: the worker builds the settings before its heavy
imports (``runpod``, ``aiohttp``). ComfyUI's own launch parameters live in ``launch``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from handler.environment import Env, Reader, SettingsError
from handler.launch import LaunchSpec

__all__ = ["S3Target", "Settings", "SettingsError"]


@dataclass(frozen=True)
class S3Target:
    """An S3-compatible bucket for outputs: the worker's (``BUCKET_*``) or a request's own."""

    endpoint_url: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    bucket: str
    region: str | None = None
    prefix: str = "comfy-runpod"

    def secrets(self) -> tuple[str, ...]:
        return (self.access_key_id, self.secret_access_key)


@dataclass(frozen=True)
class Settings:
    """Everything the worker reads from its environment (see README, "Configuration")."""

    # Where ComfyUI is: a URL to attach to, or a directory to start it from.
    comfyui_url: str | None
    launch: LaunchSpec = field(repr=False)
    comfyui_dir: Path
    host: str
    port: int
    input_dir: Path | None
    output_dir: Path | None
    temp_dir: Path | None
    # Timing.
    startup_timeout_s: float
    ready_poll_s: float
    health_check_interval_s: float
    execution_timeout_s: float
    interrupt_grace_s: float
    cleanup_age_s: float
    progress_interval_s: float
    # Restart policy.
    max_restarts: int
    restart_backoff_s: float
    # Inputs and outputs.
    max_input_bytes: int
    url_timeout_s: float
    allow_private_urls: bool
    auto_threshold_bytes: int
    output_mode: str
    bucket: S3Target | None
    bucket_url_expiry_s: int
    log_tail_lines: int
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def attach(self) -> bool:
        """True when the worker uses an already running ComfyUI and spawns nothing."""
        return self.comfyui_url is not None

    @property
    def base_url(self) -> str:
        if self.comfyui_url:
            return self.comfyui_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    def comfyui_command(self) -> list[str]:
        """The ComfyUI command line of spawn mode (run with ``cwd=comfyui_dir``)."""
        return self.launch.command()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build the settings from ``env`` (default ``os.environ``).

        Raises SettingsError naming every unusable variable (``handler.environment.Env`` is the table).
        """
        read = Reader(os.environ if env is None else env)
        url = read(Env.COMFYUI_URL)
        launch = LaunchSpec(read, attach=url is not None)

        def path(value: str | None) -> Path | None:
            return Path(value) if value else None

        bucket = None
        if read(Env.BUCKET_ENDPOINT_URL) is not None:
            key_id, secret = read(Env.BUCKET_ACCESS_KEY_ID), read(Env.BUCKET_SECRET_ACCESS_KEY)
            name = read(Env.BUCKET_NAME)
            if key_id and secret and name:
                bucket = S3Target(
                    endpoint_url=read(Env.BUCKET_ENDPOINT_URL) or "",
                    access_key_id=key_id,
                    secret_access_key=secret,
                    bucket=name,
                    region=read(Env.BUCKET_REGION),
                    prefix=read(Env.BUCKET_PREFIX),
                )
            else:
                read.refuse(
                    Env.BUCKET_ENDPOINT_URL.name,
                    "is set, so BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY and BUCKET_NAME "
                    "must be set too",
                )
        settings = cls(
            comfyui_url=url,
            launch=launch,
            comfyui_dir=Path(launch.comfyui_dir),
            host=launch.host,
            port=launch.port,
            input_dir=path(launch.input_dir),
            output_dir=path(launch.output_dir),
            temp_dir=path(launch.temp_dir),
            startup_timeout_s=read(Env.COMFYUI_STARTUP_TIMEOUT),
            ready_poll_s=read(Env.COMFYUI_READY_POLL),
            health_check_interval_s=read(Env.HEALTH_CHECK_INTERVAL),
            execution_timeout_s=read(Env.EXECUTION_TIMEOUT),
            interrupt_grace_s=read(Env.INTERRUPT_GRACE),
            cleanup_age_s=read(Env.CLEANUP_AGE),
            progress_interval_s=read(Env.PROGRESS_INTERVAL),
            max_restarts=read(Env.MAX_RESTARTS),
            restart_backoff_s=read(Env.RESTART_BACKOFF),
            max_input_bytes=read(Env.MAX_INPUT_BYTES),
            url_timeout_s=read(Env.INPUT_URL_TIMEOUT),
            allow_private_urls=read(Env.ALLOW_PRIVATE_INPUT_URLS),
            auto_threshold_bytes=read(Env.OUTPUT_AUTO_THRESHOLD),
            output_mode=read(Env.OUTPUT_MODE),
            bucket=bucket,
            bucket_url_expiry_s=read(Env.BUCKET_URL_EXPIRY),
            log_tail_lines=read(Env.COMFYUI_LOG_TAIL),
            secrets=tuple(s for s in read.secrets() if len(s) >= 4),
        )
        read.check()
        return settings
