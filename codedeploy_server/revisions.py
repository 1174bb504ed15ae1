"""From a deployment's `RevisionLocation` to the revision its job document carries.

- **The server's bundle store** (`s3Location.bucket` = `codedeploy-server-bundles`, `key` = the
  bundle's SHA-256): an S3 revision whose `Download` block is a link to this server, signed with
  the bundle store's HMAC secret, with `Sha256` and `Size`. The location's `eTag` (the SHA-256
  again, as `codedeploy push` registers it) is left out of the job document: the agent compares
  an ETag with the HTTP response's, and the bundle store's files answer with aiohttp's own
  validator; the SHA-256 is the stronger check anyway.
- **S3** (or an S3-compatible store at the server config's `s3_endpoint`): a presigned
  GetObject URL (boto3, credentials from the server's environment: the standard AWS chain),
  valid until the job document expires, for the location's `version` when given. A HEAD request
  first gives the agent the object's `Size` and fails the deployment early, with
  `REVISION_MISSING`, when the object does not exist; when HEAD is not allowed (403) the URL is
  still handed out and the agent reports whatever GetObject says.
- **Commit sources** (`gitHubLocation {repository, commitId}`): passed through as the
  `GitHubRevision`, `BitbucketRevision`, `CodeCommitRevision` or `GitRevision` its repository
  encodes (`owner/repo`, `bitbucket:W/R`, `codecommit:[REGION/]R`, `git+URL`: the table is in
  api/locations.py); `codecommit:R` gets the server config's `region`. The agent fetches with
  the host's own credentials (PROTOCOL.md).
- **A bundle URL** (`String`, `string {content: URL, sha256}`): passed through as a
  `UrlRevision`; the agent downloads it and checks the SHA-256 before extracting.

`bundleType` comes from the location (`zip`, `tar`, `tgz`); when it is missing it is inferred
from the key's extension. `YAML`/`JSON` (Lambda/ECS AppSpec files) and the `AppSpecContent`
revision type cannot be deployed to servers.

Every refusal is a `RevisionError` carrying the CodeDeploy `ErrorInformation` code the engine
fails the deployment with (`INVALID_REVISION` or `REVISION_MISSING`). The API refuses malformed
locations before they are stored (same parsers, same messages), so INVALID_REVISION here means a
location written some other way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from codedeploy_agent.spec import BundleType, Revision, S3Revision
from codedeploy_server.api.errors import InvalidRevisionException
from codedeploy_server.api.locations import (
    BUNDLE_EXTENSIONS,
    REPOSITORY_FORMS,
    commit_revision,
    url_revision,
)
from codedeploy_server.bundles import BUNDLE_BUCKET, BundleStore, is_sha256
from codedeploy_server.errors import ServerError

_BUNDLE_TYPES: Final = {"zip": BundleType.ZIP, "tar": BundleType.TAR, "tgz": BundleType.TGZ}
#: SigV4 presigned URLs are valid for at most 7 days.
MAX_PRESIGN_SECONDS: Final = 7 * 24 * 3600

#: (bucket, key, version, expires_in seconds) -> URL, and (bucket, key, version) -> size or None.
Presign = Callable[[str, str, str | None, int], str]
HeadObject = Callable[[str, str, str | None], int | None]


class Resolver(Protocol):
    """What the rollout engine needs: a location in, a job-document revision out."""

    async def resolve(
        self, location: Mapping[str, Any], *, expires_at: float, now: float
    ) -> Revision:
        """The revision for `location` with links valid until `expires_at`; RevisionError."""


class RevisionError(ServerError):
    """Raised when a revision cannot be handed to agents; `code` is the deployment's
    `errorInformation.code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RevisionResolver:
    """Turns `RevisionLocation` documents into job-document revisions (module docstring)."""

    def __init__(
        self,
        *,
        bundles: BundleStore | None,
        s3_endpoint: str | None = None,
        region: str | None = None,
        presign: Presign | None = None,
        head_object: HeadObject | None = None,
    ) -> None:
        self.bundles = bundles
        self.s3_endpoint = s3_endpoint
        self.region = region
        self._presign = presign
        self._head = head_object
        self._client: Any = None

    async def resolve(
        self, location: Mapping[str, Any], *, expires_at: float, now: float
    ) -> Revision:
        """The revision for `location`, with download links valid until `expires_at`."""
        kind = location.get("revisionType")
        if kind == "S3":
            s3 = location.get("s3Location")
            if not isinstance(s3, Mapping):
                raise RevisionError("INVALID_REVISION", "The S3 revision has no s3Location.")
            return await self._s3(s3, expires_at=expires_at, now=now)
        if kind == "GitHub":
            github = location.get("gitHubLocation")
            if not isinstance(github, Mapping):
                raise RevisionError(
                    "INVALID_REVISION", "The GitHub revision has no gitHubLocation."
                )
            try:
                return commit_revision(
                    github.get("repository"), github.get("commitId"), region=self.region or ""
                )
            except InvalidRevisionException as err:
                raise RevisionError("INVALID_REVISION", str(err)) from None
        if kind == "String":
            raw = location.get("string")
            if not isinstance(raw, Mapping):
                raise RevisionError("INVALID_REVISION", "The String revision has no string.")
            try:
                return url_revision(raw.get("content"), raw.get("sha256"))
            except InvalidRevisionException as err:
                raise RevisionError("INVALID_REVISION", str(err)) from None
        raise RevisionError(
            "INVALID_REVISION",
            f"Revisions of type {kind} cannot be deployed to servers (EC2/on-premises): use an "
            "S3 location (or the server's bundle store, `codedeploy push`), a gitHubLocation "
            f"(repository {REPOSITORY_FORMS}) or a String bundle URL with its sha256.",
        )

    async def _s3(self, s3: Mapping[str, Any], *, expires_at: float, now: float) -> S3Revision:
        bucket, key = str(s3.get("bucket") or ""), str(s3.get("key") or "")
        if not bucket or not key:
            raise RevisionError("INVALID_REVISION", "The S3 location needs a bucket and a key.")
        bundle_type = _bundle_type(s3.get("bundleType"), key)
        version = s3.get("version") or None
        if bucket == BUNDLE_BUCKET:
            return self._bundle_store(key, bundle_type, expires_at=expires_at)
        expires_in = int(min(max(expires_at - now, 60), MAX_PRESIGN_SECONDS))
        url, size = await asyncio.to_thread(self._presign_s3, bucket, key, version, expires_in)
        return S3Revision(
            bucket=bucket,
            key=key,
            bundle_type=bundle_type,
            version=version,
            etag=s3.get("eTag") or None,
            download_url=url,
            size=size,
        )

    def _bundle_store(self, key: str, bundle_type: BundleType, *, expires_at: float) -> S3Revision:
        if self.bundles is None:
            raise RevisionError(
                "REVISION_MISSING",
                f"The revision is in the server's bundle store ({BUNDLE_BUCKET}), which is not "
                "configured on this server: set bundle_store in the server config.",
            )
        if not is_sha256(key):
            raise RevisionError(
                "INVALID_REVISION",
                f"Keys in {BUNDLE_BUCKET} are the SHA-256 of the bundle (64 hexadecimal "
                f"characters), not {key!r}: upload the bundle with `codedeploy push`.",
            )
        size = self.bundles.size(key)
        if size is None:
            raise RevisionError(
                "REVISION_MISSING",
                f"The bundle {key} is not in the server's bundle store: upload it again with "
                "`codedeploy push` (or PUT /bundles/<sha256>).",
            )
        return S3Revision(
            bucket=BUNDLE_BUCKET,
            key=key,
            bundle_type=bundle_type,
            download_url=self.bundles.signed_url(key, int(expires_at) + 1),
            sha256=key,
            size=size,
        )

    def _presign_s3(
        self, bucket: str, key: str, version: str | None, expires_in: int
    ) -> tuple[str, int | None]:
        """Blocking (boto3): the presigned URL and, when HEAD tells, the object's size."""
        head = self._head or self._head_object
        size = head(bucket, key, version)
        presign = self._presign or self._presign_get
        return presign(bucket, key, version, expires_in), size

    def _s3_client(self) -> Any:
        if self._client is None:
            # Only servers deploying from S3 load boto3.
            import boto3  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415
            from botocore.config import (  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415
                Config,
            )

            # Bounded: a HEAD that hangs would hold the deployment's start.
            options: dict[str, Any] = {
                "signature_version": "s3v4",
                "connect_timeout": 5,
                "read_timeout": 15,
                "retries": {"max_attempts": 3, "mode": "standard"},
            }
            if self.s3_endpoint:
                # S3-compatible stores (MinIO, Ceph, moto) are usually reached by path.
                options["s3"] = {"addressing_style": "path"}
            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.s3_endpoint,
                region_name=self.region,
                config=Config(**options),
            )
        return self._client

    def _presign_get(self, bucket: str, key: str, version: str | None, expires_in: int) -> str:
        from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415
            BotoCoreError,
            ClientError,
        )

        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version:
            params["VersionId"] = version
        try:
            url: str = self._s3_client().generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in
            )
        except (BotoCoreError, ClientError) as exc:
            raise RevisionError(
                "INVALID_REVISION",
                f"Cannot sign a download URL for s3://{bucket}/{key}: {exc}. The server signs "
                "S3 URLs with the AWS credentials of its own environment (AWS_ACCESS_KEY_ID, a "
                "profile or an instance role); check that they are set.",
            ) from exc
        return url

    def _head_object(self, bucket: str, key: str, version: str | None) -> int | None:
        from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415
            BotoCoreError,
            ClientError,
        )

        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version:
            params["VersionId"] = version
        where = f"s3://{bucket}/{key}" + (f" (version {version})" if version else "")
        try:
            head = self._s3_client().head_object(**params)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if status == 404 or code in ("404", "NoSuchKey", "NoSuchBucket", "NoSuchVersion"):
                raise RevisionError(
                    "REVISION_MISSING",
                    f"The revision {where} does not exist: upload it, or register the right "
                    "bucket, key and version.",
                ) from exc
            return None  # not allowed to look (403): the agent reports what GetObject says
        except BotoCoreError:
            return None  # S3 unreachable from the server: the agent may still reach it
        length = head.get("ContentLength")
        return int(length) if isinstance(length, int) else None


def _bundle_type(value: object, key: str) -> BundleType:
    if value in _BUNDLE_TYPES:
        return _BUNDLE_TYPES[str(value)]
    if value in ("YAML", "JSON"):
        raise RevisionError(
            "INVALID_REVISION",
            f"bundleType {value} is for Lambda and ECS AppSpec files; a server deployment needs "
            "a zip, tar or tgz bundle.",
        )
    if value is None or value == "":
        lowered = key.lower()
        for extension, kind in BUNDLE_EXTENSIONS:
            if lowered.endswith(extension):
                return kind
        raise RevisionError(
            "INVALID_REVISION",
            f"The S3 location of {key!r} has no bundleType and its name does not say (.zip, "
            ".tar, .tar.gz or .tgz): register the revision with bundleType zip, tar or tgz.",
        )
    raise RevisionError(
        "INVALID_REVISION", f"bundleType must be zip, tar or tgz for servers, not {value!r}."
    )


__all__ = ["BUNDLE_BUCKET", "Resolver", "RevisionError", "RevisionResolver"]
