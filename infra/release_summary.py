"""What an endpoint's releases say, in a few lines: ``invoke releases`` and the ``endpointRelease`` output.

Why here: ``pulumi up`` shows the same summary as ``invoke releases`` once it rolled the endpoint (a new
image or env makes a new release over REST v2), and the Pulumi program may not import ``tasks``. The text
comes from ``listEndpointReleases`` as RunPod answers it (newest release first).

The stack output (``release_output``) is the newest release's line, read once the endpoint's version is known
and only over the REST transport; any error becomes a one-line note in the output, never a failed ``up``. It
changes when the endpoint's version does, so ``pulumi up`` lists it among the changed outputs when it rolled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi

from infra.runpod_rest import RunPodError, RunPodREST

DIFF_VALUE_CHARS = 60


def _value(value: Any) -> str:
    text = "(none)" if value is None else str(value)
    return text if len(text) <= DIFF_VALUE_CHARS else text[: DIFF_VALUE_CHARS - 1] + "…"


def describe_diff(diff: Sequence[Mapping[str, Any]]) -> str:
    """``image: a → b; workers.max: 3 → 5``; env values are never shown (they may be secrets)."""
    parts: list[str] = []
    for entry in diff:
        name = str(entry.get("field", "?"))
        if name == "env" or name.endswith(".env"):
            old, new = entry.get("old") or {}, entry.get("new") or {}
            keys = sorted({*old, *new}) if isinstance(old, dict) and isinstance(new, dict) else []
            changed = [k for k in keys if old.get(k) != new.get(k)]
            parts.append(f"{name}: {', '.join(changed) or 'changed'} (values hidden)")
        else:
            parts.append(f"{name}: {_value(entry.get('old'))} → {_value(entry.get('new'))}")
    return "; ".join(parts) or "initial release"


def release_lines(data: Mapping[str, Any], *, limit: int = 10) -> list[str]:
    """The rollout line, then one line per release (newest first): version, source, when, workers, diff."""
    rollout = data.get("rollout") or {}
    current = data.get("endpointVersion")
    state = "rolling out" if rollout.get("inProgress") else "settled"
    lines = [
        f"endpoint version {current}: {state}, {rollout.get('workersOnLatest', 0)}/"
        f"{rollout.get('workersTotal', 0)} workers on it ({rollout.get('percentOnLatest', 0)}%)"
    ]
    lines += [release_line(r) for r in list(data.get("releases") or [])[:limit]]
    return lines


def release_line(release: Mapping[str, Any], *, workers: bool = True) -> str:
    """``v4  MANUAL  2026-06-01T12:00:00Z  2 workers  image: a → b``."""
    build = f" build {release['buildId']}" if release.get("buildId") else ""
    count = f"  {release.get('workerCount', 0)} workers" if workers else ""
    return (
        f"v{release.get('version')}  {release.get('source')}{build}  {release.get('createdAt')}{count}  "
        f"{describe_diff(release.get('diff') or []) if release.get('diff') else _no_diff(release)}"
    )


def _no_diff(release: Mapping[str, Any]) -> str:
    return "initial release" if release.get("version") in (None, 1) else "no configuration change"


def release_summary(data: Mapping[str, Any]) -> str:
    """The newest release, one line without worker counts (they change as workers scale, this must not)."""
    releases = list(data.get("releases") or [])
    return release_line(releases[0], workers=False) if releases else "no release yet"


def fetch_summary(api_key: str, endpoint_id: str) -> str:
    """The summary from RunPod now, or a one-line note saying why there is none."""
    try:
        with RunPodREST(api_key, attempts=2) as client:
            return release_summary(client.list_endpoint_releases(endpoint_id))
    except (RunPodError, ValueError) as exc:
        return f"release summary unavailable: {exc}"


def release_output(
    endpoint_id: pulumi.Output[str],
    version: pulumi.Output[int],
    api_key: pulumi.Output[str],
    transport: str,
) -> pulumi.Output[str]:
    """The ``endpointRelease`` stack output (see the module docstring); not secret (it holds no secret).

    ``transport``: the stack's ``runpodApi``; only REST v2 has releases.
    """

    def summary(args: list[Any]) -> str:
        endpoint, current, key = args
        if transport != "rest":
            return "release summaries need runpodApi=rest"
        if current is None or not endpoint:
            return "not deployed yet"
        return fetch_summary(str(key), str(endpoint))

    return pulumi.Output.unsecret(pulumi.Output.all(endpoint_id, version, api_key).apply(summary))
