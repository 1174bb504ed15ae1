"""The deployment specification an executor runs: decoded once, valid by construction.

The daemon builds it from a job document (PROTOCOL.md), `codedeploy-agent local` from its flags.
Field names follow the real agent's deployment specification (reference §1.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from codedeploy_agent.lifecycle import DEFAULT_ORDER


class BundleType(StrEnum):
    """How a revision is packed."""

    TAR = "tar"
    TGZ = "tgz"
    ZIP = "zip"
    DIRECTORY = "directory"


class RevisionType(StrEnum):
    """`Revision.RevisionType` values (PROTOCOL.md)."""

    S3 = "S3"
    GITHUB = "GitHub"
    BITBUCKET = "Bitbucket"
    CODECOMMIT = "CodeCommit"
    GIT = "Git"
    URL = "URL"
    LOCAL_FILE = "Local File"
    LOCAL_DIRECTORY = "Local Directory"


@dataclass(frozen=True, slots=True)
class LocalRevision:
    """A bundle already on this host: an archive file or a directory."""

    location: str
    bundle_type: BundleType
    type: RevisionType = RevisionType.LOCAL_FILE

    def hook_environment(self) -> dict[str, str]:
        """Revision variables for hooks: none for local revisions (reference §4.4)."""
        return {}


@dataclass(frozen=True, slots=True)
class S3Revision:
    """A bundle in S3 (or an S3-compatible store), optionally with a presigned download URL."""

    bucket: str
    key: str
    bundle_type: BundleType
    version: str | None = None
    etag: str | None = None
    download_url: str | None = None
    sha256: str | None = None
    size: int | None = None
    type: RevisionType = RevisionType.S3

    def hook_environment(self) -> dict[str, str]:
        """BUNDLE_BUCKET/KEY and, when known, BUNDLE_VERSION/ETAG (nil values are unset)."""
        env = {"BUNDLE_BUCKET": self.bucket, "BUNDLE_KEY": self.key}
        if self.version:
            env["BUNDLE_VERSION"] = self.version
        if self.etag:
            env["BUNDLE_ETAG"] = self.etag
        return env


@dataclass(frozen=True, slots=True)
class GitHubRevision:
    """A GitHub repository at one commit, fetched as a tarball or zipball."""

    account: str
    repository: str
    commit_id: str
    bundle_type: BundleType = BundleType.TAR
    type: RevisionType = RevisionType.GITHUB

    def hook_environment(self) -> dict[str, str]:
        """BUNDLE_COMMIT (reference §4.4)."""
        return {"BUNDLE_COMMIT": self.commit_id}


@dataclass(frozen=True, slots=True)
class BitbucketRevision:
    """A Bitbucket repository at one commit, fetched as an archive of that commit."""

    workspace: str
    repository: str
    commit_id: str
    bundle_type: BundleType = BundleType.TGZ
    type: RevisionType = RevisionType.BITBUCKET

    def hook_environment(self) -> dict[str, str]:
        """BUNDLE_COMMIT, as for GitHub revisions (reference §4.4)."""
        return {"BUNDLE_COMMIT": self.commit_id}


class _GitCheckout:
    """What revisions cloned with git share: a directory bundle and BUNDLE_COMMIT for hooks."""

    __slots__ = ()
    commit_id: str

    @property
    def bundle_type(self) -> BundleType:
        """A git checkout becomes a directory bundle."""
        return BundleType.DIRECTORY

    def hook_environment(self) -> dict[str, str]:
        """BUNDLE_COMMIT, as for GitHub revisions (reference §4.4)."""
        return {"BUNDLE_COMMIT": self.commit_id}


@dataclass(frozen=True, slots=True)
class CodeCommitRevision(_GitCheckout):
    """An AWS CodeCommit repository at one commit, in `region`."""

    repository: str
    commit_id: str
    region: str
    type: RevisionType = RevisionType.CODECOMMIT


@dataclass(frozen=True, slots=True)
class GitRevision(_GitCheckout):
    """Any git remote at one commit; credentials come from the host, never the job."""

    url: str
    commit_id: str
    type: RevisionType = RevisionType.GIT


@dataclass(frozen=True, slots=True)
class UrlRevision:
    """An archive at a plain HTTP(S) URL, verified against its SHA-256 digest."""

    url: str
    bundle_type: BundleType
    sha256: str
    type: RevisionType = RevisionType.URL

    def hook_environment(self) -> dict[str, str]:
        """No revision variables: CodeDeploy defines none for this kind of source."""
        return {}


Revision = (
    LocalRevision
    | S3Revision
    | GitHubRevision
    | BitbucketRevision
    | CodeCommitRevision
    | GitRevision
    | UrlRevision
)


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """Everything one deployment on this host needs to know."""

    deployment_id: str
    deployment_group_id: str
    deployment_group_name: str
    application_name: str
    revision: Revision
    deployment_creator: str = "user"
    deployment_type: str = "IN_PLACE"
    appspec_filename: str = "appspec.yml"
    #: `AgentActionOverrides.AgentOverrides.FileExistsBehavior` (or `local -b`), upper-cased but
    #: not validated: like the real agent, an invalid value fails only when a file collides.
    file_exists_behavior: str | None = None
    #: When set, the appspec's hook names are checked against it at Install (reference §3.6).
    all_possible_lifecycle_events: tuple[str, ...] | None = None
    #: What this deployment runs, in order.
    lifecycle_events: tuple[str, ...] = DEFAULT_ORDER
    ignore_application_stop_failures: bool = False
    #: Extra variables for hooks (resolved secrets); their values are redacted from every log.
    environment: Mapping[str, str] = field(default_factory=dict)

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Values that must never appear in a log."""
        return tuple(v for v in self.environment.values() if v)
