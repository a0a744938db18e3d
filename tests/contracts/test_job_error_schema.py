"""The job error is one type: the worker's payloads, the client's decoding and the shared fixtures
all hold to ``custom_node/job_error.schema.json`` (the browser's renderer is checked against the
same fixtures in ``custom_node/js_tests/job_error.test.mjs``).

The producer side runs real jobs through the worker (against the ComfyUI stand-in, attach mode;
spawn mode for the crash), one per class of the error tree, so a class that nothing can produce
or a payload that drifts from the schema fails here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from comfyui_standin import StandinComfyUI, spawn_mode_env
from custom_node.errors import (
    UNEXPECTED,
    EndpointError,
    EndpointRequestError,
    JobFailed,
    JobWaitTimeout,
    OutputSaveError,
    job_error_of,
)
from custom_node.job_error import ENDED_WITHOUT_ERROR, UNSTRUCTURED, WORKER_EXCEPTION, JobError
from handler import errors as tree
from handler.error_details import DETAIL_KINDS
from handler.settings import Settings
from handler.supervisor import ComfyProcess
from handler.worker import Worker
from tests.conftest import make_worker
from tests.helpers import JOB_ERROR_SCHEMA, assert_job_error, decode_error, empty_invert_save

FIXTURES = Path(__file__).resolve().parents[2] / "custom_node" / "js_tests" / "job_errors.json"
DEFS = JOB_ERROR_SCHEMA["$defs"]


def _concrete_classes() -> list[type[tree.HandlerError]]:
    """Every class of the tree that has a code of its own (the ones a job can fail with)."""
    found: list[type[tree.HandlerError]] = []
    pending: list[type[tree.HandlerError]] = [tree.HandlerError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "code" in vars(cls) and cls is not tree.HandlerError:
            found.append(cls)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def job(workflow: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "schema-job", "input": {"workflow": workflow, **extra}}


SLEEP = {"1": {"class_type": "StandinSleep", "inputs": {"seconds": 30}}}


async def _when_running(standin: StandinComfyUI, run: Awaitable[dict[str, Any]]) -> asyncio.Task[Any]:
    """Start ``run`` and return its task once the stand-in has received the prompt."""
    task = asyncio.ensure_future(run)
    for _ in range(500):
        if any(m == "POST" and p == "/prompt" for m, p, _ in list(standin.requests)):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    return task


# One job per class of the tree, each failing the way a caller would meet that class.
Scenario = Callable[[StandinComfyUI, Path, pytest.MonkeyPatch], Awaitable[dict[str, Any]]]


async def _invalid_input(standin: StandinComfyUI, tmp: Path, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    return await make_worker(standin).run({"id": "j", "input": {"workflow": {}, "timeout_s": -1}})


async def _input_file(standin: StandinComfyUI, tmp: Path, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    url = f"{standin.url}/view?filename=x.png&type=input"  # loopback: refused by the URL policy
    return await make_worker(standin).run(job(empty_invert_save(), images=[{"name": "x.png", "url": url}]))


async def _validation(standin: StandinComfyUI, tmp: Path, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    workflow = {**empty_invert_save(), "9": {"class_type": "NoSuchNode", "inputs": {}}}
    return await make_worker(standin).run(job(workflow))


async def _execution(standin: StandinComfyUI, tmp: Path, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    raising = {
        "1": {"class_type": "StandinRaise", "inputs": {"message": "no", "exception_type": "ValueError"}}
    }
    return await make_worker(standin).run(job(raising))


async def _interrupted(standin: StandinComfyUI, tmp: Path, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    task = await _when_running(standin, make_worker(standin).run(job(SLEEP)))
    standin.interrupt()  # someone else's POST /interrupt
    return await task  # type: ignore[no-any-return]


async def _timeout(standin: StandinComfyUI, tmp: Path, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    return await make_worker(standin).run(job(SLEEP, timeout_s=0.3))


async def _output(standin: StandinComfyUI, tmp: Path, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    return await make_worker(standin).run(job(empty_invert_save(), output={"mode": "s3"}))


async def _too_large(standin: StandinComfyUI, tmp: Path, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    return await make_worker(standin, OUTPUT_AUTO_THRESHOLD=10).run(job(empty_invert_save()))


async def _crashed(standin: StandinComfyUI, tmp: Path, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    env = {**spawn_mode_env(tmp / "spawned", _free_port()), "COMFYUI_STARTUP_TIMEOUT": "30"}
    comfy = ComfyProcess(Settings.from_env(env))
    comfy.start()
    try:
        crash = {"1": {"class_type": "StandinCrash", "inputs": {"exit_code": 7, "signal": "none"}}}
        return await Worker(Settings.from_env(env), comfy).run(job(crash))
    finally:
        await asyncio.to_thread(comfy.shutdown, 5)


async def _start_failed(standin: StandinComfyUI, tmp: Path, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    nowhere = f"http://127.0.0.1:{_free_port()}"
    return await make_worker(standin, COMFYUI_URL=nowhere, COMFYUI_STARTUP_TIMEOUT=0.5).run(
        job(empty_invert_save())
    )


async def _unreachable(standin: StandinComfyUI, tmp: Path, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    task = await _when_running(standin, make_worker(standin).run(job(SLEEP)))
    await asyncio.to_thread(standin.stop)  # ComfyUI goes away mid-job
    return await task  # type: ignore[no-any-return]


async def _internal(standin: StandinComfyUI, tmp: Path, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    def bug(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug in the worker")

    mp.setattr("handler.worker.validate_workflow", bug)
    return await make_worker(standin).run(job(empty_invert_save()))


SCENARIOS: dict[type[tree.HandlerError], Scenario] = {
    tree.InvalidInput: _invalid_input,
    tree.InputFileError: _input_file,
    tree.WorkflowInvalid: _validation,
    tree.ExecutionFailed: _execution,
    tree.PromptInterrupted: _interrupted,
    tree.JobTimeout: _timeout,
    tree.OutputError: _output,
    tree.OutputTooLarge: _too_large,
    tree.ComfyCrashed: _crashed,
    tree.ComfyStartFailed: _start_failed,
    tree.ComfyUnreachable: _unreachable,
    tree.InternalError: _internal,
}


def test_every_class_of_the_tree_has_a_job_here_and_a_code_in_the_schema() -> None:
    classes = _concrete_classes()
    assert set(SCENARIOS) == set(classes)
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), "one class per code"
    assert set(codes) == set(DEFS["workerCode"]["enum"])


@pytest.fixture
def standin_fresh(tmp_path: Path) -> Iterator[StandinComfyUI]:
    with StandinComfyUI(tmp_path / "comfyui") as server:
        yield server


@pytest.mark.parametrize("cls", list(SCENARIOS), ids=lambda cls: cls.code)
async def test_each_class_fails_a_job_with_a_payload_the_schema_accepts(
    cls: type[tree.HandlerError],
    standin_fresh: StandinComfyUI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = await SCENARIOS[cls](standin_fresh, tmp_path, monkeypatch)
    error = decode_error(result)  # checks the schema
    assert error["code"] == cls.code, error["message"]
    # What reaches the client decodes to the same error, unchanged.
    decoded = JobFailed({"id": "j", "status": "FAILED", "error": result["error"]}).error
    assert decoded.to_json() == error


def test_the_detail_dataclasses_are_the_schemas_detail_kinds() -> None:
    kinds = {kind.__name__: kind for kind in DETAIL_KINDS}
    listed = [
        ref["$ref"].rsplit("/", 1)[1] for ref in JOB_ERROR_SCHEMA["properties"]["details"]["items"]["anyOf"]
    ]
    assert sorted(listed) == sorted(kinds)
    for name, kind in kinds.items():
        declared = DEFS[name]
        names = [f.name for f in dataclasses.fields(kind)]  # type: ignore[arg-type]
        assert sorted(names) == sorted(declared["properties"]), name
        required = {
            f.name
            for f in dataclasses.fields(kind)  # type: ignore[arg-type]
            if f.default is dataclasses.MISSING or f.name in kind.ALWAYS_WRITTEN
        }
        assert required == set(declared["required"]), name


# -- the client's decoding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "code"),
    [
        ({"status": "FAILED", "error": json.dumps({"code": "TIMEOUT", "message": "late"})}, "TIMEOUT"),
        ({"status": "FAILED", "error": "worker exited unexpectedly"}, UNSTRUCTURED),
        ({"status": "FAILED", "error": "{not json"}, UNSTRUCTURED),
        (
            {
                "status": "FAILED",
                "error": {
                    "error_type": "<class 'ValueError'>",
                    "error_message": "boom",
                    "error_traceback": "tb",
                },
            },
            WORKER_EXCEPTION,
        ),
        ({"status": "FAILED", "error": ["odd"]}, UNSTRUCTURED),
        ({"status": "CANCELLED"}, "CANCELLED"),
        ({"status": "TIMED_OUT", "error": ""}, "TIMED_OUT"),
        ({"status": "FAILED"}, "FAILED"),
    ],
)
def test_every_shape_a_job_can_fail_with_decodes_into_the_schema(job: dict[str, Any], code: str) -> None:
    error = JobFailed({"id": "j", **job}).error
    assert error.code == code
    assert_job_error(error.to_json())


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (JobWaitTimeout("job j still IN_QUEUE after 1 s"), "WAIT_TIMEOUT"),
        (EndpointRequestError("GET status: cannot reach http://x"), "ENDPOINT_ERROR"),
        (OutputSaveError("refusing to save an output named '../x'"), "SAVE_FAILED"),
        (RuntimeError("a bug"), UNEXPECTED),
    ],
)
def test_the_clients_own_failures_are_job_errors_too(exc: BaseException, code: str) -> None:
    error = job_error_of(exc)
    assert error.code == code
    assert_job_error(error.to_json())


def _codes_of(cls: type[EndpointError]) -> set[str]:
    """The codes of ``cls`` and its subclasses; JobFailed carries the job's own error instead."""
    if cls is JobFailed:
        return set()
    return {cls.code} | {code for sub in cls.__subclasses__() for code in _codes_of(sub)}


def test_the_client_and_platform_codes_are_the_schemas() -> None:
    client = _codes_of(EndpointError) | {UNEXPECTED}
    assert client == set(DEFS["clientCode"]["enum"])
    assert set(ENDED_WITHOUT_ERROR) | {UNSTRUCTURED, WORKER_EXCEPTION} == set(DEFS["platformCode"]["enum"])


# -- the fixtures the browser's renderer is tested with ------------------------------------------


def _fixtures() -> list[dict[str, Any]]:
    fixtures: list[dict[str, Any]] = json.loads(FIXTURES.read_text(encoding="utf-8"))
    return fixtures


@pytest.mark.parametrize("fixture", _fixtures(), ids=lambda f: f["name"])
def test_each_fixture_is_a_job_error_and_renders_as_its_text(fixture: dict[str, Any]) -> None:
    assert_job_error(fixture["error"])
    assert JobError.decode(json.dumps(fixture["error"])).text() == "\n".join(fixture["text"])


def test_the_fixtures_cover_every_kind_of_detail_and_code_family() -> None:
    fixtures = _fixtures()
    kinds_seen = set()
    for fixture in fixtures:
        for detail in fixture["error"]["details"]:
            for kind in DETAIL_KINDS:
                props = DEFS[kind.__name__]["properties"]
                if set(detail) <= set(props) and set(DEFS[kind.__name__]["required"]) <= set(detail):
                    kinds_seen.add(kind.__name__)
    assert kinds_seen == {kind.__name__ for kind in DETAIL_KINDS}
    codes = {f["error"]["code"] for f in fixtures}
    for family in ("workerCode", "platformCode", "clientCode"):
        assert codes & set(DEFS[family]["enum"]), family
