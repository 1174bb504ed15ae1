"""Revision locations as the AWS CLI spells them on the command line.

- `push --s3-location s3://bucket/key`;
- `deploy --s3-location bucket=B,key=K,bundleType=zip[,eTag=E][,version=V]` and
  `--github-location repository=owner/repo,commitId=SHA`, in the AWS CLI's shorthand syntax or as
  a JSON object, turned into the `RevisionLocation` CreateDeployment takes. The error texts are
  the AWS CLI's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from codedeploy_server.opcli.errors import UsageError

#: The bundle types `aws deploy create-deployment --s3-location` accepts.
BUNDLE_TYPES: Final = ("tar", "tgz", "zip")
_S3_URL: Final = re.compile(r"s3://(.+?)/(.+)")
_S3_KEYS: Final = ("bucket", "key", "bundleType", "eTag", "version")
_GITHUB_KEYS: Final = ("repository", "commitId")


@dataclass(frozen=True, slots=True)
class S3Url:
    """`s3://bucket/key`, split."""

    bucket: str
    key: str


def parse_s3_url(text: str, option: str = "--s3-location") -> S3Url:
    """Split `s3://bucket/key`; anything else is a usage error (the AWS CLI's text)."""
    match = _S3_URL.fullmatch(text)
    if match is None:
        raise UsageError(f"{option} must specify the Amazon S3 URL format as s3://<bucket>/<key>.")
    return S3Url(match.group(1), match.group(2))


def parse_structure(text: str, option: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """Decode `key=value,key=value` (or a JSON object) with keys from `allowed`."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            decoded = json.loads(stripped)
        except json.JSONDecodeError as err:
            raise UsageError(f"Error parsing parameter '{option}': Invalid JSON: {err}") from None
        if not isinstance(decoded, dict):
            raise UsageError(f"Error parsing parameter '{option}': expected a JSON object")
        pairs = [(str(k), v) for k, v in decoded.items()]
    else:
        pairs = []
        for item in stripped.split(","):
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(
                    f"Error parsing parameter '{option}': Expected: '=', received: "
                    f"'{item}' (use key=value pairs separated by commas)"
                )
            pairs.append((key.strip(), value.strip()))
    result: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            raise UsageError(
                f"Unknown key {key!r} in {option}; valid keys are: {', '.join(allowed)}"
            )
        if not isinstance(value, str):
            raise UsageError(f"The value of {key!r} in {option} must be a string")
        result[key] = value
    return result


def s3_revision(text: str) -> dict[str, Any]:
    """The RevisionLocation of `--s3-location bucket=...,key=...,bundleType=...`."""
    values = parse_structure(text, "--s3-location", _S3_KEYS)
    if not all(values.get(k) for k in ("bucket", "key", "bundleType")):
        raise UsageError("--s3-location must specify bucket, key and bundleType.")
    if values["bundleType"] not in BUNDLE_TYPES:
        raise UsageError(
            f"Invalid bundleType {values['bundleType']!r} in --s3-location: valid choices are "
            f"{', '.join(BUNDLE_TYPES)}"
        )
    location = {k: values[k] for k in _S3_KEYS if values.get(k)}
    return {"revisionType": "S3", "s3Location": location}


def github_revision(text: str) -> dict[str, Any]:
    """The RevisionLocation of `--github-location repository=owner/repo,commitId=sha`."""
    values = parse_structure(text, "--github-location", _GITHUB_KEYS)
    if not all(values.get(k) for k in _GITHUB_KEYS):
        raise UsageError("--github-location must specify repository and commitId.")
    return {"revisionType": "GitHub", "gitHubLocation": values}


def s3_shorthand(location: dict[str, str]) -> str:
    """`bucket=B,key=K,bundleType=zip,eTag=E[,version=V]`, the form `deploy` reads back."""
    return ",".join(f"{k}={location[k]}" for k in _S3_KEYS if location.get(k))
