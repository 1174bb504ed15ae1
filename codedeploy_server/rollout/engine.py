"""The rollout engine: drives deployments through their targets with CodeDeploy's rules.

    engine = RolloutEngine(store, jobs, signing_key=key, key_id="codedeploy-server",
                           revisions=RevisionResolver(bundles=bundle_store), server_id="srv-1")
    await engine.start()            # resume what this server (or a dead one) was driving
    await engine.deployment_created("d-ABCDEFGHI")   # RolloutControl, called by the API
    await engine.stop()

**Start.** `deployment_created` takes the deployment's lease and returns; in the background
(so CreateDeployment never waits for S3) the engine resolves its revision
(revisions.py: presigned S3 URL, bundle-store link, GitHub), builds and signs the job document
once (document.py), fixes the minimum healthy hosts M for its N targets (policy.py), marks it
`InProgress` with `startTime`, and queues the first batch: one job execution per instance
(`jobs.queue_job(thing=instance, job_id=deployment id)`), in the targets' `position` order.

**Progress.** Every `ExecutionChange` of the Jobs service updates its target's lifecycle events
and status (events.py); the policy then starts the next instances, or ends the deployment:
`Succeeded`, or `Failed` with `HEALTH_CONSTRAINTS` (AWS's message, then the failed instances)
or `HEALTH_CONSTRAINTS_INVALID` when the minimum cannot be met at the start. At the end the
group's `lastAttemptedDeployment` (and on success `lastSuccessfulDeployment` and
`targetRevision`) are written, and each finished target's health is recorded (health.py).

**Deadlines.** An execution still QUEUED `pickup_deadline_seconds` after it was queued (300 s:
CodeDeploy fails a deployment whose lifecycle event does not start within 5 minutes) is
cancelled and its instance fails with a message saying whether the agent is offline (and
since when, from its presence), has never reported presence, or is online but busy, and how to
check. Executions are queued with a step timeout (`step_timeout_minutes`, 60: CodeDeploy's
one-hour limit per lifecycle event), so an agent that dies in the middle of a hook ends
TIMED_OUT; the agent raises the timer itself for hooks with longer timeouts. A deployment
running longer than `max_duration_seconds` (8 h, the EC2/on-premises limit) fails with
`TIMEOUT`.

**Stop.** `stop_deployment` records the request in the deployment (`_stopRequest`); the server
that owns the deployment ends it as `Stopped` (`errorInformation.code` `MANUAL_STOP`): targets
not started are `Skipped`, running ones are cancelled (their event fails, later ones are
skipped). It answers `Succeeded` once the cancellations are sent, `Pending` while they are not
(another server owns the deployment and acts on its next tick, or the Jobs service could not
be reached: the engine retries). Rollback on stop follows §4.2: an explicit
`autoRollbackEnabled` wins; when absent, the deployment's (else the group's)
`autoRollbackConfiguration` decides through `DEPLOYMENT_STOP_ON_REQUEST`.

**Rollback** (rollback.py) on `DEPLOYMENT_FAILURE` / `DEPLOYMENT_STOP_ON_REQUEST`: a new
deployment written in the transaction that ends the failed one, then started like any other.

**Crash safety and several servers.** Everything is in the store. Side effects (queue, cancel)
happen after the transaction that decided them commits; what was decided but maybe not sent is
visible in the rows (a target marked queued without an execution is queued again — `queue_job`
is idempotent; `_cancels` lists cancellations still to send). A deployment is driven by the
server holding its lease (`owner`, `lease_until`): renewed every tick, taken over by another
server when it expires, released on a clean stop. Each change is applied under the
deployment's row lock; changes delivered to a server that does not own the deployment (MQTT 5
shared subscriptions send an agent's update to any server) are recorded there as facts, and
the owner's next tick takes the decisions. A server that takes a deployment over (or starts)
first re-reads every in-flight execution from the Jobs service (`jobs.execution`), so changes
it never saw are applied before it decides anything. `stop()` stops intake, lets the work in
hand finish within a grace period (then cancels it) and releases the leases.

**Time.** `tick_seconds` (1 s) is the granularity of the pickup deadline, of stop requests
made on another server, and of decisions on changes another server recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import structlog

from codedeploy_agent.protocol.messages import JobStatus
from codedeploy_agent.protocol.signing import Signer
from codedeploy_server.api.errors import (
    DeploymentAlreadyCompletedException,
    DeploymentDoesNotExistException,
    UnsupportedActionForDeploymentTypeException,
)
from codedeploy_server.jobs.serial import KeyedLocks
from codedeploy_server.jobs.service import JobsError, JobsService
from codedeploy_server.revisions import Resolver, RevisionError
from codedeploy_server.rollout import deadlines, records, transitions
from codedeploy_server.rollout.document import DEFAULT_TTL_SECONDS, build_signed_document
from codedeploy_server.rollout.events import TargetStatus, apply_change, fail_target
from codedeploy_server.rollout.policy import BUILTIN_CONFIGS, DEFAULT_CONFIG, MinimumHealthyHosts
from codedeploy_server.rollout.records import TERMINAL, DeploymentRecord
from codedeploy_server.rollout.transitions import (
    HEALTH_CONSTRAINTS_MESSAGE,
    NO_INSTANCES_MESSAGE,
    STOP_MESSAGE,
    Effects,
)
from codedeploy_server.store import Store, Tx, loads

log = structlog.get_logger("codedeploy_server.rollout")

_ACTIVE_SQL: Final = "('Created', 'Queued', 'InProgress', 'Ready', 'Baking')"
#: How long `stop()` lets the work in hand finish before cancelling it.
STOP_GRACE: Final = 10.0


class Change(Protocol):
    """One state of a job execution (`jobs.service.ExecutionChange`, or one re-read)."""

    @property
    def thing(self) -> str: ...
    @property
    def job_id(self) -> str: ...
    @property
    def status(self) -> JobStatus: ...
    @property
    def status_details(self) -> dict[str, str]: ...
    @property
    def version_number(self) -> int: ...
    @property
    def changed_at(self) -> float: ...


@dataclass(frozen=True, slots=True)
class _Observed:
    """An execution's state read back from the Jobs service (resume)."""

    thing: str
    job_id: str
    status: JobStatus
    status_details: dict[str, str]
    version_number: int
    changed_at: float


def default_server_id() -> str:
    """This process's name in deployment leases: host name and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RolloutEngine:
    """Implements `api.rollout.RolloutControl` (module docstring)."""

    def __init__(
        self,
        store: Store,
        jobs: JobsService,
        *,
        signing_key: Signer,
        key_id: str,
        revisions: Resolver,
        server_id: str | None = None,
        pickup_deadline_seconds: float = 300.0,
        job_ttl_seconds: float = DEFAULT_TTL_SECONDS,
        step_timeout_minutes: float = 60.0,
        max_duration_seconds: float = 8 * 3600.0,
        lease_seconds: float = 15.0,
        tick_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.revisions = revisions
        self.server_id = server_id or default_server_id()
        self.pickup_deadline_seconds = pickup_deadline_seconds
        self.job_ttl_seconds = job_ttl_seconds
        self.step_timeout_minutes = step_timeout_minutes
        self.max_duration_seconds = max_duration_seconds
        self.lease_seconds = lease_seconds
        self.tick_seconds = tick_seconds
        self._key = signing_key
        self._key_id = key_id
        self._clock = clock
        self._changes: asyncio.Queue[Change | None] = asyncio.Queue()
        self._stopping = asyncio.Event()
        #: This process works on one deployment at a time (the row lock covers other servers).
        self._locks = KeyedLocks()
        #: Deployments whose in-flight executions this process has re-read since it owns them.
        self._reconciled: set[str] = set()
        #: Ended deployments whose cancellations could not be sent yet (retried every tick).
        self._unsent: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[None]] = set()

    # --- lifetime -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen to the Jobs service, then claim and resume deployments in the background
        (the first tick runs at once)."""
        if self._tasks:
            raise RuntimeError("RolloutEngine is already running")
        await self._find_unsent_cancels()
        self.jobs.add_listener(self._on_change)
        self._tasks = [
            asyncio.create_task(self._work_forever(), name="rollout-changes"),
            asyncio.create_task(self._tick_forever(), name="rollout-ticks"),
        ]

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop listening and ticking, let the work in hand finish (within `grace` seconds,
        then cancel it), and release this server's leases (another server may take its
        deployments over at once). Changes not applied yet are read back on the next start."""
        self.jobs.remove_listener(self._on_change)
        self._stopping.set()
        self._changes.put_nowait(None)
        tasks = [*self._tasks, *self._spawned]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                log.warning("rollout work cut off at stop", tasks=len(late))
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        self._reconciled.clear()
        self._stopping.clear()
        self._changes = asyncio.Queue()
        async with self.store.transaction() as tx:
            await tx.execute(
                f"UPDATE deployments SET lease_until = 0 WHERE owner = ? AND status IN {_ACTIVE_SQL}",  # noqa: S608, E501 - a constant
                (self.server_id,),
            )

    # --- RolloutControl -----------------------------------------------------------------------

    async def deployment_created(self, deployment_id: str) -> None:
        """Take the deployment the API just committed (unless another live server owns it)
        and start it in the background: resolving its revision may call S3, and the API
        answers CreateDeployment without waiting for that."""
        if await self._claim(deployment_id):
            self._spawn(self._start_claimed(deployment_id))

    async def _start_claimed(self, deployment_id: str) -> None:
        try:
            async with self._locks.hold(deployment_id):
                await self._begin(deployment_id)
        except Exception:
            # Still Created and ours: the next tick tries again.
            log.exception("starting the deployment failed", deployment_id=deployment_id)

    async def stop_deployment(self, deployment_id: str, auto_rollback_enabled: bool | None) -> str:
        """StopDeployment (module docstring): `Succeeded` or `Pending`."""
        async with self._locks.hold(deployment_id):
            now = self._clock()
            effects = Effects()
            async with self.store.transaction() as tx:
                record = await records.load(tx, deployment_id)
                if record is None:
                    raise DeploymentDoesNotExistException(
                        f"The deployment {deployment_id} could not be found."
                    )
                if record.status in TERMINAL:
                    if record.status == "Stopped" and "_stopRequest" in record.doc:
                        return "Pending" if record.doc.get("_cancels") else "Succeeded"
                    raise DeploymentAlreadyCompletedException(
                        f"The deployment {deployment_id} has already completed "
                        f"({record.status}): there is nothing to stop."
                    )
                record.doc.setdefault(
                    "_stopRequest", {"autoRollbackEnabled": auto_rollback_enabled, "at": now}
                )
                owned = self._may_drive(record, now)
                if owned:
                    record.owner, record.lease_until = self.server_id, now + self.lease_seconds
                    transitions.end(record, now, "Stopped", "MANUAL_STOP", STOP_MESSAGE)
                    await self._close(tx, record, now, effects)
                await records.save(tx, record)
            if not owned:
                log.info("stop request left for the owner", deployment_id=deployment_id)
                return "Pending"
            sent = await self._perform(deployment_id, effects)
            return "Succeeded" if sent else "Pending"

    async def continue_deployment(self, deployment_id: str, wait_type: str) -> None:
        """ContinueDeployment: in-place deployments never wait for it."""
        async with self.store.transaction() as tx:
            row = await tx.fetchone(
                "SELECT status FROM deployments WHERE deployment_id = ?", (deployment_id,)
            )
        if row is None:
            raise DeploymentDoesNotExistException(
                f"The deployment {deployment_id} could not be found."
            )
        if row["status"] in TERMINAL:
            raise DeploymentAlreadyCompletedException(
                f"The deployment {deployment_id} has already completed ({row['status']})."
            )
        raise UnsupportedActionForDeploymentTypeException(
            f"ContinueDeployment ({wait_type}) applies to blue/green deployments; "
            f"{deployment_id} is an in-place deployment, which never waits for it."
        )

    # --- the loops ----------------------------------------------------------------------------

    async def _on_change(self, change: Change) -> None:
        """The Jobs service's listener: queue the change for the worker (never blocks)."""
        self._changes.put_nowait(change)

    async def _work_forever(self) -> None:
        while not self._stopping.is_set():
            batch = [await self._changes.get()]
            while not self._changes.empty():
                batch.append(self._changes.get_nowait())
            grouped: dict[str, list[Change]] = {}
            for change in batch:
                if change is not None:  # None: stop() wakes the worker
                    grouped.setdefault(change.job_id, []).append(change)
            for deployment_id, changes in grouped.items():
                try:
                    async with self._locks.hold(deployment_id):
                        await self._advance(deployment_id, changes)
                except Exception:
                    # The change is in the Jobs service's rows: re-read them on the next tick.
                    self._reconciled.discard(deployment_id)
                    log.exception("applying job changes failed", deployment_id=deployment_id)

    async def _tick_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("rollout tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.tick_seconds)

    async def tick(self) -> None:
        """Renew leases, take over deployments whose owner is gone, then for each deployment
        this server owns: resume it if needed, enforce deadlines and stop requests, and take
        the next decision."""
        now = self._clock()
        async with self.store.transaction() as tx:
            await tx.execute(
                f"UPDATE deployments SET lease_until = ? WHERE owner = ? AND status IN {_ACTIVE_SQL}",  # noqa: S608, E501 - a constant
                (now + self.lease_seconds, self.server_id),
            )
            orphans = await tx.fetchall(
                f"SELECT deployment_id FROM deployments WHERE status IN {_ACTIVE_SQL} "  # noqa: S608 - a constant
                "AND (owner IS NULL OR lease_until IS NULL OR lease_until < ?) "
                "ORDER BY create_time",
                (now,),
            )
            owned = await tx.fetchall(
                f"SELECT deployment_id FROM deployments WHERE status IN {_ACTIVE_SQL} "  # noqa: S608 - a constant
                "AND owner = ? ORDER BY create_time",
                (self.server_id,),
            )
        for deployment_id in sorted(self._unsent):
            async with self._locks.hold(deployment_id):
                await self._cancel(deployment_id)
        ids = [row["deployment_id"] for row in owned]
        for row in orphans:
            deployment_id = row["deployment_id"]
            if deployment_id not in ids and await self._claim(deployment_id):
                log.info("deployment taken over", deployment_id=deployment_id)
                ids.append(deployment_id)
        for deployment_id in ids:
            try:
                async with self._locks.hold(deployment_id):
                    await self._service(deployment_id)
            except Exception:
                log.exception("driving the deployment failed", deployment_id=deployment_id)

    # --- ownership ----------------------------------------------------------------------------

    async def _claim(self, deployment_id: str) -> bool:
        """Take the deployment's lease unless another server holds a live one."""
        now = self._clock()
        async with self.store.transaction() as tx:
            changed = await tx.execute(
                f"UPDATE deployments SET owner = ?, lease_until = ? WHERE deployment_id = ? "  # noqa: S608 - a constant
                f"AND status IN {_ACTIVE_SQL} AND (owner IS NULL OR owner = ? "
                "OR lease_until IS NULL OR lease_until < ?)",
                (self.server_id, now + self.lease_seconds, deployment_id, self.server_id, now),
            )
        return changed > 0

    def _may_drive(self, record: DeploymentRecord, now: float) -> bool:
        if record.owner in (None, self.server_id):
            return True
        return record.lease_until is None or record.lease_until < now

    # --- starting -----------------------------------------------------------------------------

    async def _begin(self, deployment_id: str) -> None:
        """Created -> InProgress (module docstring "Start"); the caller holds the lock."""
        now = self._clock()
        async with self.store.transaction() as tx:
            record = await records.load(tx, deployment_id)
        if record is None or record.owner != self.server_id:
            return
        if record.status != "Created":
            await self._service(deployment_id)
            return
        expires_at = now + self.job_ttl_seconds
        problem: tuple[str, str] | None = None
        revision = None
        try:
            revision = await self.revisions.resolve(
                record.doc.get("revision") or {}, expires_at=expires_at, now=now
            )
        except RevisionError as exc:
            problem = (exc.code, str(exc))
        effects = Effects()
        async with self.store.transaction() as tx:
            record = await records.load(tx, deployment_id)
            if record is None or record.status != "Created" or record.owner != self.server_id:
                return
            record.doc["startTime"] = now
            record.status = "InProgress"
            group = await records.load_group(tx, record.application_name, record.group_name)
            if group is None:
                missing = (
                    f"The deployment group {record.group_name} of application "
                    f"{record.application_name} was deleted after the deployment was created."
                )
                problem = problem or ("DEPLOYMENT_GROUP_MISSING", missing)
            minimum = await self._minimum_healthy(tx, record, group)
            if isinstance(minimum, tuple):
                problem = problem or minimum
            if not record.targets:
                problem = problem or ("NO_INSTANCES", NO_INSTANCES_MESSAGE)
            if (
                problem is not None
                or group is None
                or revision is None
                or not isinstance(minimum, MinimumHealthyHosts)
            ):
                code, message = problem or ("INTERNAL_ERROR", "The deployment could not start.")
                transitions.end(record, now, "Failed", code, message)
                await self._close(tx, record, now, effects)
            else:
                group_id, group_doc = group
                await self._start(
                    tx, record, now, group_id=group_id, group=group_doc, minimum=minimum
                )
                effects.document = build_signed_document(
                    record.doc,
                    group_id=group_id,
                    revision=revision,
                    issued_at=now,
                    expires_at=expires_at,
                    key=self._key,
                    key_id=self._key_id,
                )
                record.doc["_jobDocument"] = effects.document
                transitions.drive(
                    record, now, effects, max_duration_seconds=self.max_duration_seconds
                )
                if record.status in TERMINAL:  # HEALTH_CONSTRAINTS_INVALID at once
                    await self._close(tx, record, now, effects)
            await records.save(tx, record)
        self._reconciled.add(deployment_id)
        log.info(
            "deployment started",
            deployment_id=deployment_id,
            status=record.status,
            instances=len(record.targets),
        )
        await self._perform(deployment_id, effects)

    async def _minimum_healthy(
        self,
        tx: Tx,
        record: DeploymentRecord,
        group: tuple[str, dict[str, Any]] | None,
    ) -> MinimumHealthyHosts | tuple[str, str]:
        """The deployment config's minimum healthy hosts, or (code, message) when it is gone."""
        name = record.doc.get("deploymentConfigName")
        if not name and group is not None:
            name = group[1].get("deploymentConfigName")
        name = str(name or DEFAULT_CONFIG)
        record.doc["deploymentConfigName"] = name
        row = await tx.fetchone("SELECT doc FROM deployment_configs WHERE name = ?", (name,))
        if row is not None:
            hosts = loads(row["doc"]).get("minimumHealthyHosts")
            if hosts:
                try:
                    return MinimumHealthyHosts.from_doc(hosts)
                except (TypeError, ValueError) as exc:
                    return ("INTERNAL_ERROR", f"The deployment config {name} is invalid: {exc}")
        if name in BUILTIN_CONFIGS:
            return BUILTIN_CONFIGS[name]
        return (
            "CODEDEPLOY_RESOURCE_CANNOT_BE_FOUND",
            f"The deployment config {name} was deleted after the deployment was created.",
        )

    async def _start(
        self,
        tx: Tx,
        record: DeploymentRecord,
        now: float,
        *,
        group_id: str,
        group: dict[str, Any],
        minimum: MinimumHealthyHosts,
    ) -> None:
        """Fix M, note the previous revision, mark the group's last attempted deployment."""
        n = len(record.targets)
        record.engine.update(
            groupId=group_id,
            instances=n,
            minimumHealthyHosts=minimum.to_doc(),
            # FLEET_PERCENT is computed once, at the start (service reference §1.2).
            minimum=minimum.minimum(n),
        )
        if group.get("targetRevision"):
            # The API sets it from the last successful deployment; rollbacks get it here.
            record.doc.setdefault("previousRevision", group["targetRevision"])
        group["lastAttemptedDeployment"] = {
            "deploymentId": record.deployment_id,
            "status": "InProgress",
            "createTime": record.doc.get("createTime", now),
        }
        await records.save_group(tx, record.application_name, record.group_name, group)

    # --- deciding -----------------------------------------------------------------------------

    async def _service(self, deployment_id: str) -> None:
        """One tick's work on an owned deployment (the caller holds the lock)."""
        async with self.store.transaction() as tx:
            record = await records.load(tx, deployment_id)
        if record is None or record.owner != self.server_id:
            return
        if record.status == "Created":
            await self._begin(deployment_id)
            return
        if record.status in TERMINAL:
            return
        observed: list[Change] = []
        requeue: list[str] = []
        if deployment_id not in self._reconciled:
            observed, requeue = await self._observe(record)
            self._reconciled.add(deployment_id)
        failures = await self._overdue(record, self._clock())
        await self._advance(deployment_id, observed, failures, requeue=requeue)

    async def _observe(self, record: DeploymentRecord) -> tuple[list[Change], list[str]]:
        """Re-read every in-flight execution (resume); targets marked queued whose execution
        does not exist (the server stopped between the two) are to be queued again."""
        observed: list[Change] = []
        requeue: list[str] = []
        for target in record.in_status(TargetStatus.IN_PROGRESS):
            execution = await self.jobs.execution(target.target_id, record.deployment_id)
            if execution is None:
                requeue.append(target.target_id)
                continue
            observed.append(
                _Observed(
                    thing=target.target_id,
                    job_id=record.deployment_id,
                    status=execution.status,
                    status_details=dict(execution.status_details),
                    version_number=execution.version_number,
                    changed_at=float(execution.last_updated_at),
                )
            )
        if observed or requeue:
            log.info(
                "deployment resumed",
                deployment_id=record.deployment_id,
                executions=len(observed),
                requeued=len(requeue),
            )
        return observed, requeue

    async def _overdue(self, record: DeploymentRecord, now: float) -> dict[str, str]:
        """Targets whose execution was not picked up in time -> the message they fail with."""
        failures: dict[str, str] = {}
        for thing in deadlines.overdue(record, now, self.pickup_deadline_seconds):
            execution = await self.jobs.execution(thing, record.deployment_id)
            if execution is not None and execution.status is not JobStatus.QUEUED:
                continue  # picked up just now: its change is on the way
            failures[thing] = deadlines.offline_message(
                thing,
                await self.jobs.presence(thing),
                deadline_seconds=self.pickup_deadline_seconds,
                topic_root=self.jobs.topic_root,
                events_root=self.jobs.events_root,
            )
        return failures

    async def _close(self, tx: Tx, record: DeploymentRecord, now: float, effects: Effects) -> None:
        """The deployment ended: transitions.close, and this process forgets it."""
        self._reconciled.discard(record.deployment_id)
        await transitions.close(
            tx, record, now, effects, owner=self.server_id, lease=self.lease_seconds
        )

    async def _advance(
        self,
        deployment_id: str,
        changes: Iterable[Change] = (),
        failures: Mapping[str, str] | None = None,
        *,
        requeue: Iterable[str] = (),
    ) -> None:
        """Apply execution changes (any server), then, on the owner, service failures and the
        next decision; perform what was decided. The caller holds the lock."""
        effects = Effects()
        async with self.store.transaction() as tx:
            record = await records.load(tx, deployment_id)
            if record is None:
                return
            now = self._clock()
            changed = False
            for change in changes:
                target = record.target(change.thing)
                if target is not None and apply_change(
                    target.doc,
                    change.status,
                    change.status_details,
                    change.version_number,
                    change.changed_at,
                ):
                    target.dirty = changed = True
                    await transitions.settled(tx, record, target, now)
            if record.owner == self.server_id and record.status == "InProgress":
                for thing, message in (failures or {}).items():
                    target = record.target(thing)
                    if target is not None and target.status is TargetStatus.IN_PROGRESS:
                        fail_target(target.doc, now, message)
                        target.dirty = changed = True
                        effects.cancel.append(thing)
                        await transitions.settled(tx, record, target, now)
                        log.warning(
                            "agent did not pick up its job",
                            deployment_id=deployment_id,
                            thing=thing,
                        )
                effects.document = record.doc.get("_jobDocument")
                effects.queue.extend(t for t in requeue if record.target(t) is not None)
                status = record.status
                transitions.drive(
                    record, now, effects, max_duration_seconds=self.max_duration_seconds
                )
                if record.status in TERMINAL:
                    await self._close(tx, record, now, effects)
                changed = changed or record.status != status or bool(effects.queue)
            if changed:
                await records.save(tx, record)
        await self._perform(deployment_id, effects)

    # --- side effects -------------------------------------------------------------------------

    async def _perform(self, deployment_id: str, effects: Effects) -> bool:
        """Queue and cancel executions, start rollbacks; False when a cancellation could not
        be sent (it is retried on the next tick)."""
        failures: dict[str, str] = {}
        for thing in effects.queue:
            if effects.document is None:
                break
            try:
                await self.jobs.queue_job(
                    thing,
                    deployment_id,
                    effects.document,
                    step_timeout_minutes=self.step_timeout_minutes,
                )
            except JobsError as exc:
                failures[thing] = (
                    f"The job could not be sent to {thing}: {exc}. On-premises instance names "
                    "used with this server must be valid MQTT thing names (letters, digits, "
                    "'_', '.', ':' and '-', at most 128)."
                )
            except Exception:
                # Re-read (and queue again) on the next tick; the pickup deadline still runs.
                self._reconciled.discard(deployment_id)
                log.exception("queueing a job failed", deployment_id=deployment_id, thing=thing)
        sent = await self._cancel(deployment_id, effects.cancel)
        for rollback_id in effects.started:
            self._spawn(self._start_claimed(rollback_id))  # written with this server as owner
        if failures:
            await self._advance(deployment_id, failures=failures)
        return sent

    async def _cancel(self, deployment_id: str, things: Iterable[str] | None = None) -> bool:
        """Cancel the executions of `things` (default: the deployment's `_cancels`); once all
        are sent, `_cancels` is cleared. False when one could not be sent (retried later)."""
        if things is None:
            async with self.store.transaction() as tx:
                record = await records.load(tx, deployment_id)
            things = [] if record is None else list(record.doc.get("_cancels") or [])
        things = list(things)
        if not things:
            self._unsent.discard(deployment_id)
            return True
        sent = True
        for thing in things:
            try:
                await self.jobs.cancel_job(thing, deployment_id)
            except Exception:
                sent = False
                log.exception("cancelling a job failed", deployment_id=deployment_id, thing=thing)
        if not sent:
            self._unsent.add(deployment_id)
            return False
        async with self.store.transaction() as tx:
            record = await records.load(tx, deployment_id)
            if record is not None and record.doc.pop("_cancels", None) is not None:
                await records.write_deployment_doc(tx, deployment_id, record.doc)
        self._unsent.discard(deployment_id)
        return True

    async def _find_unsent_cancels(self) -> None:
        """At start: deployments that ended within the job documents' lifetime with
        cancellations that were decided but maybe never sent (the server stopped between the
        commit and the cancel). Older jobs cannot run any more: their documents expired."""
        since = self._clock() - self.job_ttl_seconds
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT deployment_id FROM deployments WHERE status IN ('Failed', 'Stopped') "
                "AND complete_time > ? AND doc LIKE ?",
                (since, '%"_cancels":%'),
            )
        self._unsent.update(row["deployment_id"] for row in rows)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)


__all__ = [
    "HEALTH_CONSTRAINTS_MESSAGE",
    "NO_INSTANCES_MESSAGE",
    "STOP_MESSAGE",
    "RolloutEngine",
    "default_server_id",
]
