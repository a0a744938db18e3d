"""A RunPod REST API v2 emulator checked against RunPod's OpenAPI description (openapi-core; test support)."""

from tests.runpod_rest_emulator.server import (
    Fault,
    Request,
    RunPodRESTEmulator,
    load_openapi,
    load_spec,
    running_emulator,
)
from tests.runpod_rest_emulator.state import Account, Problem

__all__ = [
    "Account",
    "Fault",
    "Problem",
    "Request",
    "RunPodRESTEmulator",
    "load_openapi",
    "load_spec",
    "running_emulator",
]
