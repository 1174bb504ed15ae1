"""Revision blocks of the job document: each decoded with its message, and `spec.Revision`.

`Revision.RevisionType` selects the block, and exactly one block may be present. Messages are the
real agent's where it has them (S3, GitHub, Local) and say the same for the new blocks. Commit
ids must be hexadecimal SHAs and repository names plain names, because they go into URLs and git
command lines; git URLs must use a known transport (never `ext::`) and may not start with `-`.
`Download` (S3 only) makes the agent fetch a presigned URL instead of calling S3. The URLs of
`Download` and `UrlRevision` must be https, or plain http to a loopback host only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from codedeploy_agent.protocol._fields import Block, is_set, object_field, reject, string_field
from codedeploy_agent.spec import (
    BitbucketRevision,
    BundleType,
    CodeCommitRevision,
    GitHubRevision,
    GitRevision,
    LocalRevision,
    Revision,
    RevisionType,
    S3Revision,
    UrlRevision,
)

EXACTLY_ONE_REVISION: Final = (
    "Exactly one of S3Revision, GitHubRevision, BitbucketRevision, CodeCommitRevision, "
    "GitRevision, UrlRevision, or LocalRevision must be specified"
)
_COMMIT = re.compile(r"[0-9a-fA-F]{7,64}")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_REPO_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z0-9]+)+")
_SCP_LIKE = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+")
_GIT_SCHEMES: Final = frozenset({"https", "http", "ssh", "git", "file"})


class S3RevisionBlock(Block, frozen=True):
    """`Revision.S3Revision`."""

    bucket: str
    key: str
    bundle_type: BundleType
    version: str | None = None
    etag: str | None = msgspec.field(default=None, name="ETag")


class GitHubRevisionBlock(Block, frozen=True):
    """`Revision.GitHubRevision`; tokens come from the host's configuration."""

    account: str
    repository: str
    commit_id: str
    bundle_type: BundleType = BundleType.TAR


class BitbucketRevisionBlock(Block, frozen=True):
    """`Revision.BitbucketRevision`."""

    workspace: str
    repository: str
    commit_id: str
    bundle_type: BundleType = BundleType.TGZ


class CodeCommitRevisionBlock(Block, frozen=True):
    """`Revision.CodeCommitRevision`."""

    repository: str
    commit_id: str
    region: str


class GitRevisionBlock(Block, frozen=True):
    """`Revision.GitRevision`."""

    url: str
    commit_id: str


class UrlRevisionBlock(Block, frozen=True):
    """`Revision.UrlRevision`."""

    url: str
    bundle_type: BundleType
    sha256: str


class LocalRevisionBlock(Block, frozen=True):
    """`Revision.LocalRevision` (RevisionType `Local File` or `Local Directory`)."""

    location: str
    bundle_type: BundleType


class DownloadBlock(Block, frozen=True):
    """`Revision.Download` (S3 only): fetch this URL instead of calling S3."""

    url: str
    sha256: str | None = None
    size: int | None = None


class RevisionBlock(Block, frozen=True):
    """`Revision`: the type and exactly one matching block."""

    revision_type: RevisionType
    s3_revision: S3RevisionBlock | None = None
    github_revision: GitHubRevisionBlock | None = msgspec.field(default=None, name="GitHubRevision")
    bitbucket_revision: BitbucketRevisionBlock | None = None
    codecommit_revision: CodeCommitRevisionBlock | None = msgspec.field(
        default=None, name="CodeCommitRevision"
    )
    git_revision: GitRevisionBlock | None = None
    url_revision: UrlRevisionBlock | None = None
    local_revision: LocalRevisionBlock | None = None
    download: DownloadBlock | None = None


_BLOCK_KEYS: Final[dict[RevisionType, str]] = {
    RevisionType.S3: "S3Revision",
    RevisionType.GITHUB: "GitHubRevision",
    RevisionType.BITBUCKET: "BitbucketRevision",
    RevisionType.CODECOMMIT: "CodeCommitRevision",
    RevisionType.GIT: "GitRevision",
    RevisionType.URL: "UrlRevision",
    RevisionType.LOCAL_FILE: "LocalRevision",
    RevisionType.LOCAL_DIRECTORY: "LocalRevision",
}
_REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "S3Revision": ("Bucket", "Key", "BundleType"),
    "GitHubRevision": ("Account", "Repository", "CommitId"),
    "BitbucketRevision": ("Workspace", "Repository", "CommitId"),
    "CodeCommitRevision": ("Repository", "CommitId", "Region"),
    "GitRevision": ("Url", "CommitId"),
    "UrlRevision": ("Url", "BundleType", "Sha256"),
    "LocalRevision": ("Location", "BundleType"),
}
_BUNDLE_TYPES: Final[dict[str, tuple[tuple[BundleType, ...], str]]] = {
    "S3Revision": (
        (BundleType.TAR, BundleType.TGZ, BundleType.ZIP),
        "BundleType in S3Revision must be tar, tgz or zip",
    ),
    "GitHubRevision": (
        (BundleType.TAR, BundleType.ZIP),
        "BundleType in GitHubRevision must be tar or zip",
    ),
    "BitbucketRevision": (
        (BundleType.TGZ, BundleType.ZIP),
        "BundleType in BitbucketRevision must be tgz or zip",
    ),
    "UrlRevision": (
        (BundleType.TAR, BundleType.TGZ, BundleType.ZIP),
        "BundleType in UrlRevision must be tar, tgz or zip",
    ),
    "LocalRevision": (
        tuple(BundleType),
        "BundleType in LocalRevision must be tar, tgz, zip, or directory",
    ),
}


def _required_message(block: str) -> str:
    fields = _REQUIRED[block]
    listed = f"{', '.join(fields[:-1])} and {fields[-1]}"
    return f"{block} in Deployment Spec must specify {listed}"


def parse_revision(document: Mapping[str, Any]) -> RevisionBlock:
    """Decode `document["Revision"]`; raise JobRejected(InvalidJobDocument)."""
    revision = document.get("Revision")
    if not is_set(revision):
        raise reject("Must specify a revison")  # sic: the real agent's text
    if not isinstance(revision, dict):
        raise reject(f"Revision must be an object, got {type(revision).__name__}")
    source = revision.get("RevisionType")
    if not is_set(source):
        raise reject("Must specify a revision source")
    if source not in tuple(RevisionType):
        raise reject(f"{EXACTLY_ONE_REVISION} (unknown RevisionType {source!r})")
    revision_type = RevisionType(source)
    present = sorted({key for key in _BLOCK_KEYS.values() if is_set(revision.get(key))})
    if len(present) > 1:
        raise reject(f"{EXACTLY_ONE_REVISION} (found {', '.join(present)})")
    block_key = _BLOCK_KEYS[revision_type]
    block = revision.get(block_key)
    if not isinstance(block, dict):
        raise reject(_required_message(block_key))
    fields = {key: string_field(block, key, block_key) for key in _REQUIRED[block_key]}
    if any(value is None for value in fields.values()):
        raise reject(_required_message(block_key))
    download = _download(revision, revision_type)
    parts = _BLOCK_PARSERS[block_key](block, {k: v or "" for k, v in fields.items()})
    return RevisionBlock(revision_type=revision_type, download=download, **parts)


def _bundle_type(
    block_key: str, value: str | None, default: BundleType | None = None
) -> BundleType:
    allowed, message = _BUNDLE_TYPES[block_key]
    if value is None and default is not None:
        return default
    if value not in allowed:
        raise reject(message)
    return BundleType(value)


def _commit(block_key: str, value: str) -> str:
    if not _COMMIT.fullmatch(value):
        raise reject(
            f"CommitId in {block_key} must be a commit SHA (7 to 64 hexadecimal characters), "
            f"got {value!r}"
        )
    return value


def _name(block_key: str, key: str, value: str) -> str:
    if not _REPO_NAME.fullmatch(value) or value in (".", ".."):
        raise reject(f"{key} in {block_key} must be a name of letters, digits, '.', '_' and '-'")
    return value


def _http_url(where: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc or _has_space(value):
        raise reject(f"Url in {where} must be an http:// or https:// URL, got {value!r}")
    host = parts.hostname or ""
    if parts.scheme == "http" and not is_loopback_host(host):
        # Only the host is shown: the path and query of a presigned link carry its signature.
        raise reject(
            f"Url in {where} must be an https:// URL: plain http:// is accepted only for "
            "loopback hosts (127.0.0.1, ::1, localhost), since without TLS anyone on the network "
            f"path can read the bundle or swap it; got an http:// URL to {host!r}"
        )
    return value


def is_loopback_host(host: str) -> bool:
    """True for `localhost`, `*.localhost` and loopback IP addresses (v4, v6, v4-mapped v6).

    The same rule as `sources.proxy.is_loopback`, which the fetch-time checks use (this layer
    may not import the sources; a test keeps the two in step).
    """
    host = host.lower().rstrip(".").strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _has_space(value: str) -> bool:
    return any(char.isspace() or ord(char) < 32 for char in value)


def _git_url(value: str) -> str:
    ok = not value.startswith("-") and not _has_space(value)
    if "://" in value:
        ok = ok and urlsplit(value).scheme in _GIT_SCHEMES
    else:
        ok = ok and (value.startswith("/") or _SCP_LIKE.fullmatch(value) is not None)
    if not ok:
        raise reject(
            "Url in GitRevision must be an https://, http://, ssh://, git:// or file:// URL, "
            f"an scp-like user@host:path or an absolute path, got {value!r}"
        )
    return value


def _sha256(where: str, value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise reject(f"Sha256 in {where} must be 64 hexadecimal characters")
    return value.lower()


def _s3(block: Mapping[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    bundle_type = _bundle_type("S3Revision", fields["BundleType"])
    return {
        "s3_revision": S3RevisionBlock(
            bucket=fields["Bucket"],
            key=fields["Key"],
            bundle_type=bundle_type,
            version=string_field(block, "Version", "S3Revision"),
            etag=string_field(block, "ETag", "S3Revision"),
        )
    }


def _github(block: Mapping[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    # OAuthToken / Anonymous are ignored: tokens come from the host's configuration only.
    where = "GitHubRevision"
    return {
        "github_revision": GitHubRevisionBlock(
            account=_name(where, "Account", fields["Account"]),
            repository=_name(where, "Repository", fields["Repository"]),
            commit_id=_commit(where, fields["CommitId"]),
            bundle_type=_bundle_type(
                where, string_field(block, "BundleType", where), BundleType.TAR
            ),
        )
    }


def _bitbucket(block: Mapping[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    where = "BitbucketRevision"
    return {
        "bitbucket_revision": BitbucketRevisionBlock(
            workspace=_name(where, "Workspace", fields["Workspace"]),
            repository=_name(where, "Repository", fields["Repository"]),
            commit_id=_commit(where, fields["CommitId"]),
            bundle_type=_bundle_type(
                where, string_field(block, "BundleType", where), BundleType.TGZ
            ),
        )
    }


def _codecommit(block: Mapping[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    del block
    where = "CodeCommitRevision"
    if not _REGION.fullmatch(fields["Region"]):
        raise reject(f"Region in {where} must be an AWS region such as us-east-1")
    return {
        "codecommit_revision": CodeCommitRevisionBlock(
            repository=_name(where, "Repository", fields["Repository"]),
            commit_id=_commit(where, fields["CommitId"]),
            region=fields["Region"],
        )
    }


def _git(block: Mapping[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    del block
    return {
        "git_revision": GitRevisionBlock(
            url=_git_url(fields["Url"]), commit_id=_commit("GitRevision", fields["CommitId"])
        )
    }


def _url(block: Mapping[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    del block
    where = "UrlRevision"
    return {
        "url_revision": UrlRevisionBlock(
            url=_http_url(where, fields["Url"]),
            bundle_type=_bundle_type(where, fields["BundleType"]),
            sha256=_sha256(where, fields["Sha256"]),
        )
    }


def _local(block: Mapping[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    del block
    return {
        "local_revision": LocalRevisionBlock(
            location=fields["Location"],
            bundle_type=_bundle_type("LocalRevision", fields["BundleType"]),
        )
    }


_BLOCK_PARSERS: Final = {
    "S3Revision": _s3,
    "GitHubRevision": _github,
    "BitbucketRevision": _bitbucket,
    "CodeCommitRevision": _codecommit,
    "GitRevision": _git,
    "UrlRevision": _url,
    "LocalRevision": _local,
}


def _download(revision: Mapping[str, Any], revision_type: RevisionType) -> DownloadBlock | None:
    download = object_field(revision, "Download", "Revision")
    if download is None:
        return None
    if revision_type is not RevisionType.S3:
        raise reject(f"Revision.Download is only used with S3 revisions, not {revision_type}")
    url = string_field(download, "Url", "Download")
    if url is None:
        raise reject("Download in Revision must specify Url")
    sha256 = string_field(download, "Sha256", "Download")
    size = download.get("Size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise reject("Size in Download must be a non-negative integer (bytes)")
    return DownloadBlock(
        url=_http_url("Download", url),
        sha256=None if sha256 is None else _sha256("Download", sha256),
        size=size,
    )


def spec_revision(block: RevisionBlock) -> Revision:
    """The `spec.Revision` a decoded revision block describes."""
    if block.s3_revision is not None:
        s3, download = block.s3_revision, block.download
        return S3Revision(
            bucket=s3.bucket,
            key=s3.key,
            bundle_type=s3.bundle_type,
            version=s3.version,
            etag=s3.etag,
            download_url=download.url if download else None,
            sha256=download.sha256 if download else None,
            size=download.size if download else None,
        )
    if (gh := block.github_revision) is not None:
        return GitHubRevision(gh.account, gh.repository, gh.commit_id, gh.bundle_type)
    if (bb := block.bitbucket_revision) is not None:
        return BitbucketRevision(bb.workspace, bb.repository, bb.commit_id, bb.bundle_type)
    if (cc := block.codecommit_revision) is not None:
        return CodeCommitRevision(cc.repository, cc.commit_id, cc.region)
    if (git := block.git_revision) is not None:
        return GitRevision(git.url, git.commit_id)
    if (url := block.url_revision) is not None:
        return UrlRevision(url.url, url.bundle_type, url.sha256)
    if (local := block.local_revision) is not None:
        return LocalRevision(local.location, local.bundle_type, block.revision_type)
    raise ValueError(f"revision block without a {block.revision_type} block")


def revision_block(revision: Revision) -> RevisionBlock:
    """The job-document block for a `spec.Revision` (the control plane's direction)."""
    match revision:
        case S3Revision():
            download = None
            if revision.download_url is not None:
                download = DownloadBlock(
                    url=revision.download_url, sha256=revision.sha256, size=revision.size
                )
            s3 = S3RevisionBlock(
                bucket=revision.bucket,
                key=revision.key,
                bundle_type=revision.bundle_type,
                version=revision.version,
                etag=revision.etag,
            )
            return RevisionBlock(revision_type=revision.type, s3_revision=s3, download=download)
        case GitHubRevision(account, repository, commit_id, bundle_type, kind):
            block = GitHubRevisionBlock(
                account=account, repository=repository, commit_id=commit_id, bundle_type=bundle_type
            )
            return RevisionBlock(revision_type=kind, github_revision=block)
        case BitbucketRevision(workspace, repository, commit_id, bundle_type, kind):
            bitbucket = BitbucketRevisionBlock(
                workspace=workspace,
                repository=repository,
                commit_id=commit_id,
                bundle_type=bundle_type,
            )
            return RevisionBlock(revision_type=kind, bitbucket_revision=bitbucket)
        case CodeCommitRevision(repository, commit_id, region, kind):
            codecommit = CodeCommitRevisionBlock(
                repository=repository, commit_id=commit_id, region=region
            )
            return RevisionBlock(revision_type=kind, codecommit_revision=codecommit)
        case GitRevision(url, commit_id, kind):
            git = GitRevisionBlock(url=url, commit_id=commit_id)
            return RevisionBlock(revision_type=kind, git_revision=git)
        case UrlRevision(url, bundle_type, sha256, kind):
            plain = UrlRevisionBlock(url=url, bundle_type=bundle_type, sha256=sha256)
            return RevisionBlock(revision_type=kind, url_revision=plain)
        case LocalRevision(location, bundle_type, kind):
            local = LocalRevisionBlock(location=location, bundle_type=bundle_type)
            return RevisionBlock(revision_type=kind, local_revision=local)
