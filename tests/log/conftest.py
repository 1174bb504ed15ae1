"""Every logging test starts and ends with structlog and stdlib logging unconfigured."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from codedeploy_agent.log import shutdown_logging


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Undo `configure_logging` (structlog config, root handler and level) after each test."""
    root = logging.getLogger()
    level = root.level
    yield
    shutdown_logging()
    root.setLevel(level)
