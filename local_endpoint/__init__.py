"""A local RunPod serverless endpoint: RunPod's job API and worker protocol on 127.0.0.1.

Clients (``runpod.Endpoint``, curl, the project's endpoint client) call the same
``/v2/{endpoint_id}/run``, ``runsync``, ``status``, ``stream``, ``cancel``, ``retry``,
``purge-queue`` and ``health`` as on RunPod; N worker processes run the unmodified SDK loop
(``python -u handler/handler.py``) against the same worker protocol as in production.

    with LocalEndpoint(workers=2, worker_env={"COMFYUI_URL": "http://127.0.0.1:8188"}) as ep:
        auth = {"Authorization": f"Bearer {ep.api_key}"}  # RUNPOD_API_KEY, else made for this run
        requests.post(f"{ep.url}/runsync", json={"input": {"workflow": ...}}, headers=auth)

What a web page in the user's browser could send is refused (:mod:`local_endpoint.guard`),
and the job store is capped (:class:`EndpointSettings`).

Command line: ``python -m local_endpoint --help``.
"""

from local_endpoint.endpoint import DEFAULT_WORKER_COMMAND, REPO_ROOT, LocalEndpoint
from local_endpoint.jobs import Job, JobRequest, JobStatus
from local_endpoint.pool import WorkerExit
from local_endpoint.settings import EndpointSettings

__all__ = [
    "DEFAULT_WORKER_COMMAND",
    "REPO_ROOT",
    "EndpointSettings",
    "Job",
    "JobRequest",
    "JobStatus",
    "LocalEndpoint",
    "WorkerExit",
]
