"""Revision locations (`RevisionLocation`) the server accepts for the Server compute platform.

- `S3`: `s3Location {bucket, key, bundleType, version?, eTag?}`, bundleType `tar`, `tgz` or
  `zip` (YAML/JSON bundles are AppSpec files for Lambda/ECS). The reserved bucket
  `codedeploy-server-bundles` is the server's own bundle store, where the key is the bundle's
  sha256 (64 lower-case hex digits).
- `GitHub`: `gitHubLocation {repository "owner/repo", commitId}`; the commit is a hexadecimal
  SHA and the names plain names, because the agent puts them into URLs (its own checks are the
  same, so a deployment is refused here rather than failing on every host).
- `AppSpecContent` and `String` are refused (`InvalidRevisionException` saying why).

A location is normalised to the members of its type, unset members dropped; its key (for the
`revisions` table and health comparisons) is the rollout engine's `revision_key`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from codedeploy_server.api.errors import InvalidRevisionException
from codedeploy_server.rollout.health import revision_key

BUNDLE_STORE_BUCKET: Final = "codedeploy-server-bundles"
SERVER_BUNDLE_TYPES: Final = ("tar", "tgz", "zip")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-fA-F]{7,64}")
_REPO_PART = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_S3_MEMBERS: Final = ("bucket", "key", "bundleType", "version", "eTag")


def normalise(location: Mapping[str, Any]) -> dict[str, Any]:
    """The location reduced to its type's members; InvalidRevisionException saying what is
    wrong and what to use instead."""
    kind = location.get("revisionType")
    if kind == "S3":
        return {"revisionType": "S3", "s3Location": _s3(location.get("s3Location"))}
    if kind == "GitHub":
        return {"revisionType": "GitHub", "gitHubLocation": _github(location.get("gitHubLocation"))}
    if kind in ("AppSpecContent", "String"):
        raise InvalidRevisionException(
            f"Revision type {kind} is for Lambda and Amazon ECS deployments; this server "
            "deploys to on-premises instances (compute platform Server). Use an S3 revision "
            "(or `codedeploy push`, which uploads to the server's bundle store) or a GitHub "
            "revision."
        )
    raise InvalidRevisionException(
        "The revision needs a revisionType: S3 (with s3Location) or GitHub (with gitHubLocation)."
    )


def key_of(location: Mapping[str, Any]) -> str:
    """The stable key of a normalised location."""
    return revision_key(location)


def _s3(block: Any) -> dict[str, Any]:
    if not isinstance(block, Mapping):
        raise InvalidRevisionException("An S3 revision needs s3Location {bucket, key, bundleType}.")
    bucket, key, bundle_type = block.get("bucket"), block.get("key"), block.get("bundleType")
    if not bucket or not key:
        raise InvalidRevisionException("An S3 revision needs s3Location.bucket and s3Location.key.")
    if not _BUCKET.fullmatch(bucket):
        raise InvalidRevisionException(
            f"s3Location.bucket {bucket!r} is not a valid S3 bucket name (3-63 lower-case "
            "letters, digits, dots and hyphens)."
        )
    if bundle_type not in SERVER_BUNDLE_TYPES:
        raise InvalidRevisionException(
            f"s3Location.bundleType must be tar, tgz or zip for on-premises deployments, got "
            f"{bundle_type!r}."
        )
    if bucket == BUNDLE_STORE_BUCKET and not _SHA256.fullmatch(key):
        raise InvalidRevisionException(
            f"In the server's bundle store ({BUNDLE_STORE_BUCKET}) the key is the bundle's "
            f"sha256 (64 lower-case hex digits), got {key!r}. Upload with `codedeploy push`."
        )
    return {name: block[name] for name in _S3_MEMBERS if block.get(name)}


def _github(block: Any) -> dict[str, Any]:
    if not isinstance(block, Mapping):
        raise InvalidRevisionException(
            "A GitHub revision needs gitHubLocation {repository, commitId}."
        )
    repository, commit = block.get("repository"), block.get("commitId")
    parts = repository.split("/") if isinstance(repository, str) else []
    if len(parts) != 2 or not all(_REPO_PART.fullmatch(part) for part in parts):
        raise InvalidRevisionException(
            f"gitHubLocation.repository must be 'owner/repository', got {repository!r}."
        )
    if not isinstance(commit, str) or not _COMMIT.fullmatch(commit):
        raise InvalidRevisionException(
            f"gitHubLocation.commitId must be a commit SHA (7 to 64 hex digits), got {commit!r}."
        )
    return {"repository": repository, "commitId": commit}
