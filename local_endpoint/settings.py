"""Every number the local endpoint uses, with RunPod's values as the defaults.

Kept in one frozen dataclass so a test can shrink a limit (a 300 ms ``ttl``, a 0.5 s result
retention) without touching code, and so the defaults document what RunPod does.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 86_400_000


@dataclass(frozen=True)
class EndpointSettings:
    """Limits and timings of one local endpoint.

    Job API (RunPod's documented values):

    * ``retention_s`` / ``sync_retention_s``: how long a finished ``/run`` (30 min) or
      ``/runsync`` (1 min) job stays readable; ``/status`` answers 404 after that.
    * ``run_max_bytes`` / ``runsync_max_bytes``: request body limits (10 MB / 20 MB, counted
      in decimal megabytes, the stricter reading, so a request accepted here is accepted there).
    * ``execution_timeout_ms`` / ``ttl_ms``: the endpoint's defaults for a job's
      ``policy.executionTimeout`` (10 min) and ``policy.ttl`` (24 h); ``*_range_ms`` are the
      accepted ranges (5 s..7 d and 10 s..7 d); values outside are refused with 400.
    * ``runsync_wait_ms`` / ``runsync_wait_range_ms``: how long ``/runsync`` holds the request
      (90 s default; ``?wait=`` is clamped to 1..300 s).
    * ``webhook_attempts`` / ``webhook_retry_delay_s`` / ``webhook_timeout_s``: a webhook is
      tried 3 times, 10 s apart.
    * ``allow_private_webhooks``: webhooks go to public addresses only, the worker's policy
      for input URLs (``handler.input_files``); True also allows loopback and private ones
      (a receiver on this machine). Redirects are never followed.

    Job store caps (ours: a flood of requests must not grow the process without bound):

    * ``max_queued_jobs``: jobs waiting in the queue; ``/run`` and ``/runsync`` answer 429
      beyond it.
    * ``max_jobs``: jobs held in all (queued, running, finished and still readable); past
      it the oldest finished job is forgotten first, and with none finished the request is
      refused with 429.
    * ``max_held_bytes``: the total size of the requests and results held (bodies as
      posted: inputs, outputs, stream chunks); past it the oldest finished jobs are
      forgotten first (``/status`` then answers 404, as after the retention), and a request
      that still does not fit is refused with 429.

    Worker protocol (ours; RunPod does not publish them):

    * ``take_hold_s``: how long a job-take long-poll is held before ``204``. Short, so a worker
      that is being stopped notices quickly; the SDK polls again at once after a 204.
    * ``stop_hold_s``: how long a job-stop long-poll is held (the SDK allows 90 s).
    * ``stop_resend_s``: a stop signal is repeated this often until the worker lets the job go
      (the SDK ignores a stop for a job that has not reached its task table yet).
    * ``worker_grace_s``: SIGTERM to SIGKILL when a worker process is stopped.
    * ``restart_backoff_s`` / ``restart_backoff_max_s``: delay before restarting a worker that
      exited on its own; doubled while it keeps dying before it ever asked for a job.
    * ``external_worker_timeout_s``: a worker that is not ours (started by hand with
      :meth:`LocalEndpoint.worker_env`) counts in ``/health`` while seen this recently.
    """

    retention_s: float = 30 * 60.0
    sync_retention_s: float = 60.0
    run_max_bytes: int = 10_000_000
    runsync_max_bytes: int = 20_000_000
    execution_timeout_ms: int = 600_000
    execution_timeout_range_ms: tuple[int, int] = (5_000, 7 * DAY_MS)
    ttl_ms: int = DAY_MS
    ttl_range_ms: tuple[int, int] = (10_000, 7 * DAY_MS)
    runsync_wait_ms: int = 90_000
    runsync_wait_range_ms: tuple[int, int] = (1_000, 300_000)
    webhook_attempts: int = 3
    webhook_retry_delay_s: float = 10.0
    webhook_timeout_s: float = 10.0
    allow_private_webhooks: bool = False
    max_queued_jobs: int = 1_000
    max_jobs: int = 10_000
    max_held_bytes: int = 2 * 1024 * 1024 * 1024
    take_hold_s: float = 1.0
    stop_hold_s: float = 20.0
    stop_resend_s: float = 2.0
    worker_grace_s: float = 5.0
    restart_backoff_s: float = 0.5
    restart_backoff_max_s: float = 10.0
    external_worker_timeout_s: float = 30.0
    #: Largest body a worker may post (job-done / job-stream); RunPod's own cap is unknown.
    worker_max_bytes: int = 512 * 1024 * 1024
