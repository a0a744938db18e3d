"""A schema-checked RunPod GraphQL emulator (needs graphql-core; test support only)."""

from tests.runpod_emulator.server import Fault, Request, RunPodEmulator, load_schema, running_emulator
from tests.runpod_emulator.state import Account, RunPodRuleError

__all__ = [
    "Account",
    "Fault",
    "Request",
    "RunPodEmulator",
    "RunPodRuleError",
    "load_schema",
    "running_emulator",
]
