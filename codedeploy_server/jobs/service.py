"""The Jobs service: the server side of PROTOCOL.md (AWS IoT Jobs over MQTT), kept in the store.

    jobs = JobsService(store, mqtt, topic_root="$aws/things", events_root="codedeploy/things")
    jobs.add_listener(on_change)            # every accepted agent update, every verdict
    await jobs.start()                      # subscribe, re-arm timers from the store
    await jobs.queue_job("host-1", "d-ABCDEFGHI", signed_document, step_timeout_minutes=60)
    await jobs.cancel_job("host-1", "d-ABCDEFGHI")
    await jobs.stop()

The rules are those of `rules.py` (the reference fake's decisions); this module is the shell:
locks, transactions, timers, MQTT and listeners.

- **One thing at a time.** Everything that touches a thing's executions (its requests, in
  arrival order; `queue_job`, `cancel_job`, timer expiries) runs under that thing's lock, in one
  transaction that reads the thing's pending executions and the execution it changes
  `FOR UPDATE` (always in execution-number order: no deadlock), so two servers sharing a
  database never interleave on one execution (each agent request reaches one server through
  shared subscriptions, but a cancel on one server may race an update on the other).
  `queue_job` also takes the thing's advisory lock (PostgreSQL): two servers queueing for one
  thing must not pick the same execution number. Different things proceed concurrently.
- **After commit, in order.** Replies and notifications are handed to the MQTT outbox after
  the transaction committed, still under the thing's lock: they leave in the order the state
  changed. Listeners get an `ExecutionChange` after every accepted agent update (start-next
  included: the agent picked the job up) and every service-side change (cancel, removal,
  step or in-progress time-out), per thing in order, outside the lock (a listener may call
  back into the service).
- **Timers** are `step_deadline` in the store (the earlier of the step and in-progress timers):
  armed locally after each change, re-armed from the store at start and by a periodic sweep
  (which also picks up executions started by another server that has gone away). An expiry
  re-reads the row: a deadline extended meanwhile (maybe by another server) is re-armed.
- **Idempotency.** An update whose clientToken and content equal an applied one is answered
  with the very same accepted payload and changes nothing, even after the execution ended.
  `queue_job` of a job id that is already pending on the thing changes nothing (a rollout
  engine resuming after a crash may queue again); `cancel_job` of an ended execution neither.
- **Presence** (`{events_root}/+/presence`, retained; the events root defaults to the topic
  root, or to `codedeploy/things` when that begins with `$`: topics.py, "Topics under AWS IoT
  Core") is kept in the `presence` table; a cleared retained message deletes the row.
  **Log lines** (under the events root too) go to `add_log_listener` listeners and a bounded
  buffer (`recent_log_lines`).

What an agent does wrong (an update for a QUEUED or unknown execution, a reused clientToken, a
malformed request) is answered as AWS would and logged as a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import msgspec
import structlog

from codedeploy_agent.protocol.errors import ProtocolError
from codedeploy_agent.protocol.messages import (
    DescribeAccepted,
    DescribeRequest,
    GetPendingAccepted,
    GetPendingRequest,
    JobExecution,
    JobStatus,
    Message,
    Presence,
    RejectedErrorCode,
    StartNextAccepted,
    StartNextRequest,
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
    resolve_events_root,
    server_filters,
    validate_job_id,
    validate_thing_name,
    validate_topic_root,
)
from codedeploy_server.errors import ServerError
from codedeploy_server.jobs import rules, state
from codedeploy_server.jobs.logs import LogLines, LogListener
from codedeploy_server.jobs.rules import Messages, Rejection
from codedeploy_server.jobs.serial import KeyedLocks, SerialQueues
from codedeploy_server.jobs.state import ExecutionRecord, PresenceInfo
from codedeploy_server.mqtt import ServerMqtt
from codedeploy_server.store import Store

log = structlog.get_logger("codedeploy_server.jobs")

#: Seconds in a job minute (step and in-progress timeouts are given in minutes).
MINUTE: Final = 60.0
#: How often the store is swept for timers this server has not armed.
SWEEP_SECONDS: Final = 30.0
#: How long `stop()` lets queued work, listeners and the outbox finish.
STOP_GRACE: Final = 5.0
_REQUESTS: Final = frozenset(
    {TopicKind.START_NEXT, TopicKind.GET_PENDING, TopicKind.DESCRIBE, TopicKind.UPDATE}
)
_SERVICE_VERDICTS: Final = frozenset({JobStatus.CANCELED, JobStatus.REMOVED, JobStatus.TIMED_OUT})

M = TypeVar("M", bound=Message)
T = TypeVar("T")


class JobsError(ServerError):
    """Raised by `queue_job` when the thing name or the job id cannot be used on the wire."""


@dataclass(frozen=True, slots=True)
class ExecutionChange:
    """A job execution changed status or details (after the change was committed)."""

    thing: str
    job_id: str
    status: JobStatus
    #: As the agent sent them (or the service set them).
    status_details: dict[str, str]
    version_number: int
    #: Epoch seconds.
    changed_at: float
    #: False for service-side changes (cancel, timeout, removal).
    by_agent: bool


Listener = Callable[[ExecutionChange], Awaitable[None]]


@dataclass(slots=True)
class _Outcome:
    """What a committed change publishes and reports."""

    messages: Messages = field(default_factory=list)
    #: Executions whose timers follow the stored deadline.
    touched: list[ExecutionRecord] = field(default_factory=list)
    #: Executions reported to the listeners.
    report: list[ExecutionRecord] = field(default_factory=list)
    by_agent: bool = True


class JobsService:
    """AWS IoT Jobs, server side, for every thing under `topic_root` (module docstring); presence
    and logs under `events_root` (None: its default for `topic_root`)."""

    def __init__(
        self,
        store: Store,
        mqtt: ServerMqtt,
        *,
        topic_root: str,
        events_root: str | None = None,
        clock: Callable[[], float] = time.time,
        time_scale: float = MINUTE,
        sweep_seconds: float = SWEEP_SECONDS,
    ) -> None:
        self._store = store
        self._mqtt = mqtt
        self.topic_root = validate_topic_root(topic_root)
        self.events_root = resolve_events_root(self.topic_root, events_root)
        self._clock = clock
        #: Seconds one job minute lasts (timers only; tests shorten it).
        self.time_scale = time_scale
        self._sweep_seconds = sweep_seconds
        self._listeners: list[Listener] = []
        self._logs = LogLines()
        self._work = SerialQueues("jobs")
        self._deliveries = SerialQueues("jobs-listeners")
        self._locks = KeyedLocks()
        self._timers: dict[tuple[str, str], tuple[float, asyncio.TimerHandle]] = {}
        self._presence_seen: dict[str, bytes] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        #: Agent requests answered by this server (accepted or rejected), for metrics and tests.
        self.requests_served = 0

    @property
    def mqtt(self) -> ServerMqtt:
        """The MQTT session the service runs on."""
        return self._mqtt

    # --- lifetime -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Re-arm the timers from the store, then connect and subscribe in the background
        (`mqtt.wait_connected()` tells when requests are being served). ServerConfigError
        when the MQTT TLS files are unusable; StoreError when the store is."""
        if self._running:
            raise RuntimeError("JobsService is already running")
        await self._mqtt.prepare()  # unusable TLS files fail here, not in the background
        await self._sweep()
        self._running = True
        filters = server_filters(self.topic_root, events_root=self.events_root)
        # Presence and logs are for every server (retained presence is never sent to shared
        # subscriptions, and `logs --follow` may be served by any server); requests for one.
        broadcast = [f for f in filters if f.endswith(("/presence", "/logs/+"))]
        requests = [f for f in filters if f not in broadcast]
        self._tasks = [
            asyncio.create_task(
                self._mqtt.run(requests, self._on_message, broadcast=broadcast), name="jobs-mqtt"
            ),
            asyncio.create_task(self._sweep_forever(), name="jobs-sweep"),
        ]
        self._tasks[0].add_done_callback(_log_crash)

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop the timers; stop receiving (the broker keeps later requests for the persistent
        session); handle every request already received and deliver its changes (within
        `grace` seconds each); publish the replies left; disconnect."""
        if not self._running:
            return
        self._running = False
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        mqtt_task, sweep_task = self._tasks
        sweep_task.cancel()
        # Intake stops first: a request acknowledged by the broker must not be dropped.
        await self._mqtt.close(grace)
        await self._work.join(grace)
        await self._deliveries.join(grace)
        await self._mqtt.flush_outbox(grace)
        mqtt_task.cancel()
        await asyncio.gather(mqtt_task, sweep_task, return_exceptions=True)
        self._tasks = []

    # --- listeners ----------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call `await listener(change)` after every committed change (module docstring)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling `listener`."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def add_log_listener(self, listener: LogListener) -> None:
        """Call `listener(thing, deployment_id, lines)` for every live log message."""
        self._logs.add_listener(listener)

    def remove_log_listener(self, listener: LogListener) -> None:
        """Stop calling a log listener."""
        self._logs.remove_listener(listener)

    def recent_log_lines(self, thing: str, deployment_id: str) -> list[str]:
        """The last live log lines (up to 200) of a deployment on a thing, oldest first."""
        return self._logs.recent(thing, deployment_id)

    # --- service actions ----------------------------------------------------------------------

    async def queue_job(
        self,
        thing: str,
        job_id: str,
        document: dict[str, Any],
        *,
        step_timeout_minutes: float | None = None,
        in_progress_timeout_minutes: float | None = None,
    ) -> bool:
        """Add a QUEUED execution (version 1) and publish notify (and notify-next if `$next`
        changed). False (and nothing changes) when the job is already pending on the thing;
        a job id whose execution ended is queued again as a new execution number."""
        try:
            validate_thing_name(thing)
            validate_job_id(job_id)
        except ProtocolError as exc:
            raise JobsError(str(exc)) from None
        async with self._thing(thing):
            now = self._clock()
            async with self._store.transaction() as tx:
                await state.lock_thing(tx, thing)
                records = await state.load_for_change(tx, thing, job_id)
                existing = next((r for r in records if r.job_id == job_id), None)
                if existing is not None and not existing.status.is_terminal:
                    return False
                before = rules.snapshot(records)
                record = ExecutionRecord(
                    thing=thing,
                    job_id=job_id,
                    execution_number=await state.next_execution_number(tx, thing),
                    document=document,
                    queued_at=now,
                    last_updated_at=now,
                    default_step_minutes=step_timeout_minutes,
                    in_progress_minutes=in_progress_timeout_minutes,
                )
                if existing is not None:
                    record.history = [*existing.history, existing.retire()][-state.MAX_HISTORY :]
                    records.remove(existing)
                await state.insert(tx, record)
            records.append(record)
            self._after(
                _Outcome(messages=rules.notifications(self._topics(thing), before, records, now))
            )
        return True

    async def cancel_job(
        self,
        thing: str,
        job_id: str,
        *,
        status: JobStatus = JobStatus.CANCELED,
        status_details: Mapping[str, str] | None = None,
    ) -> bool:
        """End a QUEUED or IN_PROGRESS execution with the service's verdict (CANCELED,
        REMOVED or TIMED_OUT): version + 1, notifications, listeners. The agent stops the
        running hook. False when there is no such execution or it has already ended."""
        if status not in _SERVICE_VERDICTS:
            raise ValueError(f"cancel_job sets CANCELED, REMOVED or TIMED_OUT, not {status}")
        return await self._end(thing, job_id, status, status_details, due=None)

    # --- reads --------------------------------------------------------------------------------

    async def execution(self, thing: str, job_id: str) -> JobExecution | None:
        """The latest execution of `job_id` on `thing`, with its document."""
        async with self._store.transaction() as tx:
            record = await state.load_execution(tx, thing, job_id)
        return None if record is None else record.message()

    async def executions(self, thing: str) -> list[JobExecution]:
        """The latest execution of every job of `thing`, in the order they were queued."""
        async with self._store.transaction() as tx:
            records = await state.load_executions(tx, thing)
        return [record.message() for record in records]

    async def presence(self, thing: str) -> PresenceInfo | None:
        """The thing's last presence message (None: never seen, or its retained one cleared)."""
        async with self._store.transaction() as tx:
            return await state.load_presence(tx, thing)

    # --- incoming messages --------------------------------------------------------------------

    async def _on_message(self, topic: str, payload: bytes) -> None:
        """ServerMqtt's handler: logs at once, the rest in the thing's queue (in order)."""
        try:
            parsed = parse_any_thing(self.topic_root, topic, events_root=self.events_root)
        except ProtocolError as exc:
            log.warning("message on an invalid topic", topic=topic, reason=str(exc))
            if "/jobs/" in topic:
                error = Rejection(RejectedErrorCode.INVALID_TOPIC, str(exc))
                self._mqtt.enqueue(f"{topic}/rejected", error.payload(None, self._clock()))
            return
        thing = parsed.thing_name
        if parsed.kind is TopicKind.LOGS:
            assert parsed.deployment_id is not None  # noqa: S101 - the parser sets it for LOGS
            self._logs.received(thing, parsed.deployment_id, payload)
        elif parsed.kind is TopicKind.PRESENCE:
            self._work.put(thing, lambda: self._on_presence(thing, payload))
        elif parsed.kind in _REQUESTS:
            self._work.put(thing, lambda: self._on_request(parsed, topic, payload))
        else:
            log.warning("a client published on a service topic", topic=topic)

    async def _on_presence(self, thing: str, payload: bytes) -> None:
        if self._presence_seen.get(thing) == payload:
            return  # a heartbeat repeating the same state (or a retained copy on resubscribe)
        info: PresenceInfo | None = None
        if payload:
            try:
                info = state.presence_info(thing, decode(payload, Presence), self._clock())
            except ProtocolError as exc:
                log.warning("undecodable presence message", thing=thing, reason=str(exc))
                return
        async with self._store.transaction() as tx:
            if info is None:
                await state.delete_presence(tx, thing)
            elif await state.presence_payload(tx, thing) != payload:
                # Unchanged (a retained copy after a restart, or written by another server of
                # the group): the row keeps the time it changed.
                await state.save_presence(tx, info, payload)
        self._presence_seen[thing] = payload

    async def _on_request(self, parsed: ParsedTopic, topic: str, payload: bytes) -> None:
        thing = parsed.thing_name
        token: str | None = None
        async with self._thing(thing):
            try:
                try:
                    raw = msgspec.json.decode(payload)
                except msgspec.DecodeError as exc:
                    raise Rejection(
                        RejectedErrorCode.INVALID_JSON, f"The request is not UTF-8 JSON: {exc}"
                    ) from None
                if isinstance(raw, dict) and isinstance(raw.get("clientToken"), str):
                    token = raw["clientToken"]
                outcome = await self._dispatch(parsed, topic, raw, payload)
            except Rejection as rejection:
                if rejection.code in (
                    RejectedErrorCode.INVALID_JSON,
                    RejectedErrorCode.INVALID_REQUEST,
                ):
                    log.warning("malformed request", topic=topic, reason=rejection.message)
                outcome = _Outcome([(f"{topic}/rejected", rejection.payload(token, self._clock()))])
            except Exception:
                log.exception("jobs request failed", topic=topic)
                error = Rejection(
                    RejectedErrorCode.INTERNAL_ERROR, "The Jobs service failed; retry"
                )
                outcome = _Outcome([(f"{topic}/rejected", error.payload(token, self._clock()))])
            self.requests_served += 1
            self._after(outcome)

    async def _dispatch(
        self, parsed: ParsedTopic, topic: str, raw: Any, payload: bytes
    ) -> _Outcome:
        thing = parsed.thing_name
        match parsed.kind:
            case TopicKind.START_NEXT:
                request = _decode(payload, StartNextRequest)
                return await self._start_next(thing, topic, "statusDetails" in raw, request)
            case TopicKind.GET_PENDING:
                return await self._get_pending(thing, topic, _decode(payload, GetPendingRequest))
            case TopicKind.DESCRIBE:
                assert parsed.job_id is not None  # noqa: S101 - the parser sets it
                describe = _decode(payload, DescribeRequest)
                return await self._describe(thing, parsed.job_id, topic, describe)
            case _:
                assert parsed.job_id is not None  # noqa: S101 - the parser sets it
                update = _decode(payload, UpdateRequest)
                has_details = "statusDetails" in raw
                return await self._update(thing, parsed.job_id, topic, has_details, update)

    async def _start_next(
        self, thing: str, topic: str, has_details: bool, request: StartNextRequest
    ) -> _Outcome:
        now = self._clock()
        outcome = _Outcome()
        async with self._store.transaction() as tx:
            records = await state.load_for_change(tx, thing)
            before = rules.snapshot(records)
            record = rules.next_execution(records)
            if record is not None and record.status is JobStatus.QUEUED:
                rules.start(
                    record,
                    now,
                    request.step_timeout_in_minutes,
                    self.time_scale,
                    details=request.status_details if has_details else None,
                )
                await state.save(tx, record)
                outcome.touched = outcome.report = [record]
        if outcome.report:
            outcome.messages = rules.notifications(self._topics(thing), before, records, now)
        accepted = StartNextAccepted(
            client_token=request.client_token,
            timestamp=int(now),
            execution=None if record is None else record.message(),
        )
        outcome.messages.append((f"{topic}/accepted", encode(accepted)))
        return outcome

    async def _get_pending(self, thing: str, topic: str, request: GetPendingRequest) -> _Outcome:
        async with self._store.transaction() as tx:
            records = rules.pending(await state.load_pending(tx, thing))
        accepted = GetPendingAccepted(
            client_token=request.client_token,
            timestamp=int(self._clock()),
            in_progress_jobs=[r.summary() for r in records if r.status is JobStatus.IN_PROGRESS],
            queued_jobs=[r.summary() for r in records if r.status is JobStatus.QUEUED],
        )
        return _Outcome([(f"{topic}/accepted", encode(accepted))])

    async def _describe(
        self, thing: str, job_id: str, topic: str, request: DescribeRequest
    ) -> _Outcome:
        async with self._store.transaction() as tx:
            if job_id == NEXT_JOB:
                record = rules.next_execution(await state.load_pending(tx, thing))
                if record is None:
                    raise Rejection(
                        RejectedErrorCode.RESOURCE_NOT_FOUND,
                        f"Thing {thing} has no pending job execution",
                    )
            else:
                latest = await state.load_execution(tx, thing, job_id)
                records = [] if latest is None else [latest]
                record = rules.find(records, thing, job_id, request.execution_number)
        accepted = DescribeAccepted(
            client_token=request.client_token,
            timestamp=int(self._clock()),
            execution=record.message(document=request.include_job_document is not False),
        )
        return _Outcome([(f"{topic}/accepted", encode(accepted))])

    async def _update(
        self, thing: str, job_id: str, topic: str, has_details: bool, request: UpdateRequest
    ) -> _Outcome:
        now = self._clock()
        async with self._store.transaction() as tx:
            records = await state.load_for_change(tx, thing, job_id)
            try:
                record = rules.find(records, thing, job_id, request.execution_number)
            except Rejection:
                log.warning("update for a job this thing does not have", thing=thing, job_id=job_id)
                raise
            replay = record.applied.get(request.client_token)
            if replay is not None:
                if replay[0] == state.canonical(request):
                    return _Outcome([(f"{topic}/accepted", replay[1].encode())])
                log.warning(
                    "clientToken reused for a different update",
                    thing=thing,
                    job_id=job_id,
                    client_token=request.client_token,
                )
            rules.check_update(record, request)
            if record.status is JobStatus.QUEUED:
                running = [r.job_id for r in records if r.status is JobStatus.IN_PROGRESS]
                log.warning(
                    "update for a QUEUED execution (start it with start-next first)",
                    thing=thing,
                    job_id=job_id,
                    in_progress=running,
                )
            before = rules.snapshot(records)
            accepted = rules.apply_update(
                record, request, has_details=has_details, now=now, time_scale=self.time_scale
            )
            record.applied[request.client_token] = (
                state.canonical(request),
                accepted.decode(),
            )
            await state.save(tx, record)
        messages = [(f"{topic}/accepted", accepted)]
        messages += rules.notifications(self._topics(thing), before, records, now)
        return _Outcome(messages, touched=[record], report=[record])

    # --- timers -------------------------------------------------------------------------------

    async def _end(
        self,
        thing: str,
        job_id: str,
        status: JobStatus,
        details: Mapping[str, str] | None,
        *,
        due: float | None,
    ) -> bool:
        """The service's verdict on the latest execution; with `due` (a timer), only if it is
        still IN_PROGRESS and its stored deadline has passed (else the timer is re-armed)."""
        async with self._thing(thing):
            now = self._clock()
            async with self._store.transaction() as tx:
                records = await state.load_for_change(tx, thing, job_id)
                record = next((r for r in records if r.job_id == job_id), None)
                if record is None or record.status.is_terminal:
                    self._disarm(thing, job_id)
                    return False
                if due is not None:
                    deadline = record.deadline
                    if record.status is not JobStatus.IN_PROGRESS or deadline is None:
                        self._disarm(thing, job_id)
                        return False
                    if deadline > now + 0.005:
                        self._arm(thing, job_id, deadline)
                        return False
                before = rules.snapshot(records)
                rules.end(record, status, details, now)
                await state.save(tx, record)
            log.info(
                "job execution ended by the service",
                thing=thing,
                job_id=job_id,
                status=status.value,
            )
            messages = rules.notifications(self._topics(thing), before, records, now)
            self._after(_Outcome(messages, touched=[record], report=[record], by_agent=False))
        return True

    def _arm(self, thing: str, job_id: str, deadline: float) -> None:
        key = (thing, job_id)
        current = self._timers.get(key)
        if current is not None:
            if current[0] == deadline:
                return
            current[1].cancel()
        delay = max(0.0, deadline - self._clock())
        handle = asyncio.get_running_loop().call_later(delay, self._expired, thing, job_id)
        self._timers[key] = (deadline, handle)

    def _disarm(self, thing: str, job_id: str) -> None:
        current = self._timers.pop((thing, job_id), None)
        if current is not None:
            current[1].cancel()

    def _expired(self, thing: str, job_id: str) -> None:
        self._timers.pop((thing, job_id), None)
        if self._running:
            self._work.put(thing, functools.partial(self._time_out, thing, job_id))

    async def _time_out(self, thing: str, job_id: str) -> None:
        await self._end(thing, job_id, JobStatus.TIMED_OUT, None, due=self._clock())

    async def _sweep(self) -> None:
        async with self._store.transaction() as tx:
            found = await state.deadlines(tx)
        for thing, job_id, deadline in found:
            self._arm(thing, job_id, deadline)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_seconds)
            try:
                await self._sweep()
            except Exception:
                log.exception("sweeping the job timers failed")

    # --- after a commit -----------------------------------------------------------------------

    def _after(self, outcome: _Outcome) -> None:
        """Publish, re-arm and report a committed change (under the thing's lock)."""
        for topic, payload in outcome.messages:
            self._mqtt.enqueue(topic, payload)
        for record in outcome.touched:
            deadline = record.deadline if record.status is JobStatus.IN_PROGRESS else None
            if deadline is None:
                self._disarm(record.thing, record.job_id)
            else:
                self._arm(record.thing, record.job_id, deadline)
        for record in outcome.report:
            change = ExecutionChange(
                thing=record.thing,
                job_id=record.job_id,
                status=record.status,
                status_details=dict(record.status_details),
                version_number=record.version,
                changed_at=record.last_updated_at,
                by_agent=outcome.by_agent,
            )
            self._deliveries.put(record.thing, functools.partial(self._deliver, change))

    async def _deliver(self, change: ExecutionChange) -> None:
        for listener in list(self._listeners):
            try:
                await listener(change)
            except Exception:
                log.exception(
                    "job execution listener failed", thing=change.thing, job_id=change.job_id
                )

    # --- helpers ------------------------------------------------------------------------------

    def _topics(self, thing: str) -> JobsTopics:
        return JobsTopics(self.topic_root, thing, events_root=self.events_root)

    def _thing(self, thing: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self._locks.hold(thing)


def _decode(payload: bytes, type_: type[M]) -> M:
    try:
        return decode(payload, type_)
    except ProtocolError as exc:
        raise Rejection(RejectedErrorCode.INVALID_REQUEST, str(exc)) from None


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the MQTT session stopped", error=str(task.exception()))


__all__ = ["ExecutionChange", "JobsError", "JobsService", "PresenceInfo"]
