"""The entries of a job error's ``details`` list: one dataclass per kind of problem.

Each kind is declared, with the same field names, in the job error's JSON Schema
(``custom_node/job_error.schema.json``, ``$defs``), which the custom node's client and its
browser renderer are tested against too; ``tests/contracts/test_job_error_schema.py`` keeps the two
declarations equal. The worker cannot import ``custom_node`` (it is not in the image), so the
schema file is the contract between the two, not shared code.

``to_json`` drops optional fields that are unset, so a payload only carries what is known.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


class _Detail:
    """Serialisation shared by the detail kinds: required fields always, optional ones when set."""

    #: Fields written even when None (the schema requires them, with null allowed).
    ALWAYS_WRITTEN: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is not None or f.name in self.ALWAYS_WRITTEN:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class FieldProblem(_Detail):
    """A field of the job input that is wrong (``INVALID_INPUT``): ``field`` is its path."""

    field: str
    message: str
    fix: str | None = None


@dataclass(frozen=True)
class NodeProblem(_Detail):
    """A node input that fails validation (``VALIDATION_FAILED``), from the worker or ComfyUI.

    ``type`` is the kind of problem (``value_not_in_list``, ``unknown_class``, ComfyUI's own
    error types); the optional fields say what was given and what would be accepted.
    """

    ALWAYS_WRITTEN = ("node_id", "class_type", "input", "type", "message")

    node_id: str
    class_type: str | None
    input: str | None
    type: str
    message: str
    value: Any = None
    closest: tuple[str, ...] | None = None
    allowed: tuple[Any, ...] | None = None
    folder: str | None = None
    searched: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class NodeFailure(_Detail):
    """The node that raised or was interrupted (``EXECUTION_ERROR``, ``INTERRUPTED``)."""

    ALWAYS_WRITTEN = ("node_id", "class_type")

    node_id: str | None
    class_type: str | None
    message: str | None = None
    exception_type: str | None = None
    traceback: tuple[str, ...] | None = None


@dataclass(frozen=True)
class JobPosition(_Detail):
    """Where the prompt was when the job stopped (``TIMEOUT``, ``COMFY_CRASHED``)."""

    ALWAYS_WRITTEN = ("prompt_id", "node", "class_type")

    prompt_id: str
    node: str | None
    class_type: str | None
    exit_code: int | None = None


@dataclass(frozen=True)
class OutputProblem(_Detail):
    """An output file that could not be read or delivered (``OUTPUT_ERROR``)."""

    node_id: str
    filename: str
    message: str | None = None
    subfolder: str | None = None
    type: str | None = None
    key: str | None = None


#: Every kind of detail, as named in the schema's ``$defs``.
Detail = FieldProblem | NodeProblem | NodeFailure | JobPosition | OutputProblem
DETAIL_KINDS: tuple[type[_Detail], ...] = (FieldProblem, NodeProblem, NodeFailure, JobPosition, OutputProblem)
