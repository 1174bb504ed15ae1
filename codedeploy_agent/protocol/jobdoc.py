"""The job document (PROTOCOL.md "Job document"): decoded, checked, and turned into a spec.

The agent calls `accept_job_document` on an execution's `jobDocument`: size limit, signature
(`signing.verify_document`, before anything else is trusted), decoding, expiry, in that order;
every refusal is a `JobRejected` whose `reason_code` goes into the REJECTED update. Decoding
follows the real agent's deployment specification (reference §1.2) with its exact messages; a
property counts as set only when it is non-null and non-empty. Where the real agent crashed or
was silent, we refuse with a message naming the key:

- a revision block missing for its `RevisionType` (the real agent took a nil S3Revision as valid),
  and more than one revision block in one document;
- `DeploymentId` / `DeploymentGroupId` that are not safe directory names (they become
  `<root>/<dg>/<d>`; the real agent would follow `../`), an `AppSpecFilename` that leaves the
  revision, a NUL in any string (it could not reach a hook's environment);
- commit ids that are not hexadecimal SHAs and repository names with `/`: they are put into URLs
  and git command lines.

`LifecycleEvents` (new) is what the job runs, in order. When it is absent the job runs the seven
events of an in-place deployment without a load balancer (`IN_PLACE_EVENTS`); it is never derived
from `AllPossibleLifecycleEvents`, which lists the events a deployment group *may* have (traffic
hooks included), not those this job runs. The control plane always sends `LifecycleEvents`.

`Schema` is `codedeploy-agent/job/<major>[.<minor>]`; this agent understands major 1 (minors only
add optional keys). Unknown keys are ignored so that newer control planes can add them; they are
still covered by the signature. The control plane builds documents with `build_job_document`,
which returns a dict ready for `signing.sign_document` and that this module accepts by
construction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from codedeploy_agent.lifecycle import LifecycleEvent
from codedeploy_agent.protocol.errors import JobRejected, RejectReason
from codedeploy_agent.protocol.messages import format_time
from codedeploy_agent.protocol.signing import verify_document
from codedeploy_agent.spec import (
    BitbucketRevision,
    BundleType,
    CodeCommitRevision,
    DeploymentSpec,
    GitHubRevision,
    GitRevision,
    LocalRevision,
    Revision,
    RevisionType,
    S3Revision,
    UrlRevision,
)

SCHEMA: Final = "codedeploy-agent/job/1"
SUPPORTED_MAJOR: Final = 1
#: AWS IoT Jobs' limit on a job document, measured on its compact JSON encoding.
MAX_DOCUMENT_BYTES: Final = 32 * 1024
#: What a job without `LifecycleEvents` runs: an in-place deployment without a load balancer.
IN_PLACE_EVENTS: Final[tuple[str, ...]] = (
    LifecycleEvent.APPLICATION_STOP.value,
    LifecycleEvent.DOWNLOAD_BUNDLE.value,
    LifecycleEvent.BEFORE_INSTALL.value,
    LifecycleEvent.INSTALL.value,
    LifecycleEvent.AFTER_INSTALL.value,
    LifecycleEvent.APPLICATION_START.value,
    LifecycleEvent.VALIDATE_SERVICE.value,
)
#: Variables the agent sets for every hook; a secret may not shadow them.
RESERVED_ENVIRONMENT: Final = frozenset(
    {
        "LIFECYCLE_EVENT",
        "DEPLOYMENT_ID",
        "APPLICATION_NAME",
        "DEPLOYMENT_GROUP_NAME",
        "DEPLOYMENT_GROUP_ID",
        "BUNDLE_BUCKET",
        "BUNDLE_KEY",
        "BUNDLE_VERSION",
        "BUNDLE_ETAG",
        "BUNDLE_COMMIT",
    }
)
DEPLOYMENT_TYPES: Final = frozenset({"IN_PLACE", "BLUE_GREEN"})
EXACTLY_ONE_REVISION: Final = (
    "Exactly one of S3Revision, GitHubRevision, BitbucketRevision, CodeCommitRevision, "
    "GitRevision, UrlRevision, or LocalRevision must be specified"
)

_SCHEMA = re.compile(r"codedeploy-agent/job/([0-9]{1,9})(?:\.[0-9]{1,9})?")
_DIRECTORY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_EVENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,99}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_COMMIT = re.compile(r"[0-9a-fA-F]{7,64}")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_REPO_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z0-9]+)+")
_SCP_LIKE = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,  # `\d` is [0-9] only
)
_GIT_SCHEMES: Final = frozenset({"https", "http", "ssh", "git", "file"})
_NO_ENVIRONMENT: Final[Mapping[str, str]] = MappingProxyType({})


class _Block(msgspec.Struct, frozen=True, omit_defaults=True, rename="pascal", kw_only=True):
    """Base of the document's parts: PascalCase keys, unset parts omitted."""


class S3RevisionBlock(_Block, frozen=True):
    """`Revision.S3Revision`."""

    bucket: str
    key: str
    bundle_type: BundleType
    version: str | None = None
    etag: str | None = msgspec.field(default=None, name="ETag")


class GitHubRevisionBlock(_Block, frozen=True):
    """`Revision.GitHubRevision`; tokens come from the host's configuration."""

    account: str
    repository: str
    commit_id: str
    bundle_type: BundleType = BundleType.TAR


class BitbucketRevisionBlock(_Block, frozen=True):
    """`Revision.BitbucketRevision`."""

    workspace: str
    repository: str
    commit_id: str
    bundle_type: BundleType = BundleType.TGZ


class CodeCommitRevisionBlock(_Block, frozen=True):
    """`Revision.CodeCommitRevision`."""

    repository: str
    commit_id: str
    region: str


class GitRevisionBlock(_Block, frozen=True):
    """`Revision.GitRevision`."""

    url: str
    commit_id: str


class UrlRevisionBlock(_Block, frozen=True):
    """`Revision.UrlRevision`."""

    url: str
    bundle_type: BundleType
    sha256: str


class LocalRevisionBlock(_Block, frozen=True):
    """`Revision.LocalRevision` (RevisionType `Local File` or `Local Directory`)."""

    location: str
    bundle_type: BundleType


class DownloadBlock(_Block, frozen=True):
    """`Revision.Download` (S3 only): fetch this URL instead of calling S3."""

    url: str
    sha256: str | None = None
    size: int | None = None


class RevisionBlock(_Block, frozen=True):
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


class AgentOverrides(_Block, frozen=True):
    """`AgentActionOverrides.AgentOverrides`."""

    file_exists_behavior: str | None = None


class AgentActionOverrides(_Block, frozen=True):
    """`AgentActionOverrides`."""

    agent_overrides: AgentOverrides | None = None


class EnvironmentEntry(_Block, frozen=True):
    """One `Environment` value: where the agent reads the secret."""

    ssm_parameter: str


class SignatureBlock(_Block, frozen=True):
    """`Signature`, as found; `signing.verify_document` checks it."""

    algorithm: str
    key_id: str
    value: str


class JobDocument(_Block, frozen=True):
    """A decoded job document; `deployment_id` is the short id even if an ARN was sent."""

    schema: str
    deployment_id: str
    deployment_group_id: str
    deployment_group_name: str
    application_name: str
    revision: RevisionBlock
    lifecycle_events: tuple[str, ...]
    deployment_creator: str = "user"
    deployment_type: str = "IN_PLACE"
    app_spec_filename: str = "appspec.yml"
    agent_action_overrides: AgentActionOverrides | None = None
    all_possible_lifecycle_events: tuple[str, ...] | None = None
    ignore_application_stop_failures: bool = False
    environment: dict[str, EnvironmentEntry] = msgspec.field(default_factory=dict)
    issued_at: datetime | None = None
    expires_at: datetime | None = None
    signature: SignatureBlock | None = None

    @property
    def file_exists_behavior(self) -> str | None:
        """The deployment's FileExistsBehavior override (upper-cased), if any."""
        overrides = self.agent_action_overrides
        if overrides is None or overrides.agent_overrides is None:
            return None
        return overrides.agent_overrides.file_exists_behavior

    def to_dict(self) -> dict[str, Any]:
        """The document as plain JSON values (what `signing.sign_document` takes)."""
        result: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(self))
        return result


# --- decoding -------------------------------------------------------------------------------


def _reject(message: str) -> JobRejected:
    return JobRejected(RejectReason.INVALID_JOB_DOCUMENT, message)


def _is_set(value: object) -> bool:
    """The real agent's `property_set?`: non-nil and, for strings and collections, non-empty."""
    if value is None:
        return False
    return not (isinstance(value, str | list | dict) and not value)


def _string(data: Mapping[str, Any], key: str, where: str) -> str | None:
    """`data[key]` when set, as a string without NUL; None when unset."""
    value = data.get(key)
    if not _is_set(value):
        return None
    if not isinstance(value, str):
        raise _reject(f"{key} in {where} must be a string, got {type(value).__name__}")
    if "\0" in value:
        raise _reject(f"{key} in {where} must not contain a NUL character")
    return value


def _object(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = data.get(key)
    if not _is_set(value):
        return None
    if not isinstance(value, dict):
        raise _reject(f"{key} in {where} must be an object, got {type(value).__name__}")
    return value


def document_size(document: object) -> int:
    """Bytes of `document`'s compact JSON encoding; raise JobRejected if it is not JSON."""
    try:
        return len(msgspec.json.encode(document))
    except RecursionError:
        raise _reject("The job document is nested too deeply") from None
    except (TypeError, ValueError, OverflowError) as err:
        raise _reject(f"The job document is not JSON data: {err}") from None


def check_size(document: object) -> None:
    """Reject documents over AWS IoT Jobs' 32 KB limit."""
    size = document_size(document)
    if size > MAX_DOCUMENT_BYTES:
        raise _reject(
            f"The job document is {size} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes "
            "(keep bundles out of the document: reference them by URL)"
        )


def decode_job_document(data: bytes | str) -> JobDocument:
    """Decode a job document from JSON bytes (see `parse_job_document`)."""
    try:
        document = msgspec.json.decode(data)
    except msgspec.DecodeError as err:
        raise _reject(f"The job document is not valid JSON: {err}") from None
    except RecursionError:
        raise _reject("The job document is nested too deeply") from None
    return parse_job_document(document)


def parse_job_document(document: object) -> JobDocument:
    """Decode an already-parsed `jobDocument`; raise JobRejected(InvalidJobDocument)."""
    check_size(document)
    if not isinstance(document, dict):
        raise _reject(f"The job document must be a JSON object, got {type(document).__name__}")
    spec = "Deployment Spec"
    schema = _schema(document.get("Schema"))
    deployment_id = _deployment_id(document)
    for key in ("DeploymentGroupId", "DeploymentGroupName", "ApplicationName"):
        if _string(document, key, spec) is None:
            raise _reject(f"Deployment Spec has no {key}")
    group_id: str = document["DeploymentGroupId"]
    if not _DIRECTORY_NAME.fullmatch(group_id):
        raise _reject(_directory_message("DeploymentGroupId", group_id))
    deployment_type = _string(document, "DeploymentType", spec) or "IN_PLACE"
    if deployment_type not in DEPLOYMENT_TYPES:
        raise _reject(f"DeploymentType must be IN_PLACE or BLUE_GREEN, got {deployment_type!r}")
    all_possible = _event_list(document, "AllPossibleLifecycleEvents")
    events = _event_list(document, "LifecycleEvents") or IN_PLACE_EVENTS
    if all_possible is not None:
        unknown = [event for event in events if event not in all_possible]
        if unknown:
            raise _reject(
                f"LifecycleEvents {unknown} are not in "
                f"AllPossibleLifecycleEvents {list(all_possible)}"
            )
    ignore_stop = document.get("IgnoreApplicationStopFailures")
    if ignore_stop is not None and not isinstance(ignore_stop, bool):
        raise _reject("IgnoreApplicationStopFailures must be true or false")
    issued_at = _time(document, "IssuedAt")
    expires_at = _time(document, "ExpiresAt")
    if issued_at is not None and expires_at is not None and expires_at <= issued_at:
        raise _reject(
            f"ExpiresAt ({format_time(expires_at)}) must be later than IssuedAt "
            f"({format_time(issued_at)})"
        )
    return JobDocument(
        schema=schema,
        deployment_id=deployment_id,
        deployment_group_id=group_id,
        deployment_group_name=document["DeploymentGroupName"],
        application_name=document["ApplicationName"],
        revision=_revision(document),
        lifecycle_events=events,
        deployment_creator=_string(document, "DeploymentCreator", spec) or "user",
        deployment_type=deployment_type,
        app_spec_filename=_appspec_filename(document),
        agent_action_overrides=_overrides(document),
        all_possible_lifecycle_events=all_possible,
        ignore_application_stop_failures=bool(ignore_stop),
        environment=_environment(document),
        issued_at=issued_at,
        expires_at=expires_at,
        signature=_signature(document),
    )


def _schema(value: object) -> str:
    if not _is_set(value):
        raise _reject(f"The job document has no Schema; expected {SCHEMA!r}")
    match = _SCHEMA.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _reject(f"Unsupported job document Schema {value!r}; this agent reads {SCHEMA!r}")
    if int(match.group(1)) != SUPPORTED_MAJOR:
        raise _reject(
            f"Unsupported job document Schema {value!r}: this agent reads major version "
            f"{SUPPORTED_MAJOR} ({SCHEMA!r}); upgrade the agent to run this job"
        )
    return str(value)


def _deployment_id(document: Mapping[str, Any]) -> str:
    value = _string(document, "DeploymentId", "Deployment Spec")
    if value is None:
        raise _reject("Deployment Spec has no DeploymentId")
    if value.startswith("arn:"):
        # arn:<partition>:codedeploy:<region>:<account>:deployment/<id>, as the real agent.
        parts = value.split(":", 5)
        resource = parts[5] if len(parts) == 6 else ""
        if not resource.startswith("deployment/"):
            raise _reject(f"DeploymentId {value!r} is an ARN without a deployment/<id> resource")
        value = resource.removeprefix("deployment/")
    if not _DIRECTORY_NAME.fullmatch(value):
        raise _reject(_directory_message("DeploymentId", value))
    return value


def _directory_message(key: str, value: str) -> str:
    return (
        f"{key} {value!r} must be 1 to 128 letters, digits, '_', '.', ':' or '-', starting with "
        "a letter or digit (it names a directory under the deployment root)"
    )


def _event_list(document: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = document.get(key)
    if not _is_set(value):
        return None
    if not isinstance(value, list):
        raise _reject(f"{key} must be a list of lifecycle event names")
    for event in value:
        if not isinstance(event, str) or not _EVENT_NAME.fullmatch(event):
            raise _reject(f"{key} contains {event!r}, which is not a lifecycle event name")
    if len(set(value)) != len(value):
        twice = sorted({event for event in value if value.count(event) > 1})
        raise _reject(f"{key} lists {', '.join(twice)} more than once")
    return tuple(value)


def _time(document: Mapping[str, Any], key: str) -> datetime | None:
    value = _string(document, key, "Deployment Spec")
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise _reject(
            f"{key} {value!r} is not an RFC 3339 time such as '2026-11-26T10:00:00Z'"
        ) from None


def parse_time(value: str) -> datetime:
    """Parse an RFC 3339 date-time with an offset into an aware UTC datetime (ValueError)."""
    if not _RFC3339.fullmatch(value):
        raise ValueError(value)
    try:
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except OverflowError:  # an offset that moves year 1 or 9999 out of range
        raise ValueError(value) from None


def _appspec_filename(document: Mapping[str, Any]) -> str:
    value = _string(document, "AppSpecFilename", "Deployment Spec")
    if value is None:
        return "appspec.yml"
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise _reject(
            f"AppSpecFilename {value!r} must be a relative path inside the revision "
            "(no leading '/', no '..')"
        )
    return value


def _overrides(document: Mapping[str, Any]) -> AgentActionOverrides | None:
    overrides = _object(document, "AgentActionOverrides", "Deployment Spec")
    if overrides is None:
        return None
    agent = _object(overrides, "AgentOverrides", "AgentActionOverrides")
    if agent is None:
        return None
    behavior = _string(agent, "FileExistsBehavior", "AgentOverrides")
    if behavior is None:
        return None
    # Upper-cased but not validated, as the real agent: it fails only on a collision.
    return AgentActionOverrides(
        agent_overrides=AgentOverrides(file_exists_behavior=behavior.upper())
    )


def _environment(document: Mapping[str, Any]) -> dict[str, EnvironmentEntry]:
    environment = _object(document, "Environment", "Deployment Spec")
    if environment is None:
        return {}
    result: dict[str, EnvironmentEntry] = {}
    for name, entry in environment.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise _reject(
                f"Environment name {name!r} is not a valid environment variable name "
                "(letters, digits and '_', not starting with a digit)"
            )
        if name in RESERVED_ENVIRONMENT:
            raise _reject(f"Environment name {name!r} is set by the agent for every hook")
        shape = f'Environment entry {name} must be {{"SsmParameter": "<parameter name>"}}'
        if not isinstance(entry, dict) or set(entry) != {"SsmParameter"}:
            raise _reject(shape)
        parameter = entry["SsmParameter"]
        if not isinstance(parameter, str) or not 1 <= len(parameter) <= 2048:
            raise _reject(shape)
        if "\0" in parameter:
            raise _reject(f"SsmParameter of Environment entry {name} must not contain NUL")
        result[name] = EnvironmentEntry(ssm_parameter=parameter)
    return result


def _signature(document: Mapping[str, Any]) -> SignatureBlock | None:
    value = document.get("Signature")
    if value is None:
        return None
    keys = ("Algorithm", "KeyId", "Value")
    if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in keys):
        raise _reject("Signature must be an object with string Algorithm, KeyId and Value")
    return SignatureBlock(algorithm=value["Algorithm"], key_id=value["KeyId"], value=value["Value"])


# --- revision blocks ------------------------------------------------------------------------

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


def _revision(document: Mapping[str, Any]) -> RevisionBlock:
    revision = document.get("Revision")
    if not _is_set(revision):
        raise _reject("Must specify a revison")  # sic: the real agent's text
    if not isinstance(revision, dict):
        raise _reject(f"Revision must be an object, got {type(revision).__name__}")
    source = revision.get("RevisionType")
    if not _is_set(source):
        raise _reject("Must specify a revision source")
    if source not in tuple(RevisionType):
        raise _reject(f"{EXACTLY_ONE_REVISION} (unknown RevisionType {source!r})")
    revision_type = RevisionType(source)
    present = sorted({key for key in _BLOCK_KEYS.values() if _is_set(revision.get(key))})
    if len(present) > 1:
        raise _reject(f"{EXACTLY_ONE_REVISION} (found {', '.join(present)})")
    block_key = _BLOCK_KEYS[revision_type]
    block = revision.get(block_key)
    if not isinstance(block, dict):
        raise _reject(_required_message(block_key))
    fields = {key: _string(block, key, block_key) for key in _REQUIRED[block_key]}
    if any(value is None for value in fields.values()):
        raise _reject(_required_message(block_key))
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
        raise _reject(message)
    return BundleType(value)


def _commit(block_key: str, value: str) -> str:
    if not _COMMIT.fullmatch(value):
        raise _reject(
            f"CommitId in {block_key} must be a commit SHA (7 to 64 hexadecimal characters), "
            f"got {value!r}"
        )
    return value


def _name(block_key: str, key: str, value: str) -> str:
    if not _REPO_NAME.fullmatch(value) or value in (".", ".."):
        raise _reject(f"{key} in {block_key} must be a name of letters, digits, '.', '_' and '-'")
    return value


def _http_url(where: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc or _has_space(value):
        raise _reject(f"Url in {where} must be an http:// or https:// URL, got {value!r}")
    return value


def _has_space(value: str) -> bool:
    return any(char.isspace() or ord(char) < 32 for char in value)


def _git_url(value: str) -> str:
    ok = not value.startswith("-") and not _has_space(value)
    if "://" in value:
        ok = ok and urlsplit(value).scheme in _GIT_SCHEMES
    else:
        ok = ok and (value.startswith("/") or _SCP_LIKE.fullmatch(value) is not None)
    if not ok:
        raise _reject(
            "Url in GitRevision must be an https://, http://, ssh://, git:// or file:// URL, "
            f"an scp-like user@host:path or an absolute path, got {value!r}"
        )
    return value


def _sha256(where: str, value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise _reject(f"Sha256 in {where} must be 64 hexadecimal characters")
    return value.lower()


def _s3(block: Mapping[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    bundle_type = _bundle_type("S3Revision", fields["BundleType"])
    return {
        "s3_revision": S3RevisionBlock(
            bucket=fields["Bucket"],
            key=fields["Key"],
            bundle_type=bundle_type,
            version=_string(block, "Version", "S3Revision"),
            etag=_string(block, "ETag", "S3Revision"),
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
            bundle_type=_bundle_type(where, _string(block, "BundleType", where), BundleType.TAR),
        )
    }


def _bitbucket(block: Mapping[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    where = "BitbucketRevision"
    return {
        "bitbucket_revision": BitbucketRevisionBlock(
            workspace=_name(where, "Workspace", fields["Workspace"]),
            repository=_name(where, "Repository", fields["Repository"]),
            commit_id=_commit(where, fields["CommitId"]),
            bundle_type=_bundle_type(where, _string(block, "BundleType", where), BundleType.TGZ),
        )
    }


def _codecommit(block: Mapping[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    del block
    where = "CodeCommitRevision"
    if not _REGION.fullmatch(fields["Region"]):
        raise _reject(f"Region in {where} must be an AWS region such as us-east-1")
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
    download = _object(revision, "Download", "Revision")
    if download is None:
        return None
    if revision_type is not RevisionType.S3:
        raise _reject(f"Revision.Download is only used with S3 revisions, not {revision_type}")
    url = _string(download, "Url", "Download")
    if url is None:
        raise _reject("Download in Revision must specify Url")
    sha256 = _string(download, "Sha256", "Download")
    size = download.get("Size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise _reject("Size in Download must be a non-negative integer (bytes)")
    return DownloadBlock(
        url=_http_url("Download", url),
        sha256=None if sha256 is None else _sha256("Download", sha256),
        size=size,
    )


# --- checks, conversion, building -----------------------------------------------------------


def check_expiry(doc: JobDocument, now: datetime, *, leeway: timedelta = timedelta(0)) -> None:
    """Raise JobRejected(JobExpired) when `now` is past the document's `ExpiresAt` (+ leeway)."""
    # `now - leeway`, not `expires_at + leeway`: ExpiresAt may be 9999-12-31 (no overflow).
    if doc.expires_at is not None and now - leeway > doc.expires_at:
        raise JobRejected(
            RejectReason.JOB_EXPIRED,
            f"The job document expired at {format_time(doc.expires_at)} (now "
            f"{format_time(now)}); create a new deployment, and check this host's clock if "
            "that time looks wrong",
        )


def accept_job_document(
    document: object,
    *,
    trusted_keys: Mapping[str, Ed25519PublicKey],
    now: datetime,
    leeway: timedelta = timedelta(0),
) -> JobDocument:
    """Everything the agent checks before running a job, in order: size, signature (when keys
    are trusted), decoding, expiry (`leeway` tolerates clock skew)."""
    check_size(document)
    if not isinstance(document, dict):
        raise _reject(f"The job document must be a JSON object, got {type(document).__name__}")
    verify_document(document, trusted_keys)
    doc = parse_job_document(document)
    check_expiry(doc, now, leeway=leeway)
    return doc


def to_deployment_spec(
    doc: JobDocument, *, environment: Mapping[str, str] = _NO_ENVIRONMENT
) -> DeploymentSpec:
    """The executor's view of `doc`; `environment` holds the resolved values of every name in
    `doc.environment` (ValueError if they differ: resolving secrets is the caller's job)."""
    if set(environment) != set(doc.environment):
        raise ValueError(
            f"resolved environment {sorted(environment)} does not match the document's "
            f"{sorted(doc.environment)}"
        )
    return DeploymentSpec(
        deployment_id=doc.deployment_id,
        deployment_group_id=doc.deployment_group_id,
        deployment_group_name=doc.deployment_group_name,
        application_name=doc.application_name,
        revision=spec_revision(doc.revision),
        deployment_creator=doc.deployment_creator,
        deployment_type=doc.deployment_type,
        appspec_filename=doc.app_spec_filename,
        file_exists_behavior=doc.file_exists_behavior,
        all_possible_lifecycle_events=doc.all_possible_lifecycle_events,
        lifecycle_events=doc.lifecycle_events,
        ignore_application_stop_failures=doc.ignore_application_stop_failures,
        environment=dict(environment),
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


def build_job_document(
    *,
    deployment_id: str,
    deployment_group_id: str,
    deployment_group_name: str,
    application_name: str,
    revision: Revision,
    issued_at: datetime,
    expires_at: datetime | None,
    lifecycle_events: Sequence[str] = IN_PLACE_EVENTS,
    all_possible_lifecycle_events: Sequence[str] | None = None,
    deployment_creator: str = "user",
    deployment_type: str = "IN_PLACE",
    appspec_filename: str = "appspec.yml",
    file_exists_behavior: str | None = None,
    ignore_application_stop_failures: bool = False,
    environment: Mapping[str, str] = _NO_ENVIRONMENT,
) -> dict[str, Any]:
    """A job document as plain JSON values, ready for `signing.sign_document`.

    `environment` maps variable names to SSM parameter names. Times are truncated to whole
    seconds in UTC. The result is decoded once more before it is returned, so a document this
    builds is one every agent of the same major accepts (JobRejected otherwise).
    """
    overrides = None
    if file_exists_behavior:
        overrides = AgentActionOverrides(
            agent_overrides=AgentOverrides(file_exists_behavior=file_exists_behavior.upper())
        )
    doc = JobDocument(
        schema=SCHEMA,
        deployment_id=deployment_id,
        deployment_group_id=deployment_group_id,
        deployment_group_name=deployment_group_name,
        application_name=application_name,
        revision=revision_block(revision),
        lifecycle_events=tuple(lifecycle_events),
        deployment_creator=deployment_creator,
        deployment_type=deployment_type,
        app_spec_filename=appspec_filename,
        agent_action_overrides=overrides,
        all_possible_lifecycle_events=(
            None if all_possible_lifecycle_events is None else tuple(all_possible_lifecycle_events)
        ),
        ignore_application_stop_failures=ignore_application_stop_failures,
        environment={name: EnvironmentEntry(ssm_parameter=p) for name, p in environment.items()},
        issued_at=_whole_seconds(issued_at),
        expires_at=None if expires_at is None else _whole_seconds(expires_at),
    )
    result = doc.to_dict()
    parse_job_document(result)
    return result


def _whole_seconds(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware datetime (e.g. datetime.now(UTC))")
    return moment.astimezone(UTC).replace(microsecond=0)
