"""The job a log line belongs to: every ``comfy_runpod`` line written while a job runs carries its id.

Why: ``invoke logs --job ID`` (and a user reading RunPod's console) finds a job's stretch of a worker's log
by its id; lines such as "could not interrupt prompt" or a progress error do not name the job themselves.
``Worker.run`` sets ``current_job`` for the job's task (asyncio copies it into the tasks and threads the job
starts); ``JobIdFilter`` on the worker's log handler adds `` [job <id>]`` to the line (empty between jobs).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

current_job: ContextVar[str | None] = ContextVar("comfy_runpod_job", default=None)

#: The worker's log format: ``%(job)s`` is filled by ``JobIdFilter``.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s%(job)s: %(message)s"


class JobIdFilter(logging.Filter):
    """Sets ``record.job`` to `` [job <id>]`` while a job runs, else to an empty string."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = current_job.get()
        record.job = f" [job {job}]" if job else ""
        return True
