"""What the daemon keeps on disk under `state_dir`, so that a restart loses nothing.

- `jobs.json`, the ledger: every job this host started, with its state (RUNNING until it ends,
  then its terminal status) and the lifecycle event it was in. A job id in the ledger is never
  run again; a RUNNING entry found at start-up is a job the agent was killed in.
- `outbox/`, one file per Jobs update not yet accepted by the service, sent in order after
  every (re)connect (at-least-once; `clientToken` makes a resend recognisable).

Every write goes through a temporary file and a rename, so a SIGKILL at any point leaves either
the old or the new content. The files are small; callers run these methods in a thread.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import msgspec

from codedeploy_agent.errors import HostStateError
from codedeploy_agent.protocol.errors import ProtocolError
from codedeploy_agent.protocol.messages import UpdateRequest, decode, encode

#: Terminal jobs remembered; older ones are forgotten (the service never hands them out again).
LEDGER_LIMIT: Final = 1000
RUNNING: Final = "RUNNING"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One job this host started."""

    job_id: str
    deployment_id: str
    state: str  # RUNNING, or the terminal JobStatus value the agent reported
    lifecycle_event: str | None
    updated_at: str


class JobLedger:
    """`state_dir/jobs.json`: the jobs this host has started and how they ended."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "jobs.json"
        self._entries: dict[str, LedgerEntry] = {}

    def load(self) -> None:
        """Read the ledger (a missing file is an empty ledger; a corrupt one is an error)."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise HostStateError(
                f"The job ledger {self.path} cannot be read ({exc}). Move it aside to start "
                "afresh: jobs it lists could then run a second time on this host."
            ) from exc
        self._entries = {e["job_id"]: LedgerEntry(**e) for e in raw.get("jobs", [])}

    def get(self, job_id: str) -> LedgerEntry | None:
        """The entry of `job_id`, if this host ever started it."""
        return self._entries.get(job_id)

    def running(self) -> list[LedgerEntry]:
        """Jobs that were running when the agent last stopped (interrupted ones at start-up)."""
        return [e for e in self._entries.values() if e.state == RUNNING]

    def record(
        self, job_id: str, deployment_id: str, state: str, lifecycle_event: str | None = None
    ) -> None:
        """Set `job_id`'s state (and event) and write the ledger atomically."""
        self._entries.pop(job_id, None)
        self._entries[job_id] = LedgerEntry(
            job_id, deployment_id, state, lifecycle_event, datetime.now(UTC).isoformat()
        )
        while len(self._entries) > LEDGER_LIMIT:
            oldest = next(k for k, v in self._entries.items() if v.state != RUNNING)
            del self._entries[oldest]
        # msgspec encodes the entries as they are: no 1,000 intermediate dicts and one big
        # string per lifecycle event (a full ledger's rewrite left the heap ~1 MB larger).
        encoded = msgspec.json.encode({"jobs": list(self._entries.values())})
        _write_atomically(self.path, msgspec.json.format(encoded, indent=1))


@dataclass(frozen=True, slots=True)
class PendingUpdate:
    """An update waiting in the outbox."""

    sequence: int
    job_id: str
    request: UpdateRequest
    path: Path


class Outbox:
    """`state_dir/outbox/`: updates not yet accepted, oldest first.

    The files are read once; after that the queue is kept in memory too, so that sending an
    update costs one file removal, not a directory scan. Thread-safe.
    """

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / "outbox"
        self._queue: list[PendingUpdate] | None = None
        self._next = 0
        self._lock = threading.Lock()

    def pending(self) -> list[PendingUpdate]:
        """Every pending update, in the order they were added."""
        with self._lock:
            return list(self._load())

    def first(self) -> PendingUpdate | None:
        """The oldest pending update."""
        with self._lock:
            queue = self._load()
            return queue[0] if queue else None

    def _load(self) -> list[PendingUpdate]:
        if self._queue is not None:
            return self._queue
        try:
            names = sorted(p.name for p in self.directory.iterdir() if p.suffix == ".json")
        except FileNotFoundError:
            names = []
        except OSError as exc:
            raise HostStateError(
                f"Cannot read the outbox {self.directory}: {exc.strerror}"
            ) from exc
        queue = []
        for name in names:
            path = self.directory / name
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                request = decode(record["request"].encode(), UpdateRequest)
                sequence = int(name.split("-", 1)[0])
            except (OSError, ValueError, KeyError, ProtocolError):
                # A torn or foreign file cannot be resent faithfully; keep it for the operator.
                path.rename(path.with_suffix(".corrupt"))
                continue
            queue.append(PendingUpdate(sequence, record["job_id"], request, path))
            self._next = max(self._next, sequence + 1)
        self._queue = queue
        return queue

    def add(self, job_id: str, request: UpdateRequest) -> PendingUpdate:
        """Persist an update before it is published."""
        with self._lock:
            queue = self._load()
            sequence = self._next
            self._next += 1
            path = self.directory / f"{sequence:012d}-{job_id}.json"
            record = {"job_id": job_id, "request": encode(request).decode()}
            _write_atomically(path, json.dumps(record).encode())
            update = PendingUpdate(sequence, job_id, request, path)
            queue.append(update)
            return update

    def remove(self, update: PendingUpdate) -> None:
        """Forget an update the service accepted (or that no longer applies)."""
        with self._lock:
            queue = self._load()
            queue[:] = [u for u in queue if u.sequence != update.sequence]
            update.path.unlink(missing_ok=True)

    def replace(self, update: PendingUpdate, request: UpdateRequest) -> PendingUpdate:
        """Rewrite an update in place (a new expectedVersion after a version mismatch)."""
        with self._lock:
            record = {"job_id": update.job_id, "request": encode(request).decode()}
            _write_atomically(update.path, json.dumps(record).encode())
            replaced = PendingUpdate(update.sequence, update.job_id, request, update.path)
            queue = self._load()
            queue[:] = [replaced if u.sequence == update.sequence else u for u in queue]
            return replaced


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except OSError as exc:
        raise HostStateError(
            f"Cannot write {path}: {exc.strerror}. Check free space and permissions of the "
            "agent's state_dir."
        ) from exc
