"""How ``invoke workers``, ``logs`` and ``cost`` show what RunPod answered (rich tables and plain lines).

Pure functions of the answers, so the watch view and the reports are tested without a terminal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from infra.sse import LogEvent
from tasks.job_history import JobRecord


def short_image(image: str | None) -> str:
    """``repo:tag@sha256:0123456789ab`` (the digest cut to 12 hex digits), or ``-``."""
    if not image:
        return "-"
    name, at, digest = image.partition("@")
    if at and digest.startswith("sha256:"):
        return f"{name}@sha256:{digest[7:19]}"
    return image


def uptime(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def job_counts(health: Mapping[str, Any] | None, problem: str | None = None) -> str:
    """``jobs: 1 in queue, 2 in progress, 10 completed, 1 failed, 0 retried`` from the job API's /health."""
    if health is None:
        return f"jobs: unavailable ({problem})" if problem else "jobs: unavailable"
    jobs = health.get("jobs") or {}
    names = [("inQueue", "in queue"), ("inProgress", "in progress"), ("completed", "completed")]
    names += [("failed", "failed"), ("retried", "retried")]
    return "jobs: " + ", ".join(f"{jobs.get(key, 0)} {label}" for key, label in names)


def workers_view(endpoint_id: str, workers: Mapping[str, Any], jobs_line: str) -> Group:
    """The ``invoke workers`` screen: a summary line, one row per worker, the job counts."""
    summary = workers.get("summary") or {}
    version = workers.get("endpointVersion")
    counts = ", ".join(
        f"{summary.get(s, 0)} {s}" for s in ("running", "idle", "initializing", "throttled", "unhealthy")
    )
    head = Text(f"endpoint {endpoint_id}  version {version}  workers: {summary.get('total', 0)} ({counts})")
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("worker", "status", "GPU", "data center", "image", "version", "uptime", "stale"):
        table.add_column(column)
    for w in workers.get("workers") or []:
        table.add_row(
            str(w.get("id")),
            str(w.get("status")),
            f"{w.get('gpuCount', 0)}x {w['gpuTypeId']}" if w.get("gpuTypeId") else "-",
            str(w.get("dataCenterId") or "-"),
            short_image(w.get("image")),
            str(w.get("version") if w.get("version") is not None else "-"),
            uptime(w.get("uptimeSeconds")),
            Text("stale", style="yellow") if w.get("isStale") else Text("current", style="green"),
        )
    parts: list[Any] = [head]
    parts.append(table if workers.get("workers") else Text("no workers right now"))
    parts.append(Text(jobs_line))
    return Group(*parts)


def log_line(worker_id: str, event: LogEvent) -> str:
    """``2026-06-01T12:00:04.000001Z w1-0 | Worker ready.`` (``w1-0/system`` for system lines)."""
    label = worker_id if event.source == "container" else f"{worker_id}/{event.source}"
    return f"{event.ts} {label} | {event.line}"


def job_window(events: Sequence[tuple[str, LogEvent]], job_id: str) -> list[tuple[str, LogEvent]]:
    """The lines from the first that names ``job_id`` to the last that does (the job's stretch of the log:
    the handler's lines carry the job id, ComfyUI's lines in between are the job's too)."""
    marks = [i for i, (_, e) in enumerate(events) if job_id in e.line]
    return list(events[marks[0] : marks[-1] + 1]) if marks else []


@dataclass(frozen=True)
class JobCost:
    record: JobRecord
    gpu_seconds: float
    estimate_usd: float | None


def job_costs(records: Iterable[JobRecord], gpu_count: int, usd_per_gpu_hour: float | None) -> list[JobCost]:
    """GPU-seconds (execution time x GPUs per worker) and the list-price estimate of each job.

    ``delayTime`` (queue wait plus any cold start) is not counted: a worker that was already up costs
    nothing extra while a job waits, and a cold start's cost shows in the billing, not per job."""
    out: list[JobCost] = []
    for r in records:
        gpu_s = r.execution_ms / 1000 * gpu_count
        estimate = gpu_s * usd_per_gpu_hour / 3600 if usd_per_gpu_hour is not None else None
        out.append(JobCost(r, gpu_s, estimate))
    return out


def cost_view(
    days: int,
    serverless: Mapping[str, Any],
    volumes: Mapping[str, Any],
    names: Mapping[str, str],
    jobs: Sequence[JobCost],
    price_note: str,
) -> Group:
    """``invoke cost``: spend per endpoint, per network volume, the totals, then the jobs of the history."""
    per_endpoint: dict[str, dict[str, float]] = {}
    for r in serverless.get("records") or []:
        amounts = per_endpoint.setdefault(str(r.get("serverlessId")), {})
        for key in ("gpuAmount", "cpuAmount", "diskAmount", "feeAmount", "totalAmount"):
            amounts[key] = amounts.get(key, 0.0) + float(r.get(key) or 0.0)
    endpoints = Table(title=f"Serverless spend, last {days} days (USD)", box=None, header_style="bold")
    for column in ("endpoint", "GPU", "CPU", "disk", "fee", "total"):
        endpoints.add_column(column, justify="left" if column == "endpoint" else "right")
    for endpoint_id, a in sorted(per_endpoint.items()):
        label = f"{names[endpoint_id]} ({endpoint_id})" if endpoint_id in names else endpoint_id
        endpoints.add_row(
            label,
            *(f"{a.get(k, 0.0):.2f}" for k in ("gpuAmount", "cpuAmount", "diskAmount", "feeAmount")),
            f"{a.get('totalAmount', 0.0):.2f}",
        )
    per_volume: dict[str, dict[str, float]] = {}
    for r in volumes.get("records") or []:
        amounts = per_volume.setdefault(str(r.get("networkVolumeId")), {})
        for key in ("standardAmount", "highPerformanceAmount", "totalAmount"):
            amounts[key] = amounts.get(key, 0.0) + float(r.get(key) or 0.0)
    volume_table = Table(title=f"Network volume spend, last {days} days (USD)", box=None, header_style="bold")
    for column in ("volume", "standard", "high performance", "total"):
        volume_table.add_column(column, justify="left" if column == "volume" else "right")
    for volume_id, a in sorted(per_volume.items()):
        label = f"{names[volume_id]} ({volume_id})" if volume_id in names else volume_id
        volume_table.add_row(
            label,
            f"{a.get('standardAmount', 0.0):.2f}",
            f"{a.get('highPerformanceAmount', 0.0):.2f}",
            f"{a.get('totalAmount', 0.0):.2f}",
        )
    serverless_total = sum(a.get("totalAmount", 0.0) for a in per_endpoint.values())
    volume_total = sum(a.get("totalAmount", 0.0) for a in per_volume.values())
    totals = Text(
        f"total: {serverless_total + volume_total:.2f} USD "
        f"(serverless {serverless_total:.2f}, network volumes {volume_total:.2f})"
    )
    parts: list[Any] = [
        endpoints if per_endpoint else Text(f"no serverless spend in the last {days} days"),
        volume_table if per_volume else Text(f"no network volume spend in the last {days} days"),
        totals,
    ]
    if jobs:
        table = Table(title="Jobs from the run history", box=None, header_style="bold")
        for column in ("job", "status", "delay s", "execution s", "GPU-s", "estimate USD"):
            table.add_column(column, justify="left" if column in ("job", "status") else "right")
        for j in jobs:
            table.add_row(
                j.record.id,
                j.record.status,
                f"{j.record.delay_ms / 1000:.1f}",
                f"{j.record.execution_ms / 1000:.1f}",
                f"{j.gpu_seconds:.1f}",
                f"{j.estimate_usd:.4f}" if j.estimate_usd is not None else "?",
            )
        gpu_total = sum(j.gpu_seconds for j in jobs)
        known = [j.estimate_usd for j in jobs if j.estimate_usd is not None]
        estimate = f", estimate {sum(known):.4f} USD" if known else ""
        parts += [table, Text(f"{len(jobs)} jobs: {gpu_total:.1f} GPU-seconds{estimate} ({price_note})")]
    else:
        parts.append(Text("no jobs in the run history (invoke run records each job it ran)"))
    return Group(*parts)
