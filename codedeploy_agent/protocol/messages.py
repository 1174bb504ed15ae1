"""The JSON payloads of the jobs protocol (PROTOCOL.md), as frozen msgspec structs.

Python attributes are snake_case; on the wire every key is the camelCase name of PROTOCOL.md and
the AWS IoT Jobs MQTT API (`clientToken`, `stepTimeoutInMinutes`, `statusDetails`, ...). Fields
that are unset (None, empty details) are left out of the encoding. Decoding ignores unknown keys
(a newer service may add some) and rejects missing required ones.

`statusDetails` is a string -> string map with AWS IoT's limits: keys `[a-zA-Z0-9:_-]{1,128}`,
values 1 to 1,024 characters without control characters (Unicode category C). Requests we send
are checked against them on construction and on decoding (`check_status_details`), so nothing the
agent publishes is refused by AWS IoT Core. `details_for_event` and `details_for_failure` build
PROTOCOL.md's details within those limits: empty values are left out, and because a log tail
lives on newlines, each line break is sent as U+2028 LINE SEPARATOR (a format character AWS
accepts); `restore_newlines` undoes it for display.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, TypeVar

import msgspec

from codedeploy_agent.errors import ErrorCode
from codedeploy_agent.protocol.errors import ProtocolError, RejectReason

#: AWS IoT's limit on a statusDetails value, and PROTOCOL.md's on `logTail`.
MAX_DETAIL_CHARS: Final = 1024
MAX_CLIENT_TOKEN_CHARS: Final = 64
#: stepTimeoutInMinutes range accepted by AWS IoT Jobs (1 minute to 7 days).
MIN_STEP_TIMEOUT: Final = 1
MAX_STEP_TIMEOUT: Final = 10080
LINE_SEPARATOR: Final = "\u2028"

_DETAIL_KEY = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
_NEWLINES = re.compile(r"\r\n|\r|\n")

StatusDetails = dict[str, str]
EpochSeconds = Annotated[int, msgspec.Meta(ge=0)]
#: Job ids as IoT Jobs allows them; checked on decoding so no reply can inject topic levels.
JobId = Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


class JobStatus(StrEnum):
    """Status of a job execution (AWS IoT Jobs)."""

    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    REJECTED = "REJECTED"
    REMOVED = "REMOVED"
    CANCELED = "CANCELED"

    @property
    def is_terminal(self) -> bool:
        """True once the execution can no longer change (everything but QUEUED, IN_PROGRESS)."""
        return self not in (JobStatus.QUEUED, JobStatus.IN_PROGRESS)

    @property
    def is_set_by_agent(self) -> bool:
        """True for the statuses a device may report: IN_PROGRESS, SUCCEEDED, FAILED, REJECTED."""
        return self in (
            JobStatus.IN_PROGRESS,
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.REJECTED,
        )

    @property
    def stops_execution(self) -> bool:
        """True for the service's verdicts that make the agent kill the running job at once."""
        return self in (JobStatus.CANCELED, JobStatus.REMOVED, JobStatus.TIMED_OUT)


class RejectedErrorCode(StrEnum):
    """`code` of an error response (`.../rejected` topics)."""

    INVALID_TOPIC = "InvalidTopic"
    INVALID_JSON = "InvalidJson"
    INVALID_REQUEST = "InvalidRequest"
    INVALID_STATE_TRANSITION = "InvalidStateTransition"
    RESOURCE_NOT_FOUND = "ResourceNotFound"
    VERSION_MISMATCH = "VersionMismatch"
    INTERNAL_ERROR = "InternalError"
    REQUEST_THROTTLED = "RequestThrottled"
    TERMINAL_STATE_REACHED = "TerminalStateReached"


class EventStatus(StrEnum):
    """`eventStatus` of a lifecycle event in statusDetails."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"


class FailureCode(StrEnum):
    """`errorCode` of a FAILED or REJECTED execution: CodeDeploy's names, then ours."""

    SCRIPT_MISSING = "ScriptMissing"
    SCRIPT_NOT_EXECUTABLE = "ScriptNotExecutable"
    SCRIPT_TIMED_OUT = "ScriptTimedOut"
    SCRIPT_FAILED = "ScriptFailed"
    UNKNOWN_ERROR = "UnknownError"
    OUTPUTS_LEFT_OPEN = "OutputsLeftOpen"
    FAILED_AFTER_RESTART = "FailedAfterRestart"
    SIGNATURE_INVALID = "SignatureInvalid"
    JOB_EXPIRED = "JobExpired"
    INVALID_JOB_DOCUMENT = "InvalidJobDocument"

    @classmethod
    def of(cls, code: ErrorCode | RejectReason) -> FailureCode:
        """The failure code for a diagnostics code (1-7) or a reject reason."""
        if isinstance(code, RejectReason):
            return cls(code.value)
        if code is ErrorCode.SUCCEEDED:
            raise ValueError("ErrorCode.SUCCEEDED is not a failure")
        return cls(code.service_name)


class PresenceState(StrEnum):
    """`state` of a presence message."""

    ONLINE = "online"
    OFFLINE = "offline"


class Message(msgspec.Struct, frozen=True, omit_defaults=True, rename="camel", kw_only=True):
    """Base of every payload: frozen, camelCase on the wire, unset fields omitted."""


# Requests (agent -> service); they validate themselves so AWS IoT never refuses them.


class StartNextRequest(Message, frozen=True):
    """StartNextPendingJobExecution (`{root}/start-next`)."""

    client_token: str
    step_timeout_in_minutes: int | None = None
    status_details: StatusDetails = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_request(self.client_token, self.step_timeout_in_minutes, self.status_details)


class UpdateRequest(Message, frozen=True):
    """UpdateJobExecution (`{root}/{jobId}/update`).

    Set `include_job_execution_state=True` when talking to AWS IoT Core: it includes
    `executionState` in update/accepted only when asked (our control plane always does).
    """

    status: JobStatus
    client_token: str
    status_details: StatusDetails = msgspec.field(default_factory=dict)
    expected_version: int | None = None
    step_timeout_in_minutes: int | None = None
    execution_number: int | None = None
    include_job_execution_state: bool | None = None
    include_job_document: bool | None = None

    def __post_init__(self) -> None:
        _check_request(self.client_token, self.step_timeout_in_minutes, self.status_details)


class DescribeRequest(Message, frozen=True):
    """DescribeJobExecution (`{root}/{jobId}/get`); the service's default includes the document."""

    client_token: str
    execution_number: int | None = None
    include_job_document: bool | None = None

    def __post_init__(self) -> None:
        _check_request(self.client_token, None, {})


class GetPendingRequest(Message, frozen=True):
    """GetPendingJobExecutions (`{root}/get`)."""

    client_token: str

    def __post_init__(self) -> None:
        _check_request(self.client_token, None, {})


# Shared parts of responses.


class JobExecutionState(Message, frozen=True):
    """The state part of an execution (update replies, VersionMismatch errors)."""

    status: JobStatus
    version_number: int
    status_details: StatusDetails = msgspec.field(default_factory=dict)


class JobExecution(Message, frozen=True):
    """A job execution with its document (start-next, describe and notify-next replies).

    `thing_name` is optional because AWS omits it in notify-next; `started_at` is unset while
    QUEUED; `job_document` is unset when the request asked for no document. Times: epoch seconds.
    """

    job_id: JobId
    status: JobStatus
    queued_at: EpochSeconds
    last_updated_at: EpochSeconds
    version_number: int
    execution_number: int
    thing_name: str | None = None
    job_document: dict[str, Any] | None = None
    status_details: StatusDetails = msgspec.field(default_factory=dict)
    started_at: EpochSeconds | None = None


class JobExecutionSummary(Message, frozen=True):
    """One pending execution in `notify` and GetPendingJobExecutions replies."""

    job_id: JobId
    queued_at: EpochSeconds
    last_updated_at: EpochSeconds
    version_number: int
    execution_number: int
    started_at: EpochSeconds | None = None


# Responses and notifications (service -> agent).


class StartNextAccepted(Message, frozen=True):
    """`{root}/start-next/accepted`; no `execution` when nothing is pending."""

    client_token: str
    timestamp: EpochSeconds
    execution: JobExecution | None = None


class UpdateAccepted(Message, frozen=True):
    """`{root}/{jobId}/update/accepted`."""

    client_token: str
    timestamp: EpochSeconds
    execution_state: JobExecutionState | None = None
    job_document: dict[str, Any] | None = None


class DescribeAccepted(Message, frozen=True):
    """`{root}/{jobId}/get/accepted`."""

    client_token: str
    timestamp: EpochSeconds
    execution: JobExecution


class GetPendingAccepted(Message, frozen=True):
    """`{root}/get/accepted`."""

    client_token: str
    timestamp: EpochSeconds
    in_progress_jobs: list[JobExecutionSummary] = msgspec.field(default_factory=list)
    queued_jobs: list[JobExecutionSummary] = msgspec.field(default_factory=list)


class NotifyNext(Message, frozen=True):
    """`{root}/notify-next`: the next pending execution changed; none when nothing is pending."""

    timestamp: EpochSeconds
    execution: JobExecution | None = None


class Notify(Message, frozen=True):
    """`{root}/notify`: an execution was added to or removed from the pending list."""

    timestamp: EpochSeconds
    jobs: dict[JobStatus, list[JobExecutionSummary]] = msgspec.field(default_factory=dict)

    def job_ids(self, status: JobStatus) -> tuple[str, ...]:
        """The ids of the executions listed under `status`, in order."""
        return tuple(summary.job_id for summary in self.jobs.get(status, ()))


class ErrorResponse(Message, frozen=True):
    """Any `.../rejected` reply; `execution_state` comes with VersionMismatch and state errors.

    `client_token` is unset when the request could not be read (InvalidJson).
    """

    code: RejectedErrorCode
    message: str
    timestamp: EpochSeconds
    client_token: str | None = None
    execution_state: JobExecutionState | None = None


class Presence(Message, frozen=True):
    """`{topic_root}/{thing}/presence` (retained); the last will carries `offline`."""

    state: PresenceState
    agent_version: str
    hostname: str
    started_at: Annotated[datetime, msgspec.Meta(tz=True)]
    clock_skew_seconds: float | None = None
    current_deployment_id: str | None = None


M = TypeVar("M", bound=Message)

_ENCODER: Final = msgspec.json.Encoder()
_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def encode(message: Message) -> bytes:
    """Encode a payload as compact UTF-8 JSON."""
    return _ENCODER.encode(message)


def decode(data: bytes | str, type_: type[M]) -> M:
    """Decode a payload of type `type_`; raise ProtocolError saying what is wrong and where."""
    decoder = _DECODERS.get(type_)
    if decoder is None:
        decoder = _DECODERS[type_] = msgspec.json.Decoder(type_)
    try:
        result: M = decoder.decode(data)
    except msgspec.ValidationError as err:
        raise ProtocolError(f"Invalid {type_.__name__} message: {err}") from None
    except msgspec.DecodeError as err:
        raise ProtocolError(f"Invalid {type_.__name__} message: not JSON ({err})") from None
    except RecursionError:
        raise ProtocolError(f"Invalid {type_.__name__} message: nested too deeply") from None
    except ProtocolError as err:
        raise ProtocolError(f"Invalid {type_.__name__} message: {err}") from None
    return result


def new_client_token() -> str:
    """A fresh clientToken (32 hex characters) for one request and its retries."""
    return uuid.uuid4().hex


def check_status_details(details: StatusDetails) -> None:
    """Raise ProtocolError unless `details` satisfies AWS IoT's statusDetails limits."""
    for key, value in details.items():
        if not isinstance(key, str) or not _DETAIL_KEY.fullmatch(key):
            raise ProtocolError(
                f"statusDetails key {key!r} must be 1 to 128 characters of letters, digits, "
                "':', '_' and '-'"
            )
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_DETAIL_CHARS:
            raise ProtocolError(
                f"statusDetails[{key!r}] must be a string of 1 to {MAX_DETAIL_CHARS} characters"
            )
        if any(unicodedata.category(char)[0] == "C" for char in value):
            raise ProtocolError(
                f"statusDetails[{key!r}] contains a control character; use sanitize_detail()"
            )


def _check_request(
    client_token: str, step_timeout: int | None, status_details: StatusDetails
) -> None:
    if not 1 <= len(client_token) <= MAX_CLIENT_TOKEN_CHARS:
        raise ProtocolError(
            f"clientToken must be 1 to {MAX_CLIENT_TOKEN_CHARS} characters, got {len(client_token)}"
        )
    if step_timeout is not None and not MIN_STEP_TIMEOUT <= step_timeout <= MAX_STEP_TIMEOUT:
        raise ProtocolError(
            f"stepTimeoutInMinutes must be between {MIN_STEP_TIMEOUT} and {MAX_STEP_TIMEOUT}, "
            f"got {step_timeout}"
        )
    check_status_details(status_details)


# statusDetails builders (PROTOCOL.md "Agent behaviour" 2 and 3).


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`: whole seconds, or milliseconds when there is a fraction."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware datetime (e.g. datetime.now(UTC))")
    # isoformat, not strftime: strftime("%Y") drops the leading zeros of years before 1000.
    naive = moment.astimezone(UTC).replace(tzinfo=None)
    return naive.isoformat(timespec="milliseconds" if naive.microsecond else "seconds") + "Z"


def sanitize_detail(text: str) -> str:
    """Make `text` a valid statusDetails value's content: line breaks become U+2028, tabs a
    space, every other control, format, surrogate or unassigned character U+FFFD."""
    text = _NEWLINES.sub(LINE_SEPARATOR, text)
    return "".join(_clean_char(char) for char in text)


def _clean_char(char: str) -> str:
    if unicodedata.category(char)[0] != "C":
        return char
    return " " if char == "\t" else "\ufffd"


def restore_newlines(value: str) -> str:
    """Undo `sanitize_detail`'s line-break mapping, for showing a `logTail` to a person."""
    return value.replace(LINE_SEPARATOR, "\n")


def details_for_event(
    lifecycle_event: str, status: EventStatus, start: datetime, end: datetime
) -> StatusDetails:
    """statusDetails of an IN_PROGRESS update after one lifecycle event."""
    return _non_empty(
        {
            "lifecycleEvent": _cut_head(sanitize_detail(lifecycle_event)),
            "eventStatus": status.value,
            "startTime": format_time(start),
            "endTime": format_time(end),
        }
    )


def details_for_failure(
    lifecycle_event: str | None,
    error_code: FailureCode,
    script_name: str,
    message: str,
    log_tail: str,
) -> StatusDetails:
    """statusDetails of the final FAILED or REJECTED update.

    `logTail` keeps the end of the log (the end says why it failed) within 1,024 characters,
    starting at a whole line where one begins in the first half of what fits; `message` keeps
    its first 1,024 with an ellipsis when cut; empty values (no script, no log) are left out.
    """
    return _non_empty(
        {
            "lifecycleEvent": _cut_head(sanitize_detail(lifecycle_event or "")),
            "eventStatus": EventStatus.FAILED.value,
            "errorCode": error_code.value,
            "scriptName": _cut_head(sanitize_detail(script_name)),
            "message": _cut_head(sanitize_detail(message)),
            "logTail": _cut_tail(sanitize_detail(log_tail)),
        }
    )


def _cut_tail(text: str) -> str:
    """The end of `text` within MAX_DETAIL_CHARS. A tail that began mid-line showed operators a
    path without its start and no `[stderr]` prefix, so the cut moves to the next line break when
    that costs at most half the room; otherwise the cut line is marked with an ellipsis."""
    if len(text) <= MAX_DETAIL_CHARS:
        return text
    kept = text[-(MAX_DETAIL_CHARS - 1) :]
    boundary = kept.find(LINE_SEPARATOR)
    if 0 <= boundary < len(kept) // 2:
        return kept[boundary + 1 :]
    return "\u2026" + kept


def _cut_head(text: str) -> str:
    if len(text) <= MAX_DETAIL_CHARS:
        return text
    return text[: MAX_DETAIL_CHARS - 1] + "\u2026"


def _non_empty(details: StatusDetails) -> StatusDetails:
    return {key: value for key, value in details.items() if value}
