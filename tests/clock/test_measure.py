"""NTP measurement with the real ntplib against fake servers on 127.0.0.1."""

from __future__ import annotations

import time

import pytest
from blockbuster import blockbuster_ctx
from structlog.testing import capture_logs

from codedeploy_agent.clock import (
    DEFAULT_NTP_PORT,
    TIME_SYNC_HINT,
    ClockSkewError,
    SkewReading,
    SkewSource,
    measure_skew,
    parse_server,
)
from codedeploy_agent.config import ClockSettings
from codedeploy_agent.errors import AgentError, ConfigError
from tests.fakes.ntp import NtpServerFactory

#: Loopback round trips take well under a millisecond; this leaves room for a busy CI machine.
TOLERANCE = 0.05


def settings(*servers: str, timeout: float = 0.3) -> ClockSettings:
    """Clock settings that ask only `servers`, with a short timeout."""
    return ClockSettings(ntp_servers=servers, timeout_seconds=timeout)


@pytest.mark.asyncio
@pytest.mark.parametrize("offset", [0.0, 60.0, 600.0, -120.0])
async def test_measures_the_server_offset(ntp_server: NtpServerFactory, offset: float) -> None:
    """The measured offset is the fake server's offset (server minus local) within 50 ms."""
    server = ntp_server(offset)
    before = time.time()
    reading = await measure_skew(settings(server.address))
    assert reading is not None
    assert abs(reading.offset_seconds - offset) < TOLERANCE
    assert reading.server == server.address
    assert reading.source is SkewSource.NTP
    assert before <= reading.measured_at <= time.time()
    assert 0 <= reading.uncertainty_seconds < TOLERANCE
    assert server.requests == 1


@pytest.mark.asyncio
async def test_empty_server_list_disables_the_check(ntp_server: NtpServerFactory) -> None:
    """No configured server means no query at all and no reading."""
    server = ntp_server(600.0)
    assert await measure_skew(settings()) is None
    assert server.requests == 0


@pytest.mark.asyncio
async def test_unreachable_server_then_a_working_one(
    ntp_server: NtpServerFactory, closed_udp_port: int
) -> None:
    """A closed port is logged at debug level and the next server answers."""
    server = ntp_server(60.0)
    closed = f"127.0.0.1:{closed_udp_port}"
    with capture_logs() as logs:
        reading = await measure_skew(settings(closed, server.address))
    assert reading is not None
    assert reading.server == server.address
    assert abs(reading.offset_seconds - 60.0) < TOLERANCE
    assert [(e["event"], e["log_level"], e["server"]) for e in logs] == [
        ("ntp_server_unusable", "debug", closed)
    ]
    assert logs[0]["reason"] == "No response received from 127.0.0.1."


@pytest.mark.asyncio
async def test_no_server_answers(ntp_server: NtpServerFactory) -> None:
    """A server that receives the request but never answers gives no reading, and no error."""
    silent = ntp_server(0.0, answer=False)
    assert await measure_skew(settings(silent.address, timeout=0.2)) is None
    assert silent.requests == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("stratum", "leap", "reason"),
    [
        (0, 0, "server is not synchronised (stratum 0, leap 0)"),
        (16, 0, "server is not synchronised (stratum 16, leap 0)"),
        (2, 3, "server is not synchronised (stratum 2, leap 3)"),
    ],
)
async def test_unsynchronised_servers_are_not_believed(
    ntp_server: NtpServerFactory, stratum: int, leap: int, reason: str
) -> None:
    """Kiss-o'-death and unsynchronised answers are skipped in favour of the next server."""
    bad = ntp_server(3600.0, stratum=stratum, leap=leap)
    good = ntp_server(1.0)
    with capture_logs() as logs:
        reading = await measure_skew(settings(bad.address, good.address))
    assert reading is not None
    assert reading.server == good.address
    assert abs(reading.offset_seconds - 1.0) < TOLERANCE
    assert [(e["event"], e["server"], e["reason"]) for e in logs] == [
        ("ntp_server_unusable", bad.address, reason)
    ]


@pytest.mark.asyncio
async def test_malformed_server_entry_is_skipped(ntp_server: NtpServerFactory) -> None:
    """A server entry that cannot be parsed is logged and the next one is used."""
    good = ntp_server(0.0)
    with capture_logs() as logs:
        reading = await measure_skew(settings("127.0.0.1:notaport", good.address))
    assert reading is not None
    assert reading.server == good.address
    assert logs[0]["server"] == "127.0.0.1:notaport"
    assert logs[0]["reason"].startswith("Invalid NTP server '127.0.0.1:notaport'")


@pytest.mark.asyncio
async def test_measurement_never_blocks_the_event_loop(ntp_server: NtpServerFactory) -> None:
    """ntplib's blocking socket calls run in a thread, never on the event loop."""
    server = ntp_server(0.0)
    with blockbuster_ctx("codedeploy_agent"):
        reading = await measure_skew(settings(server.address))
    assert reading is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.123", ("192.0.2.123", DEFAULT_NTP_PORT)),
        ("ntp.example.org", ("ntp.example.org", 123)),
        ("time.example:10123", ("time.example", 10123)),
        ("[::1]:123", ("::1", 123)),
        ("[fd00:ec2::123]:4123", ("fd00:ec2::123", 4123)),
        ("[::1]", ("::1", 123)),
        ("fd00:ec2::123", ("fd00:ec2::123", 123)),
        ("  127.0.0.1:9  ", ("127.0.0.1", 9)),
    ],
)
def test_parse_server(text: str, expected: tuple[str, int]) -> None:
    """Server entries are host, host:port or a bracketed IPv6 address with an optional port."""
    assert parse_server(text) == expected


@pytest.mark.parametrize(
    "text", ["", ":123", "host:", "host:0", "host:65536", "[::1", "[::1]x", "[]"]
)
def test_parse_server_rejects(text: str) -> None:
    """Malformed entries raise ConfigError saying which forms are accepted."""
    with pytest.raises(ConfigError) as info:
        parse_server(text)
    assert str(info.value) == (
        f"Invalid NTP server {text!r} in clock.ntp_servers: write host, host:port, "
        "[IPv6 address] or [IPv6 address]:port, with a port from 1 to 65535."
    )


def test_clock_skew_error_message() -> None:
    """The error names InvalidSignatureException, the skew, the server and how to fix the clock."""
    reading = SkewReading(offset_seconds=612.34, server="127.0.0.1:5000", measured_at=1771514000.0)
    err = ClockSkewError(reading, 300.0)
    assert isinstance(err, AgentError)
    assert str(err) == (
        "The local clock is 612.3 s behind the NTP server 127.0.0.1:5000 "
        "(measured 2026-02-19T15:13:20Z), more than the 300 s that AWS accepts for SigV4-signed "
        "requests: they would fail with InvalidSignatureException (Signature expired). The "
        "agent makes no AWS-signed calls until the clock is right. " + TIME_SYNC_HINT
    )
    assert (err.skew_seconds, err.server, err.max_skew_seconds) == (612.34, "127.0.0.1:5000", 300)
    assert err.source is SkewSource.NTP


def test_time_sync_hint() -> None:
    """The hint names the time daemons, the Amazon Time Sync Service and how to check."""
    hint = TIME_SYNC_HINT
    assert hint.startswith("Fix time synchronisation on this host: run chrony, ntpd or ")
    assert "systemd-timesyncd (on EC2, point it at the Amazon Time Sync Service, " in hint
    assert "Service, 169.254.169.123), then check it with `chronyc tracking` (or " in hint
    assert hint.endswith("(or `timedatectl timesync-status`).")


def test_clock_skew_error_for_a_clock_ahead() -> None:
    """A negative offset (local clock ahead) is described as such."""
    reading = SkewReading(offset_seconds=-400.0, server="ntp.internal", measured_at=1771514000.0)
    assert str(ClockSkewError(reading, 300.0)).startswith(
        "The local clock is 400.0 s ahead of the NTP server ntp.internal (measured "
    )
