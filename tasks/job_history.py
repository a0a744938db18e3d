"""The jobs ``invoke run`` finished, one JSON line each in ``<out>/jobs.jsonl``: what ``invoke cost`` reads.

Why a file: RunPod's job API has no list of past jobs (``/status`` forgets a job after its retention), so
the only job history a user has is the one their own runs kept. Each line keeps only what costs are
computed from: the job id, the endpoint, the final status, ``delayTime`` and ``executionTime`` (ms) and
when it ended; never the input, output or key.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_NAME = "jobs.jsonl"


@dataclass(frozen=True)
class JobRecord:
    id: str
    endpoint: str
    status: str
    delay_ms: int
    execution_ms: int
    finished_at: float  # Unix seconds


def record(out_dir: Path, endpoint: str, job: dict[str, Any]) -> None:
    """Append a finished job's timing (best effort: a history that cannot be written is not an error)."""
    line = {
        "id": str(job.get("id")),
        "endpoint": endpoint,
        "status": str(job.get("status")),
        "delayTime": int(job.get("delayTime") or 0),
        "executionTime": int(job.get("executionTime") or 0),
        "finishedAt": round(time.time(), 3),
    }
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with (out_dir / FILE_NAME).open("a", encoding="utf-8") as file:
            file.write(json.dumps(line) + "\n")
    except OSError:
        pass


def load(path: Path, endpoint: str, since: float) -> list[JobRecord]:
    """The records of ``endpoint`` that ended after ``since`` (Unix seconds); bad lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    records: list[JobRecord] = []
    for raw in text.splitlines():
        try:
            data = json.loads(raw)
            item = JobRecord(
                str(data["id"]),
                str(data["endpoint"]),
                str(data["status"]),
                int(data["delayTime"]),
                int(data["executionTime"]),
                float(data["finishedAt"]),
            )
        except (ValueError, KeyError, TypeError):
            continue
        if item.endpoint == endpoint and item.finished_at >= since:
            records.append(item)
    return records
