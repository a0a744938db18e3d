"""Preflight: check the stack's GPU settings against RunPod's live GPU catalog before anything is deployed.

Why: the settings' own checks (``infra.settings``) know pool ids only from a list in the code and cannot know
which CUDA versions a pool's machines run or which data centers host it. RunPod's REST v2 catalog
(``GET /v2/catalog/gpus?include=AVAILABILITY&product=SERVERLESS``, read by ``RunPodREST.list_gpu_types``)
does. Refusing at ``pulumi preview`` turns "workers never start" into an error naming the key and the fix.

Pure functions over the catalog answer (a list of the spec's ``GpuType`` objects): no I/O, nothing stored.
At ``pulumi preview`` the Endpoint provider's check() calls ``check_gpu_catalog`` over REST (it holds the
API key, the program does not; ``infra.providers.endpoint``), with the catalog read once per provider process.
Rules, per endpoint:

- every ``gpuIds`` pool must be a serverless pool of the catalog (``pool`` of some GPU type); every
  ``-<type id>`` exclusion must name a GPU type of the chosen pools (RunPod answers 400 otherwise);
- ``allowedCudaVersions`` must leave at least one GPU type of the chosen pools (minus exclusions) whose
  machines offer one of the versions (``cudaVersions``; a type without the field offers none);
- the data center (``dataCenterId``: the volume's, where the workers must run) must host at least one of the
  chosen pools' (runnable) GPU types (``dataCenters``). The catalog omits ``dataCenters`` when a type is
  unavailable everywhere; if it is absent for every candidate type the check cannot decide and warns;
- a warning, not an error, when every chosen pool's best availability is ``LOW`` or ``NONE``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

AVAILABILITY_ORDER = ("NONE", "LOW", "MEDIUM", "HIGH")
LOW_AVAILABILITY = frozenset({"NONE", "LOW"})


@dataclass(frozen=True)
class Keys:
    """The config keys the messages name (an endpoint of ``endpoints`` passes its own paths)."""

    gpu_ids: str = "gpuIds"
    cuda: str = "allowedCudaVersions"
    data_center: str = "dataCenterId"


@dataclass(frozen=True)
class Preflight:
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def __add__(self, other: Preflight) -> Preflight:
        return Preflight(
            tuple(dict.fromkeys(self.errors + other.errors)),
            tuple(dict.fromkeys(self.warnings + other.warnings)),
        )


def _set_fix(key: str, example: str) -> str:
    return f"`pulumi config set --path '{key}[0]' {example}`"


def _cuda(gpu: Mapping[str, Any]) -> set[str]:
    return {str(c["version"]) for c in gpu.get("cudaVersions") or [] if isinstance(c, Mapping)}


def _centers(gpu: Mapping[str, Any]) -> set[str] | None:
    centers = gpu.get("dataCenters")
    if centers is None:
        return None
    return {str(c["id"]).upper() for c in centers if isinstance(c, Mapping)}


def _rank(level: Any) -> int:
    return AVAILABILITY_ORDER.index(level) if level in AVAILABILITY_ORDER else -1


def check_gpu_catalog(
    catalog: Sequence[Mapping[str, Any]],
    *,
    gpu_ids: Sequence[str],
    allowed_cuda_versions: Sequence[str],
    data_center_id: str | None,
    keys: Keys = Keys(),
) -> Preflight:
    """Errors and warnings for one endpoint's GPU settings against the catalog (see the module docstring)."""
    errors: list[str] = []
    warnings: list[str] = []
    serverless = [g for g in catalog if g.get("pool")]
    all_pools = sorted({str(g["pool"]) for g in serverless})
    pools = [t.strip() for t in gpu_ids if t.strip() and not t.strip().startswith("-")]
    excluded = {t.strip()[1:].strip() for t in gpu_ids if t.strip().startswith("-")}
    unknown = [p for p in pools if p not in all_pools]
    if unknown:
        example = _set_fix(keys.gpu_ids, all_pools[0] if all_pools else "ADA_24")
        errors.append(
            f"{keys.gpu_ids}: {', '.join(unknown)} is not a serverless GPU pool in RunPod's catalog (pools: "
            f"{', '.join(all_pools)}); use pool ids, e.g. {example}"
        )
    chosen = [p for p in pools if p in all_pools]
    in_pools = [g for g in serverless if g["pool"] in chosen]
    stray = sorted(excluded - {str(g["id"]) for g in in_pools})
    if chosen and stray:
        errors.append(
            f"{keys.gpu_ids}: -{', -'.join(stray)} excludes no GPU type of {', '.join(chosen)} (their types: "
            f"{', '.join(sorted(str(g['id']) for g in in_pools))}); correct or remove the exclusion"
        )
    candidates = [g for g in in_pools if str(g["id"]) not in excluded]
    if not chosen or not candidates:
        return Preflight(tuple(errors), tuple(warnings))

    wanted = {v.strip() for v in allowed_cuda_versions if v.strip()}
    runnable = [g for g in candidates if not wanted or _cuda(g) & wanted]
    if not runnable:
        offered = sorted(set().union(*(_cuda(g) for g in candidates)), key=_version_key)
        elsewhere = sorted({str(g["pool"]) for g in serverless if _cuda(g) & wanted})
        errors.append(
            f"{keys.cuda}: {', '.join(sorted(wanted))} leaves no GPU type of {', '.join(chosen)} able to run "
            f"(their machines offer CUDA {', '.join(offered) or 'none'}); choose pools offering it"
            + (f" ({', '.join(elsewhere)}), e.g. {_set_fix(keys.gpu_ids, elsewhere[0])}" if elsewhere else "")
            + f", or change {keys.cuda}"
        )
        runnable = candidates  # still check the data center for the pools as chosen

    if data_center_id:
        known = [c for g in runnable if (c := _centers(g)) is not None]
        if not known:
            warnings.append(
                f"{keys.data_center}: the catalog lists no data center for {', '.join(chosen)} right now "
                "(unavailable everywhere?), so it cannot confirm that "
                f"{data_center_id} hosts them"
            )
        elif data_center_id.upper() not in set().union(*known):
            hosting = sorted(
                {str(g["pool"]) for g in serverless if data_center_id.upper() in (_centers(g) or set())}
            )
            centers = sorted(set().union(*known))
            errors.append(
                f"{keys.data_center}: {data_center_id} hosts none of the chosen pools {', '.join(chosen)} "
                f"(they run in {', '.join(centers)}); choose pools hosted there"
                + (f" ({', '.join(hosting)}), e.g. {_set_fix(keys.gpu_ids, hosting[0])}" if hosting else "")
                + f", or a {keys.data_center} that hosts them (a new volume)"
            )

    best: dict[str, str] = {}
    for gpu in candidates:
        level = gpu.get("availability")
        pool = str(gpu["pool"])
        if level in AVAILABILITY_ORDER and _rank(level) > _rank(best.get(pool)):
            best[pool] = str(level)
    if best and len(best) == len(chosen) and all(v in LOW_AVAILABILITY for v in best.values()):
        better = sorted(
            {str(g["pool"]) for g in serverless if g.get("availability") in ("MEDIUM", "HIGH")} - set(chosen)
        )
        warnings.append(
            f"{keys.gpu_ids}: every chosen pool has low availability right now ("
            + ", ".join(f"{p}: {best[p]}" for p in chosen)
            + "); workers may wait for capacity"
            + (f": add a pool with more stock ({', '.join(better)})" if better else "")
        )
    return Preflight(tuple(errors), tuple(warnings))


def _version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (0,)


class EndpointLike(Protocol):
    """What preflight reads of ``infra.settings.EndpointSettings``."""

    @property
    def key(self) -> str: ...
    @property
    def gpu_ids(self) -> tuple[str, ...]: ...
    @property
    def allowed_cuda_versions(self) -> tuple[str, ...]: ...


class StackLike(Protocol):
    """What preflight reads of ``infra.settings.StackSettings``."""

    @property
    def data_center_id(self) -> str: ...
    def endpoint_list(self) -> Sequence[EndpointLike]: ...


def check_stack(catalog: Sequence[Mapping[str, Any]], settings: StackLike) -> Preflight:
    """Every endpoint of the stack settings. With several endpoints the messages name each one's own path
    (``endpoints.<key>.gpuIds``), also when its value is inherited from the top-level key."""
    endpoints = tuple(settings.endpoint_list())
    result = Preflight()
    for endpoint in endpoints:
        if len(endpoints) == 1:
            keys = Keys()
        else:
            own = f"endpoints.{endpoint.key}"
            keys = Keys(gpu_ids=f"{own}.gpuIds", cuda=f"{own}.allowedCudaVersions")
        result += check_gpu_catalog(
            catalog,
            gpu_ids=endpoint.gpu_ids,
            allowed_cuda_versions=endpoint.allowed_cuda_versions,
            data_center_id=settings.data_center_id,
            keys=keys,
        )
    return result
