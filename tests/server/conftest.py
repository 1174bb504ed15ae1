"""Databases for server tests: a SQLite file, and a fresh PostgreSQL database on 127.0.0.1:5432
(the machine's PostgreSQL, trust auth) created for the test and dropped after."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio

from codedeploy_server.store import Store, open_store

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database (dropped when the test ends)."""
    name = f"cdtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test runs against SQLite and against PostgreSQL."""
    if request.param == "sqlite":
        yield str(tmp_path / "state.db")
    else:
        yield request.getfixturevalue("postgres_url")


@pytest_asyncio.fixture
async def store(database: str) -> AsyncIterator[Store]:
    """An open, migrated store."""
    opened = await open_store(database)
    yield opened
    await opened.close()
