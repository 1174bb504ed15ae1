"""The store interface both databases implement: transactions running portable SQL.

SQL rules (so that one statement runs on SQLite and PostgreSQL): `?` placeholders; JSON
documents stored as TEXT (`dumps`/`loads`); `INSERT ... ON CONFLICT (...) DO UPDATE`; booleans
as INTEGER 0/1; times as DOUBLE PRECISION epoch seconds; `tx.for_update` appended to a SELECT
that must lock its rows (PostgreSQL: `FOR UPDATE`; SQLite serialises writers already).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

Row = dict[str, Any]
Dialect = Literal["sqlite", "postgresql"]


class Tx(Protocol):
    """One transaction: committed when the `transaction()` block ends, rolled back on error
    (a `snapshot()` block's transaction only reads: its writes fail)."""

    @property
    def dialect(self) -> Dialect:
        """`sqlite` or `postgresql`."""

    @property
    def for_update(self) -> str:
        """` FOR UPDATE` on PostgreSQL, empty on SQLite."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a query, as a dict, or None."""

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of a query, as dicts."""


class Store(Protocol):
    """An open database."""

    @property
    def dialect(self) -> Dialect:
        """`sqlite` or `postgresql`."""

    @property
    def location(self) -> str:
        """Where it is (a path, or the URL without its password), for messages."""

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """Begin a transaction (serialised writers on SQLite; READ COMMITTED on PostgreSQL)."""

    def snapshot(self) -> AbstractAsyncContextManager[Tx]:
        """Begin a read-only transaction: every read in it sees one consistent, committed state
        of the database (as of its first read), and it does not wait for write transactions
        (SQLite: a reader connection under WAL; PostgreSQL: READ ONLY, REPEATABLE READ). For
        operations that only read; writing in one is a programming error (StoreError)."""

    async def close(self) -> None:
        """Close every connection."""


def dumps(document: Any) -> str:
    """A JSON document for a TEXT column (compact, keys sorted: stable for comparisons)."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def loads(text: str | None) -> Any:
    """The document stored by `dumps` (None stays None)."""
    return None if text is None else json.loads(text)


async def collect(rows: AsyncIterator[Row]) -> list[Row]:
    """All rows of an async iterator."""
    return [row async for row in rows]
