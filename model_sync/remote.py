"""The volume side over RunPod's S3 API: the client, and the listing of what is there.

RunPod serves each network volume as a bucket named by the volume id, at
``https://s3api-<dc>.runpod.io/`` with the data center as the SigV4 region. Its first listing
of a big tree can be slow and can answer a repeated continuation token, so the listing retries
and the read timeout is generous.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote_plus
from xml.etree import ElementTree

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ENDPOINT_ENV = "RUNPOD_S3_ENDPOINT_URL"
ACCESS_KEY_ENV = "RUNPOD_S3_ACCESS_KEY_ID"
SECRET_KEY_ENV = "RUNPOD_S3_SECRET_ACCESS_KEY"  # noqa: S105 (a variable name)
# RunPod keeps in-progress multipart parts here; never a model.
HIDDEN_PREFIXES = (".s3compat_uploads/",)


class RemoteError(Exception):
    """A problem with the S3 target's settings (missing credentials, no data center)."""


def endpoint_for(datacenter: str | None, env: Mapping[str, str]) -> tuple[str, str]:
    """The endpoint URL and region: ``$RUNPOD_S3_ENDPOINT_URL`` wins, else the data center's."""
    override = env.get(ENDPOINT_ENV, "").strip()
    if override:
        return override, (datacenter or "us-east-1")
    if not datacenter:
        raise RemoteError("no data center: pass --datacenter (e.g. EUR-IS-1) or set RUNPOD_S3_ENDPOINT_URL")
    return f"https://s3api-{datacenter.lower()}.runpod.io/", datacenter.upper()


def make_client(
    datacenter: str | None, env: Mapping[str, str] | None = None, *, max_connections: int = 32
) -> S3Client:
    """A boto3 S3 client for the volume, credentials from the environment (never printed)."""
    import boto3
    from botocore.config import Config

    env = os.environ if env is None else env
    url, region = endpoint_for(datacenter, env)
    key, secret = env.get(ACCESS_KEY_ENV, ""), env.get(SECRET_KEY_ENV, "")
    if not key or not secret:
        raise RemoteError(
            f"set {ACCESS_KEY_ENV} and {SECRET_KEY_ENV} (an S3 API key: RunPod console > Settings > "
            "S3 API Keys; not the RunPod API key)"
        )
    config = Config(
        region_name=region,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": 10, "mode": "standard"},
        read_timeout=300,
        connect_timeout=20,
        max_pool_connections=max_connections,
        # Checksums only where S3 requires them: S3-compatible stores (RunPod's among them) do
        # not all accept the CRC32 / aws-chunked trailers botocore sends by default since 1.36.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    client: S3Client = boto3.client(
        "s3", endpoint_url=url, aws_access_key_id=key, aws_secret_access_key=secret, config=config
    )
    return client


#: bodies up to this size go through :func:`put_small` (read into memory); larger ones stream
LEAN_PUT_MAX = 8 * 1024 * 1024


def _lean_put(client: S3Client, bucket: str, key: str, body: bytes, metadata: Mapping[str, str]) -> bool:
    """One signed PUT on the client's own HTTP session; whether the server answered 200.

    False when the client is not one this path knows (not path-style, no endpoint, a botocore
    without the pieces used here) or the request did not succeed: the caller then asks
    ``put_object``, which retries and raises the error the user sees.
    """
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest

    config = client.meta.config
    if (getattr(config, "s3", None) or {}).get("addressing_style") != "path":
        return False
    endpoint = getattr(client, "_endpoint", None)
    session = getattr(endpoint, "http_session", None)
    get_credentials = getattr(client, "_get_credentials", None)
    credentials = get_credentials() if get_credentials is not None else None
    if session is None or credentials is None or not client.meta.endpoint_url:
        return False
    url = f"{client.meta.endpoint_url.rstrip('/')}/{quote(bucket, safe='')}/{quote(key, safe='/~')}"
    headers = {"Content-Length": str(len(body))}
    headers.update({f"x-amz-meta-{name}": value for name, value in metadata.items()})
    request = AWSRequest(method="PUT", url=url, data=body, headers=headers)
    request.context["client_config"] = config  # the same payload-signing choice put_object makes
    S3SigV4Auth(credentials.get_frozen_credentials(), "s3", client.meta.region_name).add_auth(request)
    try:
        response = session.send(request.prepare())
        _ = response.content  # read to the end: the connection goes back to the pool
    except Exception:  # a dropped connection: put_object retries it properly
        return False
    return bool(response.status_code == 200)


def put_small(client: S3Client, bucket: str, key: str, body: bytes, metadata: Mapping[str, str]) -> None:
    """PutObject of a small body, at a fraction of boto3's CPU cost per call.

    A sync of 10k small models is bound by the client's CPU, not the network: ``put_object``
    spends ~1.2 ms of Python per call (events, endpoint rules, validation, parsing), more than
    the S3 server itself. The same request, signed by botocore's SigV4 signer and sent on the
    client's own HTTP session (its pool, TLS and proxy settings), costs about half. Anything
    but a 200 is done again by ``put_object``, so retries and errors are boto3's own.
    """
    if not _lean_put(client, bucket, key, body, metadata):
        client.put_object(Bucket=bucket, Key=key, Body=body, Metadata=dict(metadata))


@dataclass(frozen=True)
class RemoteObject:
    key: str
    size: int
    etag: str


def _fast_listing(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    """Parse a ListObjectsV2 page's objects with ElementTree instead of botocore's parser.

    botocore's modeled XML parsing costs ~0.1 s per 1000 keys, most of a no-op sync of a big
    tree; the C parser is ~20x faster. The objects go into ``FastContents`` and are removed
    from the body botocore still parses (for the token, truncation, errors).
    """
    if response_dict.get("status_code") != 200 or not response_dict.get("body"):
        return
    try:
        root = ElementTree.fromstring(response_dict["body"])  # noqa: S314 (botocore parses it the same way)
    except ElementTree.ParseError:
        return  # let botocore report it
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    url_encoded = (root.findtext(f"{ns}EncodingType") or "") == "url"
    found: list[tuple[str, int, str]] = []
    for item in root.findall(f"{ns}Contents"):
        key = item.findtext(f"{ns}Key") or ""
        found.append(
            (
                unquote_plus(key) if url_encoded else key,
                int(item.findtext(f"{ns}Size") or 0),
                (item.findtext(f"{ns}ETag") or "").strip('"'),
            )
        )
        root.remove(item)
    customized_response_dict["FastContents"] = found
    response_dict["body"] = ElementTree.tostring(root)


def _list_one(
    client: S3Client, bucket: str, prefix: str, page_size: int, retries: int
) -> dict[str, RemoteObject]:
    out: dict[str, RemoteObject] = {}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "MaxKeys": page_size}
        if prefix:
            kwargs["Prefix"] = prefix
        if token:
            kwargs["ContinuationToken"] = token
        for attempt in range(retries):
            page: Any = client.list_objects_v2(**kwargs)
            next_token = page.get("NextContinuationToken")
            if not (page.get("IsTruncated") and next_token == token):
                break
            time.sleep(min(2.0**attempt, 30.0))
        items = page.get("FastContents")
        if items is None:  # the fast parser did not run: botocore's own result
            items = [(c["Key"], c.get("Size", 0), c.get("ETag", "")) for c in page.get("Contents", [])]
        for key, size, etag in items:
            if key.endswith("/") or key.startswith(HIDDEN_PREFIXES):
                continue
            out[key] = RemoteObject(key, int(size), str(etag).strip('"'))
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return out


def list_objects(
    client: S3Client,
    bucket: str,
    prefix: str,
    *,
    folders: tuple[str, ...] = (),
    page_size: int = 1000,
    retries: int = 5,
) -> dict[str, RemoteObject]:
    """Every object under ``prefix`` (or only under ``prefix/<folder>/`` for each of ``folders``), by key.

    Directory markers and RunPod's hidden uploads are left out. Folders are listed in
    parallel: a listing is a chain of pages, so one chain per folder cuts the wait on a slow
    server. A page that hands back the token just used is retried after a pause: RunPod's
    first listing of a large volume computes ETags on the fly and is known to do that.
    """
    prefix = prefix.strip("/")
    base = f"{prefix}/" if prefix else ""
    prefixes = [f"{base}{folder.strip('/')}/" for folder in folders] or [base]
    handler_id = f"model-sync-fast-list-{id(client)}"
    client.meta.events.register("before-parse.s3.ListObjectsV2", _fast_listing, unique_id=handler_id)
    try:
        if len(prefixes) == 1:
            return _list_one(client, bucket, prefixes[0], page_size, retries)
        out: dict[str, RemoteObject] = {}
        with ThreadPoolExecutor(max_workers=min(8, len(prefixes))) as pool:
            for part in pool.map(lambda p: _list_one(client, bucket, p, page_size, retries), prefixes):
                out.update(part)
        return out
    finally:
        client.meta.events.unregister("before-parse.s3.ListObjectsV2", unique_id=handler_id)


def _last_activity(client: S3Client, bucket: str, upload: dict[str, Any]) -> datetime | None:
    """When an unfinished upload last moved: its newest part, else when it was started."""
    newest = upload.get("Initiated")
    try:
        listed = client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        parts = listed.get("Parts", [])
    except client.exceptions.ClientError:
        parts = []
    for part in parts:
        stamp = part.get("LastModified")
        if stamp is not None and (newest is None or stamp > newest):
            newest = stamp
    return newest


def abort_stale_uploads(
    client: S3Client, bucket: str, prefix: str, *, keep: frozenset[str] = frozenset(), min_age_s: float = 0.0
) -> int:
    """Abort unfinished multipart uploads under ``prefix``; their parts only take volume space.

    Uploads in ``keep`` (this machine's, to be resumed) are left alone, and so is any upload
    that moved (started, or got a part) within ``min_age_s``, or whose age the server does not
    say: another machine may be in the middle of it.
    """
    count = 0
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if prefix.strip("/"):
        kwargs["Prefix"] = prefix.strip("/") + "/"
    now = datetime.now(UTC)
    while True:
        try:
            page = client.list_multipart_uploads(**kwargs)
        except client.exceptions.ClientError:
            return count  # not supported by this store: nothing to clean
        for upload in page.get("Uploads", []):
            if upload["UploadId"] in keep:
                continue
            if min_age_s:
                moved = _last_activity(client, bucket, dict(upload))
                if moved is None or (now - moved).total_seconds() < min_age_s:
                    continue
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            count += 1
        if not page.get("IsTruncated"):
            return count
        kwargs["KeyMarker"] = page.get("NextKeyMarker", "")
        kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")
