"""SQLite: one file in WAL mode; one writer connection on its own thread, transactions
serialised; a small pool of read-only connections for snapshots.

A control plane's write rate is small (lifecycle events, not bytes), so a single writer thread
is simpler than a pool and never returns `database is locked`. Reads are another matter: a client
polling GetDeployment during a rollout must not queue behind the engine's write transactions, so
`snapshot()` runs on reader connections, each on its own thread: WAL lets them read the last
committed state while the writer holds its transaction open.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, Literal

from codedeploy_server.errors import StoreError
from codedeploy_server.store.base import Row

_BUSY_TIMEOUT_MS: Final = 10_000
#: Reader connections for snapshots: API reads in flight at once (more wait for a free one).
READERS: Final = 2


class _Worker:
    """One connection and the one thread every call on it runs on, in submission order.

    sqlite3 objects are not thread-safe, and one FIFO thread per connection gives the ordering
    the cancellation handling relies on: work queued after a statement runs after it, even when
    the task that queued that statement was cancelled while waiting for it.
    """

    def __init__(self, name: str) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    async def open(self, path: Path, *, read_only: bool) -> None:
        """Connect on the thread (StoreError saying why when the file cannot be opened)."""
        loop = asyncio.get_running_loop()
        try:
            self._conn = await loop.run_in_executor(self._thread, _connect, path, read_only)
        except BaseException:
            self._thread.shutdown(wait=False)
            raise

    def submit(self, function: Any, *args: Any) -> asyncio.Future[Any]:
        """Queue `function(connection, *args)` on the thread now; its result, as a future."""
        conn = self._conn
        if conn is None:
            raise StoreError("The database is closed")
        return asyncio.get_running_loop().run_in_executor(self._thread, function, conn, *args)

    async def run(self, function: Any, *args: Any) -> Any:
        """Run `function(connection, *args)` on the thread."""
        return await self.submit(function, *args)

    async def close(self) -> None:
        """Close the connection (after whatever is queued) and stop the thread."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, conn.close)
        self._thread.shutdown(wait=True)


class SqliteTx:
    """A transaction on one connection; every call runs on that connection's thread."""

    dialect: Literal["sqlite"] = "sqlite"
    for_update = ""

    def __init__(self, worker: _Worker) -> None:
        self._worker = worker

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        count: int = await self._worker.run(_execute, sql, params)
        return count

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row, or None."""
        row: Row | None = await self._worker.run(_fetchone, sql, params)
        return row

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row."""
        rows: list[Row] = await self._worker.run(_fetchall, sql, params)
        return rows


class SqliteStore:
    """The store on a local SQLite file."""

    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, path: Path, *, readers: int = READERS) -> None:
        self.location = str(path)
        self._path = path.expanduser()
        self._writer = _Worker("sqlite")
        self._lock = asyncio.Lock()
        self._open = False
        self._reader_count = readers
        self._readers: list[_Worker] = []
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._opening: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Open (and create) the file; WAL mode; foreign keys on. The readers open at the first
        snapshot: after `open_store` has migrated the schema they read."""
        await self._writer.open(self._path, read_only=False)
        self._open = True

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTx]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error); one transaction at a time."""
        async with self._lock:
            # The statement runs on the store's thread even when this task is cancelled while
            # waiting for it: then wait for it anyway and roll it back, or the connection would
            # stay inside a transaction and refuse every later BEGIN.
            begin = asyncio.ensure_future(self._writer.run(_execute, "BEGIN IMMEDIATE", ()))
            try:
                await asyncio.shield(begin)
            except asyncio.CancelledError:
                with contextlib.suppress(StoreError):
                    await begin
                    await self._writer.run(_execute, "ROLLBACK", ())
                raise
            try:
                yield SqliteTx(self._writer)
            except BaseException:
                await asyncio.shield(self._writer.run(_execute, "ROLLBACK", ()))
                raise
            await asyncio.shield(self._writer.run(_execute, "COMMIT", ()))

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[SqliteTx]:
        """A read transaction (deferred BEGIN) on a reader connection: every read sees the
        database as committed when the first one ran, without waiting for the writer; a write
        fails with StoreError (the readers are `PRAGMA query_only`)."""
        await self._readers_open()
        reader = await self._idle.get()
        try:
            await reader.run(_execute, "BEGIN", ())
            yield SqliteTx(reader)
        finally:
            # Queued now on the reader's own thread, so it runs after anything this task left
            # running there (a BEGIN or a query whose wait was cancelled): the next user of the
            # reader, whose BEGIN queues behind it, never finds it inside a transaction. Ending
            # a read-only transaction by ROLLBACK or COMMIT is the same.
            try:
                end: asyncio.Future[Any] | None = reader.submit(_end_read)
            except StoreError:  # closed meanwhile: nothing left to end
                end = None
            self._idle.put_nowait(reader)
            if end is not None:
                await end

    async def _readers_open(self) -> None:
        """Open the reader connections once (a task of its own, so that a caller cancelled
        while they open neither loses nor leaks one); again after a failed attempt."""
        if not self._open:
            raise StoreError("The database is closed")
        opening = self._opening
        if opening is None or (opening.done() and (opening.cancelled() or opening.exception())):
            opening = self._opening = asyncio.ensure_future(self._open_readers())
            opening.add_done_callback(_retrieve)
        await asyncio.shield(opening)

    async def _open_readers(self) -> None:
        opened: list[_Worker] = []
        try:
            for _ in range(self._reader_count):
                reader = _Worker("sqlite-reader")
                await reader.open(self._path, read_only=True)
                opened.append(reader)
        except BaseException:
            for reader in opened:
                await reader.close()
            raise
        self._readers.extend(opened)
        for reader in opened:
            self._idle.put_nowait(reader)

    async def close(self) -> None:
        """Close the readers, then the writer, and their threads."""
        self._open = False
        opening, self._opening = self._opening, None
        if opening is not None:
            await asyncio.wait([opening])
        readers, self._readers = self._readers, []
        for reader in readers:
            await reader.close()
        await self._writer.close()


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a task's exception as seen (its waiters get it; a cancelled waiter does not)."""
    if not task.cancelled():
        task.exception()


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    try:
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        if read_only:
            # WAL mode is a property of the file, set by the writer before any reader opens.
            conn.execute("PRAGMA query_only=ON")
        else:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable across crashes of the server
            conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(
            f"Cannot open the database {path}: {exc}. Check that the directory "
            "exists and is writable by the server's user."
        ) from exc
    return conn


def _end_read(conn: sqlite3.Connection) -> None:
    """End the connection's read transaction, if it is in one."""
    if conn.in_transaction:
        _execute(conn, "ROLLBACK", ())


def _execute(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int:
    try:
        return conn.execute(sql, tuple(params)).rowcount
    except sqlite3.Error as exc:
        raise StoreError(f"Database error ({exc}) in: {_verb(sql)} ...") from exc


def _fetchone(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Row | None:
    try:
        row = conn.execute(sql, tuple(params)).fetchone()
    except sqlite3.Error as exc:
        raise StoreError(f"Database error ({exc}) in: {_verb(sql)} ...") from exc
    return None if row is None else dict(row)


def _fetchall(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Row]:
    try:
        return [dict(row) for row in conn.execute(sql, tuple(params)).fetchall()]
    except sqlite3.Error as exc:
        raise StoreError(f"Database error ({exc}) in: {_verb(sql)} ...") from exc


def _verb(sql: str) -> str:
    """The statement's first word, for error messages (never its parameters)."""
    return sql.split(maxsplit=1)[0] if sql.strip() else "?"
