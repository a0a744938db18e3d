"""Reading an API-format workflow file for the job API (``invoke run``, ``run_workflow``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import WorkflowFileError


def load_workflow(path: Path) -> dict[str, Any]:
    """An API-format workflow from a file; a UI-format file is refused with the export hint."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkflowFileError(f"cannot read workflow {path}: {exc}") from None
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise WorkflowFileError(
            f"{path} is a UI-format workflow; in ComfyUI use Workflow > Export (API) and send that file"
        )
    if not isinstance(data, dict) or not data:
        raise WorkflowFileError(f"{path} is not an API-format workflow (an object of nodes)")
    return data
