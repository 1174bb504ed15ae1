"""Opening the store named in the server config, and migrating it."""

from __future__ import annotations

import time
from pathlib import Path

from codedeploy_server.store.base import Store, Tx
from codedeploy_server.store.migrations import MIGRATIONS
from codedeploy_server.store.postgres import PostgresStore
from codedeploy_server.store.sqlite import SqliteStore

#: An arbitrary constant: the advisory lock every server takes while migrating a shared database.
_MIGRATION_LOCK = 0x0C0DE_DE91


async def open_store(database: str) -> Store:
    """A path (SQLite) or a `postgresql://` URL; the schema is brought up to date."""
    if database.startswith(("postgresql://", "postgres://")):
        postgres = PostgresStore(database)
        await postgres.open()
        store: Store = postgres
    else:
        sqlite = SqliteStore(Path(database))
        await sqlite.open()
        store = sqlite
    try:
        await migrate(store)
    except BaseException:
        await store.close()
        raise
    return store


async def migrate(store: Store) -> list[int]:
    """Apply the migrations this database has not seen; the versions applied."""
    applied: list[int] = []
    async with store.transaction() as tx:
        if tx.dialect == "postgresql":
            # Two servers starting together: one migrates, the other waits, then sees it done.
            await tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        await tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
            "applied_at DOUBLE PRECISION NOT NULL)"
        )
        done = {row["version"] for row in await tx.fetchall("SELECT version FROM schema_version")}
        for version, description, statements in MIGRATIONS:
            if version in done:
                continue
            await _apply(tx, statements)
            await tx.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (version, description, time.time()),
            )
            applied.append(version)
    return applied


async def _apply(tx: Tx, statements: tuple[str, ...]) -> None:
    for statement in statements:
        await tx.execute(statement)
