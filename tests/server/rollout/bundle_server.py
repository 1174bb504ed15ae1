"""The bundle store served over HTTP on 127.0.0.1 (the routes `bundles.mount` adds), and
SigV4-signed uploads as `codedeploy push` sends them. Import-only helpers."""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from botocore.auth import SigV4Auth  # type: ignore[import-untyped,unused-ignore]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped,unused-ignore]
from botocore.credentials import Credentials  # type: ignore[import-untyped,unused-ignore]

from codedeploy_server.api.sigv4 import SigV4Verifier
from codedeploy_server.bundles import BundleStore, mount

ACCESS_KEY = "AKIAEXAMPLEBUNDLES01"
SECRET_KEY = "bundle-store-test-secret"  # noqa: S105 - a test credential
REGION = "us-east-1"
SECRET = b"0123456789abcdef0123456789abcdef"


@contextlib.asynccontextmanager
async def serve_bundles(directory: Path, **options: object) -> AsyncIterator[BundleStore]:
    """A BundleStore in `directory`, its routes served on a free loopback port; `public_url`
    is that server."""
    app = web.Application()
    store = BundleStore(directory, SECRET, "http://placeholder", **options)  # type: ignore[arg-type]
    mount(app, store, verifier=SigV4Verifier({ACCESS_KEY: SECRET_KEY}, region=REGION))
    runner = web.AppRunner(app, lingering_time=0.2)  # refused uploads: do not wait 10 s
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    store.public_url = f"http://127.0.0.1:{port}"
    try:
        yield store
    finally:
        await runner.cleanup()


def signed_put(
    url: str,
    body: bytes,
    *,
    secret: str = SECRET_KEY,
    access_key: str = ACCESS_KEY,
    declare_hash: bool = False,
) -> dict[str, str]:
    """The headers of a SigV4-signed PUT of `body` to `url` (service codedeploy)."""
    headers = {"Content-Type": "application/octet-stream"}
    if declare_hash:
        headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    request = AWSRequest(method="PUT", url=url, data=body, headers=headers)
    SigV4Auth(Credentials(access_key, secret), "codedeploy", REGION).add_auth(request)
    return dict(request.headers.items())


async def upload(
    store: BundleStore, body: bytes, *, name: str | None = None, **options: object
) -> tuple[int, dict[str, object]]:
    """PUT `body` to /bundles/<name or its sha256>; (HTTP status, JSON answer)."""
    sha = name or hashlib.sha256(body).hexdigest()
    url = f"{store.public_url}/bundles/{sha}"
    headers = signed_put(url, body, **options)  # type: ignore[arg-type]
    async with (
        aiohttp.ClientSession() as session,
        session.put(url, data=io.BytesIO(body), headers=headers) as r,
    ):
        return r.status, await r.json()
