"""The agent side of the AWS IoT Jobs MQTT protocol (PROTOCOL.md): requests and their replies,
notifications, and the outbox of updates.

Requests carry a fresh `clientToken`; the reply (`.../accepted` or `.../rejected`) that echoes
it completes the request. Updates go through the on-disk outbox and are sent one at a time, in
order, each with `expectedVersion` = the last version the service accepted; an update that was
not accepted stays in the outbox and is sent again after the next (re)connect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final, Literal, Protocol

import msgspec

from codedeploy_agent.daemon.state import Outbox, PendingUpdate
from codedeploy_agent.errors import AgentError
from codedeploy_agent.log import get_logger
from codedeploy_agent.protocol.errors import ProtocolError
from codedeploy_agent.protocol.messages import (
    DescribeAccepted,
    DescribeRequest,
    ErrorResponse,
    JobExecution,
    JobStatus,
    Notify,
    NotifyNext,
    RejectedErrorCode,
    StartNextAccepted,
    StartNextRequest,
    StatusDetails,
    UpdateAccepted,
    UpdateRequest,
    decode,
    encode,
    new_client_token,
)
from codedeploy_agent.protocol.topics import JobsTopics, TopicKind

_log = get_logger("codedeploy_agent.daemon.jobs")

RESPONSE_TIMEOUT: Final = 10.0
#: How often one update is retried after VersionMismatch before it is given up.
_MAX_VERSION_RETRIES: Final = 5
_THROTTLE_DELAY: Final = 2.0

_REPLY_KINDS: Final = frozenset(
    {
        TopicKind.START_NEXT_ACCEPTED,
        TopicKind.START_NEXT_REJECTED,
        TopicKind.UPDATE_ACCEPTED,
        TopicKind.UPDATE_REJECTED,
        TopicKind.DESCRIBE_ACCEPTED,
        TopicKind.DESCRIBE_REJECTED,
    }
)
_REJECTED: Final = frozenset(
    {TopicKind.START_NEXT_REJECTED, TopicKind.UPDATE_REJECTED, TopicKind.DESCRIBE_REJECTED}
)


class RequestFailedError(AgentError):
    """Raised by JobsClient requests when no reply came (timeout, not connected)."""


class RequestRejectedError(AgentError):
    """Raised by JobsClient requests that the service rejected; `error` is its response."""

    def __init__(self, error: ErrorResponse) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error


class Publisher(Protocol):
    """What the client needs from the transport."""

    @property
    def connected(self) -> bool:
        """True while the MQTT connection is up."""

    async def publish(
        self, topic: str, payload: bytes, *, qos: Literal[0, 1] = 1, retain: bool = False
    ) -> None:
        """Publish; raises when not connected."""


class _Token(msgspec.Struct, rename="camel"):
    client_token: str | None = None
    timestamp: float | None = None


class JobsClient:
    """Requests, replies and notifications of one thing's Jobs topics."""

    def __init__(
        self,
        publisher: Publisher,
        topics: JobsTopics,
        outbox: Outbox,
        *,
        on_next_job: Callable[[], None],
        on_job_stopped: Callable[[str, JobStatus], None],
        on_service_time: Callable[[float, float, float | None], None] | None = None,
        response_timeout: float = RESPONSE_TIMEOUT,
    ) -> None:
        self.publisher = publisher
        self.topics = topics
        self.outbox = outbox
        self.on_next_job = on_next_job
        self.on_job_stopped = on_job_stopped
        self.on_service_time = on_service_time
        self.response_timeout = response_timeout
        #: The job this agent is running now; notifications about it may stop it.
        self.current_job: str | None = None
        self._pending: dict[str, tuple[asyncio.Future[tuple[TopicKind, bytes]], float]] = {}
        self._versions: dict[str, int] = {}
        #: Jobs the service ended (cancelled, removed, timed out): nothing more is sent for them.
        self._ended: set[str] = set()
        #: Jobs being checked after a notification: their updates wait for the verdict.
        self._verifying: dict[str, asyncio.Event] = {}
        self._wake_sender = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # --- incoming -------------------------------------------------------------------------

    async def handle(self, topic: str, payload: bytes) -> None:
        """Dispatch one incoming message (the transport calls this for every message)."""
        try:
            parsed = self.topics.parse_topic(topic)
        except ProtocolError as exc:
            _log.warning("ignored message on a foreign topic", topic=topic, reason=str(exc))
            return
        try:
            if parsed.kind in _REPLY_KINDS:
                self._complete(parsed.kind, payload)
            elif parsed.kind is TopicKind.NOTIFY_NEXT:
                if decode(payload, NotifyNext).execution is not None:
                    self.on_next_job()
            elif parsed.kind is TopicKind.NOTIFY:
                self._check_current(decode(payload, Notify))
        except ProtocolError as exc:
            _log.warning("ignored malformed message", topic=topic, reason=str(exc))

    def _complete(self, kind: TopicKind, payload: bytes) -> None:
        try:
            token = msgspec.json.decode(payload, type=_Token) if payload else _Token()
        except msgspec.DecodeError:
            _log.warning("ignored a reply that is not valid JSON", kind=kind.value)
            return
        if token.client_token is None:
            return
        entry = self._pending.get(token.client_token)
        if entry is None:
            return  # a reply to another request, or one that already timed out
        future, sent_at = entry
        if token.timestamp is not None and self.on_service_time is not None:
            self.on_service_time(token.timestamp, time.time(), sent_at)
        if not future.done():
            future.set_result((kind, payload))

    def _check_current(self, notify: Notify) -> None:
        job = self.current_job
        if job is None:
            return
        in_progress = {s.job_id for s in notify.jobs.get(JobStatus.IN_PROGRESS, [])}
        if job not in in_progress and job not in self._verifying:
            # Our execution left the IN_PROGRESS list: read it to learn why (PROTOCOL.md), and
            # hold its updates until we know, so that none is sent after a cancel was read.
            self._verifying[job] = asyncio.Event()
            asyncio.get_running_loop().create_task(self._verify_stopped(job))

    async def _verify_stopped(self, job_id: str) -> None:
        try:
            execution = await self.describe(job_id)
        except (RequestFailedError, RequestRejectedError) as exc:
            _log.warning("could not read the job execution", job_id=job_id, reason=str(exc))
            return
        finally:
            self._verifying.pop(job_id).set()
        status = execution.status if execution else JobStatus.REMOVED
        if status.stops_execution:
            self._ended.add(job_id)
            self.on_job_stopped(job_id, status)

    # --- requests ---------------------------------------------------------------------------

    async def _request(self, topic: str, token: str, payload: bytes) -> tuple[TopicKind, bytes]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[TopicKind, bytes]] = loop.create_future()
        self._pending[token] = (future, time.time())
        try:
            try:
                await self.publisher.publish(topic, payload)
            except AgentError as exc:
                raise RequestFailedError(f"not sent: {exc}") from exc
            try:
                return await asyncio.wait_for(future, self.response_timeout)
            except TimeoutError:
                raise RequestFailedError(
                    f"no reply on {topic} within {self.response_timeout:.0f} s"
                ) from None
        finally:
            self._pending.pop(token, None)

    async def start_next(self, step_timeout_minutes: int | None = None) -> JobExecution | None:
        """StartNextPendingJobExecution: the next job, now IN_PROGRESS, or None."""
        request = StartNextRequest(
            client_token=new_client_token(), step_timeout_in_minutes=step_timeout_minutes
        )
        kind, payload = await self._request(
            self.topics.start_next, request.client_token, encode(request)
        )
        if kind in _REJECTED:
            raise RequestRejectedError(decode(payload, ErrorResponse))
        execution = decode(payload, StartNextAccepted).execution
        if execution is not None:
            self._versions[execution.job_id] = execution.version_number
        return execution

    async def describe(self, job_id: str) -> JobExecution | None:
        """DescribeJobExecution: the execution as the service sees it; None when unknown."""
        request = DescribeRequest(client_token=new_client_token(), include_job_document=False)
        kind, payload = await self._request(
            self.topics.get(job_id), request.client_token, encode(request)
        )
        if kind in _REJECTED:
            error = decode(payload, ErrorResponse)
            if error.code is RejectedErrorCode.RESOURCE_NOT_FOUND:
                return None
            raise RequestRejectedError(error)
        return decode(payload, DescribeAccepted).execution

    # --- updates through the outbox -----------------------------------------------------------

    async def enqueue_update(
        self,
        job_id: str,
        status: JobStatus,
        details: StatusDetails,
        *,
        step_timeout_minutes: int | None = None,
    ) -> None:
        """Persist an update and let the sender deliver it; returns before it is accepted."""
        request = UpdateRequest(
            status=status,
            client_token=new_client_token(),
            status_details=details,
            step_timeout_in_minutes=step_timeout_minutes,
            include_job_execution_state=True,
        )
        await asyncio.to_thread(self.outbox.add, job_id, request)
        self._idle.clear()  # after the add: a sender that just found the outbox empty set it
        self._wake_sender.set()

    async def restore(self) -> None:
        """Take over the updates a previous agent process left in the outbox (call at start).

        Until they are accepted the client is not idle, so the daemon asks for no job first: a
        job whose final update is still queued would otherwise come back from start-next as
        IN_PROGRESS, and be reported a second time.
        """
        if await asyncio.to_thread(self.outbox.first) is not None:
            self._idle.clear()
            self._wake_sender.set()

    def connection_up(self) -> None:
        """Called after each (re)connect: resend what the outbox holds."""
        self._wake_sender.set()

    async def wait_idle(self) -> None:
        """Wait until every queued update has been accepted or given up."""
        await self._idle.wait()

    @property
    def idle(self) -> bool:
        """True when no update waits in the outbox."""
        return self._idle.is_set()

    async def forget_job(self, job_id: str) -> None:
        """Drop every queued update of a job the service has ended (cancelled, removed)."""
        self._versions.pop(job_id, None)
        for update in await asyncio.to_thread(self.outbox.pending):
            if update.job_id == job_id:
                await asyncio.to_thread(self.outbox.remove, update)

    async def run_sender(self) -> None:
        """Deliver the outbox, oldest first, whenever connected; runs until cancelled.

        A reply that never came while the connection stayed up (a lost message, a busy service)
        is retried after a pause; after a lost connection the next (re)connect wakes the sender.
        """
        while True:
            await self._wake_sender.wait()
            self._wake_sender.clear()
            while self._connected():
                first = await asyncio.to_thread(self.outbox.first)
                if first is None:
                    self._idle.set()
                    break
                if not await self._deliver(first):
                    if not self._connected():
                        break
                    await asyncio.sleep(_THROTTLE_DELAY)

    def _connected(self) -> bool:
        return self.publisher.connected

    async def _deliver(self, update: PendingUpdate) -> bool:
        """Send one update until it is settled; False when the connection failed.

        The first send fixes its `expectedVersion` and writes it back to the outbox, so that a
        resend (after a reconnect or a restart) is the very same request under the same
        `clientToken`; a retry with another version is a new request with a new token.
        """
        version = self._versions.get(update.job_id)
        if update.request.expected_version is None and version is not None:
            request = msgspec.structs.replace(update.request, expected_version=version)
            update = await asyncio.to_thread(self.outbox.replace, update, request)
        for _ in range(_MAX_VERSION_RETRIES):
            verifying = self._verifying.get(update.job_id)
            if verifying is not None:
                await verifying.wait()
            if update.job_id in self._ended:
                await asyncio.to_thread(self.outbox.remove, update)
                return True
            request = update.request
            try:
                kind, payload = await self._request(
                    self.topics.update(update.job_id), request.client_token, encode(request)
                )
            except RequestFailedError as exc:
                _log.info("update not delivered yet", job_id=update.job_id, reason=str(exc))
                return False
            if kind is TopicKind.UPDATE_ACCEPTED:
                self._accepted(update, decode(payload, UpdateAccepted))
                await asyncio.to_thread(self.outbox.remove, update)
                return True
            error = decode(payload, ErrorResponse)
            if not await self._settle_rejection(update, request, error):
                await asyncio.to_thread(self.outbox.remove, update)
                return True
            retry = msgspec.structs.replace(
                request,
                client_token=new_client_token(),
                expected_version=self._versions.get(update.job_id),
            )
            update = await asyncio.to_thread(self.outbox.replace, update, retry)
        _log.error("update given up after repeated version mismatches", job_id=update.job_id)
        await asyncio.to_thread(self.outbox.remove, update)
        return True

    def _accepted(self, update: PendingUpdate, accepted: UpdateAccepted) -> None:
        if update.request.status.is_terminal:
            self._versions.pop(update.job_id, None)  # nothing more is sent for this job
        elif accepted.execution_state is not None:
            self._versions[update.job_id] = accepted.execution_state.version_number
        elif update.job_id in self._versions:
            self._versions[update.job_id] += 1
        _log.debug("update accepted", job_id=update.job_id, status=update.request.status.value)

    async def _settle_rejection(
        self, update: PendingUpdate, request: UpdateRequest, error: ErrorResponse
    ) -> bool:
        """Handle a rejected update; True to retry it, False when it is settled (dropped)."""
        job_id = update.job_id
        code = error.code
        if code is RejectedErrorCode.VERSION_MISMATCH:
            state = error.execution_state
            if state is None:
                execution = await self._describe_quietly(job_id)
                if execution is None:
                    return False
                state_status, version = execution.status, execution.version_number
                details = execution.status_details
            else:
                state_status, version, details = (
                    state.status,
                    state.version_number,
                    state.status_details,
                )
            self._versions[job_id] = version
            if state_status is request.status and details == request.status_details:
                return False  # it was applied; only its reply was lost
            if state_status.is_terminal:
                self._terminal(job_id, state_status, request)
                return False
            return True
        if code in (
            RejectedErrorCode.TERMINAL_STATE_REACHED,
            RejectedErrorCode.INVALID_STATE_TRANSITION,
            RejectedErrorCode.RESOURCE_NOT_FOUND,
        ):
            execution = await self._describe_quietly(job_id)
            status = execution.status if execution is not None else JobStatus.REMOVED
            self._terminal(job_id, status, request)
            return False
        if code in (RejectedErrorCode.REQUEST_THROTTLED, RejectedErrorCode.INTERNAL_ERROR):
            await asyncio.sleep(_THROTTLE_DELAY)
            return True
        _log.error(
            "update rejected; dropping it",
            job_id=job_id,
            code=code.value,
            message=error.message,
            status=request.status.value,
        )
        return False

    def _terminal(self, job_id: str, status: JobStatus, request: UpdateRequest) -> None:
        if status.stops_execution:
            self._ended.add(job_id)
            self.on_job_stopped(job_id, status)
        elif status is not request.status:
            _log.warning(
                "job already ended differently on the service",
                job_id=job_id,
                service_status=status.value,
                our_status=request.status.value,
            )

    async def _describe_quietly(self, job_id: str) -> JobExecution | None:
        try:
            return await self.describe(job_id)
        except (RequestFailedError, RequestRejectedError) as exc:
            _log.warning("could not read the job execution", job_id=job_id, reason=str(exc))
            return None
