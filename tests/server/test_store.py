"""The store: migrations, transactions and portable SQL on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from codedeploy_server.errors import StoreError
from codedeploy_server.store import Store, dumps, loads, open_store
from codedeploy_server.store.migrations import MIGRATIONS
from codedeploy_server.store.open import migrate

pytestmark = pytest.mark.asyncio


async def test_migrations_recorded_once(store: Store) -> None:
    """Every migration is applied and recorded; a second run applies nothing."""
    async with store.transaction() as tx:
        rows = await tx.fetchall("SELECT version FROM schema_version ORDER BY version")
    assert [r["version"] for r in rows] == [m[0] for m in MIGRATIONS]
    assert await migrate(store) == []


async def test_commit_and_rollback(store: Store) -> None:
    """A transaction commits at the end of its block and rolls back on an exception."""
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO applications (name, application_id, create_time, doc) VALUES (?, ?, ?, ?)",
            ("shop", "id-1", 1.5, dumps({"applicationName": "shop"})),
        )

    async def fail_midway() -> None:
        async with store.transaction() as tx:
            await tx.execute("UPDATE applications SET doc = ? WHERE name = ?", ("{}", "shop"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await fail_midway()
    async with store.transaction() as tx:
        row = await tx.fetchone("SELECT * FROM applications WHERE name = ?", ("shop",))
    assert row is not None
    assert loads(row["doc"]) == {"applicationName": "shop"}
    assert row["create_time"] == 1.5


async def test_upsert_and_constraint_errors(store: Store) -> None:
    """ON CONFLICT upserts work on both; a constraint violation is a StoreError."""
    sql = (
        "INSERT INTO counters (name, value) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value"
    )
    for _ in range(3):
        async with store.transaction() as tx:
            await tx.execute(sql, ("deployments", 1))
    async with store.transaction() as tx:
        row = await tx.fetchone("SELECT value FROM counters WHERE name = ?", ("deployments",))
    assert row == {"value": 3}

    async def duplicate_ids() -> None:
        async with store.transaction() as tx:
            insert = "INSERT INTO applications (name, application_id, create_time, doc) VALUES (?, ?, ?, ?)"
            await tx.execute(insert, ("a", "same", 1.0, "{}"))
            await tx.execute(insert, ("b", "same", 1.0, "{}"))

    with pytest.raises(StoreError, match="Database error"):
        await duplicate_ids()
    async with store.transaction() as tx:
        assert await tx.fetchall("SELECT name FROM applications") == []


async def test_concurrent_transactions_do_not_lose_updates(store: Store) -> None:
    """Read-modify-write under `for_update` from many tasks at once loses nothing."""
    async with store.transaction() as tx:
        await tx.execute("INSERT INTO counters (name, value) VALUES (?, ?)", ("n", 0))

    async def bump() -> None:
        async with store.transaction() as tx:
            row = await tx.fetchone(
                "SELECT value FROM counters WHERE name = ?" + tx.for_update,  # noqa: S608 - a constant
                ("n",),
            )
            assert row is not None
            await tx.execute(
                "UPDATE counters SET value = ? WHERE name = ?", (row["value"] + 1, "n")
            )

    await asyncio.gather(*(bump() for _ in range(20)))
    async with store.transaction() as tx:
        assert await tx.fetchone("SELECT value FROM counters WHERE name = ?", ("n",)) == {
            "value": 20
        }


async def test_two_servers_migrate_one_postgres_database(postgres_url: str) -> None:
    """Two servers starting at once against one PostgreSQL database migrate it exactly once."""
    first, second = await asyncio.gather(open_store(postgres_url), open_store(postgres_url))
    try:
        async with first.transaction() as tx:
            rows = await tx.fetchall("SELECT version FROM schema_version")
        assert len(rows) == len(MIGRATIONS)
    finally:
        await first.close()
        await second.close()


async def test_unreachable_postgres_is_a_clear_error() -> None:
    """A database nobody listens on fails with the URL (password hidden) and what to check."""
    with pytest.raises(StoreError) as info:
        await open_store("postgresql://user:secret@127.0.0.1:1/none")
    message = str(info.value)
    assert "postgresql://user:***@127.0.0.1:1/none" in message
    assert "secret" not in message


async def test_unwritable_sqlite_path_is_a_clear_error(tmp_path: object) -> None:
    """A SQLite path under a file fails with the path and the fix."""
    from pathlib import Path  # noqa: PLC0415

    base = Path(str(tmp_path))
    (base / "file").write_text("x")
    with pytest.raises(StoreError, match=r"Cannot open the database .*file/state\.db"):
        await open_store(str(base / "file" / "state.db"))


async def test_cancelled_while_beginning_leaves_the_store_usable(tmp_path: object) -> None:
    """A task cancelled while its transaction begins does not wedge the SQLite connection."""
    from pathlib import Path  # noqa: PLC0415

    store = await open_store(str(Path(str(tmp_path)) / "state.db"))
    try:

        async def use() -> None:
            async with store.transaction() as tx:
                await tx.fetchall("SELECT 1 AS one")

        for _ in range(20):
            task = asyncio.ensure_future(use())
            await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        async with store.transaction() as tx:
            assert await tx.fetchall("SELECT 1 AS one") == [{"one": 1}]
    finally:
        await store.close()
