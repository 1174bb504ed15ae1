"""The bundle store: SigV4-checked, content-addressed uploads and HMAC-signed expiring links."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import time
from pathlib import Path

import aiohttp
import pytest

from codedeploy_server.bundles import BUNDLE_BUCKET, BundleStore, is_sha256, load_secret
from codedeploy_server.errors import ServerConfigError
from tests.server.rollout.bundle_server import SECRET, serve_bundles, upload

BODY = os.urandom(3 * 1024 * 1024 + 17)  # several read chunks
SHA = hashlib.sha256(BODY).hexdigest()


async def _get(url: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read(), dict(response.headers)


@pytest.mark.parametrize("declare_hash", [False, True])
@pytest.mark.asyncio
async def test_upload_then_download(tmp_path: Path, declare_hash: bool) -> None:
    """A signed upload is stored under its sha256 and answered like an S3 location; a signed
    link downloads the same bytes; uploading it again is harmless."""
    async with serve_bundles(tmp_path / "bundles") as store:
        status, answer = await upload(store, BODY, declare_hash=declare_hash)
        assert status == 200, answer
        assert answer == {"bucket": BUNDLE_BUCKET, "key": SHA, "eTag": SHA, "size": len(BODY)}
        assert store.path(SHA) == tmp_path / "bundles" / SHA[:2] / SHA
        assert store.size(SHA) == len(BODY)
        assert list((tmp_path / "bundles" / "tmp").iterdir()) == []
        assert (await upload(store, BODY, declare_hash=declare_hash))[0] == 200
        url = store.signed_url(SHA, int(time.time()) + 60)
        status, content, headers = await _get(url)
        assert status == 200
        assert content == BODY
        assert headers["Content-Type"] == "application/octet-stream"


@pytest.mark.asyncio
async def test_refused_uploads_store_nothing(tmp_path: Path) -> None:
    """A wrong secret, an unknown key, content that is not its name, or a declared hash that is
    not the name: refused with AWS's error shapes (or BadDigest), nothing stored."""
    async with serve_bundles(tmp_path / "bundles") as store:
        status, answer = await upload(store, BODY, secret="wrong")  # noqa: S106
        assert status == 400
        assert answer["__type"] == "InvalidSignatureException"
        status, answer = await upload(store, BODY, access_key="AKIAUNKNOWNKEY000000")
        assert answer["__type"] == "UnrecognizedClientException"
        assert answer["message"] == "The security token included in the request is invalid."
        other = "0" * 64
        status, answer = await upload(store, BODY, name=other)
        assert (status, answer["__type"]) == (400, "BadDigest")
        assert answer["message"] == (
            f"The uploaded content's SHA-256 is {SHA}, not {other} as the URL says: the upload "
            "was corrupted or sent to the wrong name. Upload it again."
        )
        status, answer = await upload(store, BODY, name=other, declare_hash=True)
        assert (status, answer["__type"]) == (400, "BadDigest")
        status, answer = await upload(store, BODY, name="not-a-sha")
        assert (status, answer["__type"]) == (400, "InvalidBundleName")
        assert store.size(SHA) is None
        assert store.size(other) is None
        assert list((tmp_path / "bundles" / "tmp").iterdir()) == []
        async with (
            aiohttp.ClientSession() as session,
            session.put(f"{store.public_url}/bundles/{SHA}", data=io.BytesIO(BODY)) as response,
        ):
            assert response.status == 400
            assert (await response.json())["__type"] == "MissingAuthenticationTokenException"


@pytest.mark.asyncio
async def test_size_limit(tmp_path: Path) -> None:
    """An upload over the store's limit is refused with 413 and not kept."""
    async with serve_bundles(tmp_path / "bundles", max_bytes=1024) as store:
        status, answer = await upload(store, BODY)
        assert status == 413
        assert answer == {
            "__type": "BundleTooLarge",
            "message": "The bundle is larger than the bundle store's limit of 1024 bytes.",
        }
        assert store.size(SHA) is None


@pytest.mark.asyncio
async def test_links_expire_and_cannot_be_altered(tmp_path: Path) -> None:
    """An expired link, a tampered signature or expiry, and a link without its parameters are
    refused with 403 and a message saying why; an unknown bundle is 404."""
    async with serve_bundles(tmp_path / "bundles") as store:
        assert (await upload(store, BODY))[0] == 200
        expired = int(time.time()) - 1
        status, body, _ = await _get(store.signed_url(SHA, expired))
        assert status == 403
        moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expired))
        assert body.decode() == (
            '{"__type": "AccessDenied", "message": "The bundle link expired at '
            f'{moment}. Start a new deployment to get a fresh link."}}'
        )
        good = store.signed_url(SHA, int(time.time()) + 60)
        tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
        status, body, _ = await _get(tampered)
        assert status == 403
        assert b"signature does not match" in body
        later = int(time.time()) + 3600
        status, _, _ = await _get(good.replace(f"expires={later - 3540}", f"expires={later}"))
        assert status == 403
        status, body, _ = await _get(f"{store.public_url}/bundles/{SHA}")
        assert status == 403
        assert b"incomplete" in body
        missing = "f" * 64
        status, body, _ = await _get(store.signed_url(missing, int(time.time()) + 60))
        assert status == 404
        assert b"NoSuchBundle" in body


def test_signatures_and_names() -> None:
    """Links are HMAC-SHA256 over '<sha>\\n<expires>' with the store's secret; names are
    lower-case sha256s."""
    store = BundleStore(Path("/nonexistent"), SECRET, "http://10.0.0.5:8443/")
    expected = hmac.new(SECRET, f"{SHA}\n123".encode(), hashlib.sha256).hexdigest()
    assert store.signed_url(SHA, 123) == (
        f"http://10.0.0.5:8443/bundles/{SHA}?expires=123&signature={expected}"
    )
    assert is_sha256(SHA)
    assert not is_sha256(SHA.upper())
    assert not is_sha256(SHA[:-1])


def test_load_secret(tmp_path: Path) -> None:
    """The secret file is created (0600, random) when missing and read back after; a short
    one is refused with the fix."""
    path = tmp_path / "conf" / "bundles.secret"
    secret = load_secret(path)
    assert len(secret) == 64
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_secret(path) == secret
    path.write_text("short\n")
    with pytest.raises(ServerConfigError, match="too short"):
        load_secret(path)
