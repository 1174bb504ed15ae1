"""Reconnection backoff: capped, exponential, fully jittered, reset by a long connection."""

from __future__ import annotations

import random

import pytest
from structlog.testing import capture_logs

from codedeploy_agent.transport import Backoff, MqttSession
from tests.fakes.brokers import free_port
from tests.transport.helpers import Inbox, settings


class HighestRandom(random.Random):
    """A generator whose uniform(a, b) is always b: the backoff's upper bounds become visible."""

    def uniform(self, a: float, b: float) -> float:
        del a
        return b


class StopRetryingError(Exception):
    """Raised by the fake sleep to end run() after enough attempts."""


def test_waits_double_up_to_the_cap() -> None:
    """The n-th wait is at most min(cap, base * 2**n): 0.5, 1, 2, ... 16, then 30 forever."""
    backoff = Backoff(base=0.5, cap=30.0, rng=HighestRandom())
    assert [backoff.next_delay() for _ in range(10)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0,
    ]  # fmt: skip
    assert backoff.attempt == 10


def test_waits_are_jittered_within_their_bounds() -> None:
    """Each wait is uniform in [0, bound] (full jitter), drawn from the injected generator."""
    backoff = Backoff(base=0.5, cap=30.0, rng=random.Random(3))  # noqa: S311 - test jitter
    reference = random.Random(3)  # noqa: S311 - test jitter
    delays = [backoff.next_delay() for _ in range(12)]
    assert delays == [reference.uniform(0.0, min(30.0, 0.5 * 2**n)) for n in range(12)]
    assert all(0.0 <= d <= min(30.0, 0.5 * 2**n) for n, d in enumerate(delays))
    assert len(set(delays)) == 12


def test_a_long_connection_resets_the_backoff() -> None:
    """A connection that lasted reset_after seconds or more starts the waits over."""
    now = 100.0
    backoff = Backoff(base=1.0, cap=8.0, reset_after=10.0, rng=HighestRandom(), clock=lambda: now)
    assert [backoff.next_delay() for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    backoff.connected()
    now += 9.5
    backoff.disconnected()
    assert backoff.next_delay() == 8.0  # a short connection: a flapping broker keeps us slow
    backoff.connected()
    now += 10.0
    backoff.disconnected()
    assert backoff.attempt == 0
    assert backoff.next_delay() == 1.0


def test_invalid_bounds_are_refused() -> None:
    """A cap below the base is a programming error."""
    with pytest.raises(ValueError, match=r"0 < base <= cap"):
        Backoff(base=2.0, cap=1.0)


@pytest.mark.asyncio
async def test_session_waits_with_its_backoff_between_attempts() -> None:
    """Against a closed port the session sleeps the backoff's delays and logs each retry."""
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 6:
            raise StopRetryingError

    port = free_port()  # nothing listens there
    session = MqttSession(
        settings(f"mqtt://127.0.0.1:{port}"),
        client_id="thing-1",
        subscriptions=["t"],
        backoff=Backoff(base=0.5, cap=4.0, rng=random.Random(11), sleep=fake_sleep),  # noqa: S311
    )
    with capture_logs() as logs, pytest.raises(StopRetryingError):
        await session.run(Inbox())
    reference = random.Random(11)  # noqa: S311 - test jitter
    assert slept == [reference.uniform(0.0, min(4.0, 0.5 * 2**n)) for n in range(6)]
    message = (
        f"Cannot connect to the MQTT broker mqtt://127.0.0.1:{port}: Connection refused. "
        "Check that the broker is running and that mqtt.endpoint is right."
    )
    assert [(e["log_level"], e["event"], e["retry_in"]) for e in logs] == [
        ("warning", message, round(delay, 3)) for delay in slept
    ]
