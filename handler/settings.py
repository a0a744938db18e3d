"""Worker configuration, read once from the environment at startup.

Only the standard library is imported here: the worker builds the settings before its heavy
imports (``runpod``, ``aiohttp``). ComfyUI's own launch parameters live in ``launch``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from handler.launch import LaunchError, LaunchSpec


class SettingsError(ValueError):
    """An environment variable has a value the worker cannot use."""


def _get_float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number; set it to e.g. {default}") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} must be >= {minimum}")
    return value


def _get_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer; set it to e.g. {default}") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} must be >= {minimum}")
    return value


def _get_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if raw.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean; use true or false")


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
        """Build the settings from ``env`` (default ``os.environ``); raises SettingsError."""
        env = os.environ if env is None else env
        url = env.get("COMFYUI_URL", "").strip() or None
        try:
            launch = LaunchSpec(env, attach=url is not None)
        except LaunchError as exc:
            raise SettingsError(str(exc)) from None

        def path(value: str | None) -> Path | None:
            return Path(value) if value else None

        output_mode = env.get("OUTPUT_MODE", "auto").strip().lower() or "auto"
        if output_mode not in {"base64", "s3", "auto"}:
            raise SettingsError(f"OUTPUT_MODE={output_mode!r}: use base64, s3 or auto")

        bucket = None
        if env.get("BUCKET_ENDPOINT_URL", "").strip():
            key_id = env.get("BUCKET_ACCESS_KEY_ID", "")
            secret = env.get("BUCKET_SECRET_ACCESS_KEY", "")
            name = env.get("BUCKET_NAME", "").strip()
            if not (key_id and secret and name):
                raise SettingsError(
                    "BUCKET_ENDPOINT_URL is set, so BUCKET_ACCESS_KEY_ID, "
                    "BUCKET_SECRET_ACCESS_KEY and BUCKET_NAME must be set too"
                )
            bucket = S3Target(
                endpoint_url=env["BUCKET_ENDPOINT_URL"].strip(),
                access_key_id=key_id,
                secret_access_key=secret,
                bucket=name,
                region=env.get("BUCKET_REGION") or None,
                prefix=env.get("BUCKET_PREFIX", "comfy-runpod").strip("/"),
            )
        secrets = tuple(
            s
            for s in (
                env.get("RUNPOD_AI_API_KEY", ""),
                env.get("RUNPOD_API_KEY", ""),
                *(bucket.secrets() if bucket else ()),
            )
            if len(s) >= 4
        )
        return cls(
            comfyui_url=url,
            launch=launch,
            comfyui_dir=Path(launch.comfyui_dir),
            host=launch.host,
            port=launch.port,
            input_dir=path(launch.input_dir),
            output_dir=path(launch.output_dir),
            temp_dir=path(launch.temp_dir),
            startup_timeout_s=_get_float(env, "COMFYUI_STARTUP_TIMEOUT", 600.0, minimum=0.1),
            ready_poll_s=_get_float(env, "COMFYUI_READY_POLL", 0.005, minimum=0.001),
            health_check_interval_s=_get_float(env, "HEALTH_CHECK_INTERVAL", 1.0, minimum=0.01),
            execution_timeout_s=_get_float(env, "EXECUTION_TIMEOUT", 600.0, minimum=0.01),
            interrupt_grace_s=_get_float(env, "INTERRUPT_GRACE", 10.0),
            cleanup_age_s=_get_float(env, "CLEANUP_AGE", 3600.0, minimum=1.0),
            progress_interval_s=_get_float(env, "PROGRESS_INTERVAL", 0.25),
            max_restarts=_get_int(env, "MAX_RESTARTS", 3, minimum=1),
            restart_backoff_s=_get_float(env, "RESTART_BACKOFF", 1.0),
            max_input_bytes=_get_int(env, "MAX_INPUT_BYTES", 100 * 1024 * 1024, minimum=1),
            url_timeout_s=_get_float(env, "INPUT_URL_TIMEOUT", 30.0, minimum=0.1),
            allow_private_urls=_get_bool(env, "ALLOW_PRIVATE_INPUT_URLS", False),
            auto_threshold_bytes=_get_int(env, "OUTPUT_AUTO_THRESHOLD", 8 * 1024 * 1024),
            output_mode=output_mode,
            bucket=bucket,
            bucket_url_expiry_s=_get_int(env, "BUCKET_URL_EXPIRY", 3600, minimum=1),
            log_tail_lines=_get_int(env, "COMFYUI_LOG_TAIL", 200, minimum=1),
            secrets=secrets,
        )
