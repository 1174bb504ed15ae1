"""The server's own errors (API errors with CodeDeploy's exception names live in api/errors.py)."""

from __future__ import annotations


class ServerError(Exception):
    """Root of the errors the server raises on purpose; `str(err)` says what and how to fix."""


class StoreError(ServerError):
    """Raised when the database cannot be opened, migrated or written."""


class ServerConfigError(ServerError):
    """Raised when the server's config file is missing or invalid."""
