"""A deployment target's document (`InstanceTarget`) driven by its job execution: pure functions.

The agent reports one lifecycle event per IN_PROGRESS update (`statusDetails` `lifecycleEvent`,
`eventStatus`, `startTime`, `endTime`, PROTOCOL.md "Agent behaviour" 2) and ends with SUCCEEDED
(details of the last event), or FAILED/REJECTED (`lifecycleEvent`, `errorCode`, `scriptName`,
`message`, `logTail`). These functions turn that stream into botocore's `LifecycleEvent` entries
and the target's `status`, the way GetDeploymentTarget shows them on AWS:

- an event the agent reported gets its status and times; the next one is shown `InProgress`
  from the moment the previous one ended (the agent does not report starts), so a live view
  sees which event runs;
- a succeeded event gets the diagnostics GetDeploymentTarget shows for one on AWS:
  `{errorCode: "Success", scriptName: "", message: "Succeeded", logTail: ""}`. The real agent
  reports every successful command with code 0 (`Success`), no script name, the message
  "Succeeded: " and no log (agent reference §8.1). Our agent reports no diagnostics for a
  succeeded event, so the server writes this fixed value;
- the failing event gets `diagnostics {errorCode, scriptName, message, logTail}`; every later
  event becomes `Skipped` with only an `endTime` (as in AWS's samples);
- events the stream jumped over (the server missed updates while it was down, and only the
  execution's latest details survive) become `Unknown` rather than a guessed `Succeeded`;
- agent failure codes outside botocore's `LifecycleErrorCode` enum (OutputsLeftOpen,
  FailedAfterRestart, SignatureInvalid, JobExpired, InvalidJobDocument) are reported as
  `UnknownError`, the agent's code leading the message, so boto3 callers only see enum values;
- the agent sends line breaks of `logTail`/`message` as U+2028 (a statusDetails value may not
  hold control characters); they are turned back into newlines here.

A target whose status is terminal ignores every later change. Changes carry the execution's
`versionNumber`; one not newer than the last applied is ignored, so a change replayed by the
resume scan or delivered twice never moves a target backwards.

Private keys (stripped by the API): `_execution {status, version}` (what was applied last),
`_queuedAt` (when the engine queued the execution; the pickup deadline counts from it),
`_startedAt` (when the agent started it).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from enum import StrEnum
from typing import Any, Final

from codedeploy_agent.protocol.jobdoc import parse_time
from codedeploy_agent.protocol.messages import JobStatus, restore_newlines

Doc = MutableMapping[str, Any]


class TargetStatus(StrEnum):
    """botocore `TargetStatus`."""

    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    UNKNOWN = "Unknown"
    READY = "Ready"

    @property
    def is_terminal(self) -> bool:
        """True once the target will not change any more."""
        return self in (TargetStatus.SUCCEEDED, TargetStatus.FAILED, TargetStatus.SKIPPED)


class EventState(StrEnum):
    """botocore `LifecycleEventStatus`."""

    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    UNKNOWN = "Unknown"


#: botocore's `LifecycleErrorCode` values; anything else is reported as UnknownError.
LIFECYCLE_ERROR_CODES: Final = frozenset(
    {"Success", "ScriptMissing", "ScriptNotExecutable", "ScriptTimedOut", "ScriptFailed"}
)
UNKNOWN_ERROR: Final = "UnknownError"
#: The diagnostics of a succeeded lifecycle event (module docstring).
SUCCESS_DIAGNOSTICS: Final = {
    "errorCode": "Success",
    "scriptName": "",
    "message": "Succeeded",
    "logTail": "",
}
_UNFINISHED: Final = frozenset({EventState.PENDING.value, EventState.IN_PROGRESS.value})


def pending_events(names: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    """The `lifecycleEvents` of a target that has not started: every event Pending."""
    return [{"lifecycleEventName": name, "status": EventState.PENDING.value} for name in names]


def status_of(target: Mapping[str, Any]) -> TargetStatus:
    """The target's status (Pending when the document has none yet)."""
    return TargetStatus(target.get("status") or TargetStatus.PENDING.value)


def mark_queued(target: Doc, now: float) -> None:
    """The engine queued the target's job execution: it is in flight from now on."""
    target["status"] = TargetStatus.IN_PROGRESS.value
    target["lastUpdatedAt"] = now
    target["_queuedAt"] = now
    target["_execution"] = {"status": JobStatus.QUEUED.value, "version": 0}


def execution_status(target: Mapping[str, Any]) -> JobStatus | None:
    """The execution status last applied to the target (None before it was queued)."""
    execution = target.get("_execution")
    if not isinstance(execution, dict):
        return None
    return JobStatus(execution["status"])


def apply_change(
    target: Doc, status: JobStatus, details: Mapping[str, str], version: int, changed_at: float
) -> bool:
    """Apply one state of the target's execution; False when it changes nothing (terminal
    target, or a version already applied)."""
    if status_of(target).is_terminal:
        return False
    execution = target.get("_execution")
    if isinstance(execution, dict) and version <= int(execution.get("version", 0)):
        return False
    target["_execution"] = {"status": status.value, "version": version}
    target["lastUpdatedAt"] = changed_at
    events: list[dict[str, Any]] = target.setdefault("lifecycleEvents", [])
    if status is JobStatus.QUEUED:
        return True
    target["status"] = TargetStatus.IN_PROGRESS.value
    if status is JobStatus.IN_PROGRESS:
        target.setdefault("_startedAt", changed_at)
        if not _apply_event(events, details, changed_at):
            _begin_next(events, changed_at)
        return True
    if status is JobStatus.SUCCEEDED:
        _apply_event(events, details, changed_at)
        for event in events:
            if event["status"] in _UNFINISHED:
                _mark_unknown(event)
        target["status"] = TargetStatus.SUCCEEDED.value
        return True
    if status in (JobStatus.FAILED, JobStatus.REJECTED):
        _fail(
            events,
            changed_at,
            event_name=details.get("lifecycleEvent"),
            diagnostics=agent_diagnostics(details),
        )
    else:  # TIMED_OUT, CANCELED, REMOVED: the service ended it (the engine's own cancels are
        # recorded before they are sent, so the target is terminal and never gets here)
        _fail(events, changed_at, event_name=None, diagnostics=service_diagnostics(status))
    target["status"] = TargetStatus.FAILED.value
    return True


def fail_target(target: Doc, now: float, message: str) -> None:
    """End an in-flight target as Failed by the service's decision (pickup deadline, stop):
    the running (or first unfinished) event fails with `message`, the later ones are skipped."""
    events: list[dict[str, Any]] = target.setdefault("lifecycleEvents", [])
    _fail(
        events,
        now,
        event_name=None,
        diagnostics={
            "errorCode": UNKNOWN_ERROR,
            "scriptName": "",
            "message": message,
            "logTail": "",
        },
    )
    target["status"] = TargetStatus.FAILED.value
    target["lastUpdatedAt"] = now


def skip_target(target: Doc, now: float) -> None:
    """A target the deployment never started (it failed or was stopped first): Skipped."""
    for event in target.setdefault("lifecycleEvents", []):
        if event["status"] in _UNFINISHED:
            event["status"] = EventState.SKIPPED.value
            event.pop("startTime", None)
            event["endTime"] = now
    target["status"] = TargetStatus.SKIPPED.value
    target["lastUpdatedAt"] = now


def agent_diagnostics(details: Mapping[str, str]) -> dict[str, str]:
    """botocore `Diagnostics` from a FAILED/REJECTED update's statusDetails."""
    code = details.get("errorCode") or UNKNOWN_ERROR
    message = restore_newlines(details.get("message", ""))
    if code not in LIFECYCLE_ERROR_CODES and code != UNKNOWN_ERROR:
        message = f"{code}: {message}" if message else code
        code = UNKNOWN_ERROR
    return {
        "errorCode": code,
        "scriptName": details.get("scriptName", ""),
        "message": message,
        "logTail": restore_newlines(details.get("logTail", "")),
    }


def service_diagnostics(status: JobStatus) -> dict[str, str]:
    """Diagnostics for an execution the Jobs service ended (not the agent)."""
    if status is JobStatus.TIMED_OUT:
        message = (
            "The agent stopped reporting progress: the job execution timed out (TIMED_OUT) "
            "while this event was running. The agent may have stopped or lost its connection "
            "to the broker; run `codedeploy-agent status` on the host and check its log."
        )
    else:
        message = f"The job execution was ended by the Jobs service ({status.value})."
    return {"errorCode": UNKNOWN_ERROR, "scriptName": "", "message": message, "logTail": ""}


def _time(value: str | None, default: float) -> float:
    if not value:
        return default
    try:
        return parse_time(value).timestamp()
    except ValueError:
        return default


def _apply_event(events: list[dict[str, Any]], details: Mapping[str, str], now: float) -> bool:
    """Record the event named in IN_PROGRESS/SUCCEEDED details; False when there is none."""
    name = details.get("lifecycleEvent")
    index = _index(events, name)
    state = details.get("eventStatus")
    if index is None or state not in (
        EventState.SUCCEEDED.value,
        EventState.FAILED.value,
        EventState.SKIPPED.value,
    ):
        return False
    event = events[index]
    if event["status"] not in _UNFINISHED:
        return True  # already recorded (a replay of the same details)
    for earlier in events[:index]:
        if earlier["status"] in _UNFINISHED:
            _mark_unknown(earlier)
    event["status"] = state
    end = _time(details.get("endTime"), now)
    if state == EventState.SKIPPED.value:
        event.pop("startTime", None)
    else:
        event["startTime"] = _time(details.get("startTime"), event.get("startTime", end))
    event["endTime"] = end
    if state == EventState.SUCCEEDED.value:
        event["diagnostics"] = dict(SUCCESS_DIAGNOSTICS)
        warnings = restore_newlines(details.get("message", ""))
        if warnings:
            # Not in CodeDeploy: the agent's `warning: ...` lines (files of the previous
            # revision it could not remove, retried next time) follow "Succeeded", so operators
            # see them in GetDeploymentTarget instead of only in the host's log.
            event["diagnostics"]["message"] = f"Succeeded\n{warnings}"
    if state == EventState.FAILED.value:
        # A failure the deployment ignores (ignoreApplicationStopFailures): the agent goes on.
        event["diagnostics"] = {
            "errorCode": UNKNOWN_ERROR,
            "scriptName": "",
            "message": restore_newlines(details.get("message", "")),
            "logTail": "",
        }
    if index + 1 < len(events) and events[index + 1]["status"] == EventState.PENDING.value:
        events[index + 1]["status"] = EventState.IN_PROGRESS.value
        events[index + 1]["startTime"] = end
    return True


def _begin_next(events: list[dict[str, Any]], now: float) -> None:
    """The execution started: its first event is running (unless one already is)."""
    for event in events:
        if event["status"] == EventState.IN_PROGRESS.value:
            return
        if event["status"] == EventState.PENDING.value:
            event["status"] = EventState.IN_PROGRESS.value
            event["startTime"] = now
            return


def _fail(
    events: list[dict[str, Any]],
    now: float,
    *,
    event_name: str | None,
    diagnostics: dict[str, str],
) -> None:
    index = _index(events, event_name)
    if index is None or events[index]["status"] not in _UNFINISHED:
        index = next((i for i, e in enumerate(events) if e["status"] in _UNFINISHED), None)
    if index is None:
        return
    for earlier in events[:index]:
        if earlier["status"] in _UNFINISHED:
            _mark_unknown(earlier)
    failed = events[index]
    failed["status"] = EventState.FAILED.value
    failed.setdefault("startTime", now)
    failed["endTime"] = now
    failed["diagnostics"] = diagnostics
    for later in events[index + 1 :]:
        if later["status"] in _UNFINISHED:
            later["status"] = EventState.SKIPPED.value
            later.pop("startTime", None)
            later["endTime"] = now


def _mark_unknown(event: dict[str, Any]) -> None:
    event["status"] = EventState.UNKNOWN.value
    event.pop("startTime", None)


def _index(events: list[dict[str, Any]], name: str | None) -> int | None:
    if not name:
        return None
    return next((i for i, e in enumerate(events) if e["lifecycleEventName"] == name), None)


__all__ = [
    "LIFECYCLE_ERROR_CODES",
    "SUCCESS_DIAGNOSTICS",
    "EventState",
    "TargetStatus",
    "agent_diagnostics",
    "apply_change",
    "execution_status",
    "fail_target",
    "mark_queued",
    "pending_events",
    "service_diagnostics",
    "skip_target",
    "status_of",
]
