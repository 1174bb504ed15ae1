"""Job executions and agent presence in the store (`job_executions`, `presence`, migration 1).

One `job_executions` row per (thing, job id): the latest execution of that job on that thing.
Columns hold what queries filter on; `doc` holds the rest:

    {"jobDocument", "statusDetails", "startedAt", "lastUpdatedAt",
     "defaultStepMinutes", "inProgressMinutes", "stepDeadline", "inProgressDeadline",
     "applied": {clientToken: {"request": canonical JSON, "reply": accepted payload}},
     "history": [earlier executions of the same job id, as docs with their own columns]}

`step_deadline` (the column) is the execution's effective time-out deadline: the earlier of the
step timer and the in-progress timer (`doc.stepDeadline`, `doc.inProgressDeadline`), so that a
restarted server (or another server of the group) finds every timer to re-arm with one query.
Times are epoch seconds (floats); the wire carries whole seconds.

Every function takes an open transaction. Rows that are changed are read with `tx.for_update`;
`lock_thing` (a transaction-scoped advisory lock on PostgreSQL) serialises the queueing of new
executions on one thing across servers sharing a database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from codedeploy_agent.protocol.messages import (
    JobExecution,
    JobExecutionState,
    JobExecutionSummary,
    JobStatus,
    Presence,
    PresenceState,
    decode,
)
from codedeploy_server.store import Row, Tx, dumps, loads

#: Earlier executions of one job id kept per row (re-queued jobs; DescribeJobExecution by number).
MAX_HISTORY: Final = 5
#: Applied clientTokens kept per execution (an agent sends about ten updates per job).
MAX_APPLIED: Final = 200
_PENDING_SQL: Final = "status IN ('QUEUED', 'IN_PROGRESS')"
_COLUMNS: Final = (
    "thing, job_id, execution_number, status, version_number, queued_at, step_deadline, doc"
)
# Queries interpolate only these module constants, never a value (S608 is silenced for that).
_SELECT: Final = f"SELECT {_COLUMNS} FROM job_executions WHERE thing = ?"  # noqa: S608
_SELECT_PENDING: Final = f"{_SELECT} AND {_PENDING_SQL}"
_SELECT_CHANGING: Final = f"{_SELECT} AND ({_PENDING_SQL} OR job_id = ?)"


@dataclass(eq=False, slots=True)
class ExecutionRecord:
    """One job execution as stored; the service changes it in place and saves it."""

    thing: str
    job_id: str
    execution_number: int
    document: dict[str, Any]
    queued_at: float
    last_updated_at: float
    status: JobStatus = JobStatus.QUEUED
    version: int = 1
    status_details: dict[str, str] = field(default_factory=dict)
    started_at: float | None = None
    default_step_minutes: float | None = None
    in_progress_minutes: float | None = None
    step_deadline: float | None = None
    in_progress_deadline: float | None = None
    #: clientToken -> (canonical request, accepted payload), for replays of lost replies.
    applied: dict[str, tuple[str, str]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int]:
        """Identifies the execution among a thing's executions."""
        return (self.job_id, self.execution_number)

    @property
    def deadline(self) -> float | None:
        """When the execution times out: the earlier of its two timers (None: no timer)."""
        deadlines = [d for d in (self.step_deadline, self.in_progress_deadline) if d is not None]
        return min(deadlines) if deadlines else None

    def message(self, *, document: bool = True, thing_name: bool = True) -> JobExecution:
        """The execution as the wire carries it."""
        return JobExecution(
            job_id=self.job_id,
            status=self.status,
            queued_at=int(self.queued_at),
            last_updated_at=int(self.last_updated_at),
            version_number=self.version,
            execution_number=self.execution_number,
            thing_name=self.thing if thing_name else None,
            job_document=self.document if document else None,
            status_details=dict(self.status_details),
            started_at=None if self.started_at is None else int(self.started_at),
        )

    def summary(self) -> JobExecutionSummary:
        """The execution in `notify` and GetPendingJobExecutions replies."""
        return JobExecutionSummary(
            job_id=self.job_id,
            queued_at=int(self.queued_at),
            last_updated_at=int(self.last_updated_at),
            version_number=self.version,
            execution_number=self.execution_number,
            started_at=None if self.started_at is None else int(self.started_at),
        )

    def state(self) -> JobExecutionState:
        """The state part (update replies, VersionMismatch errors)."""
        return JobExecutionState(
            status=self.status,
            version_number=self.version,
            status_details=dict(self.status_details),
        )

    def earlier(self, execution_number: int) -> ExecutionRecord | None:
        """An earlier execution of the same job on the same thing, by number."""
        for entry in self.history:
            if entry["executionNumber"] == execution_number:
                return _from_doc(self.thing, self.job_id, entry)
        return None

    def to_doc(self) -> dict[str, Any]:
        """The `doc` column (also the shape of a `history` entry, with the columns added)."""
        return {
            "jobDocument": self.document,
            "statusDetails": self.status_details,
            "startedAt": self.started_at,
            "lastUpdatedAt": self.last_updated_at,
            "defaultStepMinutes": self.default_step_minutes,
            "inProgressMinutes": self.in_progress_minutes,
            "stepDeadline": self.step_deadline,
            "inProgressDeadline": self.in_progress_deadline,
            "applied": {
                token: {"request": request, "reply": reply}
                for token, (request, reply) in self.applied.items()
            },
            "history": self.history,
        }

    def retire(self) -> dict[str, Any]:
        """This execution as a `history` entry (before the job id is queued again)."""
        entry = self.to_doc()
        entry.pop("history")
        entry.update(
            executionNumber=self.execution_number,
            status=self.status.value,
            versionNumber=self.version,
            queuedAt=self.queued_at,
        )
        return entry


def _from_doc(thing: str, job_id: str, doc: dict[str, Any]) -> ExecutionRecord:
    return ExecutionRecord(
        thing=thing,
        job_id=job_id,
        execution_number=int(doc["executionNumber"]),
        document=doc["jobDocument"],
        queued_at=float(doc["queuedAt"]),
        last_updated_at=float(doc["lastUpdatedAt"]),
        status=JobStatus(doc["status"]),
        version=int(doc["versionNumber"]),
        status_details=dict(doc.get("statusDetails") or {}),
        started_at=doc.get("startedAt"),
        default_step_minutes=doc.get("defaultStepMinutes"),
        in_progress_minutes=doc.get("inProgressMinutes"),
        step_deadline=doc.get("stepDeadline"),
        in_progress_deadline=doc.get("inProgressDeadline"),
        applied={
            token: (entry["request"], entry["reply"])
            for token, entry in (doc.get("applied") or {}).items()
        },
        history=list(doc.get("history") or []),
    )


def _from_row(row: Row) -> ExecutionRecord:
    doc = loads(row["doc"])
    doc.update(
        executionNumber=row["execution_number"],
        status=row["status"],
        versionNumber=row["version_number"],
        queuedAt=row["queued_at"],
    )
    return _from_doc(row["thing"], row["job_id"], doc)


def _params(record: ExecutionRecord) -> tuple[Any, ...]:
    if len(record.applied) > MAX_APPLIED:
        for token in list(record.applied)[: len(record.applied) - MAX_APPLIED]:
            del record.applied[token]
    return (
        record.thing,
        record.job_id,
        record.execution_number,
        record.status.value,
        record.version,
        record.queued_at,
        record.deadline if record.status is JobStatus.IN_PROGRESS else None,
        dumps(record.to_doc()),
    )


# --- executions -------------------------------------------------------------------------------


async def lock_thing(tx: Tx, thing: str) -> None:
    """Serialise this transaction with every other one that takes the same lock on `thing`
    (PostgreSQL; SQLite serialises writers already)."""
    if tx.dialect == "postgresql":
        digest = hashlib.sha256(b"codedeploy-jobs\0" + thing.encode()).digest()
        await tx.execute(
            "SELECT pg_advisory_xact_lock(?)", (int.from_bytes(digest[:8], "big", signed=True),)
        )


async def load_for_change(tx: Tx, thing: str, job_id: str | None = None) -> list[ExecutionRecord]:
    """The thing's pending executions and, when given, the latest of `job_id`, locked,
    oldest first."""
    sql, params = (
        (_SELECT_PENDING, (thing,)) if job_id is None else (_SELECT_CHANGING, (thing, job_id))
    )
    rows = await tx.fetchall(f"{sql} ORDER BY execution_number{tx.for_update}", params)
    return [_from_row(row) for row in rows]


async def load_pending(tx: Tx, thing: str) -> list[ExecutionRecord]:
    """The thing's pending executions (no lock), oldest first."""
    rows = await tx.fetchall(f"{_SELECT_PENDING} ORDER BY execution_number", (thing,))
    return [_from_row(row) for row in rows]


async def load_execution(tx: Tx, thing: str, job_id: str) -> ExecutionRecord | None:
    """The latest execution of `job_id` on `thing` (no lock)."""
    row = await tx.fetchone(f"{_SELECT} AND job_id = ?", (thing, job_id))
    return None if row is None else _from_row(row)


async def load_executions(tx: Tx, thing: str) -> list[ExecutionRecord]:
    """Every stored execution of `thing` (the latest per job id), oldest first."""
    rows = await tx.fetchall(f"{_SELECT} ORDER BY execution_number", (thing,))
    return [_from_row(row) for row in rows]


async def next_execution_number(tx: Tx, thing: str) -> int:
    """The number of the thing's next execution (1, 2, ...; call under `lock_thing`)."""
    row = await tx.fetchone(
        "SELECT MAX(execution_number) AS n FROM job_executions WHERE thing = ?", (thing,)
    )
    return 1 if row is None or row["n"] is None else int(row["n"]) + 1


async def insert(tx: Tx, record: ExecutionRecord) -> None:
    """Store a new execution, replacing the row of an ended execution of the same job id."""
    await tx.execute(
        f"INSERT INTO job_executions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608
        "ON CONFLICT (thing, job_id) DO UPDATE SET execution_number = excluded.execution_number, "
        "status = excluded.status, version_number = excluded.version_number, "
        "queued_at = excluded.queued_at, step_deadline = excluded.step_deadline, "
        "doc = excluded.doc",
        _params(record),
    )


async def save(tx: Tx, record: ExecutionRecord) -> None:
    """Store the changed execution."""
    thing, job_id, number, status, version, _, deadline, doc = _params(record)
    await tx.execute(
        "UPDATE job_executions SET status = ?, version_number = ?, step_deadline = ?, doc = ? "
        "WHERE thing = ? AND job_id = ? AND execution_number = ?",
        (status, version, deadline, doc, thing, job_id, number),
    )


async def deadlines(tx: Tx) -> list[tuple[str, str, float]]:
    """(thing, job id, deadline) of every IN_PROGRESS execution with a timer."""
    rows = await tx.fetchall(
        "SELECT thing, job_id, step_deadline FROM job_executions "
        "WHERE status = 'IN_PROGRESS' AND step_deadline IS NOT NULL"
    )
    return [(row["thing"], row["job_id"], float(row["step_deadline"])) for row in rows]


# --- presence ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PresenceInfo:
    """The last presence message of an agent (retained on `{topic_root}/{thing}/presence`).

    `updated_at` is when it last changed as seen by the server (a heartbeat repeating the same
    payload does not move it); `presence` is the decoded payload.
    """

    thing: str
    online: bool
    updated_at: float
    presence: Presence


async def save_presence(tx: Tx, presence_info: PresenceInfo, raw: bytes) -> None:
    """Insert or replace the thing's presence row."""
    await tx.execute(
        "INSERT INTO presence (thing, online, updated_at, doc) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (thing) DO UPDATE SET online = excluded.online, "
        "updated_at = excluded.updated_at, doc = excluded.doc",
        (
            presence_info.thing,
            int(presence_info.online),
            presence_info.updated_at,
            raw.decode("utf-8"),
        ),
    )


async def delete_presence(tx: Tx, thing: str) -> None:
    """Forget the thing's presence (its retained message was cleared)."""
    await tx.execute("DELETE FROM presence WHERE thing = ?", (thing,))


async def presence_payload(tx: Tx, thing: str) -> bytes | None:
    """The stored presence message of `thing`, as received."""
    row = await tx.fetchone("SELECT doc FROM presence WHERE thing = ?", (thing,))
    return None if row is None else str(row["doc"]).encode("utf-8")


async def load_presence(tx: Tx, thing: str) -> PresenceInfo | None:
    """The thing's presence row, decoded."""
    row = await tx.fetchone(
        "SELECT thing, online, updated_at, doc FROM presence WHERE thing = ?", (thing,)
    )
    if row is None:
        return None
    return PresenceInfo(
        thing=row["thing"],
        online=bool(row["online"]),
        updated_at=float(row["updated_at"]),
        presence=decode(row["doc"], Presence),
    )


def presence_info(thing: str, presence: Presence, now: float) -> PresenceInfo:
    """A presence row for a decoded message received at `now`."""
    return PresenceInfo(
        thing=thing,
        online=presence.state is PresenceState.ONLINE,
        updated_at=now,
        presence=presence,
    )


def canonical(message: msgspec.Struct) -> str:
    """A request as comparable text (keys sorted), for clientToken replays."""
    return dumps(msgspec.to_builtins(message))
