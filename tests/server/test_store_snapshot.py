"""The store's read-only snapshots, on SQLite (reader connections) and PostgreSQL (READ ONLY,
REPEATABLE READ): committed data only, one consistent state, never waiting for writers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from codedeploy_server.errors import StoreError
from codedeploy_server.store import Store, open_store
from codedeploy_server.store.sqlite import READERS

pytestmark = pytest.mark.asyncio

INSERT = "INSERT INTO counters (name, value) VALUES (?, ?)"
NAMES = "SELECT name FROM counters ORDER BY name"


async def names(store: Store) -> list[str]:
    """The counters' names, read in a fresh snapshot."""
    async with store.snapshot() as tx:
        return [row["name"] for row in await tx.fetchall(NAMES)]


def files(directory: Path) -> list[str]:
    """The names in `directory`, sorted."""
    return sorted(path.name for path in directory.iterdir())


@contextlib.asynccontextmanager
async def open_write(store: Store, *rows: str) -> AsyncIterator[asyncio.Task[None]]:
    """A write transaction that inserted `rows` and stays open (uncommitted) for the block's
    duration; it commits when the block ends."""
    written, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with store.transaction() as tx:
            for name in rows:
                await tx.execute(INSERT, (name, 1))
            # PostgreSQL: lock the rows as a writer that reads before it updates would.
            await tx.fetchall(NAMES + tx.for_update)
            written.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await asyncio.wait_for(written.wait(), 5)
    try:
        yield task
    finally:
        release.set()
        await task


async def test_snapshot_sees_committed_data_and_does_not_wait_for_a_writer(store: Store) -> None:
    """A snapshot taken while a write transaction is open completes at once and sees the
    committed rows only, not the open transaction's insert."""
    async with store.transaction() as tx:
        await tx.execute(INSERT, ("committed", 1))
    async with open_write(store, "uncommitted") as writer:
        seen = await asyncio.wait_for(names(store), 2)
        assert not writer.done()
    assert seen == ["committed"]
    assert await names(store) == ["committed", "uncommitted"]


async def test_snapshot_is_one_consistent_state(store: Store) -> None:
    """A commit made while a snapshot is open is not seen by that snapshot's later reads (and
    the commit does not wait for the snapshot), but by the next snapshot."""
    async with store.transaction() as tx:
        await tx.execute(INSERT, ("first", 1))
    async with store.snapshot() as snap:
        assert [row["name"] for row in await snap.fetchall(NAMES)] == ["first"]

        async def commit_second() -> None:
            async with store.transaction() as tx:
                await tx.execute(INSERT, ("second", 1))
                await tx.execute("UPDATE counters SET value = ? WHERE name = ?", (7, "first"))

        await asyncio.wait_for(commit_second(), 2)
        assert await snap.fetchall("SELECT name, value FROM counters ORDER BY name") == [
            {"name": "first", "value": 1}
        ]
    assert await names(store) == ["first", "second"]


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        (INSERT, ("x", 1)),
        ("UPDATE counters SET value = ? WHERE name = ?", (2, "kept")),
        ("DELETE FROM counters WHERE name = ?", ("kept",)),
    ],
)
async def test_writing_in_a_snapshot_fails(
    store: Store, sql: str, params: tuple[object, ...]
) -> None:
    """INSERT, UPDATE and DELETE in a snapshot fail with StoreError naming the statement and
    the database's refusal; nothing changes and the store stays usable."""
    async with store.transaction() as tx:
        await tx.execute(INSERT, ("kept", 1))
    with pytest.raises(StoreError) as info:
        async with store.snapshot() as snap:
            await snap.execute(sql, params)
    verb = sql.split(maxsplit=1)[0]
    refusal = {
        "sqlite": "attempt to write a readonly database",
        "postgresql": f"cannot execute {verb} in a read-only transaction",
    }[store.dialect]
    assert str(info.value) == f"Database error ({refusal}) in: {verb} ..."
    async with store.snapshot() as snap:
        assert await snap.fetchall("SELECT name, value FROM counters") == [
            {"name": "kept", "value": 1}
        ]


async def test_cancelled_snapshots_leave_the_pool_usable(store: Store) -> None:
    """Snapshots cancelled while waiting for a reader, while beginning and while reading leave
    no connection inside a stale transaction: later snapshots all see a later commit."""

    async def use() -> None:
        async with store.snapshot() as tx:
            await tx.fetchall(NAMES)
            await tx.fetchall(NAMES)

    for attempt in range(40):
        tasks = [asyncio.ensure_future(use()) for _ in range(1 + attempt % 4)]
        for _ in range(attempt % 5):
            await asyncio.sleep(0)
        if attempt % 7 == 6:
            await asyncio.sleep(0.001)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    async with store.transaction() as tx:
        await tx.execute(INSERT, ("after", 1))
    assert (
        await asyncio.wait_for(asyncio.gather(*(names(store) for _ in range(6))), 5)
        == [["after"]] * 6
    )
    for _ in range(2 * READERS):
        assert await names(store) == ["after"]


async def test_more_snapshots_than_readers_at_once(store: Store) -> None:
    """Snapshots beyond the pool's size wait for a free reader and all complete."""
    async with store.transaction() as tx:
        await tx.execute(INSERT, ("n", 1))
    started = asyncio.Event()

    async def hold(index: int) -> int:
        async with store.snapshot() as tx:
            started.set()
            await asyncio.sleep(0.01)
            row = await tx.fetchone("SELECT value FROM counters WHERE name = ?", ("n",))
            assert row == {"value": 1}
            return index

    assert await asyncio.wait_for(asyncio.gather(*(hold(i) for i in range(5 * READERS))), 10) == [
        *range(5 * READERS)
    ]


async def test_close_closes_the_readers(store: Store) -> None:
    """After close(), a snapshot is refused with StoreError "The database is closed"."""
    assert await names(store) == []
    await store.close()
    with pytest.raises(StoreError, match=r"^The database is closed$"):
        await names(store)


async def test_sqlite_close_closes_reader_connections_and_threads(tmp_path: Path) -> None:
    """Closing a SQLite store that served snapshots stops every reader thread, and the writer
    closes last (it checkpoints and removes the WAL file: no reader connection is left)."""
    path = tmp_path / "state.db"
    store = await open_store(str(path))
    await asyncio.gather(*(names(store) for _ in range(2 * READERS)))
    readers = [t for t in threading.enumerate() if t.name.startswith("sqlite-reader")]
    assert len(readers) == READERS
    assert files(tmp_path) == ["state.db", "state.db-shm", "state.db-wal"]
    await store.close()
    assert [t for t in readers if t.is_alive()] == []
    assert files(tmp_path) == ["state.db"]


async def test_sqlite_readers_open_after_the_migrations(tmp_path: Path) -> None:
    """A fresh SQLite store's first snapshot (on a reader opened after open_store migrated the
    file) sees the schema; none opens before a snapshot is asked for."""
    store = await open_store(str(tmp_path / "state.db"))
    try:
        assert not [t for t in threading.enumerate() if t.name.startswith("sqlite-reader")]
        async with store.snapshot() as tx:
            rows = await tx.fetchall("SELECT version FROM schema_version ORDER BY version")
        assert rows[0] == {"version": 1}
    finally:
        await store.close()
