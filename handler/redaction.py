"""Secret redaction: known secret values replaced by ``***`` in anything we emit.

The one implementation for every runtime that can import ``handler`` (the worker, and
``infra`` for RunPod's error messages). Standard library only: the worker imports it before
``runpod``.

Two layers, so a job's own secrets never outlive the job:

- worker-wide secrets (API keys, the endpoint's bucket credentials), given at construction;
- per-job secrets (a request's ``output.s3`` / ``s3Config`` credentials), added for the
  duration of ``with redactor.job(...)`` and removed afterwards. Left in place they would
  garble later jobs' messages and make every log line slower, job after job.

Values shorter than ``MIN_SECRET_LENGTH`` are never redacted: replacing ``node`` or ``abc``
wherever it occurs would garble ordinary text ("*** type is not known") and hides nothing
worth hiding; real keys and secrets are far longer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

MIN_SECRET_LENGTH = 8
MASK = "***"


class Redactor:
    """Replaces known secret values in text and in JSON-like structures."""

    def __init__(self, secrets: Iterable[str | None] = (), *, min_length: int = MIN_SECRET_LENGTH) -> None:
        self.min_length = min_length
        self._base: frozenset[str] = self._usable(secrets)
        self._job: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self._compile()

    def _usable(self, secrets: Iterable[str | None]) -> frozenset[str]:
        return frozenset(s for s in secrets if s and len(s) >= self.min_length)

    @property
    def secrets(self) -> frozenset[str]:
        """Every value redacted right now (worker-wide and the current job's)."""
        return self._base | self._job

    def add(self, *secrets: str | None) -> None:
        """Add worker-wide secrets (kept for the life of the process)."""
        new = self._usable(secrets) - self._base
        if new:
            self._base |= new
            self._compile()

    @contextmanager
    def job(self, *secrets: str | None) -> Iterator[None]:
        """Redact ``secrets`` too until the block ends (one job at a time per redactor)."""
        previous = self._job
        self._job = self._usable(secrets) - self._base
        self._compile()
        try:
            yield
        finally:
            self._job = previous
            self._compile()

    def _compile(self) -> None:
        ordered = sorted(self.secrets, key=len, reverse=True)  # a secret containing another: whole
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def text(self, value: str) -> str:
        pattern = self._pattern
        return pattern.sub(MASK, value) if pattern else value

    def deep(self, value: Any) -> Any:
        """Redact every string inside a JSON-like structure (keys included)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.deep(k): self.deep(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.deep(v) for v in value]
        return value
