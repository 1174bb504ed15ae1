"""Revision locations as the AWS CLI spells them on the command line.

- `push --s3-location s3://bucket/key`;
- `deploy --s3-location bucket=B,key=K,bundleType=zip[,eTag=E][,version=V]` and
  `--github-location repository=owner/repo,commitId=SHA`, in the AWS CLI's shorthand syntax or as
  a JSON object, turned into the `RevisionLocation` CreateDeployment takes. The error texts are
  the AWS CLI's.
- `deploy`'s own flags for the revision types codedeploy-server encodes in RevisionLocation
  (README "Revision types"): `--github-repository OWNER/REPO`, `--bitbucket-repository W/R`,
  `--codecommit-repository [REGION/]REPO` or `--git-url URL`, each with `--commit-id SHA`
  (a `gitHubLocation` whose repository is `owner/repo`, `bitbucket:W/R`, `codecommit:…` or
  `git+URL`), and `--bundle-url URL --sha256 HEX` (a `String` revision). The commit and digest
  are checked here, so a typo is a usage error naming the flag; the server checks the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from codedeploy_server.opcli.errors import UsageError

#: The bundle types `aws deploy create-deployment --s3-location` accepts.
BUNDLE_TYPES: Final = ("tar", "tgz", "zip")
_S3_URL: Final = re.compile(r"s3://(.+?)/(.+)")
_S3_KEYS: Final = ("bucket", "key", "bundleType", "eTag", "version")
_GITHUB_KEYS: Final = ("repository", "commitId")
_COMMIT_ID: Final = re.compile(r"[0-9a-fA-F]{7,64}")
_SHA256: Final = re.compile(r"[0-9a-fA-F]{64}")
#: `deploy` flags (argparse dest) that name a commit source, and the prefix each gives
#: `gitHubLocation.repository`.
COMMIT_SOURCES: Final = {
    "github_repository": "",
    "bitbucket_repository": "bitbucket:",
    "codecommit_repository": "codecommit:",
    "git_url": "git+",
}
_COMMIT_FLAGS: Final = ", ".join(f"--{dest.replace('_', '-')}" for dest in COMMIT_SOURCES)


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


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def deploy_revision(flags: Mapping[str, str | None]) -> dict[str, Any]:
    """The RevisionLocation of `deploy`'s revision flags (argparse dests, None when not given;
    argparse has already made sure exactly one source flag is given)."""
    commit_id, sha256 = flags.get("commit_id"), flags.get("sha256")
    source = next((dest for dest in COMMIT_SOURCES if flags.get(dest) is not None), None)
    if commit_id is not None and source is None:
        raise UsageError(
            f"--commit-id goes with {_COMMIT_FLAGS}: it names the commit to deploy from that "
            "repository."
        )
    if sha256 is not None and flags.get("bundle_url") is None:
        raise UsageError("--sha256 goes with --bundle-url: it is the SHA-256 of that bundle.")
    if source is not None:
        return _commit_location(source, str(flags[source]), commit_id)
    if flags.get("bundle_url") is not None:
        return _bundle_location(str(flags["bundle_url"]), sha256)
    if flags.get("s3_location") is not None:
        return s3_revision(str(flags["s3_location"]))
    return github_revision(str(flags.get("github_location")))


def _commit_location(source: str, value: str, commit_id: str | None) -> dict[str, Any]:
    flag = _flag(source)
    if commit_id is None:
        raise UsageError(
            f"{flag} needs --commit-id SHA, the commit to deploy: deployments are pinned to a "
            "commit, not a branch (`git rev-parse main` prints the SHA of main's head)."
        )
    if not _COMMIT_ID.fullmatch(commit_id):
        raise UsageError(
            f"--commit-id must be a commit SHA (7 to 64 hex digits), got {commit_id!r}: "
            "`git rev-parse <branch or tag>` prints it."
        )
    if source == "github_repository" and ":" in value:
        raise UsageError(
            f"--github-repository is OWNER/REPO, got {value!r}: for Bitbucket, CodeCommit or "
            "another git remote use --bitbucket-repository, --codecommit-repository or --git-url."
        )
    prefix = COMMIT_SOURCES[source]
    repository = value if prefix and value.startswith(prefix) else prefix + value
    return {
        "revisionType": "GitHub",
        "gitHubLocation": {"repository": repository, "commitId": commit_id},
    }


def _bundle_location(url: str, sha256: str | None) -> dict[str, Any]:
    if sha256 is None:
        raise UsageError(
            "--bundle-url needs --sha256 HEX, the bundle's SHA-256 (`sha256sum app.tgz`): agents "
            "refuse a download that does not match it."
        )
    if not _SHA256.fullmatch(sha256):
        raise UsageError(
            f"--sha256 must be 64 hex digits (`sha256sum app.tgz` prints them), got {sha256!r}."
        )
    return {"revisionType": "String", "string": {"content": url, "sha256": sha256}}
