"""Tasks that talk to an endpoint: run a workflow, status, cancel, health, purge."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from custom_node.endpoint_client import EndpointClient
from custom_node.errors import EndpointError, JobFailed
from custom_node.inputs import input_files
from custom_node.job_error import JobError
from custom_node.run import run_workflow
from custom_node.workflow_file import load_workflow
from tasks import job_history
from tasks.stack import stack_output

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def _sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a client coroutine, turning its errors into one-line exits."""
    try:
        return asyncio.run(coro)
    except JobFailed as exc:
        raise Exit(f"job {exc.job.get('id')} {exc.job.get('status')}\n" + exc.error.text(), code=1) from None
    except (EndpointError, TimeoutError) as exc:
        raise Exit(f"error: {exc}", code=1) from None


def _client(endpoint: str | None) -> EndpointClient:
    env = dict(os.environ)
    if not endpoint and not env.get("RUNPOD_ENDPOINT_ID") and not env.get("RUNPOD_ENDPOINT_URL"):
        endpoint = stack_output("endpointId")
    try:
        return EndpointClient.from_env(endpoint, env)
    except EndpointError as exc:
        raise Exit(f"error: {exc}", code=2) from None


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


async def _run_with_progress(
    client: EndpointClient, workflow: dict[str, Any], images: list[dict[str, str]], out: Path, timeout: float
) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.fields[status]}"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task_id = bar.add_task("queued", total=None, status="IN_QUEUE")

        def show(body: dict[str, Any]) -> None:
            progress = body.get("output") if body.get("status") == "IN_PROGRESS" else None
            if isinstance(progress, dict) and progress.get("nodes_total"):
                step = f" step {progress['step']}/{progress['max']}" if progress.get("max") else ""
                bar.update(
                    task_id,
                    total=progress["nodes_total"],
                    completed=progress.get("nodes_done", 0),
                    description=f"node {progress.get('node')} {progress.get('class_type') or ''}{step}",
                    status=body["status"],
                )
            else:
                bar.update(task_id, status=body.get("status", "?"))

        async with client:
            try:
                result = await run_workflow(
                    client, workflow, images=images, out_dir=out, timeout_s=timeout, on_status=show
                )
            except JobFailed as exc:
                job_history.record(out, client.url.rsplit("/", 1)[-1], exc.job)
                raise
        job_history.record(out, client.url.rsplit("/", 1)[-1], result.job)
        bar.update(
            task_id, status="COMPLETED", completed=bar.tasks[0].total or 1, total=bar.tasks[0].total or 1
        )
    job = result.job
    delay, execution = job.get("delayTime", "?"), job.get("executionTime", "?")
    console.print(f"job {job.get('id')} COMPLETED: delay {delay} ms, execution {execution} ms")
    for path in result.files:
        print(path)


@task(
    help={
        "workflow": "API-format workflow file (ComfyUI: Workflow > Export (API))",
        "input": "input file, as PATH or NAME=PATH; repeat for several (names may have subfolders)",
        "out": "folder for the outputs (a subfolder per job); default outputs/",
        "endpoint": "endpoint id (default: $RUNPOD_ENDPOINT_ID, else the Pulumi stack's endpointId)",
        "timeout": "seconds to wait for the job (default 3600)",
    },
    iterable=["input"],
)
def run(
    c: Context,
    workflow: str = "",
    input: list[str] | None = None,  # the CLI flag is --input
    out: str = "outputs",
    endpoint: str = "",
    timeout: float = 3600.0,
) -> None:
    """Run a workflow on the endpoint, show its progress and save every output locally."""
    if not workflow:
        raise Exit("error: --workflow is required (an API-format workflow file)", code=2)
    client = _client(endpoint or None)
    try:
        graph = load_workflow(Path(workflow))
        images = input_files(input or [])
    except EndpointError as exc:
        raise Exit(f"error: {exc}", code=2) from None
    _sync(_run_with_progress(client, graph, images, Path(out), timeout))


async def _one(client: EndpointClient, op: str, *args: str) -> dict[str, Any]:
    async with client:
        result: dict[str, Any] = await getattr(client, op)(*args)
        return result


@task(help={"job": "the job id", "endpoint": "endpoint id (default: $RUNPOD_ENDPOINT_ID)"})
def status(c: Context, job: str, endpoint: str = "") -> None:
    """Print a job's status (and its output or structured error)."""
    body = _sync(_one(_client(endpoint or None), "status", job))
    _print_json(body)
    if body.get("error"):
        print(JobError.decode(body["error"]).text())


@task(help={"job": "the job id", "endpoint": "endpoint id (default: $RUNPOD_ENDPOINT_ID)"})
def cancel(c: Context, job: str, endpoint: str = "") -> None:
    """Cancel a queued or running job (a running ComfyUI prompt is interrupted)."""
    _print_json(_sync(_one(_client(endpoint or None), "cancel", job)))


@task(help={"endpoint": "endpoint id (default: $RUNPOD_ENDPOINT_ID)"})
def health(c: Context, endpoint: str = "") -> None:
    """Print the endpoint's job and worker counts."""
    _print_json(_sync(_one(_client(endpoint or None), "health")))


@task(help={"endpoint": "endpoint id (default: $RUNPOD_ENDPOINT_ID)"})
def purge(c: Context, endpoint: str = "") -> None:
    """Remove every queued job of the endpoint (running jobs continue)."""
    _print_json(_sync(_one(_client(endpoint or None), "purge_queue")))
