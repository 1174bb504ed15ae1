"""Uploading a bundle: to S3 with boto3, or to codedeploy-server's own bundle store.

The bundle store is `PUT <endpoint>/bundles/<sha256>` on the API's listener, SigV4-signed with
service `codedeploy` and the same credentials as the API calls (botocore's `SigV4Auth`), body =
the bundle. It answers `{"bucket": "codedeploy-server-bundles", "key": <sha256>, "eTag":
<sha256>, "size": N}`: the S3-style location the revision is registered with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from botocore.auth import SigV4Auth  # type: ignore[import-untyped,unused-ignore]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped,unused-ignore]
from botocore.credentials import Credentials  # type: ignore[import-untyped,unused-ignore]
from botocore.httpsession import URLLib3Session  # type: ignore[import-untyped,unused-ignore]

from codedeploy_server.opcli.bundle import Bundle
from codedeploy_server.opcli.client import Clients
from codedeploy_server.opcli.errors import ApiError
from codedeploy_server.opcli.locations import S3Url

#: The reserved bucket name under which the bundle store's bundles are registered.
BUNDLE_STORE_BUCKET: Final = "codedeploy-server-bundles"
#: The operation name used in error messages for the bundle store upload.
PUT_BUNDLE: Final = "PutBundle"
#: Seconds to wait for the server's answer after the body is sent (large bundles are hashed).
_READ_TIMEOUT: Final = 300


@dataclass(frozen=True, slots=True)
class Uploaded:
    """Where a bundle landed: the S3Location members to register the revision with."""

    bucket: str
    key: str
    etag: str
    version: str | None = None

    def s3_location(self) -> dict[str, str]:
        """The `S3Location` of the revision (`bundleType` zip)."""
        location = {"bucket": self.bucket, "key": self.key, "bundleType": "zip", "eTag": self.etag}
        if self.version:
            location["version"] = self.version
        return location


def upload_to_s3(clients: Clients, bundle: Bundle, url: S3Url) -> Uploaded:
    """PutObject the bundle at `url`; the ETag (quotes dropped) and VersionId are kept."""
    with bundle.path.open("rb") as body:
        answer = clients.s3.put_object(Bucket=url.bucket, Key=url.key, Body=body)
    etag = str(answer.get("ETag", "")).replace('"', "")
    version = answer.get("VersionId")
    return Uploaded(url.bucket, url.key, etag, str(version) if version else None)


def upload_to_bundle_store(clients: Clients, bundle: Bundle) -> Uploaded:
    """PUT the bundle to the server's bundle store, signed like an API call."""
    url = f"{clients.endpoint_url.rstrip('/')}/bundles/{bundle.sha256}"
    creds = clients.signing_credentials()
    with bundle.path.open("rb") as body:
        request = AWSRequest(
            method="PUT",
            url=url,
            data=body,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(bundle.size),
                # Declared and signed: the server checks the signature before it stores a
                # byte, and botocore signs this hash instead of reading the body to hash it.
                "X-Amz-Content-SHA256": bundle.sha256,
            },
        )
        SigV4Auth(
            Credentials(creds.access_key, creds.secret_key, creds.token),
            "codedeploy",
            clients.region,
        ).add_auth(request)
        session = URLLib3Session(verify=clients.verify, timeout=_READ_TIMEOUT)
        try:
            response = session.send(request.prepare())
        finally:
            session.close()
    answer = _json(response.content)
    if response.status_code != 200:
        code = answer.get("__type") or answer.get("code") or f"HTTP{response.status_code}"
        message = (
            answer.get("message")
            or answer.get("Message")
            or response.content[:200].decode("utf-8", "replace")
        )
        code = str(code).rsplit("#", 1)[-1]
        raise ApiError(
            f"An error occurred ({code}) when calling the {PUT_BUNDLE} operation: {message!s}"
        )
    if answer.get("key") != bundle.sha256:
        raise ApiError(
            f"The bundle store at {url} answered {answer!r}, not the sha256 {bundle.sha256} "
            "of the bundle sent. Check that --endpoint-url names a codedeploy-server."
        )
    return Uploaded(
        str(answer.get("bucket") or BUNDLE_STORE_BUCKET),
        bundle.sha256,
        str(answer.get("eTag") or bundle.sha256),
    )


def _json(content: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(content or b"{}")
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}
