"""Engine tests: skipped, with one line naming `uv run invoke dev-tools`, where the tools are not built.

They are left out at collection (never a build from pytest), and the summary says so once. Each test runs
for both RunPod transports (``transport``: ``graphql``, ``rest``, the stack config ``runpodApi``), against
that transport's emulator (``runpod``, a ``tests.infra_support.Backend``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.terminal import TerminalReporter

from tests.engine.pulumi_cli import MISSING_TOOLS, REPO, PulumiStack, tools_missing
from tests.infra_support import Backend

HERE = Path(__file__).resolve().parent
_left_out: list[pytest.Item] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not tools_missing():
        return
    engine = [item for item in items if HERE in item.path.parents]
    if engine:
        _left_out.extend(engine)
        items[:] = [item for item in items if item not in engine]
        config.hook.pytest_deselected(items=engine)


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    if _left_out:
        terminalreporter.write_line(f"SKIPPED {len(_left_out)} engine tests: {MISSING_TOOLS}")


@pytest.fixture(scope="session")
def engine_tools() -> None:
    if tools_missing():  # the collection hook above leaves them out; this guards a direct call
        pytest.skip(MISSING_TOOLS)


@pytest.fixture
def api_key() -> str:
    return "rpa_ENGINE" + secrets.token_hex(12).upper()


@pytest.fixture
def graphql_runpod(api_key: str) -> Iterator[Backend]:
    """The GraphQL emulator holding an account keyed with ``api_key``."""
    from tests.runpod_emulator import Account, running_emulator

    # RunPod refuses to delete a template for a while after its endpoint went; 2 s keeps that in the
    # picture (the provider waits and retries) without the real minutes.
    for emulator in running_emulator(api_key=api_key, account=Account(template_grace_s=2.0)):
        yield Backend("graphql", emulator)


@pytest.fixture
def rest_runpod(api_key: str) -> Iterator[Backend]:
    """The REST v2 emulator (spec-validated: a violation fails the test at teardown), keyed with api_key."""
    from tests.runpod_rest_emulator import running_emulator

    for emulator in running_emulator(api_key=api_key):
        yield Backend("rest", emulator)


@pytest.fixture
def runpod(transport: str, request: pytest.FixtureRequest) -> Backend:
    """The emulator of the test's transport (``transport`` is parametrized over both)."""
    backend: Backend = request.getfixturevalue(f"{transport}_runpod")
    return backend


@pytest.fixture
def stack(engine_tools: None, runpod: Backend, tmp_path: Path) -> Iterator[PulumiStack]:
    stack = PulumiStack(home=tmp_path, backend=runpod)
    yield stack
    assert not (REPO / f"Pulumi.{stack.name}.yaml").exists(), "a test left a stack file in the checkout"
