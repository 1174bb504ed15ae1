"""Running one job execution: check its document, run the deployment, report every event.

The worker turns executor progress into Jobs updates (PROTOCOL.md "Agent behaviour" 2-3):
IN_PROGRESS after every lifecycle event, then SUCCEEDED, FAILED (retryable: a script failed) or
REJECTED (the job can never succeed here: bad signature, expired, malformed document).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

import structlog

from codedeploy_agent.clock import ClockMonitor
from codedeploy_agent.daemon.jobs import JobsClient
from codedeploy_agent.daemon.state import RUNNING, JobLedger
from codedeploy_agent.diagnostics import RESTART_MESSAGE
from codedeploy_agent.errors import AgentError, HostStateError
from codedeploy_agent.executor import DeploymentExecutor, EventResult, EventStatus
from codedeploy_agent.host.tracker import OngoingDeployments
from codedeploy_agent.log import get_logger
from codedeploy_agent.protocol.errors import JobRejected, RejectReason
from codedeploy_agent.protocol.jobdoc import (
    EnvironmentEntry,
    JobDocument,
    accept_job_document,
    spec_revision,
    to_deployment_spec,
)
from codedeploy_agent.protocol.keys import Ed25519PublicKey
from codedeploy_agent.protocol.messages import (
    MAX_DETAIL_CHARS,
    FailureCode,
    JobExecution,
    JobStatus,
    StatusDetails,
    details_for_event,
    details_for_failure,
    sanitize_detail,
)
from codedeploy_agent.protocol.messages import (
    EventStatus as WireEventStatus,
)
from codedeploy_agent.spec import CodeCommitRevision, S3Revision

_log = get_logger("codedeploy_agent.daemon.worker")

#: Tolerance on ExpiresAt when the clock skew is unknown.
EXPIRY_LEEWAY: Final = timedelta(seconds=30)

SecretResolver = Callable[[Mapping[str, EnvironmentEntry]], "asyncio.Future[dict[str, str]]"]


class StopCause(StrEnum):
    """Why a running job was interrupted."""

    SERVICE = "service"  # cancelled, removed or timed out by the service
    SHUTDOWN = "shutdown"  # the agent is stopping


@dataclass
class Progress:
    """What the daemon shows about the running job (status file, presence, sd_notify)."""

    job_id: str
    deployment_id: str
    lifecycle_event: str | None = None


class JobWorker:
    """Runs job executions one at a time for the daemon."""

    def __init__(
        self,
        executor: DeploymentExecutor,
        client: JobsClient,
        ledger: JobLedger,
        *,
        trusted_keys: Mapping[str, Ed25519PublicKey],
        clock: ClockMonitor | None = None,
        on_progress: Callable[[Progress | None], None] | None = None,
        on_log: Callable[[str, Sequence[str]], None] | None = None,
        on_finished: Callable[[str, str, JobStatus, str], None] | None = None,
    ) -> None:
        self.executor = executor
        self.on_finished = on_finished or (lambda _job, _deployment, _status, _message: None)
        self.client = client
        self.ledger = ledger
        self.trusted_keys = trusted_keys
        self.clock = clock
        self.on_progress = on_progress or (lambda _progress: None)
        self.on_log = on_log
        #: Set when the agent is stopping: the deployment stops before its next event.
        self.stop_reason: str | None = None
        self.stop_cause: StopCause | None = None
        self.stopped_status: JobStatus | None = None
        self.progress: Progress | None = None

    async def recover(self) -> list[str]:
        """Report jobs a previous agent process was killed in as FAILED FailedAfterRestart
        (PROTOCOL.md 5), then clears the ongoing-deployment markers; returns their ids. Runs
        before any new work is taken."""
        recovered = []
        for entry in self.ledger.running():
            details = details_for_failure(
                entry.lifecycle_event, FailureCode.FAILED_AFTER_RESTART, "", RESTART_MESSAGE, ""
            )
            await self.client.enqueue_update(entry.job_id, JobStatus.FAILED, details)
            await asyncio.to_thread(
                self.ledger.record,
                entry.job_id,
                entry.deployment_id,
                JobStatus.FAILED.value,
                entry.lifecycle_event,
            )
            _log.warning(
                "job interrupted by an agent restart reported failed",
                job_id=entry.job_id,
                deployment_id=entry.deployment_id,
                lifecycle_event=entry.lifecycle_event,
            )
            recovered.append(entry.job_id)
        await asyncio.to_thread(self._clear_markers, recovered)
        return recovered

    def _clear_markers(self, recovered: Sequence[str]) -> None:
        """Remove the ongoing-deployment markers (reference §2.2) a killed agent left.

        The real agent reports the newest marker's command and then removes the directory. Here
        the ledger, written before each marker, is the record of interrupted jobs (the jobs just
        reported), so the markers are only cleared: nothing may think a deployment still runs
        (the real agent refuses to stop while one does). No deployment runs yet, and the
        root_dir lock keeps other agents out of this deployment root.
        """
        markers = OngoingDeployments(self.executor.root.ongoing)
        try:
            newest = markers.most_recent()
            if newest is not None and newest[1] not in recovered:
                _log.warning(
                    "ongoing-deployment marker of a job the ledger does not list as running; "
                    "clearing it without a report",
                    deployment_id=newest[0],
                    job_id=newest[1],
                )
            markers.clear_all()
        except HostStateError as exc:
            # Not fatal: the ledger, not the markers, decides what a restart reports.
            _log.warning("cannot clear the ongoing-deployment markers", reason=str(exc))

    async def run(self, execution: JobExecution) -> None:
        """Run one execution to its end and queue its final update."""
        job_id = execution.job_id
        self.stop_cause = None
        self.stopped_status = None
        log = _log.bind(job_id=job_id)
        previous = self.ledger.get(job_id)
        if previous is not None:
            await self._already_seen(job_id, previous.state, previous.lifecycle_event)
            return
        try:
            doc = self._accept(execution)
        except JobRejected as exc:
            log.error("job rejected", reason=exc.reason_code.value, message=str(exc))
            await self.client.enqueue_update(
                job_id,
                JobStatus.REJECTED,
                details_for_failure(None, FailureCode.of(exc.reason_code), "", str(exc), ""),
            )
            await asyncio.to_thread(self.ledger.record, job_id, "", JobStatus.REJECTED.value)
            return
        await asyncio.to_thread(self.ledger.record, job_id, doc.deployment_id, RUNNING)
        self.progress = Progress(job_id, doc.deployment_id)
        self.on_progress(self.progress)
        try:
            # Every log line of this deployment (executor, hooks, installer, sources, archive)
            # names the job and the deployment; _JobReporter adds the running lifecycle event.
            with structlog.contextvars.bound_contextvars(
                job_id=job_id, deployment_id=doc.deployment_id
            ):
                await self._deploy(job_id, doc)
        finally:
            self.progress = None
            self.on_progress(None)

    def _accept(self, execution: JobExecution) -> JobDocument:
        if execution.job_document is None:
            raise JobRejected(
                RejectReason.INVALID_JOB_DOCUMENT, "The job execution has no jobDocument"
            )
        now = datetime.now(UTC)
        skew = self.clock.current_skew if self.clock is not None else None
        if skew is not None:
            now += timedelta(seconds=skew)  # judge expiry by the corrected clock
        return accept_job_document(
            execution.job_document, trusted_keys=self.trusted_keys, now=now, leeway=EXPIRY_LEEWAY
        )

    async def _already_seen(self, job_id: str, state: str, event: str | None) -> None:
        # PROTOCOL.md 6: a job that reached a terminal state here is never run again. The service
        # still shows it IN_PROGRESS, so our final update was lost: send the outcome again.
        status = JobStatus.FAILED if state == RUNNING else JobStatus(state)
        _log.warning("job already ran on this host; not running it again", job_id=job_id)
        message = (
            RESTART_MESSAGE
            if state == RUNNING
            else f"This job already ended {state} on this host; it is not run twice."
        )
        code = FailureCode.FAILED_AFTER_RESTART if state == RUNNING else FailureCode.UNKNOWN_ERROR
        details: StatusDetails = (
            {"message": message}
            if status is JobStatus.SUCCEEDED
            else details_for_failure(event, code, "", message, "")
        )
        await self.client.enqueue_update(job_id, status, details)
        if state == RUNNING:
            await asyncio.to_thread(self.ledger.record, job_id, "", JobStatus.FAILED.value, event)

    async def _deploy(self, job_id: str, doc: JobDocument) -> None:
        log = _log.bind(job_id=job_id, deployment_id=doc.deployment_id)
        reporter = _JobReporter(self, job_id, doc.deployment_id)
        try:
            if self.clock is not None and _needs_sigv4(doc):
                self.clock.check_sigv4_allowed()
            environment = await self._secrets(doc)
            spec = to_deployment_spec(doc, environment=environment)
        except AgentError as exc:
            log.error("job cannot run", message=str(exc))
            event = doc.lifecycle_events[0] if doc.lifecycle_events else None
            await self._finish(
                job_id,
                doc.deployment_id,
                JobStatus.FAILED,
                details_for_failure(event, FailureCode.UNKNOWN_ERROR, "", str(exc), ""),
                event,
            )
            return
        on_log = self.on_log
        try:
            result = await self.executor.run(
                spec,
                reporter,
                tracking_id=job_id,
                on_log=(lambda lines: on_log(doc.deployment_id, lines)) if on_log else None,
                stop_reason=lambda: self.stop_reason,
            )
        except asyncio.CancelledError:
            if self.stop_cause is not None:
                # We cancelled this task ourselves to stop the hook; the job goes on to report.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
            if self.stop_cause is StopCause.SERVICE:
                status = self.stopped_status or JobStatus.CANCELED
                log.warning("job stopped by the service", status=status.value)
                await self.client.forget_job(job_id)
                await asyncio.to_thread(
                    self.ledger.record, job_id, doc.deployment_id, status.value, reporter.event
                )
                return
            if self.stop_cause is StopCause.SHUTDOWN:
                message = self.stop_reason or "The agent was stopping."
                await self._finish(
                    job_id,
                    doc.deployment_id,
                    JobStatus.FAILED,
                    details_for_failure(reporter.event, FailureCode.UNKNOWN_ERROR, "", message, ""),
                    reporter.event,
                )
                return
            raise
        finally:
            # No event runs any more (the lines above still name the stopped one).
            structlog.contextvars.unbind_contextvars("lifecycle_event")
        failure = result.failure
        if failure is None:
            last = result.events[-1] if result.events else None
            details = (
                details_for_event(
                    last.event, WireEventStatus(last.status.value), last.started_at, last.ended_at
                )
                if last is not None
                else {}
            )
            await self._finish(
                job_id, doc.deployment_id, JobStatus.SUCCEEDED, details, reporter.event
            )
            return
        diagnostics = failure.diagnostics
        details = details_for_failure(
            failure.event,
            FailureCode.of(diagnostics.code),
            diagnostics.script_name,
            diagnostics.message,
            diagnostics.log,
        )
        await self._finish(job_id, doc.deployment_id, JobStatus.FAILED, details, failure.event)

    async def _finish(
        self,
        job_id: str,
        deployment_id: str,
        status: JobStatus,
        details: StatusDetails,
        event: str | None,
    ) -> None:
        # The outbox entry first: if the agent dies between the two writes, the ledger still
        # says RUNNING and the restart reports FailedAfterRestart, which the service refuses
        # (terminal already) without harm; the other order could lose the outcome.
        await self.client.enqueue_update(job_id, status, details)
        await asyncio.to_thread(self.ledger.record, job_id, deployment_id, status.value, event)
        _log.info("job finished", job_id=job_id, status=status.value)
        self.on_finished(job_id, deployment_id, status, details.get("message", ""))

    async def _secrets(self, doc: JobDocument) -> dict[str, str]:
        if not doc.environment:
            return {}
        # Imported here: only jobs with secrets load the Parameter Store adapter (and boto3).
        from codedeploy_agent.sources.secrets import resolve_environment  # noqa: PLC0415

        entries = {name: entry.ssm_parameter for name, entry in doc.environment.items()}
        return await resolve_environment(entries, self.executor.config)


def _needs_sigv4(doc: JobDocument) -> bool:
    """True when running `doc` makes AWS-signed calls from this host (S3 without a presigned
    URL, CodeCommit, Parameter Store): those fail with InvalidSignatureException when the clock
    is off by more than 5 minutes, so the agent refuses them up front with the fix."""
    if doc.environment:
        return True
    revision = spec_revision(doc.revision)
    if isinstance(revision, S3Revision):
        return revision.download_url is None
    return isinstance(revision, CodeCommitRevision)


class _JobReporter:
    """Executor progress -> IN_PROGRESS updates, ledger and status."""

    def __init__(self, worker: JobWorker, job_id: str, deployment_id: str) -> None:
        self.worker = worker
        self.job_id = job_id
        self.deployment_id = deployment_id
        self.event: str | None = None
        self.step_timeout: int | None = None

    async def event_started(self, event: str, started_at: datetime) -> None:
        """Remember the event (the ledger names it if the agent dies now)."""
        self.event = event
        # The job's task context: every line logged until the next event names this one.
        structlog.contextvars.bind_contextvars(lifecycle_event=event)
        worker = self.worker
        # The ledger first: whatever shows the event (status file, sd_notify) must never be
        # ahead of what a restarted agent will report as the interrupted event.
        await asyncio.to_thread(
            worker.ledger.record, self.job_id, self.deployment_id, RUNNING, event
        )
        if worker.progress is not None:
            worker.progress.lifecycle_event = event
            worker.on_progress(worker.progress)

    async def scripts_starting(self, event: str, timeout_seconds: int) -> None:
        """Raise the step timer when the event's scripts may take longer than it allows."""
        needed = math.ceil(timeout_seconds / 60) + 1
        if self.step_timeout is None or needed > self.step_timeout:
            self.step_timeout = needed
            # No statusDetails: the service keeps the last event's (an absent map is unchanged).
            await self.worker.client.enqueue_update(
                self.job_id, JobStatus.IN_PROGRESS, {}, step_timeout_minutes=needed
            )

    async def event_finished(self, result: EventResult) -> None:
        """IN_PROGRESS with the event's outcome; a blocking failure waits for the final FAILED.

        `message` carries what the operator must know about an event that did not stop the
        deployment: an ignored failure (`ignored: ...`) and each warning (`warning: ...`), one
        per line, within the 1,024 characters of a statusDetails value. The event keeps its
        status: an event with warnings is still Succeeded.
        """
        if result.blocking_failure:
            return
        details = details_for_event(
            result.event,
            WireEventStatus(result.status.value),
            result.started_at,
            result.ended_at,
        )
        lines = [f"warning: {warning}" for warning in result.warnings]
        if result.status is EventStatus.FAILED:
            lines.insert(0, "ignored: " + result.diagnostics.message)
        if lines:
            message = sanitize_detail("\n".join(lines))
            if len(message) > MAX_DETAIL_CHARS:
                # The agent log has every warning in full (the executor logs each one).
                more = (
                    f"\u2026 ({len(result.warnings)} warnings in all; the agent log lists "
                    "every one)"
                    if len(result.warnings) > 1
                    else "\u2026"
                )
                message = message[: MAX_DETAIL_CHARS - len(more)] + more
            details["message"] = message
        # Re-specifying the step timer restarts it, so it covers each event, not the sum.
        await self.worker.client.enqueue_update(
            self.job_id, JobStatus.IN_PROGRESS, details, step_timeout_minutes=self.step_timeout
        )
