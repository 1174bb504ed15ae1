"""PostgreSQL (psycopg 3, async pool): several servers may share one database.

Statements are written with `?` placeholders and translated to psycopg's `%s` once per text.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from codedeploy_server.errors import StoreError
from codedeploy_server.store.base import Row

_PLACEHOLDER = re.compile(r"\?")


@lru_cache(maxsize=512)
def _translate(sql: str) -> str:
    # Our SQL never contains a literal `?` or `%` (documented in base.py); escape `%` anyway.
    return _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresTx:
    """A transaction on one pooled connection."""

    dialect: Literal["postgresql"] = "postgresql"
    for_update = " FOR UPDATE"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        import psycopg  # noqa: PLC0415 - the SQLite-only server never loads psycopg

        try:
            cursor = await self._conn.execute(_translate(sql), tuple(params))
        except psycopg.Error as exc:
            raise StoreError(f"Database error ({exc}) in: {_verb(sql)} ...") from exc
        return int(cursor.rowcount)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row, or None."""
        import psycopg  # noqa: PLC0415

        try:
            cursor = await self._conn.execute(_translate(sql), tuple(params))
            row = await cursor.fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"Database error ({exc}) in: {_verb(sql)} ...") from exc
        return None if row is None else dict(row)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row."""
        import psycopg  # noqa: PLC0415

        try:
            cursor = await self._conn.execute(_translate(sql), tuple(params))
            rows = await cursor.fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"Database error ({exc}) in: {_verb(sql)} ...") from exc
        return [dict(row) for row in rows]


class PostgresStore:
    """The store on a PostgreSQL database."""

    dialect: Literal["postgresql"] = "postgresql"

    def __init__(self, url: str, *, max_connections: int = 10) -> None:
        self.location = redact(url)
        self._url = url
        self._max = max_connections
        self._pool: Any = None

    async def open(self) -> None:
        """Connect (a small pool); StoreError saying why when the database is unreachable."""
        import psycopg  # noqa: PLC0415
        from psycopg.rows import dict_row  # noqa: PLC0415
        from psycopg_pool import AsyncConnectionPool  # noqa: PLC0415

        pool = AsyncConnectionPool(
            self._url,
            min_size=1,
            max_size=self._max,
            kwargs={"row_factory": dict_row, "autocommit": False},
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=10)
        except (psycopg.Error, TimeoutError, OSError) as exc:
            await pool.close()
            raise StoreError(
                f"Cannot connect to the database {self.location}: {exc}. Check the URL, that "
                "PostgreSQL accepts connections from this host, and the credentials."
            ) from exc
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTx]:
        """A transaction on a pooled connection (committed at the end, rolled back on error)."""
        if self._pool is None:
            raise StoreError("The database is closed")
        async with self._pool.connection() as conn, conn.transaction():
            yield PostgresTx(conn)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[PostgresTx]:
        """A READ ONLY, REPEATABLE READ transaction on a pooled connection: every read sees the
        database as committed when the first one ran (other servers' writes included), without
        waiting for row locks; a write fails with StoreError."""
        if self._pool is None:
            raise StoreError("The database is closed")
        async with self._pool.connection() as conn, conn.transaction():
            tx = PostgresTx(conn)
            # Must be the transaction's first statement; it applies to this transaction only,
            # so the pooled connection goes back to the pool with its defaults.
            await tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield tx

    async def close(self) -> None:
        """Close the pool."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


def _verb(sql: str) -> str:
    """The statement's first word, for error messages (never its parameters)."""
    return sql.split(maxsplit=1)[0] if sql.strip() else "?"
