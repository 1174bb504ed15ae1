"""A test-side AWS IoT Jobs service (PROTOCOL.md, server side) over a real MQTT broker.

    async with FakeJobsService("127.0.0.1", broker.port, things={"host-1"}) as service:
        service.queue_job("host-1", "job-1", document)
        ...  # start the real agent
        execution = await service.wait_for_status("host-1", "job-1", JobStatus.SUCCEEDED)
        assert service.violations == []

It is the reference the agent is tested against, so it follows the AWS IoT Jobs MQTT API
(anchors §1) and PROTOCOL.md, with these decisions where they leave room:

- **Order and notifications.** A thing's pending executions are its IN_PROGRESS ones, then its
  QUEUED ones, each oldest first; `$next` is the first of them. `notify` is published when an
  execution enters or leaves that list (queued; reached a terminal status), never for
  QUEUED -> IN_PROGRESS, and always carries `jobs` (`{}` when nothing is pending). `notify-next`
  is published only when the identity of `$next` changes; its execution has the job document
  but, as on AWS, no `thingName`.
- **Updates.** The status must be one a device may set (IN_PROGRESS, SUCCEEDED, FAILED,
  REJECTED), else InvalidRequest. A QUEUED execution accepts any of them (AWS lets a device
  update a QUEUED execution directly; startedAt is then set), but the fake records a violation:
  our agent always starts with start-next. Checks run in this order: ResourceNotFound, clientToken
  replay, InvalidRequest, TerminalStateReached (`terminal_update_code` may make it
  InvalidStateTransition, the other answer PROTOCOL.md tells the agent to handle; that one carries
  `executionState`), VersionMismatch (with `executionState`). `statusDetails` replaces the old
  map when present and leaves it alone when absent; update/accepted carries `executionState` /
  `jobDocument` only when the request asks (`includeJobExecutionState`, `includeJobDocument`), as
  on AWS.
- **Idempotency.** An update whose clientToken and content equal an update already applied to
  that execution is answered with the very same accepted payload and changes nothing, even when
  the execution has reached a terminal state since (a retry after a lost reply). The same token
  with other content is served as a new request and recorded as a violation.
  `ignore_client_tokens=True` turns this off, as AWS IoT Jobs really behaves (it does not
  de-duplicate updates by clientToken): a resend is then served as a new request, so one that
  carried `expectedVersion` gets VersionMismatch.
- **clientToken** is optional on AWS but required by PROTOCOL.md; a request without one is
  rejected with InvalidRequest (and is a violation).
- **start-next** on a QUEUED execution starts it (version + 1, startedAt, the request's
  statusDetails when present, the step timer). On an execution already IN_PROGRESS it changes
  nothing, timers included (AWS: "its status details are not changed").
- **Timers** run on the event loop; a job minute lasts `time_scale` seconds (60 by default; 1.0
  makes minutes seconds, and fractional minutes are allowed in `queue_job`). The in-progress
  timer (`in_progress_timeout_minutes`) starts when the execution starts and is never extended.
  The step timer starts with the execution from start-next's `stepTimeoutInMinutes` (else
  `queue_job`'s `step_timeout_minutes`) and is replaced, counted from that moment, by every
  update that carries `stepTimeoutInMinutes`; an update without it leaves the running timer
  alone. Either timer expiring sets TIMED_OUT (version + 1) and publishes notify/notify-next.
- **Clock.** Every `timestamp`, `queuedAt`, `startedAt` and `lastUpdatedAt` comes from the
  service's clock: the local one plus `clock_offset_seconds` (0 by default; 600 plays a service
  ten minutes ahead of the host, whose agent then estimates its skew from these timestamps).
  Timers are not affected.
- **Service actions** (`cancel_job`, `remove_job`) bump the version like CancelJobExecution;
  cancelling an IN_PROGRESS execution needs `force=True`, as on AWS.
- **Violations** (`violations`): a request that is not well-formed; an update for an execution
  that is not IN_PROGRESS (QUEUED, unknown, ended by the agent, or ended by the service after the
  agent already read that status with `{jobId}/get`: an update racing a cancel is not one); two
  IN_PROGRESS executions on one thing; a clientToken reused for other content; any message on
  the topic of a thing not in `things` (when given); undecodable presence messages.

The service reconnects by itself when the broker goes away (broker restart tests), with a
persistent session, and publishes everything in the order the state changed: replies and
notifications go through one outbox that survives reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

import aiomqtt
import msgspec
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from codedeploy_agent.protocol.errors import ProtocolError
from codedeploy_agent.protocol.messages import (
    DescribeAccepted,
    DescribeRequest,
    ErrorResponse,
    GetPendingAccepted,
    GetPendingRequest,
    JobExecution,
    JobExecutionState,
    JobExecutionSummary,
    JobStatus,
    Message,
    NotifyNext,
    Presence,
    RejectedErrorCode,
    StartNextAccepted,
    StartNextRequest,
    UpdateAccepted,
    UpdateRequest,
    decode,
    encode,
)
from codedeploy_agent.protocol.topics import (
    NEXT_JOB,
    JobsTopics,
    ParsedTopic,
    TopicKind,
    parse_any_thing,
    server_filters,
    validate_job_id,
    validate_thing_name,
)

REQUEST_KINDS: Final = frozenset(
    {TopicKind.START_NEXT, TopicKind.GET_PENDING, TopicKind.DESCRIBE, TopicKind.UPDATE}
)
_STATE_CODES: Final = frozenset(
    {RejectedErrorCode.VERSION_MISMATCH, RejectedErrorCode.INVALID_STATE_TRANSITION}
)
#: Pause between reconnection attempts after the broker went away.
RECONNECT_DELAY: Final = 0.05
_NODELAY: Final = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
#: How long one QoS 1 publish may wait for its PUBACK before the connection counts as lost.
PUBLISH_TIMEOUT: Final = 5.0

Payload = Any
Statuses = JobStatus | Iterable[JobStatus]
M = TypeVar("M", bound=Message)


class _Reject(Exception):  # noqa: N818 - a control-flow signal, turned into an ErrorResponse
    def __init__(
        self,
        code: RejectedErrorCode,
        message: str,
        state: JobExecutionState | None = None,
        *,
        injected: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.state = state
        #: Asked for by `reject_next_update`: never the agent's fault.
        self.injected = injected


@dataclass(eq=False)
class _Execution:
    """The service's record of one job execution (mutable; handlers change it in place)."""

    thing: str
    job_id: str
    document: dict[str, Any]
    execution_number: int
    queued_at: int
    last_updated_at: int
    default_step_minutes: float | None
    in_progress_minutes: float | None
    status: JobStatus = JobStatus.QUEUED
    status_details: dict[str, str] = field(default_factory=dict)
    version: int = 1
    started_at: int | None = None
    step_timer: asyncio.TimerHandle | None = None
    in_progress_timer: asyncio.TimerHandle | None = None
    #: clientToken -> (the applied request, its accepted payload), for replays.
    applied: dict[str, tuple[UpdateRequest, bytes]] = field(default_factory=dict)
    updates: list[UpdateRequest] = field(default_factory=list)
    #: The agent read the service's verdict (CANCELED/REMOVED/TIMED_OUT) with `{jobId}/get`.
    verdict_read: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return (self.job_id, self.execution_number)

    def message(self, *, document: bool = True, thing_name: bool = True) -> JobExecution:
        return JobExecution(
            job_id=self.job_id,
            status=self.status,
            queued_at=self.queued_at,
            last_updated_at=self.last_updated_at,
            version_number=self.version,
            execution_number=self.execution_number,
            thing_name=self.thing if thing_name else None,
            job_document=self.document if document else None,
            status_details=dict(self.status_details),
            started_at=self.started_at,
        )

    def summary(self) -> JobExecutionSummary:
        return JobExecutionSummary(
            job_id=self.job_id,
            queued_at=self.queued_at,
            last_updated_at=self.last_updated_at,
            version_number=self.version,
            execution_number=self.execution_number,
            started_at=self.started_at,
        )

    def state(self) -> JobExecutionState:
        return JobExecutionState(
            status=self.status,
            version_number=self.version,
            status_details=dict(self.status_details),
        )

    def stop_timers(self) -> None:
        for timer in (self.step_timer, self.in_progress_timer):
            if timer is not None:
                timer.cancel()
        self.step_timer = self.in_progress_timer = None


def _as_set(statuses: Statuses) -> frozenset[JobStatus]:
    return frozenset({statuses} if isinstance(statuses, JobStatus) else statuses)


class FakeJobsService:
    """AWS IoT Jobs, server side, for every thing under `topic_root` (module docstring).

    Use it as an async context manager on the test's event loop: entering connects (retrying
    until `connect_timeout`) and subscribes before it returns; leaving flushes what is still to
    be published, stops the timers and disconnects, then raises if a handler crashed.
    """

    def __init__(
        self,
        broker_host: str,
        port: int,
        *,
        topic_root: str = "codedeploy/things",
        protocol: Literal[5, "3.1.1"] = 5,
        username: str | None = None,
        password: str | None = None,
        things: Iterable[str] | None = None,
        time_scale: float = 60.0,
        terminal_update_code: RejectedErrorCode = RejectedErrorCode.TERMINAL_STATE_REACHED,
        ignore_client_tokens: bool = False,
        clock_offset_seconds: float = 0.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.broker_host = broker_host
        self.port = port
        self.topic_root = topic_root
        self.protocol = protocol
        self.username = username
        self.password = password
        #: When set, a message on any other thing's topic is a violation.
        self.things = None if things is None else frozenset(map(validate_thing_name, things))
        #: Seconds one job minute lasts (timers only).
        self.time_scale = time_scale
        self.terminal_update_code = terminal_update_code
        #: Serve a resent update as a new request, as AWS does (module docstring, Idempotency).
        self.ignore_client_tokens = ignore_client_tokens
        #: The service's clock minus the local one (module docstring, Clock).
        self.clock_offset_seconds = clock_offset_seconds
        self.connect_timeout = connect_timeout
        #: Every request received and every reply or notification published, in order.
        self.log: list[tuple[str, Payload]] = []
        #: Replies withheld by `drop_next_responses`, in order.
        self.dropped: list[tuple[str, Payload]] = []
        #: What the agent did wrong (module docstring); tests assert it stays empty.
        self.violations: list[str] = []
        #: Crashes of the fake itself (raised when the context manager exits).
        self.errors: list[str] = []
        #: Successful connections to the broker so far (2 after one reconnection).
        self.connections = 0

        self._executions: dict[str, list[_Execution]] = {}
        self._execution_counter = 0
        self._presence: dict[str, list[Presence | None]] = {}
        self._log_lines: dict[tuple[str, str], list[str]] = {}
        self._drops: list[tuple[int, str | None]] = []
        self._rejects: deque[tuple[RejectedErrorCode, str | None]] = deque()
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._outbox_ready = asyncio.Event()
        self._outbox_idle = asyncio.Event()
        self._outbox_idle.set()
        self._changed = asyncio.Event()
        self._connected = asyncio.Event()
        self._client_id = f"fake-jobs-service-{uuid.uuid4().hex[:12]}"
        self._task: asyncio.Task[None] | None = None

    def _now(self) -> int:
        """The service's clock, in whole seconds as on AWS: the local one + the offset."""
        return int(time.time() + self.clock_offset_seconds)

    # --- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError("FakeJobsService is not reentrant")
        self._task = asyncio.create_task(self._run(), name="fake-jobs-service")
        try:
            await self.wait_connected(self.connect_timeout)
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(TimeoutError):
            await self.flush(timeout=2.0)
        await self._stop()
        if self.errors and exc is None:
            raise RuntimeError("FakeJobsService crashed:\n" + "\n".join(self.errors))

    async def _stop(self) -> None:
        for executions in self._executions.values():
            for execution in executions:
                execution.stop_timers()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Return once the service is connected and subscribed (again, after a broker restart)."""
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            raise TimeoutError(
                f"FakeJobsService could not connect to {self.broker_host}:{self.port} within "
                f"{timeout:g} s"
            ) from None

    async def flush(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once everything queued so far has been published (PUBACK received)."""
        async with asyncio.timeout(timeout):
            await self._outbox_idle.wait()

    def _new_client(self) -> aiomqtt.Client:
        # TCP_NODELAY as on the agent: without it Nagle's algorithm and delayed ACKs add ~40 ms
        # to each small reply, and the dispatch benchmark would measure the fake.
        # A persistent session: when only the service's connection drops, the broker keeps
        # the agent's requests for it. Its identifier is unique, so no stale session exists.
        if self.protocol == 5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 3600
            return aiomqtt.Client(
                self.broker_host,
                self.port,
                identifier=self._client_id,
                username=self.username,
                password=self.password,
                protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=False,
                properties=properties,
                keepalive=10,
                socket_options=_NODELAY,
            )
        return aiomqtt.Client(
            self.broker_host,
            self.port,
            identifier=self._client_id,
            username=self.username,
            password=self.password,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=False,
            keepalive=10,
            socket_options=_NODELAY,
        )

    async def _run(self) -> None:
        while True:
            try:
                async with self._new_client() as client:
                    await client.subscribe([(f, 1) for f in server_filters(self.topic_root)])
                    self.connections += 1
                    self._connected.set()
                    self._notify_change()
                    await self._serve(client)
            except aiomqtt.MqttError:
                pass  # the broker went away: connect again
            except Exception:  # noqa: BLE001 - recorded, raised when the service exits
                self.errors.append(traceback.format_exc())
            finally:
                self._connected.clear()
                self._notify_change()
            await asyncio.sleep(RECONNECT_DELAY)

    async def _serve(self, client: aiomqtt.Client) -> None:
        reader = asyncio.create_task(self._read(client))
        writer = asyncio.create_task(self._write(client))
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
        for task in done:
            task.result()  # re-raises MqttError: reconnect

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                self._on_message(message.topic.value, bytes(message.payload))
            except Exception:  # noqa: BLE001 - a bug in the fake must fail the test, not hang it
                self.errors.append(traceback.format_exc())
            self._notify_change()

    async def _write(self, client: aiomqtt.Client) -> None:
        while True:
            while not self._outbox:
                self._outbox_idle.set()
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            topic, payload = self._outbox[0]
            await client.publish(topic, payload, qos=1, timeout=PUBLISH_TIMEOUT)
            self._outbox.popleft()

    # --- outgoing -------------------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes) -> None:
        self.log.append((topic, msgspec.json.decode(payload)))
        self._outbox.append((topic, payload))
        self._outbox_idle.clear()
        self._outbox_ready.set()

    def _reply(self, topic: str, payload: bytes) -> bool:
        """Publish a reply to a request, unless `drop_next_responses` withholds it (False)."""
        for index, (count, suffix) in enumerate(self._drops):
            if suffix is None or topic.endswith(suffix):
                if count > 1:
                    self._drops[index] = (count - 1, suffix)
                else:
                    del self._drops[index]
                self.dropped.append((topic, msgspec.json.decode(payload)))
                return False
        self._publish(topic, payload)
        return True

    def _reject(self, topic: str, token: str | None, error: _Reject) -> None:
        response = ErrorResponse(
            code=error.code,
            message=error.message,
            timestamp=self._now(),
            client_token=token,
            execution_state=error.state if error.code in _STATE_CODES else None,
        )
        self._reply(f"{topic}/rejected", encode(response))

    def _notify_change(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --- incoming -------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        self.log.append((topic, _loggable(payload)))
        try:
            parsed = parse_any_thing(self.topic_root, topic)
        except ProtocolError as err:
            self.violations.append(f"message on an invalid topic: {err}")
            if "/jobs/" in topic:
                self._reject(topic, None, _Reject(RejectedErrorCode.INVALID_TOPIC, str(err)))
            return
        thing = parsed.thing_name
        if self.things is not None and thing not in self.things:
            self.violations.append(f"message on another thing's topic: {topic}")
        match parsed.kind:
            case TopicKind.PRESENCE:
                self._on_presence(thing, payload)
            case TopicKind.LOGS:
                assert parsed.deployment_id is not None
                lines = payload.decode("utf-8", errors="replace").splitlines()
                self._log_lines.setdefault((thing, parsed.deployment_id), []).extend(lines)
            case kind if kind in REQUEST_KINDS:
                self._on_request(parsed, topic, payload)
            case _:
                self.violations.append(f"the agent published on a service topic: {topic}")

    def _on_presence(self, thing: str, payload: bytes) -> None:
        history = self._presence.setdefault(thing, [])
        if not payload:  # a cleared retained message
            history.append(None)
            return
        try:
            history.append(decode(payload, Presence))
        except ProtocolError as err:
            self.violations.append(f"{thing}: undecodable presence message: {err}")

    def _on_request(self, parsed: ParsedTopic, topic: str, payload: bytes) -> None:
        token: str | None = None
        try:
            try:
                raw = msgspec.json.decode(payload)
            except msgspec.DecodeError as err:
                raise _Reject(
                    RejectedErrorCode.INVALID_JSON, f"The request is not UTF-8 JSON: {err}"
                ) from None
            if isinstance(raw, dict) and isinstance(raw.get("clientToken"), str):
                token = raw["clientToken"]
            thing = parsed.thing_name
            match parsed.kind:
                case TopicKind.START_NEXT:
                    self._start_next(thing, topic, raw, _decode(payload, StartNextRequest))
                case TopicKind.GET_PENDING:
                    self._get_pending(thing, topic, _decode(payload, GetPendingRequest))
                case TopicKind.DESCRIBE:
                    assert parsed.job_id is not None
                    request = _decode(payload, DescribeRequest)
                    self._describe(thing, parsed.job_id, topic, request)
                case TopicKind.UPDATE:
                    assert parsed.job_id is not None
                    self._update(thing, parsed.job_id, topic, raw, payload)
        except _Reject as error:
            malformed = (RejectedErrorCode.INVALID_JSON, RejectedErrorCode.INVALID_REQUEST)
            if error.code in malformed and not error.injected:
                self.violations.append(f"{topic}: {error.code}: {error.message}")
            self._reject(topic, token, error)
        except Exception:  # noqa: BLE001 - recorded, raised when the service exits
            self.errors.append(traceback.format_exc())
            self._reject(
                topic, token, _Reject(RejectedErrorCode.INTERNAL_ERROR, "the fake service crashed")
            )

    # --- request handlers -----------------------------------------------------------------

    def _start_next(
        self, thing: str, topic: str, raw: dict[str, Any], request: StartNextRequest
    ) -> None:
        execution = self._next(thing)
        now = self._now()
        if execution is not None and execution.status is JobStatus.QUEUED:
            before = self._snapshot(thing)
            if "statusDetails" in raw:
                execution.status_details = dict(request.status_details)
            self._start(execution, now, request.step_timeout_in_minutes)
            self._publish_changes(thing, before)
        accepted = StartNextAccepted(
            client_token=request.client_token,
            timestamp=now,
            execution=None if execution is None else execution.message(),
        )
        self._reply(f"{topic}/accepted", encode(accepted))

    def _get_pending(self, thing: str, topic: str, request: GetPendingRequest) -> None:
        pending = self._pending(thing)
        accepted = GetPendingAccepted(
            client_token=request.client_token,
            timestamp=self._now(),
            in_progress_jobs=[e.summary() for e in pending if e.status is JobStatus.IN_PROGRESS],
            queued_jobs=[e.summary() for e in pending if e.status is JobStatus.QUEUED],
        )
        self._reply(f"{topic}/accepted", encode(accepted))

    def _describe(self, thing: str, job_id: str, topic: str, request: DescribeRequest) -> None:
        if job_id == NEXT_JOB:
            execution = self._next(thing)
            if execution is None:
                raise _Reject(
                    RejectedErrorCode.RESOURCE_NOT_FOUND,
                    f"Thing {thing} has no pending job execution",
                )
        else:
            execution = self._find(thing, job_id, request.execution_number)
        include = request.include_job_document is not False
        accepted = DescribeAccepted(
            client_token=request.client_token,
            timestamp=self._now(),
            execution=execution.message(document=include),
        )
        if self._reply(f"{topic}/accepted", encode(accepted)) and execution.status.stops_execution:
            execution.verdict_read = True

    def _update(self, thing: str, job_id: str, topic: str, raw: object, payload: bytes) -> None:
        request = _decode(payload, UpdateRequest)
        assert isinstance(raw, dict)
        execution = self._find_for_update(thing, job_id, request)
        replay = None if self.ignore_client_tokens else execution.applied.get(request.client_token)
        if replay is not None:
            if replay[0] == request:
                self._reply(f"{topic}/accepted", replay[1])
                return
            self.violations.append(
                f"{thing}/{job_id}: clientToken {request.client_token!r} reused for a different "
                "update"
            )
        if self._rejects:
            code, message = self._rejects.popleft()
            raise _Reject(
                code, message or f"Injected {code} for the test", execution.state(), injected=True
            )
        if not request.status.is_set_by_agent:
            raise _Reject(
                RejectedErrorCode.INVALID_REQUEST,
                f"status {request.status} cannot be set by a device; use IN_PROGRESS, "
                "SUCCEEDED, FAILED or REJECTED",
            )
        self._check_update_allowed(execution, request)
        if request.expected_version is not None and request.expected_version != execution.version:
            raise _Reject(
                RejectedErrorCode.VERSION_MISMATCH,
                f"expectedVersion {request.expected_version} does not match the current "
                f"version {execution.version} of job execution {job_id}",
                execution.state(),
            )
        self._apply_update(execution, request, "statusDetails" in raw, topic)

    def _find_for_update(self, thing: str, job_id: str, request: UpdateRequest) -> _Execution:
        try:
            return self._find(thing, job_id, request.execution_number)
        except _Reject:
            self.violations.append(f"{thing}/{job_id}: update for a job this thing does not have")
            if self._rejects:
                code, message = self._rejects.popleft()
                raise _Reject(
                    code, message or f"Injected {code} for the test", injected=True
                ) from None
            raise

    def _check_update_allowed(self, execution: _Execution, request: UpdateRequest) -> None:
        where = f"{execution.thing}/{execution.job_id}"
        if execution.status is JobStatus.QUEUED:
            self.violations.append(
                f"{where}: update to {request.status} for a QUEUED execution (start it with "
                "start-next first)"
            )
        elif execution.status.is_terminal:
            # An update racing the service's verdict is fine; after reading it, it is not.
            if not execution.status.stops_execution or execution.verdict_read:
                self.violations.append(
                    f"{where}: update to {request.status} after the execution ended "
                    f"({execution.status})"
                )
            raise _Reject(
                self.terminal_update_code,
                f"Job execution {execution.job_id} of thing {execution.thing} is in the "
                f"terminal state {execution.status}",
                execution.state(),
            )

    def _apply_update(
        self, execution: _Execution, request: UpdateRequest, has_details: bool, topic: str
    ) -> None:
        thing = execution.thing
        before = self._snapshot(thing)
        now = self._now()
        if execution.status is JobStatus.QUEUED:
            # Started by the update itself: startedAt and the job's timers, like start-next.
            self._start(execution, now, request.step_timeout_in_minutes, bump=False)
        elif request.step_timeout_in_minutes is not None:
            self._arm_step_timer(execution, request.step_timeout_in_minutes)
        execution.status = request.status
        if has_details:
            execution.status_details = dict(request.status_details)
        execution.version += 1
        execution.last_updated_at = now
        if execution.status.is_terminal:
            execution.stop_timers()
        execution.updates.append(request)
        accepted = encode(
            UpdateAccepted(
                client_token=request.client_token,
                timestamp=now,
                execution_state=execution.state() if request.include_job_execution_state else None,
                job_document=execution.document if request.include_job_document else None,
            )
        )
        execution.applied[request.client_token] = (request, accepted)
        self._reply(f"{topic}/accepted", accepted)
        self._publish_changes(thing, before)

    # --- state ----------------------------------------------------------------------------

    def _find(self, thing: str, job_id: str, execution_number: int | None) -> _Execution:
        for execution in reversed(self._executions.get(thing, [])):
            if execution.job_id == job_id and execution_number in (
                None,
                execution.execution_number,
            ):
                return execution
        number = "" if execution_number is None else f" (execution {execution_number})"
        raise _Reject(
            RejectedErrorCode.RESOURCE_NOT_FOUND,
            f"Job execution {job_id}{number} was not found for thing {thing}",
        )

    def _pending(self, thing: str) -> list[_Execution]:
        executions = self._executions.get(thing, [])
        return [e for e in executions if e.status is JobStatus.IN_PROGRESS] + [
            e for e in executions if e.status is JobStatus.QUEUED
        ]

    def _next(self, thing: str) -> _Execution | None:
        pending = self._pending(thing)
        return pending[0] if pending else None

    def _snapshot(self, thing: str) -> tuple[frozenset[tuple[str, int]], _Execution | None]:
        return frozenset(e.key for e in self._pending(thing)), self._next(thing)

    def _publish_changes(
        self, thing: str, before: tuple[frozenset[tuple[str, int]], _Execution | None]
    ) -> None:
        """notify when the pending list gained or lost an execution; notify-next when `$next`
        is another execution than before."""
        pending_before, next_before = before
        pending = self._pending(thing)
        topics = JobsTopics(self.topic_root, thing)
        now = self._now()
        if frozenset(e.key for e in pending) != pending_before:
            jobs: dict[str, list[Any]] = {}
            for status in (JobStatus.IN_PROGRESS, JobStatus.QUEUED):
                summaries = [
                    msgspec.to_builtins(e.summary()) for e in pending if e.status is status
                ]
                if summaries:
                    jobs[status.value] = summaries
            # Built by hand: the Notify struct would leave out an empty `jobs`.
            self._publish(topics.notify, msgspec.json.encode({"timestamp": now, "jobs": jobs}))
        next_now = pending[0] if pending else None
        if next_now is not next_before:
            message = NotifyNext(
                timestamp=now,
                execution=None if next_now is None else next_now.message(thing_name=False),
            )
            self._publish(topics.notify_next, encode(message))

    def _start(
        self, execution: _Execution, now: int, step_minutes: float | None, *, bump: bool = True
    ) -> None:
        if self._in_progress(execution.thing):
            self.violations.append(
                f"{execution.thing}: {execution.job_id} started while "
                f"{', '.join(e.job_id for e in self._in_progress(execution.thing))} is IN_PROGRESS"
            )
        execution.status = JobStatus.IN_PROGRESS
        execution.started_at = now
        if bump:
            execution.version += 1
            execution.last_updated_at = now
        step = step_minutes if step_minutes is not None else execution.default_step_minutes
        if step is not None:
            self._arm_step_timer(execution, step)
        if execution.in_progress_minutes is not None:
            execution.in_progress_timer = asyncio.get_running_loop().call_later(
                execution.in_progress_minutes * self.time_scale, self._time_out, execution
            )

    def _in_progress(self, thing: str) -> list[_Execution]:
        return [e for e in self._executions.get(thing, []) if e.status is JobStatus.IN_PROGRESS]

    def _arm_step_timer(self, execution: _Execution, minutes: float) -> None:
        if execution.step_timer is not None:
            execution.step_timer.cancel()
        execution.step_timer = asyncio.get_running_loop().call_later(
            minutes * self.time_scale, self._time_out, execution
        )

    def _time_out(self, execution: _Execution) -> None:
        if execution.status is not JobStatus.IN_PROGRESS:
            return
        self._end(execution, JobStatus.TIMED_OUT, None)

    def _end(
        self, execution: _Execution, status: JobStatus, details: Mapping[str, str] | None
    ) -> None:
        """The service's verdict: a terminal status, version + 1, notifications."""
        before = self._snapshot(execution.thing)
        execution.status = status
        if details is not None:
            execution.status_details = dict(details)
        execution.version += 1
        execution.last_updated_at = self._now()
        execution.stop_timers()
        self._publish_changes(execution.thing, before)
        self._notify_change()

    # --- test-side actions ----------------------------------------------------------------

    def queue_job(
        self,
        thing: str,
        job_id: str,
        document: dict[str, Any],
        *,
        step_timeout_minutes: float | None = None,
        in_progress_timeout_minutes: float | None = None,
    ) -> None:
        """Add a QUEUED execution (version 1) and publish notify (and notify-next if `$next`
        changed). A job id may be queued again once its last execution has ended (a retry:
        a new execution number). Publishing happens in the background; `await flush()`."""
        validate_thing_name(thing)
        validate_job_id(job_id)
        executions = self._executions.setdefault(thing, [])
        if any(e.job_id == job_id and not e.status.is_terminal for e in executions):
            raise ValueError(f"{thing} already has a pending execution of {job_id}")
        before = self._snapshot(thing)
        self._execution_counter += 1
        now = self._now()
        executions.append(
            _Execution(
                thing=thing,
                job_id=job_id,
                document=document,
                execution_number=self._execution_counter,
                queued_at=now,
                last_updated_at=now,
                default_step_minutes=step_timeout_minutes,
                in_progress_minutes=in_progress_timeout_minutes,
            )
        )
        self._publish_changes(thing, before)
        self._notify_change()

    def cancel_job(
        self,
        thing: str,
        job_id: str,
        *,
        force: bool = True,
        status_details: Mapping[str, str] | None = None,
    ) -> None:
        """CancelJobExecution: CANCELED (an IN_PROGRESS one only with `force`), notifications."""
        execution = self._latest(thing, job_id)
        if execution.status.is_terminal:
            raise ValueError(f"{thing}/{job_id} already ended ({execution.status})")
        if execution.status is JobStatus.IN_PROGRESS and not force:
            raise ValueError(
                f"InvalidStateTransition: {thing}/{job_id} is IN_PROGRESS; cancel it with force"
            )
        self._end(execution, JobStatus.CANCELED, status_details)

    def remove_job(self, thing: str, job_id: str) -> None:
        """The thing left the job's targets: REMOVED, notifications."""
        execution = self._latest(thing, job_id)
        if execution.status.is_terminal:
            raise ValueError(f"{thing}/{job_id} already ended ({execution.status})")
        self._end(execution, JobStatus.REMOVED, None)

    def drop_next_responses(self, n: int, *, topic_suffix: str | None = None) -> None:
        """Withhold the next `n` replies (only those whose topic ends with `topic_suffix`, e.g.
        "update/accepted", when given); the requests themselves are still applied."""
        if n > 0:
            self._drops.append((n, topic_suffix))

    def reject_next_update(self, code: RejectedErrorCode, *, message: str | None = None) -> None:
        """Answer the next update (not a replay) with `code` without applying it; VersionMismatch
        and InvalidStateTransition carry the execution's state. Calls queue up."""
        self._rejects.append((code, message))

    # --- observation ----------------------------------------------------------------------

    def _latest(self, thing: str, job_id: str) -> _Execution:
        try:
            return self._find(thing, job_id, None)
        except _Reject as err:
            raise KeyError(err.message) from None

    def execution(self, thing: str, job_id: str) -> JobExecution:
        """The current state of the latest execution of `job_id` on `thing` (KeyError)."""
        return self._latest(thing, job_id).message()

    def executions(self, thing: str) -> list[JobExecution]:
        """Every execution of `thing`, in the order they were queued."""
        return [e.message() for e in self._executions.get(thing, [])]

    def updates(
        self, thing: str, job_id: str, *, execution_number: int | None = None
    ) -> list[UpdateRequest]:
        """The updates applied to `job_id` on `thing` (all its executions, or one), in order."""
        return [
            update
            for e in self._executions.get(thing, [])
            if e.job_id == job_id and execution_number in (None, e.execution_number)
            for update in e.updates
        ]

    def requests(
        self, thing: str | None = None, kind: TopicKind | None = None
    ) -> list[tuple[str, Payload]]:
        """The requests received (optionally of one thing and one kind), in order."""
        result = []
        for topic, payload in self.log:
            with contextlib.suppress(ProtocolError):
                parsed = parse_any_thing(self.topic_root, topic)
                if (
                    parsed.kind in REQUEST_KINDS
                    and thing in (None, parsed.thing_name)
                    and kind in (None, parsed.kind)
                ):
                    result.append((topic, payload))
        return result

    def presence(self, thing: str) -> Presence | None:
        """The last presence message of `thing` (None if none, or the retained one was cleared)."""
        history = self._presence.get(thing)
        return history[-1] if history else None

    def presence_history(self, thing: str) -> list[Presence | None]:
        """Every presence message of `thing` seen, in order."""
        return list(self._presence.get(thing, []))

    def log_lines(self, thing: str, deployment_id: str) -> list[str]:
        """The lines received on `{topic_root}/{thing}/logs/{deployment_id}`, in order."""
        return list(self._log_lines.get((thing, deployment_id), []))

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 10.0,  # noqa: ASYNC109 - a deadline in seconds reads best in tests
    ) -> None:
        """Return once `predicate()` is true (checked after every change); TimeoutError says
        what the service saw."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"condition not met within {timeout:g} s; {self._describe_state()}"
            ) from None

    async def wait_for_status(
        self,
        thing: str,
        job_id: str,
        statuses: Statuses,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> JobExecution:
        """Wait until the latest execution of `job_id` on `thing` has one of `statuses`."""
        wanted = _as_set(statuses)

        def reached() -> bool:
            with contextlib.suppress(KeyError):
                return self._latest(thing, job_id).status in wanted
            return False

        await self.wait_for(reached, timeout)
        return self.execution(thing, job_id)

    def _describe_state(self) -> str:
        states = [
            f"{e.thing}/{e.job_id}#{e.execution_number}={e.status}(v{e.version})"
            for executions in self._executions.values()
            for e in executions
        ]
        tail = "\n  ".join(f"{topic} {payload}" for topic, payload in self.log[-10:])
        return (
            f"executions: {', '.join(states) or 'none'}; violations: {self.violations}; "
            f"last messages:\n  {tail}"
        )


def _decode(payload: bytes, type_: type[M]) -> M:
    try:
        return decode(payload, type_)
    except ProtocolError as err:
        raise _Reject(RejectedErrorCode.INVALID_REQUEST, str(err)) from None


def _loggable(payload: bytes) -> Payload:
    """The decoded JSON of a message, else its text (presence, logs, garbage)."""
    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return payload.decode("utf-8", errors="replace")


__all__ = ["REQUEST_KINDS", "FakeJobsService"]
