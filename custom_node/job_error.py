"""A failed job's error as this node reads and shows it: :class:`JobError`.

The worker (``handler/errors.py``) sends ``{code, message, details, diagnostics}`` as a JSON
string in the job's ``error``; RunPod may instead give a plain string, the SDK its own
``{error_type, error_message, error_traceback}``, and a cancelled or timed-out job nothing.
``JobError.of_job`` turns each into the one shape that ``job_error.schema.json`` (next to this
file) declares, and that the worker, this client and ``web/runpod_logic.js`` are all tested
against (``tests/contracts/test_job_error_schema.py``, ``js_tests/job_error.test.mjs``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The JSON Schema of the payload; shipped inside this folder so a copied node has it too.
SCHEMA_FILE = Path(__file__).with_name("job_error.schema.json")

#: A platform error that is only text (no worker payload inside).
UNSTRUCTURED = "ERROR"
#: The SDK's report of an exception that escaped the handler.
WORKER_EXCEPTION = "WORKER_EXCEPTION"
#: A job that ended in one of these statuses without an error gets the status as its code.
ENDED_WITHOUT_ERROR = frozenset({"FAILED", "CANCELLED", "TIMED_OUT"})


@dataclass(frozen=True)
class JobError:
    """``{code, message, details, diagnostics}``; see ``job_error.schema.json`` for each field."""

    code: str
    message: str
    details: list[Any] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def decode(cls, raw: Any) -> JobError:
        """The error from a job's ``error`` field, whatever produced it."""
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                return cls(UNSTRUCTURED, raw)
        if isinstance(raw, dict):
            if isinstance(raw.get("code"), str) and "message" in raw:
                details = raw.get("details")
                diagnostics = raw.get("diagnostics")
                return cls(
                    raw["code"],
                    str(raw["message"]),
                    details if isinstance(details, list) else [],
                    diagnostics if isinstance(diagnostics, dict) else {},
                )
            if "error_message" in raw:  # the SDK's own format for an exception in a handler
                diagnostics = {"error_type": str(raw.get("error_type") or "")}
                if isinstance(raw.get("error_traceback"), str):
                    diagnostics["traceback"] = raw["error_traceback"]
                return cls(WORKER_EXCEPTION, str(raw["error_message"]), [], diagnostics)
        return cls(UNSTRUCTURED, str(raw) if raw else "no error message")

    @classmethod
    def of_job(cls, job: Mapping[str, Any]) -> JobError:
        """The error of a job that did not complete; its status when it carries none."""
        status = str(job.get("status") or "FAILED")
        if not job.get("error") and status in ENDED_WITHOUT_ERROR:
            return cls(status, f"the job ended {status}")
        return cls.decode(job.get("error"))

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "details": list(self.details),
            "diagnostics": dict(self.diagnostics),
        }

    def text(self, log_lines: int = 15) -> str:
        """The error as text a person can act on (``formatError`` in runpod_logic.js matches it)."""
        lines = [f"{self.code}: {self.message}"]
        for detail in self.details:
            if not isinstance(detail, dict):
                lines.append(f"  - {detail}")
                continue
            node = detail.get("node_id") or detail.get("node")
            file = "/".join(str(p) for p in (detail.get("subfolder"), detail.get("filename")) if p)
            where = " ".join(
                part
                for part in (
                    f"node {node}" if node else "",
                    f"({detail['class_type']})" if detail.get("class_type") else "",
                    f"input {detail['input']}" if detail.get("input") else "",
                    f"field {detail['field']}" if detail.get("field") else "",
                    f"file {file}" if file else "",
                )
                if part
            )
            text = detail.get("message") or ""
            lines.append(f"  - {where}: {text}" if where and text else f"  - {where or text}")
            if detail.get("fix"):
                lines.append(f"      fix: {detail['fix']}")
            if detail.get("closest"):
                lines.append(f"      closest available: {', '.join(map(str, detail['closest']))}")
            if detail.get("exception_type"):
                lines.append(f"      {detail['exception_type']}")
        tail = self.diagnostics.get("log_tail") or []
        if tail:
            lines.append(f"last {min(len(tail), log_lines)} ComfyUI log lines:")
            lines.extend(f"  | {line}" for line in tail[-log_lines:])
        return "\n".join(lines)
