"""The model-sync tests' bucket: a fresh one per test on the S3 server under test (moto or SeaweedFS)."""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest

from model_sync.remote import make_client

_bucket_ids = itertools.count()


@pytest.fixture
def s3(s3_server: str) -> tuple[Any, str]:
    """A client signed as an identity both servers accept, and an empty bucket of its own."""
    env = {
        "RUNPOD_S3_ENDPOINT_URL": s3_server,
        "RUNPOD_S3_ACCESS_KEY_ID": "user_test",
        "RUNPOD_S3_SECRET_ACCESS_KEY": "rps_test",
    }
    client = make_client(None, env)
    bucket = f"vol{next(_bucket_ids)}-{os.getpid()}"
    client.create_bucket(Bucket=bucket)
    return client, bucket
