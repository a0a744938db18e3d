"""``run_workflow``: submit a workflow, follow it to the end, save its outputs (``invoke run``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .endpoint_client import EndpointClient
from .outputs import job_folder, save_outputs


@dataclass
class WorkflowRun:
    """The outcome of ``run_workflow``: the final job body and the files saved."""

    job: dict[str, Any]
    files: list[Path]


async def run_workflow(
    client: EndpointClient,
    workflow: dict[str, Any],
    *,
    images: list[dict[str, str]] | None = None,
    out_dir: Path,
    timeout_s: float = 3600.0,
    on_status: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None,
    **job_options: Any,
) -> WorkflowRun:
    """Submit a workflow, follow it, and save its outputs under ``out_dir/<job id>/``.

    The job id names a folder, so an id that is not a plain name (``..``, ``/abs``) is refused
    as soon as the endpoint answers it (UnusableJobId), before anything is waited for or saved.
    """
    job_input: dict[str, Any] = {"workflow": workflow}
    if images:
        job_input["images"] = images
    queued = await client.run(job_input, **job_options)
    folder = job_folder(out_dir, queued.get("id"))
    final = await client.wait(folder.name, timeout_s=timeout_s, on_status=on_status)
    files = await save_outputs(final.get("output") or {}, folder)
    return WorkflowRun(final, files)
