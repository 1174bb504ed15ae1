"""ClockMonitor: periodic checks, warnings, the SigV4 gate and the Jobs-timestamp estimate."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import ntplib
import pytest
from structlog.testing import capture_logs

from codedeploy_agent.clock import TIME_SYNC_HINT, ClockMonitor, ClockSkewError, SkewSource
from codedeploy_agent.config import ClockSettings
from tests.fakes.ntp import NtpServerFactory

TOLERANCE = 0.05


class SleepGate:
    """A stand-in for asyncio.sleep: records each requested delay and waits for `release()`."""

    def __init__(self) -> None:
        self.requested: list[float] = []
        self._releases: asyncio.Queue[None] = asyncio.Queue()
        self._changed = asyncio.Condition()

    async def sleep(self, seconds: float) -> None:
        """Record `seconds` and wait until the test lets the loop go on."""
        async with self._changed:
            self.requested.append(seconds)
            self._changed.notify_all()
        await self._releases.get()

    def release(self) -> None:
        """Let one pending sleep return."""
        self._releases.put_nowait(None)

    async def wait_for_sleeps(self, count: int) -> None:
        """Wait (at most 5 s) until the loop has asked to sleep `count` times."""
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(lambda: len(self.requested) >= count)


def clock_settings(*servers: str, **overrides: float) -> ClockSettings:
    """Settings for `servers` with a short timeout; `overrides` set thresholds."""
    values: dict[str, float] = {"timeout_seconds": 0.2, **overrides}
    return ClockSettings(
        ntp_servers=servers,
        check_interval_seconds=int(values.pop("check_interval_seconds", 3600)),
        **values,
    )


class ShiftedClocks:
    """Wall and monotonic clocks the test can move: `elapse` moves both, `step` only the wall."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.stepped = 0.0

    def wall(self) -> float:
        """The local wall clock."""
        return time.time() + self.elapsed + self.stepped

    def monotonic(self) -> float:
        """The monotonic clock, which no clock fix moves."""
        return time.monotonic() + self.elapsed


@pytest.mark.asyncio
async def test_loop_checks_at_start_and_every_interval(ntp_server: NtpServerFactory) -> None:
    """run() measures at once, sleeps check_interval_seconds, then measures again."""
    server = ntp_server(0.0)
    gate = SleepGate()
    monitor = ClockMonitor(
        clock_settings(server.address, check_interval_seconds=7), sleep=gate.sleep
    )
    task = asyncio.create_task(monitor.run())
    try:
        await gate.wait_for_sleeps(1)
        assert gate.requested == [7]
        skew = monitor.current_skew
        assert skew is not None
        assert abs(skew) < TOLERANCE
        server.offset_seconds = 100.0
        gate.release()
        await gate.wait_for_sleeps(2)
        skew = monitor.current_skew
        assert skew is not None
        assert abs(skew - 100.0) < TOLERANCE
        assert server.requests == 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.asyncio
async def test_loop_survives_ntp_outages_and_warns_once(ntp_server: NtpServerFactory) -> None:
    """An unreachable server warns once, stays quiet while it lasts, and warns again later."""
    server = ntp_server(5.0, answer=False)
    gate = SleepGate()
    monitor = ClockMonitor(clock_settings(server.address), sleep=gate.sleep)
    with capture_logs() as logs:
        task = asyncio.create_task(monitor.run())
        try:
            await gate.wait_for_sleeps(1)
            gate.release()
            await gate.wait_for_sleeps(2)
            assert monitor.current_skew is None
            server.answer = True
            gate.release()
            await gate.wait_for_sleeps(3)
            assert monitor.current_skew == pytest.approx(5.0, abs=TOLERANCE)
            server.answer = False
            gate.release()
            await gate.wait_for_sleeps(4)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    outages = [e for e in logs if e["event"] == "ntp_unreachable"]
    assert [e["log_level"] for e in outages] == ["warning", "debug", "warning"]
    assert outages[0]["servers"] == [server.address]
    assert outages[0]["tried"] == [f"{server.address}: No response received from 127.0.0.1."]
    # The last good reading is kept through one failed check.
    assert monitor.current_skew == pytest.approx(5.0, abs=TOLERANCE)


@pytest.mark.asyncio
async def test_run_once_when_interval_is_zero(ntp_server: NtpServerFactory) -> None:
    """With check_interval_seconds 0 the monitor checks once and run() returns."""
    server = ntp_server(0.0)
    monitor = ClockMonitor(clock_settings(server.address, check_interval_seconds=0))
    await asyncio.wait_for(monitor.run(), timeout=5)
    assert server.requests == 1
    assert monitor.current_skew is not None


@pytest.mark.asyncio
async def test_run_returns_at_once_when_disabled() -> None:
    """An empty server list disables the check: run() returns and nothing is known or refused."""
    monitor = ClockMonitor(clock_settings())
    with capture_logs() as logs:
        await asyncio.wait_for(monitor.run(), timeout=1)
    assert logs == [
        {
            "event": "clock_check_disabled",
            "log_level": "info",
            "component": "codedeploy_agent.clock",
            "reason": "clock.ntp_servers is empty",
        }
    ]
    assert monitor.current_skew is None
    monitor.check_sigv4_allowed()


@pytest.mark.asyncio
async def test_unexpected_ntp_failure_does_not_escape(
    ntp_server: NtpServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even an exception ntplib is not documented to raise is logged, not raised."""
    server = ntp_server(0.0)

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("library bug")

    monkeypatch.setattr(ntplib.NTPClient, "request", broken)
    monitor = ClockMonitor(clock_settings(server.address))
    with capture_logs() as logs:
        assert await monitor.check_now() is None
    assert [(e["event"], e["log_level"]) for e in logs] == [("clock_check_crashed", "error")]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("offset", "event", "level"),
    [
        (10.0, "clock_skew_measured", "debug"),
        (-10.0, "clock_skew_measured", "debug"),
        (60.0, "clock_skew_high", "warning"),
        (-60.0, "clock_skew_high", "warning"),
        (600.0, "clock_skew_refuses_sigv4", "warning"),
    ],
)
async def test_warning_threshold(
    ntp_server: NtpServerFactory, offset: float, event: str, level: str
) -> None:
    """A skew past warn_seconds (30 s) logs a warning with the fix; one past max_skew says so."""
    server = ntp_server(offset)
    monitor = ClockMonitor(clock_settings(server.address, warn_seconds=30.0))
    with capture_logs() as logs:
        await monitor.check_now()
    assert [(e["event"], e["log_level"]) for e in logs] == [(event, level)]
    assert logs[0]["server"] == server.address
    assert logs[0]["skew_seconds"] == pytest.approx(offset, abs=TOLERANCE)
    if level == "warning":
        assert logs[0]["hint"] == TIME_SYNC_HINT


@pytest.mark.asyncio
async def test_sigv4_gate(ntp_server: NtpServerFactory) -> None:
    """SigV4 calls are allowed up to max_skew_seconds and refused past it, naming the server."""
    server = ntp_server(60.0)
    monitor = ClockMonitor(clock_settings(server.address))
    monitor.check_sigv4_allowed()  # nothing measured yet: unknown never blocks
    await monitor.check_now()
    monitor.check_sigv4_allowed()
    server.offset_seconds = 600.0
    await monitor.check_now()
    with pytest.raises(ClockSkewError) as info:
        monitor.check_sigv4_allowed()
    assert info.value.server == server.address
    assert info.value.skew_seconds == pytest.approx(600.0, abs=TOLERANCE)
    message = str(info.value)
    assert message.startswith(f"The local clock is 600.0 s behind the NTP server {server.address}")
    assert "InvalidSignatureException" in message
    assert "169.254.169.123" in message


@pytest.mark.asyncio
async def test_clock_fix_takes_effect_without_a_new_check(ntp_server: NtpServerFactory) -> None:
    """When the local clock is stepped after a reading, the skew follows at once."""
    server = ntp_server(600.0)
    clocks = ShiftedClocks()
    monitor = ClockMonitor(
        clock_settings(server.address), wall_clock=clocks.wall, monotonic=clocks.monotonic
    )
    await monitor.check_now()
    with pytest.raises(ClockSkewError):
        monitor.check_sigv4_allowed()
    clocks.stepped = 600.0  # e.g. `chronyc makestep`
    assert monitor.current_skew == pytest.approx(0.0, abs=TOLERANCE)
    monitor.check_sigv4_allowed()


@pytest.mark.asyncio
async def test_stale_reading_is_dropped(ntp_server: NtpServerFactory) -> None:
    """An NTP reading older than two check intervals no longer counts."""
    server = ntp_server(600.0)
    clocks = ShiftedClocks()
    monitor = ClockMonitor(
        clock_settings(server.address, check_interval_seconds=60),
        wall_clock=clocks.wall,
        monotonic=clocks.monotonic,
    )
    await monitor.check_now()
    clocks.elapsed = 119.0
    assert monitor.current_skew == pytest.approx(600.0, abs=TOLERANCE)
    clocks.elapsed = 121.0
    assert monitor.current_skew is None
    monitor.check_sigv4_allowed()


def test_estimate_is_a_lower_bound_when_ntp_is_disabled() -> None:
    """With NTP off, a Jobs timestamp ahead of the local clock gives that skew as an estimate."""
    monitor = ClockMonitor(clock_settings())
    monitor.observe_remote_timestamp(10_400.0, 10_000.0)
    reading = monitor.reading
    assert reading is not None
    assert reading.source is SkewSource.JOBS_TIMESTAMPS
    assert reading.server == "jobs-service"
    assert reading.measured_at == 10_000.0
    assert reading.offset_seconds == pytest.approx(400.0, abs=1e-3)
    assert math.isinf(reading.uncertainty_seconds)
    with pytest.raises(ClockSkewError) as info:
        monitor.check_sigv4_allowed()
    assert str(info.value).startswith(
        "The local clock is 400.0 s behind the Jobs service's message timestamps "
        "(a lower bound; no NTP reading) (measured 1970-01-01T02:46:40Z)"
    )
    assert info.value.source is SkewSource.JOBS_TIMESTAMPS


def test_late_messages_do_not_look_like_skew() -> None:
    """A message delivered an hour late (queued while offline) does not claim the clock is ahead."""
    monitor = ClockMonitor(clock_settings())
    monitor.observe_remote_timestamp(10_000.0, 13_600.0)
    assert monitor.current_skew == 0.0
    monitor.check_sigv4_allowed()


def test_estimate_keeps_the_tightest_lower_bound() -> None:
    """The estimate is the largest lower bound seen: the message with the least delay."""
    monitor = ClockMonitor(clock_settings())
    monitor.observe_remote_timestamp(10_350.0, 10_000.0)
    monitor.observe_remote_timestamp(20_410.0, 20_000.0)
    monitor.observe_remote_timestamp(30_000.0, 30_050.0)
    assert monitor.current_skew == pytest.approx(410.0, abs=1e-3)


def test_request_response_pair_bounds_a_clock_ahead() -> None:
    """A response to a request sent at `sent_at` gives an upper bound, so a fast clock shows."""
    monitor = ClockMonitor(clock_settings())
    monitor.observe_remote_timestamp(1000.0, 1500.2, sent_at=1500.0)
    reading = monitor.reading
    assert reading is not None
    assert reading.offset_seconds == pytest.approx(-499.0, abs=1e-3)
    assert reading.uncertainty_seconds == pytest.approx(1.2, abs=1e-3)
    with pytest.raises(ClockSkewError, match=r"^The local clock is 499\.0 s ahead of the Jobs"):
        monitor.check_sigv4_allowed()


def test_bounds_that_include_zero_give_no_skew() -> None:
    """When the observed interval contains zero, the estimate is zero."""
    monitor = ClockMonitor(clock_settings())
    monitor.observe_remote_timestamp(1500.0, 1500.3, sent_at=1499.8)
    reading = monitor.reading
    assert reading is not None
    assert reading.offset_seconds == 0.0
    assert reading.uncertainty_seconds == pytest.approx(1.5, abs=1e-3)


def test_contradictory_bounds_keep_the_newest_message() -> None:
    """If the service's clock jumped, older bounds are dropped in favour of the newest one."""
    monitor = ClockMonitor(clock_settings())
    monitor.observe_remote_timestamp(10_400.0, 10_000.0)
    monitor.observe_remote_timestamp(1000.0, 1011.1, sent_at=1011.0)
    assert monitor.current_skew == pytest.approx(-10.0, abs=1e-3)


def test_response_received_before_it_was_sent_is_ignored() -> None:
    """An observation whose sent_at is after received_at is nonsense and is ignored."""
    monitor = ClockMonitor(clock_settings())
    monitor.observe_remote_timestamp(1000.0, 1000.0, sent_at=1001.0)
    assert monitor.current_skew is None


def test_estimate_follows_clock_steps() -> None:
    """Stepping the local clock after an observation corrects the estimate at once."""
    clocks = ShiftedClocks()
    monitor = ClockMonitor(clock_settings(), wall_clock=clocks.wall, monotonic=clocks.monotonic)
    monitor.observe_remote_timestamp(10_400.0, 10_000.0)
    clocks.stepped = 400.0
    assert monitor.current_skew == pytest.approx(0.0, abs=1e-3)


def test_old_observations_expire() -> None:
    """Jobs timestamps older than an hour are forgotten."""
    clocks = ShiftedClocks()
    monitor = ClockMonitor(clock_settings(), wall_clock=clocks.wall, monotonic=clocks.monotonic)
    monitor.observe_remote_timestamp(10_400.0, 10_000.0)
    clocks.elapsed = 3601.0
    assert monitor.current_skew is None


def test_estimate_warns_once_when_it_crosses_the_threshold() -> None:
    """An estimate past warn_seconds logs one warning, not one per message."""
    monitor = ClockMonitor(clock_settings(warn_seconds=30.0))
    with capture_logs() as logs:
        monitor.observe_remote_timestamp(1010.0, 1000.0)
        monitor.observe_remote_timestamp(2040.0, 2000.0)
        monitor.observe_remote_timestamp(3045.0, 3000.0)
    assert [(e["event"], e["log_level"], e["source"]) for e in logs] == [
        ("clock_skew_high", "warning", "jobs-timestamps")
    ]
    assert logs[0]["skew_seconds"] == pytest.approx(40.0, abs=1e-3)


@pytest.mark.asyncio
async def test_fresh_ntp_reading_wins_over_the_estimate(ntp_server: NtpServerFactory) -> None:
    """Jobs timestamps measure the service's clock; a fresh NTP reading takes precedence."""
    server = ntp_server(0.0)
    monitor = ClockMonitor(clock_settings(server.address))
    await monitor.check_now()
    monitor.observe_remote_timestamp(10_400.0, 10_000.0)
    reading = monitor.reading
    assert reading is not None
    assert reading.source is SkewSource.NTP
    monitor.check_sigv4_allowed()


@pytest.mark.asyncio
async def test_estimate_is_used_when_ntp_is_unreachable(closed_udp_port: int) -> None:
    """When no NTP server answers, the Jobs-timestamp estimate is what the gate uses."""
    monitor = ClockMonitor(clock_settings(f"127.0.0.1:{closed_udp_port}"))
    assert await monitor.check_now() is None
    monitor.observe_remote_timestamp(10_400.0, 10_000.0)
    with pytest.raises(ClockSkewError):
        monitor.check_sigv4_allowed()
