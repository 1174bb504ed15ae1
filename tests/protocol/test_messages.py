"""Payloads of PROTOCOL.md: exact JSON keys, round trips, validation and statusDetails builders."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from codedeploy_agent.errors import ErrorCode
from codedeploy_agent.protocol.errors import ProtocolError, RejectReason
from codedeploy_agent.protocol.messages import (
    DescribeAccepted,
    DescribeRequest,
    ErrorResponse,
    EventStatus,
    FailureCode,
    GetPendingAccepted,
    GetPendingRequest,
    JobExecution,
    JobExecutionState,
    JobExecutionSummary,
    JobStatus,
    Message,
    Notify,
    NotifyNext,
    Presence,
    PresenceState,
    RejectedErrorCode,
    StartNextAccepted,
    StartNextRequest,
    UpdateAccepted,
    UpdateRequest,
    check_status_details,
    decode,
    details_for_event,
    details_for_failure,
    encode,
    format_time,
    new_client_token,
    restore_newlines,
    sanitize_detail,
)

EXECUTION_JSON: dict[str, Any] = {
    "jobId": "job-1",
    "thingName": "web-1",
    "jobDocument": {"Schema": "codedeploy-agent/job/1"},
    "status": "IN_PROGRESS",
    "statusDetails": {"lifecycleEvent": "Install"},
    "queuedAt": 1700000000,
    "startedAt": 1700000005,
    "lastUpdatedAt": 1700000010,
    "versionNumber": 3,
    "executionNumber": 1,
}
SUMMARY_JSON: dict[str, Any] = {
    "jobId": "job-2",
    "queuedAt": 1700000000,
    "startedAt": 1700000001,
    "lastUpdatedAt": 1700000002,
    "versionNumber": 2,
    "executionNumber": 1,
}
#: Client tokens (not secrets; named so the password linter does not mistake them).
TOK, EMPTY = "tk1", ""
STATE_JSON: dict[str, Any] = {
    "status": "IN_PROGRESS",
    "statusDetails": {"eventStatus": "Succeeded"},
    "versionNumber": 4,
}

# Wire examples in PROTOCOL.md's shapes, one per message type.
WIRE_EXAMPLES: list[tuple[type[Message], dict[str, Any]]] = [
    (
        StartNextRequest,
        {"clientToken": "t1", "stepTimeoutInMinutes": 60, "statusDetails": {"a": "b"}},
    ),
    (
        StartNextAccepted,
        {"clientToken": "t1", "timestamp": 1700000011, "execution": EXECUTION_JSON},
    ),
    (StartNextAccepted, {"clientToken": "t1", "timestamp": 1700000011}),
    (
        UpdateRequest,
        {
            "status": "IN_PROGRESS",
            "statusDetails": {"lifecycleEvent": "Install", "eventStatus": "Succeeded"},
            "expectedVersion": 3,
            "stepTimeoutInMinutes": 61,
            "clientToken": "t2",
        },
    ),
    (UpdateAccepted, {"clientToken": "t2", "timestamp": 1700000012, "executionState": STATE_JSON}),
    (DescribeRequest, {"executionNumber": 1, "includeJobDocument": False, "clientToken": "t3"}),
    (DescribeAccepted, {"clientToken": "t3", "timestamp": 1700000013, "execution": EXECUTION_JSON}),
    (GetPendingRequest, {"clientToken": "t4"}),
    (
        GetPendingAccepted,
        {
            "clientToken": "t4",
            "timestamp": 1700000014,
            "inProgressJobs": [SUMMARY_JSON],
            "queuedJobs": [{**SUMMARY_JSON, "jobId": "job-3"}],
        },
    ),
    (NotifyNext, {"timestamp": 1700000015, "execution": EXECUTION_JSON}),
    (NotifyNext, {"timestamp": 1700000015}),
    (
        Notify,
        {"timestamp": 1700000016, "jobs": {"IN_PROGRESS": [SUMMARY_JSON], "QUEUED": []}},
    ),
    (
        ErrorResponse,
        {
            "code": "VersionMismatch",
            "message": "expected version 3, got 4",
            "clientToken": "t2",
            "timestamp": 1700000017,
            "executionState": STATE_JSON,
        },
    ),
    (
        Presence,
        {
            "state": "online",
            "agentVersion": "0.1.0",
            "hostname": "web-1.example",
            "startedAt": "2026-11-26T10:00:00Z",
            "clockSkewSeconds": 0.25,
            "currentDeploymentId": "d-ABCDEFGHI",
        },
    ),
]


@pytest.mark.parametrize(
    ("type_", "wire"),
    WIRE_EXAMPLES,
    ids=[f"{t.__name__}-{i}" for i, (t, _) in enumerate(WIRE_EXAMPLES)],
)
def test_every_message_round_trips_with_exact_keys(
    type_: type[Message], wire: dict[str, Any]
) -> None:
    """Decoding a PROTOCOL.md-shaped payload and encoding it again gives the same JSON."""
    message = decode(json.dumps(wire).encode(), type_)
    assert json.loads(encode(message)) == wire
    assert decode(encode(message), type_) == message


def test_start_next_request_encodes_protocol_keys() -> None:
    """A StartNextRequest is `clientToken`, `stepTimeoutInMinutes`, `statusDetails` on the wire."""
    request = StartNextRequest(
        client_token=TOK, step_timeout_in_minutes=5, status_details={"k": "v"}
    )
    assert encode(request) == (
        b'{"clientToken":"tk1","stepTimeoutInMinutes":5,"statusDetails":{"k":"v"}}'
    )


def test_update_request_omits_unset_fields() -> None:
    """Unset optional fields and empty statusDetails are left out of the JSON."""
    request = UpdateRequest(status=JobStatus.SUCCEEDED, client_token=TOK)
    assert encode(request) == b'{"status":"SUCCEEDED","clientToken":"tk1"}'


def test_update_request_encodes_aws_only_flags_in_camel_case() -> None:
    """AWS's optional update flags keep their exact camelCase names."""
    request = UpdateRequest(
        status=JobStatus.IN_PROGRESS,
        client_token=TOK,
        execution_number=2,
        include_job_execution_state=True,
        include_job_document=False,
    )
    assert json.loads(encode(request)) == {
        "status": "IN_PROGRESS",
        "clientToken": TOK,
        "executionNumber": 2,
        "includeJobExecutionState": True,
        "includeJobDocument": False,
    }


def test_decoded_execution_has_typed_fields() -> None:
    """An execution decodes into typed values (enum status, ints, raw job document)."""
    accepted = decode(
        json.dumps({"clientToken": "t", "timestamp": 5, "execution": EXECUTION_JSON}).encode(),
        StartNextAccepted,
    )
    assert accepted.execution == JobExecution(
        job_id="job-1",
        thing_name="web-1",
        job_document={"Schema": "codedeploy-agent/job/1"},
        status=JobStatus.IN_PROGRESS,
        status_details={"lifecycleEvent": "Install"},
        queued_at=1700000000,
        started_at=1700000005,
        last_updated_at=1700000010,
        version_number=3,
        execution_number=1,
    )


def test_unknown_fields_are_ignored() -> None:
    """Extra keys from a newer service are ignored, at every level."""
    wire = {
        "clientToken": "t",
        "timestamp": 1,
        "newTopLevel": {"x": 1},
        "execution": {**EXECUTION_JSON, "newField": [1, 2]},
    }
    accepted = decode(json.dumps(wire).encode(), StartNextAccepted)
    assert accepted.execution is not None
    assert accepted.execution.job_id == "job-1"


@pytest.mark.parametrize(
    ("type_", "wire", "message"),
    [
        (
            StartNextAccepted,
            {"timestamp": 1},
            "Invalid StartNextAccepted message: Object missing required field `clientToken`",
        ),
        (
            UpdateRequest,
            {"clientToken": "t"},
            "Invalid UpdateRequest message: Object missing required field `status`",
        ),
        (
            UpdateRequest,
            {"clientToken": "t", "status": "DONE"},
            "Invalid UpdateRequest message: Invalid enum value 'DONE' - at `$.status`",
        ),
        (
            ErrorResponse,
            {"code": "Nope", "message": "m", "timestamp": 1},
            "Invalid ErrorResponse message: Invalid enum value 'Nope' - at `$.code`",
        ),
        (
            NotifyNext,
            {"timestamp": 1, "execution": {**EXECUTION_JSON, "jobId": "../x"}},
            (
                "Invalid NotifyNext message: Expected `str` matching regex "
                "'^[a-zA-Z0-9_-]{1,64}$' - at `$.execution.jobId`"
            ),
        ),
        (
            NotifyNext,
            {"timestamp": -1},
            "Invalid NotifyNext message: Expected `int` >= 0 - at `$.timestamp`",
        ),
        (
            StartNextRequest,
            {"clientToken": "x" * 65},
            "Invalid StartNextRequest message: clientToken must be 1 to 64 characters, got 65",
        ),
        (
            StartNextRequest,
            {"clientToken": "t", "stepTimeoutInMinutes": 10081},
            (
                "Invalid StartNextRequest message: stepTimeoutInMinutes must be between 1 and "
                "10080, got 10081"
            ),
        ),
        (
            UpdateRequest,
            {"clientToken": "t", "status": "FAILED", "statusDetails": {"k": ""}},
            (
                "Invalid UpdateRequest message: statusDetails['k'] must be a string of 1 to 1024 "
                "characters"
            ),
        ),
        (
            Presence,
            {
                "state": "online",
                "agentVersion": "1",
                "hostname": "h",
                "startedAt": "2026-01-01T00:00:00",
            },
            (
                "Invalid Presence message: Expected `datetime` with a timezone component - at "
                "`$.startedAt`"
            ),
        ),
    ],
)
def test_invalid_messages_raise_protocol_error(
    type_: type[Message], wire: dict[str, Any], message: str
) -> None:
    """Missing required fields and invalid values raise ProtocolError naming the field."""
    with pytest.raises(ProtocolError) as info:
        decode(json.dumps(wire).encode(), type_)
    assert str(info.value) == message


def test_malformed_json_raises_protocol_error() -> None:
    """Bytes that are not JSON raise ProtocolError, not a msgspec exception."""
    with pytest.raises(ProtocolError, match=r"^Invalid NotifyNext message: not JSON \(") as info:
        decode(b"{not json", NotifyNext)
    assert not isinstance(info.value, msgspec.MsgspecError)


def test_deep_nesting_raises_protocol_error() -> None:
    """A payload nested beyond the decoder's recursion limit is a ProtocolError."""
    nested = b"[" * 100_000 + b"]" * 100_000
    data = b'{"timestamp":1,"execution":{"jobDocument":{"a":' + nested + b"}}}"
    with pytest.raises(ProtocolError, match="nested too deeply"):
        decode(data, NotifyNext)


def test_requests_validate_on_construction() -> None:
    """Building a request the service would refuse raises ProtocolError at once."""
    with pytest.raises(ProtocolError, match="stepTimeoutInMinutes must be between 1 and 10080"):
        StartNextRequest(client_token=TOK, step_timeout_in_minutes=0)
    with pytest.raises(ProtocolError, match="contains a control character"):
        UpdateRequest(status=JobStatus.FAILED, client_token=TOK, status_details={"k": "a\nb"})
    with pytest.raises(ProtocolError, match="clientToken must be 1 to 64 characters, got 0"):
        GetPendingRequest(client_token=EMPTY)


def test_messages_are_frozen() -> None:
    """Decoded payloads cannot be modified."""
    request = GetPendingRequest(client_token=TOK)
    with pytest.raises(AttributeError):
        request.client_token = TOK  # type: ignore[misc]


def test_notify_job_ids_lists_each_status() -> None:
    """Notify.job_ids returns the ids under one status, in order, and () for absent ones."""
    notify = decode(
        json.dumps(
            {
                "timestamp": 1,
                "jobs": {
                    "IN_PROGRESS": [SUMMARY_JSON],
                    "QUEUED": [{**SUMMARY_JSON, "jobId": "q1"}, {**SUMMARY_JSON, "jobId": "q2"}],
                },
            }
        ).encode(),
        Notify,
    )
    assert notify.job_ids(JobStatus.IN_PROGRESS) == ("job-2",)
    assert notify.job_ids(JobStatus.QUEUED) == ("q1", "q2")
    assert notify.job_ids(JobStatus.CANCELED) == ()


def test_empty_notify_decodes() -> None:
    """`{"timestamp": N, "jobs": {}}` (nothing pending) decodes to an empty Notify."""
    assert decode(b'{"timestamp":1,"jobs":{}}', Notify) == Notify(timestamp=1)


def test_error_response_without_client_token() -> None:
    """An InvalidJson rejection carries no clientToken and still decodes."""
    response = decode(b'{"code":"InvalidJson","message":"bad","timestamp":3}', ErrorResponse)
    assert response == ErrorResponse(
        code=RejectedErrorCode.INVALID_JSON, message="bad", timestamp=3
    )


def test_rejected_error_codes_are_the_nine_of_protocol_md() -> None:
    """The error-code enum has exactly PROTOCOL.md's nine codes."""
    assert [code.value for code in RejectedErrorCode] == [
        "InvalidTopic",
        "InvalidJson",
        "InvalidRequest",
        "InvalidStateTransition",
        "ResourceNotFound",
        "VersionMismatch",
        "InternalError",
        "RequestThrottled",
        "TerminalStateReached",
    ]


def test_job_status_helpers() -> None:
    """Terminal, agent-settable and aborting statuses match PROTOCOL.md."""
    assert [status.value for status in JobStatus] == [
        "QUEUED",
        "IN_PROGRESS",
        "SUCCEEDED",
        "FAILED",
        "TIMED_OUT",
        "REJECTED",
        "REMOVED",
        "CANCELED",
    ]
    assert {s for s in JobStatus if not s.is_terminal} == {JobStatus.QUEUED, JobStatus.IN_PROGRESS}
    assert {s for s in JobStatus if s.is_set_by_agent} == {
        JobStatus.IN_PROGRESS,
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.REJECTED,
    }
    assert {s for s in JobStatus if s.stops_execution} == {
        JobStatus.CANCELED,
        JobStatus.REMOVED,
        JobStatus.TIMED_OUT,
    }


def test_presence_offline_minimal() -> None:
    """The last-will presence has only the required keys."""
    presence = Presence(
        state=PresenceState.OFFLINE,
        agent_version="0.1.0",
        hostname="h",
        started_at=datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
    )
    assert encode(presence) == (
        b'{"state":"offline","agentVersion":"0.1.0","hostname":"h",'
        b'"startedAt":"2026-11-26T10:00:00Z"}'
    )


def test_new_client_token_is_unique_and_valid() -> None:
    """Client tokens are 32 hex characters and differ between calls."""
    first, second = new_client_token(), new_client_token()
    assert len(first) == 32
    assert first != second
    int(first, 16)


# --- statusDetails builders --------------------------------------------------------------------


def test_details_for_event_matches_protocol_md() -> None:
    """Event details are lifecycleEvent, eventStatus, startTime, endTime in RFC 3339 UTC."""
    start = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    end = datetime(2026, 11, 26, 12, 0, 1, 250_000, tzinfo=timezone(timedelta(hours=2)))
    details = details_for_event("BeforeInstall", EventStatus.SUCCEEDED, start, end)
    assert details == {
        "lifecycleEvent": "BeforeInstall",
        "eventStatus": "Succeeded",
        "startTime": "2026-11-26T10:00:00Z",
        "endTime": "2026-11-26T10:00:01.250Z",
    }
    check_status_details(details)
    UpdateRequest(status=JobStatus.IN_PROGRESS, client_token=TOK, status_details=details)


def test_details_for_failure_matches_protocol_md() -> None:
    """Failure details carry errorCode, scriptName, message and the log tail."""
    details = details_for_failure(
        "ApplicationStart",
        FailureCode.SCRIPT_FAILED,
        "scripts/start.sh",
        "Script at specified location: scripts/start.sh run as user root failed with exit code 1",
        "[stdout]starting\n[stderr]boom\n",
    )
    assert details == {
        "lifecycleEvent": "ApplicationStart",
        "eventStatus": "Failed",
        "errorCode": "ScriptFailed",
        "scriptName": "scripts/start.sh",
        "message": "Script at specified location: scripts/start.sh run as user root failed "
        "with exit code 1",
        "logTail": "[stdout]starting\u2028[stderr]boom\u2028",
    }
    check_status_details(details)


def test_log_tail_without_line_breaks_keeps_the_last_characters_after_an_ellipsis() -> None:
    """One long line is cut to its last 1,023 characters, marked as cut."""
    log = "".join(f"{i:05d}" for i in range(1000))  # 5,000 characters
    details = details_for_failure(None, FailureCode.SCRIPT_TIMED_OUT, "s.sh", "timed out", log)
    assert details["logTail"] == "\u2026" + log[-1023:]
    assert len(details["logTail"]) == 1024


def test_log_tail_starts_at_a_whole_line() -> None:
    """A long log of lines is cut at a line start: no line shows without its beginning."""
    lines = [f"[stderr]line {i:03d} " + "x" * 40 + "\n" for i in range(100)]
    details = details_for_failure(
        "ValidateService", FailureCode.SCRIPT_FAILED, "v.sh", "failed", "".join(lines)
    )
    tail = details["logTail"]
    assert len(tail) <= 1024
    assert tail.startswith("[stderr]line ")
    assert tail.endswith("[stderr]line 099 " + "x" * 40 + "\u2028")
    shown = tail.split("\u2028")[:-1]
    assert all(line.startswith("[stderr]line ") for line in shown)
    assert len(shown) == 1024 // len(lines[0])


def test_long_message_is_cut_with_an_ellipsis() -> None:
    """A message over 1,024 characters keeps its start and ends with an ellipsis."""
    message = "m" * 2000
    details = details_for_failure("Install", FailureCode.UNKNOWN_ERROR, "", message, "")
    assert details["message"] == "m" * 1023 + "\u2026"
    check_status_details(details)


def test_empty_values_are_left_out_of_failure_details() -> None:
    """No script, no log and no event: those keys are omitted (AWS refuses empty values)."""
    details = details_for_failure(None, FailureCode.SIGNATURE_INVALID, "", "bad signature", "")
    assert details == {
        "eventStatus": "Failed",
        "errorCode": "SignatureInvalid",
        "message": "bad signature",
    }


def test_control_characters_are_sanitized() -> None:
    """CR/LF become U+2028, tabs a space, other control characters U+FFFD."""
    assert sanitize_detail("a\r\nb\rc\nd\te\x00f\x1bg\u200bh") == (
        "a\u2028b\u2028c\u2028d e\ufffdf\ufffdg\ufffdh"
    )
    assert restore_newlines("a\u2028b") == "a\nb"


def test_failure_code_of_maps_diagnostics_and_reject_reasons() -> None:
    """FailureCode.of maps the real agent's codes 1-7 and our reject reasons."""
    assert [FailureCode.of(code) for code in ErrorCode if code is not ErrorCode.SUCCEEDED] == [
        FailureCode.SCRIPT_MISSING,
        FailureCode.SCRIPT_NOT_EXECUTABLE,
        FailureCode.SCRIPT_TIMED_OUT,
        FailureCode.SCRIPT_FAILED,
        FailureCode.UNKNOWN_ERROR,
        FailureCode.OUTPUTS_LEFT_OPEN,
        FailureCode.FAILED_AFTER_RESTART,
    ]
    assert FailureCode.of(RejectReason.JOB_EXPIRED) is FailureCode.JOB_EXPIRED
    with pytest.raises(ValueError, match="not a failure"):
        FailureCode.of(ErrorCode.SUCCEEDED)


@pytest.mark.parametrize(
    ("details", "message"),
    [
        ({"": "v"}, "statusDetails key '' must be 1 to 128 characters"),
        ({"a.b": "v"}, "statusDetails key 'a.b' must be 1 to 128 characters"),
        ({"k" * 129: "v"}, "must be 1 to 128 characters"),
        ({"k": "v" * 1025}, r"statusDetails\['k'\] must be a string of 1 to 1024 characters"),
        ({"k": "a\u0085b"}, r"statusDetails\['k'\] contains a control character"),
    ],
)
def test_check_status_details_enforces_aws_limits(details: dict[str, str], message: str) -> None:
    """Keys `[a-zA-Z0-9:_-]{1,128}`, values 1-1,024 characters without control characters."""
    with pytest.raises(ProtocolError, match=message):
        check_status_details(details)


def test_format_time_refuses_naive_datetimes() -> None:
    """A naive datetime is a programming error, not a guess at the zone."""
    with pytest.raises(ValueError, match="naive datetime"):
        format_time(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test


def test_execution_state_requires_version_number() -> None:
    """JobExecutionState without versionNumber is refused (the agent needs it)."""
    with pytest.raises(ProtocolError, match="missing required field `versionNumber`"):
        decode(b'{"status":"FAILED"}', JobExecutionState)


def test_summary_started_at_is_optional() -> None:
    """A QUEUED summary has no startedAt."""
    wire = {k: v for k, v in SUMMARY_JSON.items() if k != "startedAt"}
    summary = decode(json.dumps(wire).encode(), JobExecutionSummary)
    assert summary.started_at is None
    assert json.loads(encode(summary)) == wire
