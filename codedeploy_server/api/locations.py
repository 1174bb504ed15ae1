"""Revision locations (`RevisionLocation`) the server accepts for the Server compute platform,
and the job-document revision each one stands for.

- `S3`: `s3Location {bucket, key, bundleType, version?, eTag?}`, bundleType `tar`, `tgz` or
  `zip` (YAML/JSON bundles are AppSpec files for Lambda/ECS). The reserved bucket
  `codedeploy-server-bundles` is the server's own bundle store, where the key is the bundle's
  sha256 (64 lower-case hex digits).
- `GitHub`: `gitHubLocation {repository, commitId}`, the commit a hexadecimal SHA (7 to 64
  digits). `repository` selects the commit source the agents fetch (PROTOCOL.md's blocks):

  | `repository`                     | job-document revision                               |
  |----------------------------------|-----------------------------------------------------|
  | `owner/repo`                     | `GitHubRevision {Account, Repository}` (as before)  |
  | `bitbucket:WORKSPACE/REPO`       | `BitbucketRevision {Workspace, Repository}`         |
  | `codecommit:REPO`                | `CodeCommitRevision`, Region = the server's `region` |
  | `codecommit:REGION/REPO`         | `CodeCommitRevision` in REGION                      |
  | `git+https://…`, `git+ssh://…`, `git+file:///…` | `GitRevision {Url}`, the URL after `git+` |

  `git+http://` is accepted for loopback hosts only (a local mirror); a `file://` URL is a path
  on each instance. A password in a git URL is refused: the location is stored and returned by
  GetDeployment and GetApplicationRevision, so credentials belong in the agents' configuration
  (`git.username`/`git.password_file`, `git.ssh_key_file`, `bitbucket.*`, `git.codecommit_*` or
  the host's AWS credentials), as PROTOCOL.md requires of every job document.
- `String`: `string {content, sha256}` is a bundle at a URL (`UrlRevision`): content the https://
  URL of a tar/tgz/zip bundle (http:// to loopback hosts only; no credentials in it), its type
  from the URL path's suffix (`.tar`, `.tar.gz`/`.tgz`, `.zip`); sha256 the bundle's digest,
  required: the agents check the download against it before extracting.
- `AppSpecContent` is refused (`InvalidRevisionException` saying why).

Why encode: boto3 and the AWS CLI refuse unknown RevisionLocation members client-side, but check
neither enum values nor string patterns, so these types ride in existing members and every
client keeps working unchanged. (A divergence from AWS, on purpose: there `String` carries
Lambda/ECS AppSpec content, meaningless on the Server platform, and `repository` is only ever
`owner/repo`, so neither encoding can be mistaken for a real AWS location.)

`normalise` checks each form with the parsers the engine resolves them with (`commit_revision`,
`url_revision`), so a deployment is refused at CreateDeployment, with the same message, rather
than failing on every host. A location is normalised to the members of its type, unset members
dropped, values exactly as given (Get/ListApplicationRevisions return them unchanged); its key
(for the `revisions` table and health comparisons) is the rollout engine's `revision_key`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

from codedeploy_agent.sources.proxy import is_loopback
from codedeploy_agent.spec import (
    BitbucketRevision,
    BundleType,
    CodeCommitRevision,
    GitHubRevision,
    GitRevision,
    UrlRevision,
)
from codedeploy_server.api.errors import InvalidRevisionException
from codedeploy_server.rollout.health import revision_key

BUNDLE_STORE_BUCKET: Final = "codedeploy-server-bundles"
SERVER_BUNDLE_TYPES: Final = ("tar", "tgz", "zip")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Only checking: the engine resolves `codecommit:REPO` with the server's configured region.
_ANY_REGION: Final = "us-east-1"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_S3_MEMBERS: Final = ("bucket", "key", "bundleType", "version", "eTag")
#: Bundle types by file-name suffix (S3 keys without a bundleType, String URLs).
BUNDLE_EXTENSIONS: Final = (
    (".tar.gz", BundleType.TGZ),
    (".tgz", BundleType.TGZ),
    (".tar", BundleType.TAR),
    (".zip", BundleType.ZIP),
)
#: The agent's own rules (protocol/revisions.py) for names that go into URLs and git command lines.
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_REPOSITORY = re.compile(r"([^/]+)/([^/]+)")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z0-9]+)+")
_COMMIT_ID = re.compile(r"[0-9a-fA-F]{7,64}")
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
BITBUCKET_PREFIX: Final = "bitbucket:"
CODECOMMIT_PREFIX: Final = "codecommit:"
GIT_PREFIX: Final = "git+"
#: `git+<scheme>://` forms; `http` only to loopback hosts.
_GIT_SCHEMES: Final = ("https", "ssh", "file", "http")
#: What `gitHubLocation.repository` may be, for messages.
REPOSITORY_FORMS: Final = (
    "'owner/repository' (GitHub), 'bitbucket:WORKSPACE/REPOSITORY', "
    "'codecommit:REPOSITORY' or 'codecommit:REGION/REPOSITORY', or 'git+URL' (git+https://, "
    "git+ssh://, git+file:///)"
)


def normalise(location: Mapping[str, Any]) -> dict[str, Any]:
    """The location reduced to its type's members; InvalidRevisionException saying what is
    wrong and what to use instead."""
    kind = location.get("revisionType")
    if kind == "S3":
        return {"revisionType": "S3", "s3Location": _s3(location.get("s3Location"))}
    if kind == "GitHub":
        return {"revisionType": "GitHub", "gitHubLocation": _github(location.get("gitHubLocation"))}
    if kind == "String":
        return {"revisionType": "String", "string": _string(location.get("string"))}
    if kind == "AppSpecContent":
        raise InvalidRevisionException(
            "Revision type AppSpecContent is for Lambda and Amazon ECS deployments; this server "
            "deploys to on-premises instances (compute platform Server). Use an S3 revision "
            "(or `codedeploy push`, which uploads to the server's bundle store), a "
            "gitHubLocation (GitHub, Bitbucket, CodeCommit or any git URL) or a String bundle "
            "URL with its sha256."
        )
    raise InvalidRevisionException(
        "The revision needs a revisionType: S3 (with s3Location), GitHub (with gitHubLocation: "
        "GitHub, Bitbucket, CodeCommit or a git URL) or String (with string: a bundle URL and "
        "its sha256)."
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
            "A GitHub revision needs gitHubLocation {repository, commitId}; repository is "
            f"{REPOSITORY_FORMS}."
        )
    repository, commit = block.get("repository"), block.get("commitId")
    commit_revision(repository, commit, region=_ANY_REGION)
    return {"repository": repository, "commitId": commit}


def _string(block: Any) -> dict[str, Any]:
    if not isinstance(block, Mapping):
        raise InvalidRevisionException(
            "A String revision needs string {content, sha256}: content the https:// URL of a "
            "tar, tgz or zip bundle, sha256 the bundle's SHA-256."
        )
    content, sha256 = block.get("content"), block.get("sha256")
    url_revision(content, sha256)
    return {"content": content, "sha256": sha256}


def commit_revision(
    repository: object, commit: object, *, region: str
) -> GitHubRevision | BitbucketRevision | CodeCommitRevision | GitRevision:
    """The revision a `gitHubLocation {repository, commitId}` encodes (module docstring);
    `region` is the CodeCommit region when the repository names none."""
    if not isinstance(repository, str) or not repository:
        raise _invalid(f"gitHubLocation.repository must be {REPOSITORY_FORMS}; it is missing.")
    if not isinstance(commit, str) or not _COMMIT_ID.fullmatch(commit):
        raise _invalid(
            f"gitHubLocation.commitId must be a commit SHA (7 to 64 hex digits), got {commit!r}."
        )
    if repository.startswith(GIT_PREFIX):
        return GitRevision(url=_git_url(repository), commit_id=commit)
    if repository.startswith(BITBUCKET_PREFIX):
        workspace, name = _two_names(
            repository, BITBUCKET_PREFIX, "'bitbucket:WORKSPACE/REPOSITORY'"
        )
        return BitbucketRevision(workspace=workspace, repository=name, commit_id=commit)
    if repository.startswith(CODECOMMIT_PREFIX):
        return _codecommit(repository, commit, region)
    match = _REPOSITORY.fullmatch(repository)
    if match is None or not all(_is_name(part) for part in match.groups()):
        raise _invalid(f"gitHubLocation.repository must be {REPOSITORY_FORMS}, got {repository!r}.")
    return GitHubRevision(account=match.group(1), repository=match.group(2), commit_id=commit)


def url_revision(content: object, sha256: object) -> UrlRevision:
    """The revision of a `String` location: `content` the bundle's URL, `sha256` its digest."""
    form = "A String revision is a bundle URL: string.content 'https://host/path/app.tgz' and "
    form += "string.sha256 the bundle's SHA-256 (`sha256sum app.tgz`)"
    if not isinstance(content, str) or not content:
        raise _invalid(f"{form}; string.content is missing.")
    shown = _without_userinfo(content)
    shown = shown if len(shown) <= 200 else shown[:200] + "..."
    parts = _split(content)
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise _invalid(f"{form}; string.content {shown!r} is not such a URL.")
    if parts.username is not None or parts.password is not None:
        raise _invalid(
            f"string.content {shown!r} carries credentials: the location is stored and shown by "
            "GetDeployment and GetApplicationRevision, so put no user name or password in it "
            "(use a URL that needs none, or an S3 location)."
        )
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise _invalid(
            f"string.content {shown!r} uses http://: serve the bundle over https:// (http:// "
            "is accepted for loopback hosts only, 127.0.0.1, ::1 or localhost)."
        )
    if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
        got = "it is missing" if sha256 is None else f"got {sha256!r}"
        raise _invalid(
            f"string.sha256 must be the bundle's SHA-256 (64 hex digits, `sha256sum app.tgz`); "
            f"{got}. Agents check the download against it before extracting."
        )
    path = parts.path.lower()
    for extension, bundle_type in BUNDLE_EXTENSIONS:
        if path.endswith(extension):
            return UrlRevision(url=content, bundle_type=bundle_type, sha256=sha256.lower())
    raise _invalid(
        f"The bundle type of a String revision comes from its URL path, and {parts.path!r} ends "
        "in none of .tar, .tar.gz, .tgz or .zip: serve the bundle under a name with one of them."
    )


def _invalid(message: str) -> InvalidRevisionException:
    return InvalidRevisionException(message)


def _is_name(value: str) -> bool:
    return _NAME.fullmatch(value) is not None and value not in (".", "..")


def _two_names(repository: str, prefix: str, form: str) -> tuple[str, str]:
    parts = repository.removeprefix(prefix).split("/")
    if len(parts) != 2 or not all(_is_name(part) for part in parts):
        raise _invalid(
            f"gitHubLocation.repository {repository!r} must be {form}, each part a name of "
            "letters, digits, '.', '_' and '-' (at most 100)."
        )
    return parts[0], parts[1]


def _codecommit(repository: str, commit: str, region: str) -> CodeCommitRevision:
    rest = repository.removeprefix(CODECOMMIT_PREFIX)
    where, _, name = rest.rpartition("/")
    if not _is_name(name) or (where and not _REGION.fullmatch(where)):
        raise _invalid(
            f"gitHubLocation.repository {repository!r} must be 'codecommit:REPOSITORY' or "
            "'codecommit:REGION/REPOSITORY': REPOSITORY a name of letters, digits, '.', '_' and "
            "'-' (at most 100), REGION an AWS region such as eu-west-1."
        )
    if not where and not region:
        raise _invalid(
            f"gitHubLocation.repository {repository!r} names no region and this server has none "
            "configured: use 'codecommit:REGION/REPOSITORY' or set region in the server config."
        )
    return CodeCommitRevision(repository=name, commit_id=commit, region=where or region)


def _git_url(repository: str) -> str:
    url = repository.removeprefix(GIT_PREFIX)
    shown = _without_userinfo(repository)
    form = (
        f"gitHubLocation.repository {shown!r} must be 'git+' followed by an https://, ssh:// or "
        "file:/// URL (http:// for loopback hosts only)"
    )
    parts = _split(url)
    if parts is None or parts.scheme not in _GIT_SCHEMES:
        raise _invalid(f"{form}, without white space.")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise _invalid(f"{form}; a file URL is git+file:///absolute/path (on each instance).")
    elif not parts.hostname or parts.hostname.startswith("-"):
        raise _invalid(f"{form}; this one names no valid host.")
    if parts.fragment:
        raise _invalid(
            f"{form}, without a #fragment: the commit to deploy is gitHubLocation.commitId."
        )
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        raise _invalid(
            f"gitHubLocation.repository {shown!r} uses plain http://, accepted for loopback "
            "hosts only: use git+https:// or git+ssh://."
        )
    if parts.password is not None:
        raise _invalid(
            f"gitHubLocation.repository {shown!r} carries a password: the location is stored "
            "and shown by GetDeployment and GetApplicationRevision. Give the agents "
            "git.username and git.password_file (or git.ssh_key_file) in their configuration "
            "instead."
        )
    return url


def _split(url: str) -> SplitResult | None:
    """`urlsplit(url)` with a valid port and no white space or control characters; else None."""
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in url):
        return None
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return None
    return parts


def _without_userinfo(url: str) -> str:
    """`url` with any `user:password@` masked, for messages."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", url)
