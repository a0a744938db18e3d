"""The worker's environment, declared once: every variable it reads, its parser, default and one-line doc.

``Env`` is the table: one attribute per variable, named as the variable is (``Env.EXECUTION_TIMEOUT``). Adding
a variable is one line there; everything else derives from it: ``Settings.from_env`` and ``LaunchSpec`` read
through it, ``infra`` validates a template's env with it before any worker starts, the tests clear these
names from the developer's shell, and the README's configuration table is rendered from it
(``invoke readme``; a test fails while the two differ).

Problems are reported all at once, as ``(variable, message)`` pairs that never quote the value: a value may
be a secret, and the same messages reach Pulumi's preview output and a job's error.

Imported before ComfyUI is spawned (``handler/launch.py``): standard library only, and little of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, NamedTuple, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


class Problem(NamedTuple):
    """One unusable variable: its name, and what it must be (never its value)."""

    variable: str
    message: str

    def __str__(self) -> str:
        return f"{self.variable}: {self.message}"


class SettingsError(ValueError):
    """Environment variables the worker cannot use; ``problems`` names every one of them."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(map(str, self.problems)))


class Kind(Generic[T_co]):
    """How a variable's text becomes a value: ``parse`` raises ValueError; ``what`` says what it accepts."""

    __slots__ = ("parse", "strip", "what")

    def __init__(self, what: str, parse: Callable[[str], T_co], *, strip: bool = True) -> None:
        self.what = what
        self.parse = parse
        self.strip = strip


def number(minimum: float = 0.0) -> Kind[float]:
    def parse(text: str) -> float:
        value = float(text)
        if not value >= minimum:  # also refuses nan
            raise ValueError(text)
        return value

    return Kind(f"a number >= {minimum:g}", parse)


def whole(minimum: int = 0) -> Kind[int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise ValueError(text)
        return value

    return Kind(f"a whole number >= {minimum}", parse)


def choice(*options: str) -> Kind[str]:
    def parse(text: str) -> str:
        if text.lower() not in options:
            raise ValueError(text)
        return text.lower()

    return Kind(" or ".join(", ".join(options).rsplit(", ", 1)), parse)


def _flag(text: str) -> bool:
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise ValueError(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(text)
    return int(text)


def _temp_dir(text: str) -> str:
    # ComfyUI takes the temp dir's parent (--temp-directory) and always appends "temp" itself.
    if text.rstrip("/").rsplit("/", 1)[-1] != "temp":
        raise ValueError(text)
    return text


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.replace(",", " ").split())


TEXT: Kind[str] = Kind("text", str)
SECRET: Kind[str] = Kind("text (kept out of logs)", str, strip=False)  # as given: a key is not trimmed
FLAG: Kind[bool] = Kind("true or false", _flag)
PORT: Kind[int] = Kind("a port number (1..65535)", _port)
TEMP_DIR: Kind[str] = Kind("a path ending in /temp (ComfyUI appends temp itself)", _temp_dir)
WORDS: Kind[tuple[str, ...]] = Kind("space-separated words", _words)
NAMES: Kind[tuple[str, ...]] = Kind("names or PREFIX_* patterns, comma or space separated", _names)
PREFIX: Kind[str] = Kind("a key prefix", lambda text: text.strip("/"))
LOG_LEVEL: Kind[str] = Kind(
    "DEBUG, INFO, WARNING, ERROR or CRITICAL",
    lambda text: choice("debug", "info", "warn", "warning", "error", "critical", "fatal").parse(text).upper(),
)

# The runpod SDK's own names (runpod.serverless.modules.rp_logger.LOG_LEVELS); it crashes on any other.
SDK_LOG_LEVEL: Kind[str] = Kind(
    "NOTSET, TRACE, DEBUG, INFO, WARN or ERROR",
    lambda text: choice("notset", "trace", "debug", "info", "warn", "error").parse(text).upper(),
)


class Var(Generic[T]):
    """One environment variable; its name is the attribute name it is declared under in ``Env``."""

    __slots__ = ("default", "doc", "kind", "name", "reserved", "secret", "shown")

    def __init__(
        self,
        kind: Kind[T],
        default: T,
        doc: str,
        *,
        shown: str | None = None,
        reserved: str = "",
    ) -> None:
        self.name = ""
        self.kind = kind
        self.default = default
        self.doc = doc
        self.secret = kind is SECRET
        # The default as the README shows it, where the value itself is computed or absent.
        self.shown = shown if shown is not None else _show(default)
        # Why a deployment's template env must not set it (the worker image or RunPod does); "" if it may.
        self.reserved = reserved

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Var({self.name})"

    def parse(self, env: Mapping[str, str]) -> T:
        """The value in ``env``, or the default when unset or blank; raises SettingsError."""
        raw = env.get(self.name)
        if raw is None or raw.strip() == "":
            return self.default
        try:
            return self.kind.parse(raw.strip() if self.kind.strip else raw)
        except ValueError:
            raise SettingsError([self.problem()]) from None

    def problem(self) -> Problem:
        default = "" if self.shown == "unset" else f" for the default ({self.shown})"
        return Problem(self.name, f"must be {self.kind.what}; correct it, or unset it{default}")


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return " ".join(value) or "empty"
    return f"{value:g}" if isinstance(value, float) else str(value) or "empty"


IMAGE_SETS = "the worker image sets it (image/Dockerfile)"
RUNPOD_SETS = "RunPod sets it in every worker"


class Env:
    """The table: every variable the worker reads (the README's configuration reference is made from it)."""

    # Where ComfyUI is: a URL to attach to, or a checkout to start it from (spawn mode).
    COMFYUI_URL = Var(
        TEXT,
        None,
        "attach to this ComfyUI instead of starting one",
        reserved="it switches the worker to attach mode, so the ComfyUI inside the image would never start",
    )
    COMFYUI_DIR = Var(
        TEXT,
        "/opt/comfyui",
        "ComfyUI checkout (spawn mode; `main.py` runs there)",
        reserved=f"{IMAGE_SETS}: ComfyUI is installed there",
    )
    COMFYUI_PYTHON = Var(TEXT, None, "interpreter for ComfyUI", shown="the worker's Python")
    COMFYUI_HOST = Var(TEXT, "127.0.0.1", "where ComfyUI listens")
    COMFYUI_PORT = Var(PORT, 8188, "ComfyUI's port")
    COMFYUI_IO_ROOT = Var(
        TEXT,
        "/comfy-io",
        "parent of the default input, output and temp dirs",
        reserved=f"{IMAGE_SETS} and creates its input/output/temp dirs",
    )
    COMFYUI_INPUT_DIR = Var(
        TEXT, None, "ComfyUI's input dir (outside the ComfyUI tree)", shown="$COMFYUI_IO_ROOT/input"
    )
    COMFYUI_OUTPUT_DIR = Var(TEXT, None, "ComfyUI's output dir", shown="$COMFYUI_IO_ROOT/output")
    COMFYUI_TEMP_DIR = Var(TEMP_DIR, None, "ComfyUI's temp dir", shown="$COMFYUI_IO_ROOT/temp")
    COMFYUI_EXTRA_MODEL_PATHS = Var(
        TEXT,
        "/opt/comfy-runpod/extra_model_paths.yaml",
        "model folders on the network volume",
        reserved="the worker image sets it: it maps ComfyUI's model folders onto the volume",
    )
    COMFYUI_EXTRA_ARGS = Var(WORDS, (), "more ComfyUI flags")
    COMFYUI_ENV_PASSTHROUGH = Var(
        NAMES, (), "more variables ComfyUI may see (it gets an allow list only: no keys, no bucket secrets)"
    )
    # Timing.
    COMFYUI_STARTUP_TIMEOUT = Var(number(0.1), 600.0, "seconds for ComfyUI to answer before a start fails")
    COMFYUI_READY_POLL = Var(number(0.001), 0.005, "readiness poll interval (s)")
    COMFYUI_LOG_TAIL = Var(whole(1), 200, "ComfyUI log lines kept for diagnostics")
    HEALTH_CHECK_INTERVAL = Var(number(0.01), 1.0, "seconds between liveness checks while a job waits")
    EXECUTION_TIMEOUT = Var(number(0.01), 600.0, "default per-job limit (s); `timeout_s` overrides it")
    INTERRUPT_GRACE = Var(number(), 10.0, "seconds an interrupted prompt may run on before a restart")
    CLEANUP_AGE = Var(number(1.0), 3600.0, "the sweep removes job files older than this (s)")
    PROGRESS_INTERVAL = Var(number(), 0.25, "minimum seconds between progress updates")
    # Restart policy.
    MAX_RESTARTS = Var(whole(1), 3, "consecutive failed starts before the worker asks to be replaced")
    RESTART_BACKOFF = Var(number(), 1.0, "first restart delay (s), doubled per consecutive failure")
    # Inputs.
    MAX_INPUT_BYTES = Var(whole(1), 100 * 1024 * 1024, "cap on a job's input files, total")
    INPUT_URL_TIMEOUT = Var(number(0.1), 30.0, "per-download timeout (s)")
    ALLOW_PRIVATE_INPUT_URLS = Var(
        FLAG,
        False,
        "let a job's URLs (inputs, its own S3 endpoint) reach non-public addresses (trusted networks, tests)",
    )
    # Outputs.
    OUTPUT_MODE = Var(choice("base64", "s3", "auto"), "auto", "default delivery of outputs")
    OUTPUT_AUTO_THRESHOLD = Var(
        whole(),
        8 * 1024 * 1024,
        "base64 outputs above this: `auto` uploads, `base64` fails `OUTPUT_TOO_LARGE`",
    )
    BUCKET_ENDPOINT_URL = Var(TEXT, None, "S3-compatible bucket for outputs (with the next three)")
    BUCKET_ACCESS_KEY_ID = Var(SECRET, "", "the bucket's access key id", shown="unset")
    BUCKET_SECRET_ACCESS_KEY = Var(SECRET, "", "the bucket's secret key", shown="unset")
    BUCKET_NAME = Var(TEXT, None, "the bucket")
    BUCKET_REGION = Var(TEXT, None, "the bucket's region")
    BUCKET_PREFIX = Var(PREFIX, "comfy-runpod", "key prefix of uploaded outputs (`/` for none)")
    BUCKET_URL_EXPIRY = Var(whole(1), 3600, "presigned URL lifetime (s)")
    # Logging.
    COMFY_RUNPOD_LOG_LEVEL = Var(LOG_LEVEL, "INFO", "the worker's log level")
    RUNPOD_LOG_LEVEL = Var(
        SDK_LOG_LEVEL, "INFO", "the runpod SDK's log level (its own default, DEBUG, logs every job's output)"
    )
    # Set by RunPod, read to keep them out of logs and errors.
    RUNPOD_AI_API_KEY = Var(SECRET, "", "RunPod's job API key", shown="set by RunPod", reserved=RUNPOD_SETS)
    RUNPOD_API_KEY = Var(SECRET, "", "RunPod's API key", shown="set by RunPod", reserved=RUNPOD_SETS)


VARIABLES: tuple[Var[Any], ...] = tuple(v for v in vars(Env).values() if isinstance(v, Var))
BY_NAME: Mapping[str, Var[Any]] = {v.name: v for v in VARIABLES}


class Reader:
    """Reads variables from one env, collecting every problem; ``check()`` raises them together."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[Problem] = []

    def __call__(self, var: Var[T]) -> T:
        try:
            return var.parse(self.env)
        except SettingsError as exc:
            self.problems.extend(exc.problems)
            return var.default

    def refuse(self, variable: str, message: str) -> None:
        """A rule between variables (e.g. the bucket's four): the variable that must change, and why."""
        self.problems.append(Problem(variable, message))

    def secrets(self) -> tuple[str, ...]:
        """The values of the secret variables that are set, to keep out of logs and errors."""
        return tuple(value for var in VARIABLES if var.secret and (value := self.env.get(var.name, "")))

    def check(self) -> None:
        """Raise every problem found, including those of variables nobody has read yet."""
        for var in VARIABLES:
            self(var)
        if self.problems:
            raise SettingsError(dict.fromkeys(self.problems))  # one line per problem, in order
