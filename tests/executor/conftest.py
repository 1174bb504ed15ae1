"""Executor tests run with blockbuster: agent code that blocks the event loop fails the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from blockbuster import blockbuster_ctx


@pytest.fixture(autouse=True)
def no_blocking_calls_on_the_loop() -> Iterator[None]:
    """Fail any test in which codedeploy_agent makes a blocking call inside the event loop."""
    with blockbuster_ctx("codedeploy_agent"):
        yield
