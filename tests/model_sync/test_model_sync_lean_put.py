"""Small files go up on a lean signed PUT (model_sync.remote.put_small): same object, same errors."""

from __future__ import annotations

import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from model_sync.remote import make_client, put_small


def test_a_key_with_spaces_plus_and_unicode_lands_with_its_bytes_and_metadata(s3: tuple[Any, str]) -> None:
    client, bucket = s3
    key = "comfyui/models/loras/my lora+v2 (ü)~x.safetensors"
    body = os.urandom(4096)
    fallbacks: list[str] = []
    client.meta.events.register("before-call.s3.PutObject", lambda **kw: fallbacks.append("put_object"))
    put_small(client, bucket, key, body, {"sha256": "ab" * 32})
    assert fallbacks == []  # the lean request did it (a botocore without its pieces would fall back)
    got = client.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == body
    assert got["Metadata"] == {"sha256": "ab" * 32}
    assert [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]] == [key]


def test_a_refused_put_raises_the_servers_error_and_writes_nothing(
    s3: tuple[Any, str], s3_server: str, request: pytest.FixtureRequest
) -> None:
    """Wrong credentials: the lean request is refused, put_object then raises the server's error."""
    if request.node.callspec.params.get("s3_server") != "seaweedfs":
        pytest.skip("moto accepts any signature")
    client, bucket = s3
    wrong = make_client(
        None,
        {
            "RUNPOD_S3_ENDPOINT_URL": s3_server,
            "RUNPOD_S3_ACCESS_KEY_ID": "user_test",
            "RUNPOD_S3_SECRET_ACCESS_KEY": "not-the-secret",
        },
    )
    with pytest.raises(ClientError) as refused:
        put_small(wrong, bucket, "comfyui/models/vae/x.safetensors", b"x", {})
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert client.list_objects_v2(Bucket=bucket).get("Contents", []) == []
