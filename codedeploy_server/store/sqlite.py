"""SQLite: one file in WAL mode, one connection owned by one thread, transactions serialised.

A control plane's write rate is small (lifecycle events, not bytes), so a single writer thread
is simpler than a pool and never returns `database is locked`; readers get the same thread.
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


class SqliteTx:
    """A transaction on the store's connection; every call runs on the store's thread."""

    dialect: Literal["sqlite"] = "sqlite"
    for_update = ""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        count: int = await self._store.run(_execute, sql, params)
        return count

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row, or None."""
        row: Row | None = await self._store.run(_fetchone, sql, params)
        return row

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row."""
        rows: list[Row] = await self._store.run(_fetchall, sql, params)
        return rows


class SqliteStore:
    """The store on a local SQLite file."""

    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, path: Path) -> None:
        self.location = str(path)
        self._path = path.expanduser()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        self._lock = asyncio.Lock()
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Open (and create) the file; WAL mode; foreign keys on."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._open)

    def _open(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable across crashes of the server
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"Cannot open the database {self._path}: {exc}. Check that the directory "
                "exists and is writable by the server's user."
            ) from exc
        self._conn = conn

    async def run(self, function: Any, *args: Any) -> Any:
        """Run `function(connection, *args)` on the store's thread."""
        conn = self._conn
        if conn is None:
            raise StoreError("The database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, conn, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTx]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error); one transaction at a time."""
        async with self._lock:
            # The statement runs on the store's thread even when this task is cancelled while
            # waiting for it: then wait for it anyway and roll it back, or the connection would
            # stay inside a transaction and refuse every later BEGIN.
            begin = asyncio.ensure_future(self.run(_execute, "BEGIN IMMEDIATE", ()))
            try:
                await asyncio.shield(begin)
            except asyncio.CancelledError:
                with contextlib.suppress(StoreError):
                    await begin
                    await self.run(_execute, "ROLLBACK", ())
                raise
            try:
                yield SqliteTx(self)
            except BaseException:
                await asyncio.shield(self.run(_execute, "ROLLBACK", ()))
                raise
            await asyncio.shield(self.run(_execute, "COMMIT", ()))

    async def close(self) -> None:
        """Close the connection and its thread."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, conn.close)
        self._thread.shutdown(wait=True)


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
