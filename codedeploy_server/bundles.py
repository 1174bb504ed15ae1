"""The server's own bundle store: content-addressed files on disk, uploaded with SigV4 and
downloaded by agents through expiring HMAC-signed links.

    PUT /bundles/<sha256>                      body = the bundle, SigV4 (service `codedeploy`)
        -> 200 {"bucket": "codedeploy-server-bundles", "key": sha, "eTag": sha, "size": n}
    GET /bundles/<sha256>?expires=<epoch>&signature=<hex HMAC-SHA256(secret, "<sha>\\n<expires>")>

A bundle lives at `<directory>/<sha[:2]>/<sha>`. An upload is written to `<directory>/tmp/`
while its SHA-256 is computed, checked against the name, then renamed into place: a file in the
store is always complete and always has the content its name says, so uploading the same bundle
twice is harmless and concurrent uploads of one bundle cannot corrupt it. Deployments refer to a
bundle as the S3 location `s3://codedeploy-server-bundles/<sha256>` (revisions.py).

Downloads are streamed from disk (`web.FileResponse`, sendfile). A link is refused with 403
when it has expired or its signature does not match (compared in constant time), with a body
that says which; an unknown bundle is 404. Links need no credentials, so agents fetch them
like any presigned S3 URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Final

from aiohttp import web

from codedeploy_server.api.app import signed_request
from codedeploy_server.api.errors import CodeDeployError, InvalidSignatureException
from codedeploy_server.api.sigv4 import UNSIGNED_PAYLOAD, SigV4Verifier
from codedeploy_server.errors import ServerConfigError

BUNDLE_BUCKET: Final = "codedeploy-server-bundles"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK: Final = 1024 * 1024
#: Uploads larger than this are refused (413) unless the store is built with another limit.
DEFAULT_MAX_BYTES: Final = 4 * 1024**3


def is_sha256(value: str) -> bool:
    """True for a lower-case hexadecimal SHA-256 (a bundle's name)."""
    return _SHA256.fullmatch(value) is not None


def load_secret(path: Path) -> bytes:
    """The HMAC secret of download links, from `path` (created with 32 random bytes, mode
    0600, when missing). Blocking: call it at start-up."""
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = secrets.token_hex(32).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data + b"\n")
    except OSError as exc:
        raise ServerConfigError(
            f"Cannot read the bundle store secret {path}: {exc.strerror}"
        ) from exc
    if len(data) < 16:
        raise ServerConfigError(
            f"The bundle store secret {path} is too short (at least 16 bytes): delete it and "
            "the server creates a new one (links already handed out stop working)."
        )
    return data


class BundleStore:
    """Bundles under `directory`; links are built on `public_url` (how agents reach this
    server, e.g. `http://10.0.0.5:8443`)."""

    def __init__(
        self,
        directory: Path,
        secret: bytes,
        public_url: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.public_url = public_url.rstrip("/")
        self.max_bytes = max_bytes
        self._secret = secret
        self._clock = clock

    def path(self, sha256: str) -> Path:
        """Where the bundle named `sha256` lives (whether or not it exists)."""
        if not is_sha256(sha256):
            raise ValueError(f"not a SHA-256: {sha256!r}")
        return self.directory / sha256[:2] / sha256

    def size(self, sha256: str) -> int | None:
        """The bundle's size in bytes, or None when the store does not have it."""
        try:
            return self.path(sha256).stat().st_size
        except (OSError, ValueError):
            return None

    def signature(self, sha256: str, expires: int) -> str:
        """The HMAC-SHA256 (hex) of a link to `sha256` valid until `expires` (epoch seconds)."""
        message = f"{sha256}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def signed_url(self, sha256: str, expires: int) -> str:
        """A download link valid until `expires` (epoch seconds)."""
        signature = self.signature(sha256, expires)
        return f"{self.public_url}/bundles/{sha256}?expires={expires}&signature={signature}"

    def check_link(self, sha256: str, expires: str, signature: str) -> str | None:
        """Why a link must be refused (None: it is valid now)."""
        if not expires.isdigit() or not signature:
            return (
                "This bundle link is incomplete: it needs its expires and signature "
                "parameters, as the job document gives them."
            )
        expected = self.signature(sha256, int(expires))
        if not hmac.compare_digest(expected, signature.lower()):
            return (
                "The bundle link's signature does not match: the link was altered, or the "
                "server's bundle store secret changed since the deployment was created. "
                "Start a new deployment to get a fresh link."
            )
        if int(expires) < self._clock():
            moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(expires)))
            return (
                f"The bundle link expired at {moment}. Start a new deployment to get a fresh link."
            )
        return None

    async def save(
        self,
        sha256: str,
        chunks: Callable[[], Awaitable[bytes]],
        *,
        check: Callable[[str], None] | None = None,
    ) -> int:
        """Store the bytes returned by `chunks()` (until it returns b"") as bundle `sha256`.

        `check(actual_sha256)` runs once the content is on disk and before it is compared or
        installed (the upload handler verifies the signature there); what it raises propagates.
        Raises `BundleTooLargeError` past `max_bytes` and `DigestMismatchError` when the
        content's SHA-256 is not `sha256`; nothing is stored then. Returns the size.
        """
        target = self.path(sha256)
        tmp_dir = self.directory / "tmp"
        await asyncio.to_thread(tmp_dir.mkdir, parents=True, exist_ok=True)
        tmp = tmp_dir / f"{sha256}.{uuid.uuid4().hex}"
        out: IO[bytes] = await asyncio.to_thread(tmp.open, "wb")
        digest = hashlib.sha256()
        size = 0
        try:
            while chunk := await chunks():
                size += len(chunk)
                if size > self.max_bytes:
                    raise BundleTooLargeError(self.max_bytes)
                await asyncio.to_thread(_write, out, digest, chunk)
            await asyncio.to_thread(_close, out)
            actual = digest.hexdigest()
            if check is not None:
                check(actual)
            if actual != sha256:
                raise DigestMismatchError(sha256, actual)
            await asyncio.to_thread(_install, tmp, target)
        finally:
            await asyncio.to_thread(_discard, out, tmp)
        return size


class BundleTooLargeError(Exception):
    """The upload exceeds the store's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The bundle is larger than the bundle store's limit of {limit} bytes.")


class DigestMismatchError(Exception):
    """The upload's content does not have the SHA-256 it was uploaded under."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(
            f"The uploaded content's SHA-256 is {actual}, not {expected} as the URL says: the "
            "upload was corrupted or sent to the wrong name. Upload it again."
        )


def _write(out: IO[bytes], digest: hashlib._Hash, chunk: bytes) -> None:
    digest.update(chunk)
    out.write(chunk)


def _close(out: IO[bytes]) -> None:
    out.flush()
    os.fsync(out.fileno())
    out.close()


def _install(tmp: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o644)
    tmp.replace(target)


def _discard(out: IO[bytes], tmp: Path) -> None:
    out.close()
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"__type": code, "message": message}, status=status)


def _refuse(response: web.Response) -> web.Response:
    """A refused upload: the connection is closed after the answer, so a client still sending
    the body stops (the rest of the body is never read)."""
    response.force_close()
    return response


def mount(app: web.Application, store: BundleStore, *, verifier: SigV4Verifier) -> None:
    """Add `PUT /bundles/{sha256}` (SigV4-checked by `verifier`, service `codedeploy`) and
    `GET|HEAD /bundles/{sha256}?expires=&signature=` to `app`.

    An upload is authenticated before any byte is stored: when the client declares the
    payload's hash (`x-amz-content-sha256`, as S3 clients do), before the body is read at all;
    otherwise the body is streamed to a temporary file while its SHA-256 is computed, and the
    signature is checked with that hash before the file is moved into the store. Memory use
    does not grow with the bundle's size either way.
    """

    async def upload(request: web.Request) -> web.StreamResponse:
        sha256 = request.match_info["sha256"]
        if not is_sha256(sha256):
            return _refuse(
                _error(
                    400,
                    "InvalidBundleName",
                    "A bundle is uploaded to /bundles/<sha256>: the SHA-256 of its content, in "
                    "lower-case hexadecimal.",
                )
            )
        declared = request.headers.get("x-amz-content-sha256")
        try:
            if declared is not None:
                if declared == UNSIGNED_PAYLOAD:
                    raise InvalidSignatureException(
                        "UNSIGNED-PAYLOAD is not accepted: sign the bundle's SHA-256 "
                        "(x-amz-content-sha256)."
                    )
                if declared.lower() != sha256:
                    return _refuse(
                        _error(
                            400,
                            "BadDigest",
                            f"x-amz-content-sha256 ({declared}) is not the bundle's name "
                            f"({sha256}): upload a bundle to /bundles/<its sha256>.",
                        )
                    )
                verifier.verify(signed_request(request, declared))
            length = request.content_length
            if length is not None and length > store.max_bytes:
                return _refuse(
                    _error(413, "BundleTooLarge", str(BundleTooLargeError(store.max_bytes)))
                )

            def check(actual: str) -> None:
                if declared is None:
                    verifier.verify(signed_request(request, actual))

            size = await store.save(sha256, _reader(request), check=check)
        except CodeDeployError as exc:
            return _refuse(web.json_response(exc.body(), status=exc.status))
        except BundleTooLargeError as exc:
            return _refuse(_error(413, "BundleTooLarge", str(exc)))
        except DigestMismatchError as exc:
            return _error(400, "BadDigest", str(exc))
        return web.json_response(
            {"bucket": BUNDLE_BUCKET, "key": sha256, "eTag": sha256, "size": size}
        )

    async def download(request: web.Request) -> web.StreamResponse:
        sha256 = request.match_info["sha256"]
        if not is_sha256(sha256):
            return _error(404, "NoSuchBundle", f"There is no bundle named {sha256!r}.")
        refusal = store.check_link(
            sha256, request.query.get("expires", ""), request.query.get("signature", "")
        )
        if refusal is not None:
            return _error(403, "AccessDenied", refusal)
        if await asyncio.to_thread(store.size, sha256) is None:
            return _error(
                404,
                "NoSuchBundle",
                f"The bundle {sha256} is not in the server's bundle store (deleted since the "
                "deployment was created?). Upload it again with `codedeploy push`.",
            )
        return web.FileResponse(
            store.path(sha256), headers={"Content-Type": "application/octet-stream"}
        )

    app.router.add_put("/bundles/{sha256}", upload)
    app.router.add_get("/bundles/{sha256}", download)


def _reader(request: web.Request) -> Callable[[], Awaitable[bytes]]:
    """The request body in chunks of up to 1 MiB (b"" at the end); not bounded by the app's
    client_max_size, the store's own limit applies."""

    async def read() -> bytes:
        return await request.content.read(_CHUNK)

    return read


__all__ = [
    "BUNDLE_BUCKET",
    "DEFAULT_MAX_BYTES",
    "BundleStore",
    "BundleTooLargeError",
    "DigestMismatchError",
    "is_sha256",
    "load_secret",
    "mount",
]
