"""Watching the endpoint from the terminal: ``invoke workers``, ``logs``, ``releases``, ``cost`` (REST v2).

Over RunPod's REST API v2 (``infra.runpod_rest``, the one client for it) and, for the job counts and a
job's worker, the job API (``custom_node.endpoint_client``). The local endpoint (``invoke local-endpoint``)
serves the same paths for its own workers, so all of this works offline too (``tasks.rest_target``).

Errors are one line each: 401 (the key is refused), 403 (the key lacks the scope), 404 (no such endpoint or
worker), 429 (with RunPod's retry hint); the key is never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task
from rich.console import Console
from rich.live import Live

from custom_node.errors import EndpointError
from infra.release_summary import release_lines
from infra.runpod_rest import RunPodError, RunPodNotFoundError, RunPodREST
from infra.sse import LogEvent
from tasks import job_history, observe_view
from tasks.rest_target import Target, resolve

ENDPOINT_HELP = (
    "endpoint id (default: $RUNPOD_ENDPOINT_ID, $RUNPOD_ENDPOINT_URL, else the stack's endpointId)"
)
FINAL_WORDS = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Reading a log without --follow: the stream stays open after the backfill; this long without a line ends it.
BACKFILL_IDLE_S = 2.0
RELIST_S = 10.0
#: --follow: how long the first lines (the backfills) are held to print them in time order across workers.
BACKFILL_HOLD_S = 1.0


def refusal(exc: RunPodError, target: Target, scope: str = "Serverless") -> Exit:
    """One line for a RunPod error, by status (the message is already free of secrets)."""
    message = " ".join(exc.message.split())
    where = f"{exc.operation}, HTTP {exc.status}"
    if exc.status == 401:
        text = f"RunPod refused the API key ({where}): {message}; check RUNPOD_API_KEY"
    elif exc.status == 403:
        text = f"the API key may not do this ({where}): {message}; use a key with read access to {scope}"
    elif exc.status == 404:
        text = f"not found ({where}): {message}; check the endpoint id ({target.endpoint_id}) or worker id"
    elif exc.status == 429:
        text = f"rate limited by RunPod ({where}): {message}"
    else:
        text = " ".join(str(exc).split())
    return Exit(f"error: {text}", code=1)


def _console() -> Console:
    """The terminal's width on a terminal; wide when piped (to a file, grep), so no row is cut."""
    return Console() if sys.stdout.isatty() else Console(width=240)


def _health(target: Target) -> tuple[dict[str, Any] | None, str | None]:
    async def get() -> dict[str, Any]:
        async with target.jobs() as client:
            return await client.health()

    try:
        return asyncio.run(get()), None
    except (EndpointError, TimeoutError) as exc:
        return None, " ".join(str(exc).split())[:200]


def _workers_screen(api: RunPodREST, target: Target) -> Any:
    workers = api.list_endpoint_workers(target.endpoint_id)
    health, problem = _health(target)
    return observe_view.workers_view(target.endpoint_id, workers, observe_view.job_counts(health, problem))


@task(
    help={
        "endpoint": ENDPOINT_HELP,
        "watch": "refresh in place until Ctrl+C",
        "interval": "seconds between refreshes with --watch (default 2)",
        "times": "with --watch: stop after this many refreshes (default 0: until Ctrl+C)",
    }
)
def workers(
    c: Context, endpoint: str = "", watch: bool = False, interval: float = 2.0, times: int = 0
) -> None:
    """One line per worker (status, GPU, data center, image, version, uptime, stale) and the job counts."""
    target = resolve(endpoint or None)
    console = _console()
    with target.rest() as api:
        try:
            if not watch:
                console.print(_workers_screen(api, target))
                return
            done = 0
            with Live(_workers_screen(api, target), console=console, auto_refresh=False) as live:
                live.refresh()
                while times <= 0 or (done := done + 1) < times:
                    time.sleep(max(0.2, interval))
                    live.update(_workers_screen(api, target), refresh=True)
        except RunPodError as exc:
            raise refusal(exc, target) from None
        except KeyboardInterrupt:
            return


@task(help={"endpoint": ENDPOINT_HELP, "limit": "how many releases to show (default 10)"})
def releases(c: Context, endpoint: str = "", limit: int = 10) -> None:
    """The endpoint's releases: version, source, when, worker count, what changed; and the rollout."""
    target = resolve(endpoint or None)
    with target.rest() as api:
        try:
            data = api.list_endpoint_releases(target.endpoint_id)
        except RunPodError as exc:
            raise refusal(exc, target) from None
    for line in release_lines(data, limit=limit):
        print(line)


def parse_since(value: str, now: datetime | None = None) -> str:
    """``10m``/``2h``/``1d``/``30s`` ago, or an RFC 3339 time, as RFC 3339 UTC; ``Exit`` otherwise."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(value.strip())
    if match:
        at = now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Exit(
            f"error: --since {value!r}: give a duration (30s, 10m, 2h, 1d) or an RFC 3339 time", 2
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _job_worker(target: Target, job_id: str) -> str:
    async def get() -> dict[str, Any]:
        async with target.jobs() as client:
            return await client.status(job_id)

    try:
        body = asyncio.run(get())
    except (EndpointError, TimeoutError) as exc:
        raise Exit(f"error: job {job_id}: {' '.join(str(exc).split())}", code=1) from None
    worker = body.get("workerId")
    if not worker:
        raise Exit(f"error: job {job_id} is {body.get('status')} and has no worker yet; try again later", 1)
    return str(worker)


@task(
    help={
        "endpoint": ENDPOINT_HELP,
        "worker": "one worker's log (default: every worker, interleaved and labelled)",
        "since": "from this long ago (30s, 10m, 2h, 1d) or this RFC 3339 time",
        "tail": "how many past lines of each worker to show first (default 100; RunPod's limit is 5000)",
        "follow": "keep printing new lines until Ctrl+C (reconnects from the last line after a drop)",
        "job": "only the lines of the worker that ran this job, around this job",
        "source": "container (the worker's output) or system (RunPod's lifecycle lines); default both",
    }
)
def logs(
    c: Context,
    endpoint: str = "",
    worker: str = "",
    since: str = "",
    tail: int = 100,
    follow: bool = False,
    job: str = "",
    source: str = "",
) -> None:
    """The workers' log lines with the worker id and time; --follow keeps them coming."""
    if source and source not in ("container", "system"):
        raise Exit("error: --source must be container or system", code=2)
    if not 0 <= tail <= 5000:
        raise Exit("error: --tail must be between 0 and 5000", code=2)
    target = resolve(endpoint or None)
    since_ts = parse_since(since) if since else None
    if job:
        worker = _job_worker(target, job)
        if not since_ts:
            tail = 5000
    options: dict[str, Any] = {
        "tail": None if since_ts else tail,
        "since": since_ts,
        "source": source or None,
    }
    with target.rest() as api:
        try:
            ids = (
                [worker]
                if worker
                else [str(w["id"]) for w in api.list_endpoint_workers(target.endpoint_id)["workers"]]
            )
            if not follow:
                _print_backfill(target, ids, options, job, listed=not worker)
                return
        except RunPodError as exc:
            raise refusal(exc, target) from None
    try:
        _follow(target, ids, options, job, relist=not worker)
    except KeyboardInterrupt:
        return


def _print_backfill(
    target: Target, ids: list[str], options: dict[str, Any], job: str, *, listed: bool
) -> None:
    """Each worker's backfill read at once (one client per thread), then printed in time order. A listed
    worker that is gone by now (404) is skipped; a named one is an error."""

    def read(worker_id: str) -> list[tuple[str, LogEvent]]:
        with target.rest() as api:
            try:
                stream = api.stream_worker_logs(
                    target.endpoint_id, worker_id, idle_end_s=BACKFILL_IDLE_S, **options
                )
                return [(worker_id, e) for e in stream]
            except RunPodNotFoundError:
                if listed:
                    return []
                raise

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(ids)))) as pool:
        events = [pair for chunk in pool.map(read, ids) for pair in chunk]
    events.sort(key=lambda item: (item[1].ts, item[0]))
    if job:
        events = observe_view.job_window(events, job)
        if not events:
            print(f"no line of worker {ids[0]} names job {job} (its log may have rotated)")
    elif not ids:
        print("no workers right now")
    for worker_id, event in events:
        print(observe_view.log_line(worker_id, event), flush=True)


def _follow(target: Target, ids: list[str], options: dict[str, Any], job: str, *, relist: bool) -> None:
    """One thread per worker (each its own client) feeding one queue; this thread prints, so lines never mix.
    Without --worker the list is read again every ``RELIST_S``, so new workers join."""
    lines: queue.Queue[tuple[str, LogEvent | RunPodError | None]] = queue.Queue()
    stop = threading.Event()
    started: set[str] = set()

    def reader(worker_id: str) -> None:
        try:
            with target.rest() as api:
                for event in api.follow_worker_logs(
                    target.endpoint_id, worker_id, stop=stop.is_set, **options
                ):
                    lines.put((worker_id, event))
            lines.put((worker_id, None))
        except RunPodError as exc:
            lines.put((worker_id, exc))

    def start(new: list[str]) -> None:
        for worker_id in new:
            if worker_id not in started:
                started.add(worker_id)
                threading.Thread(
                    target=reader, args=(worker_id,), name=f"logs-{worker_id}", daemon=True
                ).start()

    start(ids)
    if not ids:
        print("no workers right now; waiting for one (Ctrl+C to stop)", flush=True)
    state = {"in_job": not job}

    def emit(worker_id: str, event: LogEvent) -> bool:
        """Print one line (from the job's first line on, with --job); True once the job's last line came."""
        if job and job in event.line:
            state["in_job"] = True
        if state["in_job"]:
            print(observe_view.log_line(worker_id, event), flush=True)
        return (
            bool(job) and state["in_job"] and job in event.line and any(w in event.line for w in FINAL_WORDS)
        )

    # The workers' backfills arrive one stream at a time: held for a moment and printed in time order.
    held: list[tuple[str, LogEvent]] | None = []
    release_at = time.monotonic() + BACKFILL_HOLD_S
    next_list = time.monotonic() + RELIST_S
    try:
        while True:
            try:
                worker_id, item = lines.get(timeout=0.2)
            except queue.Empty:
                item = None
                worker_id = ""
            if isinstance(item, RunPodError):
                if item.status == 404 and relist:
                    continue  # a worker that went away between the listing and its stream
                raise refusal(item, target)
            if item is None and worker_id and not relist:
                for w, e in sorted(held or [], key=lambda pair: (pair[1].ts, pair[0])):
                    emit(w, e)
                print(f"worker {worker_id} is gone; its log ended", file=sys.stderr)
                return
            if isinstance(item, LogEvent):
                if held is not None:
                    held.append((worker_id, item))
                elif emit(worker_id, item):
                    return
            if held is not None and time.monotonic() >= release_at:
                ordered, held = sorted(held, key=lambda pair: (pair[1].ts, pair[0])), None
                if any(emit(w, e) for w, e in ordered):
                    return
            if relist and time.monotonic() >= next_list:
                next_list = time.monotonic() + RELIST_S
                try:
                    with target.rest() as api:
                        start(
                            [str(w["id"]) for w in api.list_endpoint_workers(target.endpoint_id)["workers"]]
                        )
                except RunPodError:
                    pass  # the next listing may work; the readers go on
    finally:
        stop.set()


def _price(api: RunPodREST, endpoint_id: str) -> tuple[int, float | None, str]:
    """GPUs per worker and the list price per GPU-hour of the endpoint's first pool (RunPod fills pools in
    order), for the per-job estimate; ``(1, None, why)`` when either cannot be read."""
    try:
        endpoint = api.get_endpoint_raw(endpoint_id)
        gpu = endpoint.get("gpu") or {}
        count = int(gpu.get("count") or 1)
        pools = list(gpu.get("pools") or [])
        prices = [
            float(g["price"]["serverless"])
            for g in api.list_gpu_types()
            if pools and g.get("pool") == pools[0] and (g.get("price") or {}).get("serverless") is not None
        ]
    except RunPodError as exc:
        return 1, None, f"no list price: {exc.operation} answered HTTP {exc.status}; 1 GPU per worker assumed"
    except (KeyError, TypeError, ValueError) as exc:
        return 1, None, f"no list price: {type(exc).__name__} in RunPod's answer; 1 GPU per worker assumed"
    if not prices:
        return count, None, "no list price for the endpoint's GPU pool"
    return count, max(prices), f"{count} GPU x {pools[0]} list price {max(prices):.2f} USD/GPU-hour"


@task(
    help={
        "endpoint": ENDPOINT_HELP,
        "days": "how many days back, today included (default 7)",
        "history": "the job history invoke run keeps (default outputs/jobs.jsonl)",
    }
)
def cost(c: Context, endpoint: str = "", days: int = 7, history: str = "") -> None:
    """Spend per endpoint and network volume (RunPod's billing) with totals, and per job (run history).

    Per job: GPU-seconds (executionTime x GPUs per worker) and a list-price estimate."""
    if days < 1:
        raise Exit("error: --days must be 1 or more", code=2)
    target = resolve(endpoint or None)
    with target.rest() as api:
        try:
            serverless = api.list_serverless_billing(last_days=days)
            volumes = api.list_network_volume_billing(last_days=days)
        except RunPodError as exc:
            raise refusal(exc, target, scope="Billing") from None
        names = _names(api)
        gpu_count, price, note = _price(api, target.endpoint_id)
    since = time.time() - days * 86400
    path = Path(history) if history else Path("outputs") / job_history.FILE_NAME
    jobs = observe_view.job_costs(job_history.load(path, target.endpoint_id, since), gpu_count, price)
    _console().print(observe_view.cost_view(days, serverless, volumes, names, jobs, note))


def _names(api: RunPodREST) -> dict[str, str]:
    """Endpoint and volume names by id, to label the bills (none when the key may not list them)."""
    names: dict[str, str] = {}
    for lister in (api.list_endpoints, api.list_network_volumes):
        with contextlib.suppress(RunPodError):
            names |= {str(o["id"]): str(o.get("name")) for o in lister()}
    return names
