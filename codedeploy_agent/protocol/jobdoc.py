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
- commit ids that are not hexadecimal SHAs, repository names with `/`, git URLs with a command
  transport: they are put into URLs and git command lines (`revisions`).

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

import msgspec

from codedeploy_agent.lifecycle import LifecycleEvent
from codedeploy_agent.protocol._fields import Block, is_set, object_field, reject, string_field
from codedeploy_agent.protocol.errors import JobRejected, RejectReason
from codedeploy_agent.protocol.keys import Ed25519PublicKey
from codedeploy_agent.protocol.messages import format_time
from codedeploy_agent.protocol.revisions import (
    EXACTLY_ONE_REVISION,
    RevisionBlock,
    parse_revision,
    revision_block,
    spec_revision,
)
from codedeploy_agent.protocol.signing import verify_document
from codedeploy_agent.spec import DeploymentSpec, Revision

__all__ = [
    "EXACTLY_ONE_REVISION",
    "IN_PLACE_EVENTS",
    "MAX_DOCUMENT_BYTES",
    "SCHEMA",
    "AgentActionOverrides",
    "AgentOverrides",
    "EnvironmentEntry",
    "JobDocument",
    "RevisionBlock",
    "SignatureBlock",
    "accept_job_document",
    "build_job_document",
    "check_expiry",
    "check_size",
    "decode_job_document",
    "document_size",
    "parse_job_document",
    "parse_time",
    "revision_block",
    "spec_revision",
    "to_deployment_spec",
]

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

_SCHEMA = re.compile(r"codedeploy-agent/job/([0-9]{1,9})(?:\.[0-9]{1,9})?")
_DIRECTORY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_EVENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,99}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,  # `\d` is [0-9] only
)
_NO_ENVIRONMENT: Final[Mapping[str, str]] = MappingProxyType({})


class AgentOverrides(Block, frozen=True):
    """`AgentActionOverrides.AgentOverrides`."""

    file_exists_behavior: str | None = None


class AgentActionOverrides(Block, frozen=True):
    """`AgentActionOverrides`."""

    agent_overrides: AgentOverrides | None = None


class EnvironmentEntry(Block, frozen=True):
    """One `Environment` value: where the agent reads the secret."""

    ssm_parameter: str


class SignatureBlock(Block, frozen=True):
    """`Signature`, as found; `signing.verify_document` checks it."""

    algorithm: str
    key_id: str
    value: str


class JobDocument(Block, frozen=True):
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


def document_size(document: object) -> int:
    """Bytes of `document`'s compact JSON encoding; raise JobRejected if it is not JSON."""
    try:
        return len(msgspec.json.encode(document))
    except RecursionError:
        raise reject("The job document is nested too deeply") from None
    except (TypeError, ValueError, OverflowError) as err:
        raise reject(f"The job document is not JSON data: {err}") from None


def check_size(document: object) -> None:
    """Reject documents over AWS IoT Jobs' 32 KB limit."""
    size = document_size(document)
    if size > MAX_DOCUMENT_BYTES:
        raise reject(
            f"The job document is {size} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes "
            "(keep bundles out of the document: reference them by URL)"
        )


def decode_job_document(data: bytes | str) -> JobDocument:
    """Decode a job document from JSON bytes (see `parse_job_document`)."""
    try:
        document = msgspec.json.decode(data)
    except msgspec.DecodeError as err:
        raise reject(f"The job document is not valid JSON: {err}") from None
    except RecursionError:
        raise reject("The job document is nested too deeply") from None
    return parse_job_document(document)


def parse_job_document(document: object) -> JobDocument:
    """Decode an already-parsed `jobDocument`; raise JobRejected(InvalidJobDocument)."""
    check_size(document)
    if not isinstance(document, dict):
        raise reject(f"The job document must be a JSON object, got {type(document).__name__}")
    spec = "Deployment Spec"
    schema = _schema(document.get("Schema"))
    deployment_id = _deployment_id(document)
    for key in ("DeploymentGroupId", "DeploymentGroupName", "ApplicationName"):
        if string_field(document, key, spec) is None:
            raise reject(f"Deployment Spec has no {key}")
    group_id: str = document["DeploymentGroupId"]
    if not _DIRECTORY_NAME.fullmatch(group_id):
        raise reject(_directory_message("DeploymentGroupId", group_id))
    deployment_type = string_field(document, "DeploymentType", spec) or "IN_PLACE"
    if deployment_type not in DEPLOYMENT_TYPES:
        raise reject(f"DeploymentType must be IN_PLACE or BLUE_GREEN, got {deployment_type!r}")
    all_possible = _event_list(document, "AllPossibleLifecycleEvents")
    events = _event_list(document, "LifecycleEvents") or IN_PLACE_EVENTS
    if all_possible is not None:
        unknown = [event for event in events if event not in all_possible]
        if unknown:
            raise reject(
                f"LifecycleEvents {unknown} are not in "
                f"AllPossibleLifecycleEvents {list(all_possible)}"
            )
    ignore_stop = document.get("IgnoreApplicationStopFailures")
    if ignore_stop is not None and not isinstance(ignore_stop, bool):
        raise reject("IgnoreApplicationStopFailures must be true or false")
    issued_at = _time(document, "IssuedAt")
    expires_at = _time(document, "ExpiresAt")
    if issued_at is not None and expires_at is not None and expires_at <= issued_at:
        raise reject(
            f"ExpiresAt ({format_time(expires_at)}) must be later than IssuedAt "
            f"({format_time(issued_at)})"
        )
    return JobDocument(
        schema=schema,
        deployment_id=deployment_id,
        deployment_group_id=group_id,
        deployment_group_name=document["DeploymentGroupName"],
        application_name=document["ApplicationName"],
        revision=parse_revision(document),
        lifecycle_events=events,
        deployment_creator=string_field(document, "DeploymentCreator", spec) or "user",
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
    if not is_set(value):
        raise reject(f"The job document has no Schema; expected {SCHEMA!r}")
    match = _SCHEMA.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise reject(f"Unsupported job document Schema {value!r}; this agent reads {SCHEMA!r}")
    if int(match.group(1)) != SUPPORTED_MAJOR:
        raise reject(
            f"Unsupported job document Schema {value!r}: this agent reads major version "
            f"{SUPPORTED_MAJOR} ({SCHEMA!r}); upgrade the agent to run this job"
        )
    return str(value)


def _deployment_id(document: Mapping[str, Any]) -> str:
    value = string_field(document, "DeploymentId", "Deployment Spec")
    if value is None:
        raise reject("Deployment Spec has no DeploymentId")
    if value.startswith("arn:"):
        # arn:<partition>:codedeploy:<region>:<account>:deployment/<id>, as the real agent.
        parts = value.split(":", 5)
        resource = parts[5] if len(parts) == 6 else ""
        if not resource.startswith("deployment/"):
            raise reject(f"DeploymentId {value!r} is an ARN without a deployment/<id> resource")
        value = resource.removeprefix("deployment/")
    if not _DIRECTORY_NAME.fullmatch(value):
        raise reject(_directory_message("DeploymentId", value))
    return value


def _directory_message(key: str, value: str) -> str:
    return (
        f"{key} {value!r} must be 1 to 128 letters, digits, '_', '.', ':' or '-', starting with "
        "a letter or digit (it names a directory under the deployment root)"
    )


def _event_list(document: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = document.get(key)
    if not is_set(value):
        return None
    if not isinstance(value, list):
        raise reject(f"{key} must be a list of lifecycle event names")
    for event in value:
        if not isinstance(event, str) or not _EVENT_NAME.fullmatch(event):
            raise reject(f"{key} contains {event!r}, which is not a lifecycle event name")
    if len(set(value)) != len(value):
        twice = sorted({event for event in value if value.count(event) > 1})
        raise reject(f"{key} lists {', '.join(twice)} more than once")
    return tuple(value)


def _time(document: Mapping[str, Any], key: str) -> datetime | None:
    value = string_field(document, key, "Deployment Spec")
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise reject(
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
    value = string_field(document, "AppSpecFilename", "Deployment Spec")
    if value is None:
        return "appspec.yml"
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise reject(
            f"AppSpecFilename {value!r} must be a relative path inside the revision "
            "(no leading '/', no '..')"
        )
    return value


def _overrides(document: Mapping[str, Any]) -> AgentActionOverrides | None:
    overrides = object_field(document, "AgentActionOverrides", "Deployment Spec")
    if overrides is None:
        return None
    agent = object_field(overrides, "AgentOverrides", "AgentActionOverrides")
    if agent is None:
        return None
    behavior = string_field(agent, "FileExistsBehavior", "AgentOverrides")
    if behavior is None:
        return None
    # Upper-cased but not validated, as the real agent: it fails only on a collision.
    return AgentActionOverrides(
        agent_overrides=AgentOverrides(file_exists_behavior=behavior.upper())
    )


def _environment(document: Mapping[str, Any]) -> dict[str, EnvironmentEntry]:
    environment = object_field(document, "Environment", "Deployment Spec")
    if environment is None:
        return {}
    result: dict[str, EnvironmentEntry] = {}
    for name, entry in environment.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise reject(
                f"Environment name {name!r} is not a valid environment variable name "
                "(letters, digits and '_', not starting with a digit)"
            )
        if name in RESERVED_ENVIRONMENT:
            raise reject(f"Environment name {name!r} is set by the agent for every hook")
        shape = f'Environment entry {name} must be {{"SsmParameter": "<parameter name>"}}'
        if not isinstance(entry, dict) or set(entry) != {"SsmParameter"}:
            raise reject(shape)
        parameter = entry["SsmParameter"]
        if not isinstance(parameter, str) or not 1 <= len(parameter) <= 2048:
            raise reject(shape)
        if "\0" in parameter:
            raise reject(f"SsmParameter of Environment entry {name} must not contain NUL")
        result[name] = EnvironmentEntry(ssm_parameter=parameter)
    return result


def _signature(document: Mapping[str, Any]) -> SignatureBlock | None:
    value = document.get("Signature")
    if value is None:
        return None
    keys = ("Algorithm", "KeyId", "Value")
    if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in keys):
        raise reject("Signature must be an object with string Algorithm, KeyId and Value")
    return SignatureBlock(algorithm=value["Algorithm"], key_id=value["KeyId"], value=value["Value"])


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
        raise reject(f"The job document must be a JSON object, got {type(document).__name__}")
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
