"""The control plane's state: SQLite (one file, WAL) by default, PostgreSQL for a team running
several servers against one database. Same SQL for both (a portable subset, `?` placeholders).

    store = await open_store("/var/lib/codedeploy-server/state.db")   # or "postgresql://..."
    async with store.transaction() as tx:
        row = await tx.fetchone("SELECT doc FROM applications WHERE name = ?", (name,))
    async with store.snapshot() as tx:   # read-only: one consistent state, never waits for writers
        rows = await tx.fetchall("SELECT name FROM applications")
"""

from __future__ import annotations

from codedeploy_server.store.base import Row, Store, Tx, dumps, loads
from codedeploy_server.store.open import open_store

__all__ = ["Row", "Store", "Tx", "dumps", "loads", "open_store"]
