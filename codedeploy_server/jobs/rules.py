"""The AWS IoT Jobs rules applied to stored executions, without I/O (the service's pure core).

The decisions are those of the reference the agent is tested against (`tests/fakes/
jobs_service.py`, module docstring):

- A thing's pending executions are its IN_PROGRESS ones, then its QUEUED ones, each oldest
  first; `$next` is the first. `notify` is published when an execution enters or leaves that
  list (never for QUEUED -> IN_PROGRESS) and always carries `jobs` (`{}` when nothing is
  pending); `notify-next` only when the identity of `$next` changes, without `thingName`.
- An update's checks run in this order: ResourceNotFound, clientToken replay, InvalidRequest
  (a status a device may not set), TerminalStateReached, VersionMismatch (with the state).
  A QUEUED execution accepts an update (as on AWS; it starts it). `statusDetails` replaces the
  map when present and leaves it alone when absent; update/accepted carries `executionState` /
  `jobDocument` only when asked.
- start-next on a QUEUED execution starts it (version + 1, startedAt, the request's
  statusDetails when present, the timers); on one already IN_PROGRESS it changes nothing.
- The step timer starts with the execution (start-next's `stepTimeoutInMinutes`, else the
  queued default) and is replaced, counted from then, by every update carrying one; the
  in-progress timer starts with the execution and is never extended. A job minute lasts
  `time_scale` seconds (60; tests shorten it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from codedeploy_agent.protocol.messages import (
    ErrorResponse,
    JobExecutionState,
    JobStatus,
    NotifyNext,
    RejectedErrorCode,
    UpdateAccepted,
    UpdateRequest,
    encode,
)
from codedeploy_agent.protocol.topics import JobsTopics
from codedeploy_server.jobs.state import ExecutionRecord

_STATE_CODES: Final = frozenset(
    {RejectedErrorCode.VERSION_MISMATCH, RejectedErrorCode.INVALID_STATE_TRANSITION}
)

Messages = list[tuple[str, bytes]]
Snapshot = tuple[frozenset[tuple[str, int]], tuple[str, int] | None]


class Rejection(Exception):  # noqa: N818 - a control-flow signal turned into an error reply
    """A request the service answers on `.../rejected`."""

    def __init__(
        self, code: RejectedErrorCode, message: str, state: JobExecutionState | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.state = state

    def payload(self, client_token: str | None, now: float) -> bytes:
        """The error response (the state only for the codes that carry it)."""
        return encode(
            ErrorResponse(
                code=self.code,
                message=self.message,
                timestamp=int(now),
                client_token=client_token,
                execution_state=self.state if self.code in _STATE_CODES else None,
            )
        )


def pending(records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
    """IN_PROGRESS executions, then QUEUED ones, each oldest first."""
    ordered = sorted(records, key=lambda r: r.execution_number)
    return [r for r in ordered if r.status is JobStatus.IN_PROGRESS] + [
        r for r in ordered if r.status is JobStatus.QUEUED
    ]


def next_execution(records: Sequence[ExecutionRecord]) -> ExecutionRecord | None:
    """`$next`: the first pending execution."""
    ordered = pending(records)
    return ordered[0] if ordered else None


def snapshot(records: Sequence[ExecutionRecord]) -> Snapshot:
    """What notifications compare: the pending set and the identity of `$next`."""
    ordered = pending(records)
    return frozenset(r.key for r in ordered), ordered[0].key if ordered else None


def notifications(
    topics: JobsTopics, before: Snapshot, records: Sequence[ExecutionRecord], now: float
) -> Messages:
    """`notify` when the pending set changed, `notify-next` when `$next` is another one."""
    ordered = pending(records)
    messages: Messages = []
    if frozenset(r.key for r in ordered) != before[0]:
        jobs: dict[str, list[Any]] = {}
        for status in (JobStatus.IN_PROGRESS, JobStatus.QUEUED):
            summaries = [msgspec.to_builtins(r.summary()) for r in ordered if r.status is status]
            if summaries:
                jobs[status.value] = summaries
        # Built by hand: the Notify struct would leave out an empty `jobs`.
        messages.append((topics.notify, msgspec.json.encode({"timestamp": int(now), "jobs": jobs})))
    first = ordered[0] if ordered else None
    if (None if first is None else first.key) != before[1]:
        execution = None if first is None else first.message(thing_name=False)
        messages.append(
            (topics.notify_next, encode(NotifyNext(timestamp=int(now), execution=execution)))
        )
    return messages


def find(
    records: Sequence[ExecutionRecord], thing: str, job_id: str, execution_number: int | None
) -> ExecutionRecord:
    """The latest execution of `job_id` (or the numbered one, perhaps an earlier one)."""
    for record in records:
        if record.job_id == job_id:
            if execution_number in (None, record.execution_number):
                return record
            earlier = record.earlier(execution_number)
            if earlier is not None:
                return earlier
    number = "" if execution_number is None else f" (execution {execution_number})"
    raise Rejection(
        RejectedErrorCode.RESOURCE_NOT_FOUND,
        f"Job execution {job_id}{number} was not found for thing {thing}",
    )


def start(
    record: ExecutionRecord,
    now: float,
    step_minutes: float | None,
    time_scale: float,
    *,
    details: Mapping[str, str] | None = None,
    bump: bool = True,
) -> None:
    """QUEUED -> IN_PROGRESS: startedAt, the timers, and (with `bump`) a new version."""
    record.status = JobStatus.IN_PROGRESS
    record.started_at = now
    if details is not None:
        record.status_details = dict(details)
    if bump:
        record.version += 1
        record.last_updated_at = now
    step = step_minutes if step_minutes is not None else record.default_step_minutes
    record.step_deadline = None if step is None else now + step * time_scale
    minutes = record.in_progress_minutes
    record.in_progress_deadline = None if minutes is None else now + minutes * time_scale


def check_update(record: ExecutionRecord, request: UpdateRequest) -> None:
    """InvalidRequest, TerminalStateReached, VersionMismatch, in that order."""
    if not request.status.is_set_by_agent:
        raise Rejection(
            RejectedErrorCode.INVALID_REQUEST,
            f"status {request.status} cannot be set by a device; use IN_PROGRESS, "
            "SUCCEEDED, FAILED or REJECTED",
        )
    if record.status.is_terminal:
        raise Rejection(
            RejectedErrorCode.TERMINAL_STATE_REACHED,
            f"Job execution {record.job_id} of thing {record.thing} is in the terminal state "
            f"{record.status}",
            record.state(),
        )
    if request.expected_version is not None and request.expected_version != record.version:
        raise Rejection(
            RejectedErrorCode.VERSION_MISMATCH,
            f"expectedVersion {request.expected_version} does not match the current version "
            f"{record.version} of job execution {record.job_id}",
            record.state(),
        )


def apply_update(
    record: ExecutionRecord,
    request: UpdateRequest,
    *,
    has_details: bool,
    now: float,
    time_scale: float,
) -> bytes:
    """Apply an accepted update; its update/accepted payload."""
    if record.status is JobStatus.QUEUED:
        start(record, now, request.step_timeout_in_minutes, time_scale, bump=False)
    elif request.step_timeout_in_minutes is not None:
        record.step_deadline = now + request.step_timeout_in_minutes * time_scale
    record.status = request.status
    if has_details:
        record.status_details = dict(request.status_details)
    record.version += 1
    record.last_updated_at = now
    if record.status.is_terminal:
        record.step_deadline = record.in_progress_deadline = None
    return encode(
        UpdateAccepted(
            client_token=request.client_token,
            timestamp=int(now),
            execution_state=record.state() if request.include_job_execution_state else None,
            job_document=record.document if request.include_job_document else None,
        )
    )


def end(
    record: ExecutionRecord, status: JobStatus, details: Mapping[str, str] | None, now: float
) -> None:
    """The service's verdict (CANCELED, REMOVED, TIMED_OUT): version + 1, timers stopped."""
    record.status = status
    if details is not None:
        record.status_details = dict(details)
    record.version += 1
    record.last_updated_at = now
    record.step_deadline = record.in_progress_deadline = None
