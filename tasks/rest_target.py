"""Which endpoint the observability tasks look at, over which REST v2 URL, with which key.

The endpoint comes as for the other endpoint tasks (``tasks.endpoint``): ``--endpoint``, else
``RUNPOD_ENDPOINT_ID``, else ``RUNPOD_ENDPOINT_URL``, else the Pulumi stack's ``endpointId``.

- RunPod: the job API is ``https://api.runpod.ai/v2/<id>``, the REST API ``https://api.runpod.io``
  (``RUNPOD_REST_URL`` overrides it, e.g. for an emulator).
- ``RUNPOD_ENDPOINT_URL=http://127.0.0.1:8000/v2/local`` (the local endpoint): the id is the last path
  segment and the REST API is served by the same server (``http://127.0.0.1:8000``).

The key is ``RUNPOD_API_KEY``, or for a local endpoint on loopback the key file it wrote
(``custom_node.local_key``). It travels only in the ``Authorization`` header, never in a URL, and is never
printed (``Target``'s repr hides it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from invoke.exceptions import Exit

from custom_node.endpoint_client import DEFAULT_API_BASE, EndpointClient, RetryPolicy
from custom_node.local_key import read_local_key
from infra.runpod_rest import DEFAULT_URL, URL_ENV, RunPodREST
from tasks.stack import stack_output


@dataclass(frozen=True)
class Target:
    """One endpoint: its id, job-API URL, REST base URL and key."""

    endpoint_id: str
    job_url: str
    rest_url: str
    api_key: str = field(repr=False)

    def rest(self) -> RunPodREST:
        return RunPodREST(self.api_key, url=self.rest_url)

    def jobs(self) -> EndpointClient:
        """The job-API client (``/health``, ``/status``) of the same endpoint; few retries: a watch view must
        not stall on a job API that does not answer."""
        return EndpointClient(self.job_url, self.api_key, timeout_s=10.0, retry=RetryPolicy(2, 0.2, 2.0))


def resolve(endpoint: str | None, env: Mapping[str, str] | None = None) -> Target:
    """The target, or ``Exit`` (code 2) with one line saying what is missing."""
    env = os.environ if env is None else env
    endpoint = endpoint or env.get("RUNPOD_ENDPOINT_ID", "").strip() or None
    override = env.get("RUNPOD_ENDPOINT_URL", "").strip().rstrip("/")
    if endpoint:
        job_url = f"{DEFAULT_API_BASE}/{endpoint}"
        rest_url = env.get(URL_ENV) or DEFAULT_URL
    elif override:
        parts = urlsplit(override)
        endpoint = parts.path.rstrip("/").rsplit("/", 1)[-1]
        if not parts.scheme or not parts.netloc or not endpoint or "/v2/" not in parts.path + "/":
            raise Exit(
                f"error: RUNPOD_ENDPOINT_URL {override!r} is not a job-API URL like http://127.0.0.1:8000/v2/local",
                code=2,
            )
        job_url = override
        on_runpod = parts.hostname == "api.runpod.ai"
        rest_url = env.get(URL_ENV) or (DEFAULT_URL if on_runpod else f"{parts.scheme}://{parts.netloc}")
    else:
        endpoint = stack_output("endpointId")
        if not endpoint:
            raise Exit(
                "error: no endpoint: pass --endpoint, set RUNPOD_ENDPOINT_ID (or RUNPOD_ENDPOINT_URL for the "
                "local endpoint, e.g. http://127.0.0.1:8000/v2/local), or run `pulumi up` first",
                code=2,
            )
        job_url = f"{DEFAULT_API_BASE}/{endpoint}"
        rest_url = env.get(URL_ENV) or DEFAULT_URL
    key = read_local_key(job_url, env) or env.get("RUNPOD_API_KEY", "").strip()
    if not key:
        raise Exit("error: no API key: set RUNPOD_API_KEY (a key with read access to Serverless)", code=2)
    return Target(endpoint, job_url, rest_url.rstrip("/"), key)
