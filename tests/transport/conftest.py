"""Transport tests: real brokers on 127.0.0.1, and blockbuster watching the event loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from blockbuster import blockbuster_ctx

from tests.fakes.broker_fixtures import amqtt_broker, mosquitto, mosquitto_factory  # noqa: F401


@pytest.fixture(autouse=True)
def no_blocking_calls_on_the_loop() -> Iterator[None]:
    """Fail any test in which codedeploy_agent makes a blocking call inside the event loop."""
    with blockbuster_ctx("codedeploy_agent"):
        yield
