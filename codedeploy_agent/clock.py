"""Clock skew: measured against NTP servers, estimated from Jobs timestamps, enforced for SigV4.

AWS rejects SigV4-signed requests whose time is off by more than about five minutes
(`InvalidSignatureException: Signature expired`; S3 says `RequestTimeTooSkewed`), and the error
names neither the clock nor the fix. The real agent has no check (reference §0); ours measures the
skew at start and every `clock.check_interval_seconds`, warns past `clock.warn_seconds`, reports
the value in presence and status, and refuses AWS-signed calls past `clock.max_skew_seconds` with
an error that says what to fix.

Offsets are `server clock - local clock` in seconds: positive means the local clock is behind.
ntplib blocks, so every query runs in a thread (`asyncio.to_thread`). NTP failures are logged,
never raised: a host without NTP access still deploys.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

import ntplib

from codedeploy_agent.config import ClockSettings
from codedeploy_agent.errors import AgentError, ConfigError
from codedeploy_agent.log import get_logger

_log = get_logger(__name__)

DEFAULT_NTP_PORT: Final = 123

#: Jobs timestamps are whole epoch seconds (AWS IoT Jobs truncates), so a remote time can be up
#: to this much earlier than the moment it stands for.
REMOTE_TIMESTAMP_RESOLUTION: Final = 1.0
#: Jobs-timestamp observations older than this are forgotten (by monotonic time).
ESTIMATE_WINDOW_SECONDS: Final = 3600.0
_MAX_OBSERVATIONS: Final = 256
#: NTP modes a server answer may carry (4 server, 5 broadcast).
_SERVER_MODES: Final = frozenset({4, 5})
_LEAP_UNSYNCHRONISED: Final = 3
_STRATUM_UNSYNCHRONISED: Final = 16

TIME_SYNC_HINT: Final = (
    "Fix time synchronisation on this host: run chrony, ntpd or systemd-timesyncd (on EC2, "
    "point it at the Amazon Time Sync Service, 169.254.169.123), then check it with "
    "`chronyc tracking` (or `timedatectl timesync-status`)."
)


class SkewSource(StrEnum):
    """Where a skew value comes from."""

    NTP = "ntp"
    #: Estimated from Jobs messages' `timestamp` fields (`ClockMonitor.observe_remote_timestamp`).
    JOBS_TIMESTAMPS = "jobs-timestamps"


@dataclass(frozen=True, slots=True)
class SkewReading:
    """One skew value: `offset_seconds` = server clock - local clock (positive: local is behind)."""

    offset_seconds: float
    #: The NTP server as configured (`host` or `host:port`), or `jobs-service` for estimates.
    server: str
    #: Local wall-clock time (epoch seconds) of the measurement.
    measured_at: float
    source: SkewSource = SkewSource.NTP
    #: NTP round-trip delay; for estimates, the width of the interval the true offset lies in
    #: (`inf` when only a lower bound is known).
    uncertainty_seconds: float = 0.0

    @property
    def measured_at_datetime(self) -> datetime:
        """`measured_at` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.measured_at, tz=UTC)


class ClockSkewError(AgentError):
    """Raised by `ClockMonitor.check_sigv4_allowed` when the skew exceeds `max_skew_seconds`."""

    def __init__(self, reading: SkewReading, max_skew_seconds: float) -> None:
        super().__init__(_skew_message(reading, max_skew_seconds))
        self.skew_seconds = reading.offset_seconds
        self.server = reading.server
        self.source = reading.source
        self.max_skew_seconds = max_skew_seconds


def _skew_message(reading: SkewReading, max_skew_seconds: float) -> str:
    direction = "behind" if reading.offset_seconds > 0 else "ahead of"
    when = reading.measured_at_datetime.strftime("%Y-%m-%dT%H:%M:%SZ")
    if reading.source is SkewSource.NTP:
        reference = f"the NTP server {reading.server}"
    else:
        reference = "the Jobs service's message timestamps (a lower bound; no NTP reading)"
    return (
        f"The local clock is {abs(reading.offset_seconds):.1f} s {direction} {reference} "
        f"(measured {when}), more than the {max_skew_seconds:g} s that AWS accepts for "
        "SigV4-signed requests: they would fail with InvalidSignatureException (Signature "
        "expired). The agent makes no AWS-signed calls until the clock is right. " + TIME_SYNC_HINT
    )


def parse_server(text: str) -> tuple[str, int]:
    """Split `host`, `host:port`, `[IPv6]` or `[IPv6]:port` (a bare IPv6 address has no port).

    Raises ConfigError for an empty host or a port outside 1-65535.
    """
    spec = text.strip()
    port_text: str | None = None
    if spec.startswith("["):
        host, closed, rest = spec[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise _bad_server(text)
        port_text = rest[1:] if rest else None
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
    else:
        host = spec  # a name, an IPv4 address or a bare IPv6 address
    if not host:
        raise _bad_server(text)
    if port_text is None:
        return host, DEFAULT_NTP_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _bad_server(text)
    return host, int(port_text)


def _bad_server(text: str) -> ConfigError:
    return ConfigError(
        f"Invalid NTP server {text!r} in clock.ntp_servers: write host, host:port, "
        "[IPv6 address] or [IPv6 address]:port, with a port from 1 to 65535."
    )


class _NtpServerError(Exception):
    """One server did not give a usable answer (internal: logged, never raised to callers)."""


def _query_server(server: str, timeout: float) -> SkewReading:
    """Ask one server (blocking; run in a thread). Raises _NtpServerError or ConfigError."""
    host, port = parse_server(server)
    try:
        stats = ntplib.NTPClient().request(host, version=4, port=port, timeout=timeout)
    except ntplib.NTPException as err:
        raise _NtpServerError(str(err)) from err
    except (OSError, ValueError) as err:  # name lookup (UnicodeError for odd names), network
        raise _NtpServerError(f"{type(err).__name__}: {err}") from err
    mode, stratum, leap = int(stats.mode), int(stats.stratum), int(stats.leap)
    # An unsynchronised server's time is arbitrary; a kiss-o'-death packet (stratum 0) asks us
    # to go away. Believing either could make us refuse AWS calls on a healthy host.
    if mode not in _SERVER_MODES:
        raise _NtpServerError(f"answer has NTP mode {mode}, not a server answer")
    if stratum == 0 or stratum >= _STRATUM_UNSYNCHRONISED or leap == _LEAP_UNSYNCHRONISED:
        raise _NtpServerError(f"server is not synchronised (stratum {stratum}, leap {leap})")
    offset = float(stats.offset)
    if not math.isfinite(offset):
        raise _NtpServerError("answer carries no usable time")
    return SkewReading(
        offset_seconds=offset,
        server=server,
        measured_at=float(stats.dest_time),
        uncertainty_seconds=max(float(stats.delay), 0.0),
    )


async def _measure(settings: ClockSettings) -> tuple[SkewReading | None, list[str]]:
    """The first usable answer, and `server: reason` for every server that failed before it."""
    failures: list[str] = []
    for server in settings.ntp_servers:
        try:
            reading = await asyncio.to_thread(_query_server, server, settings.timeout_seconds)
        except (_NtpServerError, ConfigError) as err:
            _log.debug("ntp_server_unusable", server=server, reason=str(err))
            failures.append(f"{server}: {err}")
            continue
        return reading, failures
    return None, failures


async def measure_skew(settings: ClockSettings) -> SkewReading | None:
    """Ask `settings.ntp_servers` in order until one answers; None if none does or none is set.

    Each unusable server (timeout, name lookup, not synchronised) is logged at debug level and
    the next one is tried. Never raises for an NTP problem.
    """
    reading, _failures = await _measure(settings)
    return reading


@dataclass(frozen=True, slots=True)
class _Observation:
    """Bounds from one Jobs message, as server clock minus MONOTONIC clock (see `_base`)."""

    lower: float
    upper: float | None
    received_at: float
    mono: float


class ClockMonitor:
    """Keeps the latest skew and decides whether AWS-signed calls may go ahead.

    The skew is the latest NTP reading while it is fresh (younger than two check intervals, so
    one failed check keeps it); otherwise the estimate from Jobs timestamps, if any; otherwise
    unknown (None), and unknown never blocks anything. Both are corrected for steps of the local
    clock since they were taken (wall-clock minus monotonic time), so the skew falls to zero as
    soon as an operator fixes the clock, without waiting for the next check.
    """

    def __init__(
        self,
        settings: ClockSettings,
        *,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._wall = wall_clock
        self._mono = monotonic
        self._sleep = sleep
        #: The last NTP reading, its offset against the monotonic clock, and when (monotonic).
        self._ntp: tuple[SkewReading, float, float] | None = None
        self._observations: deque[_Observation] = deque(maxlen=_MAX_OBSERVATIONS)
        self._ntp_failing = False
        self._estimate_warned = False

    @property
    def settings(self) -> ClockSettings:
        """The `clock:` settings this monitor applies."""
        return self._settings

    async def run(self) -> None:
        """Check at once, then every `check_interval_seconds` (once only if that is 0 or less).

        Never returns on its own unless the interval is 0 or less or no server is configured;
        cancel it to stop. No NTP or other error from a check escapes.
        """
        if not self._settings.ntp_servers:
            _log.info("clock_check_disabled", reason="clock.ntp_servers is empty")
            return
        while True:
            await self.check_now()
            if self._settings.check_interval_seconds <= 0:
                return
            await self._sleep(self._settings.check_interval_seconds)

    async def check_now(self) -> SkewReading | None:
        """Measure once, keep the reading, log a warning past `warn_seconds`; never raises."""
        try:
            reading, failures = await _measure(self._settings)
        except Exception:  # noqa: BLE001 - a clock check must never take the daemon down
            _log.exception("clock_check_crashed")
            return None
        if reading is None:
            if self._settings.ntp_servers:
                # Warn when NTP becomes unreachable, then stay quiet until it answers again:
                # hosts without NTP access are common and deploy fine.
                log = _log.debug if self._ntp_failing else _log.warning
                log("ntp_unreachable", servers=list(self._settings.ntp_servers), tried=failures)
                self._ntp_failing = True
            return None
        self._ntp_failing = False
        self._ntp = (reading, reading.offset_seconds + self._base(), self._mono())
        self._log_reading(reading, failures)
        return reading

    def _log_reading(self, reading: SkewReading, failures: list[str]) -> None:
        skew = reading.offset_seconds
        fields: dict[str, object] = {
            "skew_seconds": round(skew, 3),
            "server": reading.server,
            "source": str(reading.source),
        }
        if failures:
            fields["unusable_servers"] = failures
        if abs(skew) > self._settings.max_skew_seconds:
            _log.warning(
                "clock_skew_refuses_sigv4",
                max_skew_seconds=self._settings.max_skew_seconds,
                hint=TIME_SYNC_HINT,
                **fields,
            )
        elif abs(skew) > self._settings.warn_seconds:
            _log.warning(
                "clock_skew_high",
                warn_seconds=self._settings.warn_seconds,
                hint=TIME_SYNC_HINT,
                **fields,
            )
        else:
            _log.debug("clock_skew_measured", **fields)

    def observe_remote_timestamp(
        self, remote_epoch: float, received_at: float, *, sent_at: float | None = None
    ) -> None:
        """Record a Jobs message's `timestamp` (`remote_epoch`) received at local `received_at`.

        The service stamped the message before we received it, and network and queueing delay
        only make it look older, so `remote_epoch - received_at` is a LOWER bound on the offset
        (a message queued for an hour while the agent was offline says -3600 s of nothing).
        When the message answers a request we sent at local `sent_at`, the service stamped it
        after that, which gives an UPPER bound `remote_epoch + 1 - sent_at` (1 s: timestamps are
        whole seconds). The estimate is the smallest skew consistent with every bound seen in
        the last hour: it never overstates the skew, so it can only refuse SigV4 calls when the
        clock is certainly wrong. It measures skew against the Jobs service's clock, not an NTP
        reference, which is why a fresh NTP reading always wins. Times are local epoch seconds.
        """
        if not (math.isfinite(remote_epoch) and math.isfinite(received_at)):
            return
        upper: float | None = None
        if sent_at is not None:
            if not math.isfinite(sent_at) or sent_at > received_at:
                _log.debug("remote_timestamp_ignored", sent_at=sent_at, received_at=received_at)
                return
            upper = remote_epoch + REMOTE_TIMESTAMP_RESOLUTION - sent_at
        base = self._base()
        self._observations.append(
            _Observation(
                lower=remote_epoch - received_at + base,
                upper=None if upper is None else upper + base,
                received_at=received_at,
                mono=self._mono(),
            )
        )
        estimate = self._estimate() if self._fresh_ntp() is None else None
        if estimate is None:
            return
        high = abs(estimate.offset_seconds) > self._settings.warn_seconds
        if high and not self._estimate_warned:
            _log.warning(
                "clock_skew_high",
                skew_seconds=round(estimate.offset_seconds, 3),
                server=estimate.server,
                source=str(estimate.source),
                warn_seconds=self._settings.warn_seconds,
                hint=TIME_SYNC_HINT,
            )
        self._estimate_warned = high

    def _base(self) -> float:
        """Wall clock minus monotonic clock: changes only when the wall clock is stepped.

        Values are kept against the monotonic clock and turned back into offsets against the
        wall clock when read, which applies any step made in between.
        """
        return self._wall() - self._mono()

    def _fresh_ntp(self) -> SkewReading | None:
        if self._ntp is None:
            return None
        reading, offset_vs_mono, mono = self._ntp
        interval = self._settings.check_interval_seconds
        if interval > 0 and self._mono() - mono > 2 * interval:
            # Stale: better unknown (AWS then says for itself) than refusing on old data.
            return None
        return dataclasses.replace(reading, offset_seconds=offset_vs_mono - self._base())

    def _estimate(self) -> SkewReading | None:
        now = self._mono()
        while self._observations and now - self._observations[0].mono > ESTIMATE_WINDOW_SECONDS:
            self._observations.popleft()
        if not self._observations:
            return None
        base = self._base()
        lower = max(o.lower for o in self._observations) - base
        uppers = [o.upper for o in self._observations if o.upper is not None]
        upper = min(uppers) - base if uppers else None
        if upper is not None and lower > upper:
            # Contradictory bounds: the service's clock moved. Trust only the newest message.
            newest = self._observations[-1]
            self._observations.clear()
            self._observations.append(newest)
            return self._estimate()
        if lower > 0:
            offset = lower
        elif upper is not None and upper < 0:
            offset = upper
        else:
            offset = 0.0
        return SkewReading(
            offset_seconds=offset,
            server="jobs-service",
            measured_at=self._observations[-1].received_at,
            source=SkewSource.JOBS_TIMESTAMPS,
            uncertainty_seconds=math.inf if upper is None else upper - lower,
        )

    @property
    def reading(self) -> SkewReading | None:
        """The reading `current_skew` comes from (offset corrected for local clock steps)."""
        fresh = self._fresh_ntp()
        return fresh if fresh is not None else self._estimate()

    @property
    def current_skew(self) -> float | None:
        """Server minus local clock in seconds (positive: local is behind); None when unknown."""
        reading = self.reading
        return None if reading is None else reading.offset_seconds

    def check_sigv4_allowed(self) -> None:
        """Raise ClockSkewError when |skew| > `max_skew_seconds`; unknown skew is allowed."""
        reading = self.reading
        if reading is not None and abs(reading.offset_seconds) > self._settings.max_skew_seconds:
            raise ClockSkewError(reading, self._settings.max_skew_seconds)
