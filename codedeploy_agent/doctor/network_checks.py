"""doctor's checks against the outside world: the broker (TCP, TLS, login), the thing name, NTP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import ssl
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from codedeploy_agent.clock import TIME_SYNC_HINT, measure_skew
from codedeploy_agent.config import AgentConfig
from codedeploy_agent.doctor.findings import JOURNAL, UNIT, Finding, Lines, Status
from codedeploy_agent.errors import AgentError
from codedeploy_agent.host.status import AgentStatus
from codedeploy_agent.protocol.topics import validate_thing_name
from codedeploy_agent.transport import Endpoint, Message, MqttSession, TransportError

#: Certificates expiring sooner than this are reported.
CERT_WARN_DAYS: Final = 30
NETWORK_TIMEOUT: Final = 5.0
NTP_TIMEOUT: Final = 3.0


def _decode_certificate(path: Path) -> Mapping[str, object] | None:
    """Subject and validity of a PEM certificate file, or None when they cannot be read.

    The standard library has no public certificate parser (and `cryptography` is not a
    dependency of the agent); `_ssl._test_decode_cert` is CPython's own, there since 2.7.
    """
    decode = getattr(ssl._ssl, "_test_decode_cert", None)  # type: ignore[attr-defined]
    if decode is None:
        return None
    try:
        result = decode(str(path))
    except (OSError, ssl.SSLError, ValueError):
        return None
    return result if isinstance(result, dict) else None


def _common_name(cert: Mapping[str, object]) -> str | None:
    subject = cert.get("subject", ())
    for rdn in subject if isinstance(subject, tuple) else ():
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _check_validity(lines: Lines, what: str, cert: Mapping[str, object]) -> None:
    text = cert.get("notAfter")
    if not isinstance(text, str):
        return
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(text), UTC)
    days = (expires - datetime.now(UTC)).total_seconds() / 86400
    if days < 0:
        lines.fail(f"{what} expired on {expires:%Y-%m-%d}", "issue a new certificate")
    elif days < CERT_WARN_DAYS:
        lines.warn(f"{what} expires on {expires:%Y-%m-%d}", "issue a new certificate before then")


def check_broker(config: AgentConfig, *, timeout: float = NETWORK_TIMEOUT) -> list[Finding]:
    """A TCP connection to `mqtt.endpoint`."""
    lines = Lines("broker")
    try:
        endpoint = Endpoint.parse(config.mqtt.endpoint)
    except TransportError as exc:
        return lines.fail(str(exc), "correct mqtt.endpoint")
    where = f"{endpoint.host}:{endpoint.port}"
    start = time.monotonic()
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
            pass
    except socket.gaierror as exc:
        return lines.fail(
            f"cannot resolve {endpoint.host}: {exc.strerror}",
            "check the host name in mqtt.endpoint and this host's DNS",
        )
    except TimeoutError:
        return lines.fail(
            f"no answer from {where} within {timeout:g} s",
            f"check that no firewall drops TCP port {endpoint.port} on the way to the broker",
        )
    except OSError as exc:
        return lines.fail(
            f"cannot connect to {where}: {exc.strerror or exc}",
            "check that the broker runs and listens there, and that mqtt.endpoint is right",
        )
    return lines.ok(
        f"{endpoint} accepts TCP connections ({(time.monotonic() - start) * 1000:.0f} ms)"
    )


def check_tls(config: AgentConfig, *, timeout: float = NETWORK_TIMEOUT) -> list[Finding]:
    """Certificate files load and are not about to expire; the handshake works both ways."""
    lines = Lines("tls")
    mqtt = config.mqtt
    endpoint = Endpoint.parse(mqtt.endpoint)
    if not endpoint.tls:
        if endpoint.is_loopback:
            return lines.info(f"plain MQTT to a broker on this host ({endpoint})")
        return lines.warn(
            f"{endpoint} is plain MQTT: job documents and credentials cross the network in "
            "clear text, and the broker cannot tell this host by its certificate",
            "use mqtts:// with mqtt.ca_file, cert_file and key_file (see the sample Mosquitto "
            "configuration in /usr/share/doc/codedeploy-agent/examples/mosquitto)",
        )
    try:
        context = ssl.create_default_context(cafile=str(mqtt.ca_file) if mqtt.ca_file else None)
        if mqtt.cert_file is not None and mqtt.key_file is not None:
            context.load_cert_chain(str(mqtt.cert_file), str(mqtt.key_file))
    except (OSError, ssl.SSLError) as exc:
        return lines.fail(
            f"cannot load mqtt.ca_file {mqtt.ca_file}, cert_file {mqtt.cert_file} or key_file "
            f"{mqtt.key_file}: {exc}",
            "each must be a readable PEM file: the broker's CA, this host's certificate and its "
            "unencrypted key",
        )
    peer = _handshake(lines, context, endpoint, timeout)
    if peer:
        _check_validity(lines, f"the certificate of {endpoint}", peer)
    if mqtt.cert_file is None:
        lines.info(
            "no client certificate (mqtt.cert_file): the broker must know this host another way"
        )
    elif (cert := _decode_certificate(mqtt.cert_file)) is not None:
        _check_validity(lines, f"client certificate {mqtt.cert_file}", cert)
    return lines.findings


def _handshake(
    lines: Lines, context: ssl.SSLContext, endpoint: Endpoint, timeout: float
) -> Mapping[str, object] | None:
    """Connect, shake hands and see whether the broker keeps the connection; add one line.

    Returns the broker's certificate when the handshake worked.
    """
    start = time.monotonic()
    try:
        with (
            socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=endpoint.host) as tls,
        ):
            took, version, peer = (
                (time.monotonic() - start) * 1000,
                tls.version(),
                tls.getpeercert(),
            )
            # TLS 1.3 completes the client's side before the broker has checked our certificate;
            # a broker that refuses it sends an alert or hangs up right after.
            tls.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                if tls.recv(1) == b"":
                    lines.fail(
                        f"{endpoint} hung up right after the TLS handshake",
                        "it probably wants a client certificate it trusts (mqtt.cert_file)",
                    )
                    return None
    except ssl.SSLCertVerificationError as exc:
        lines.fail(
            f"the certificate of {endpoint} was not accepted: {exc.verify_message}",
            f"mqtt.ca_file must hold the CA that signed it, and it must name {endpoint.host}",
        )
        return None
    except ssl.SSLError as exc:
        lines.fail(
            f"TLS with {endpoint} failed: {exc.reason or exc}",
            "check that the broker speaks TLS there and trusts the CA of mqtt.cert_file",
        )
        return None
    except OSError as exc:
        lines.fail(f"TLS with {endpoint} failed: {exc.strerror or exc}")
        return None
    lines.ok(f"handshake with {endpoint} ({version}, {took:.0f} ms)")
    return peer


def thing_name(config: AgentConfig) -> str:
    """The thing name the agent uses: mqtt.thing_name, or this host's name."""
    return config.mqtt.thing_name or socket.gethostname()


async def check_login(config: AgentConfig, *, deadline: float = NETWORK_TIMEOUT) -> list[Finding]:
    """An MQTT CONNECT with the agent's credentials, as client id `<thing>-doctor`."""
    lines = Lines("login")
    client_id = f"{thing_name(config)}-doctor"
    settings = dataclasses.replace(config.mqtt, session_expiry_seconds=0)

    async def ignore(_message: Message) -> None:
        return None

    error: TransportError | None = None
    try:
        session = MqttSession(
            settings, client_id=client_id, subscriptions=(), connect_timeout=deadline
        )
        task = asyncio.create_task(session.run(ignore))
    except TransportError as exc:
        return lines.fail(str(exc), "correct the mqtt: section")
    try:
        give_up = time.monotonic() + deadline + 1.0
        while not session.connected:
            if task.done():
                task.result()  # an unreadable password or certificate file raises here
            error = session.last_error
            if error is None and time.monotonic() > give_up:
                error = TransportError(f"no answer to the MQTT CONNECT within {deadline:g} s")
            if error is not None:
                break
            await asyncio.sleep(0.02)
    except TransportError as exc:
        error = exc
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TransportError):
            await task
    if error is not None:
        return lines.fail(
            str(error),
            "fix the credentials (mqtt.username/password_file or the client certificate). doctor "
            f"logs in as {client_id}: a broker that allows only the thing name as client id "
            "refuses it, and then the thing line below is what counts",
        )
    user = f" as {settings.username}" if settings.username else ""
    return lines.ok(f"MQTT {settings.protocol} login{user} accepted (client id {client_id})")


def check_thing(config: AgentConfig, running: AgentStatus | None) -> list[Finding]:
    """The thing name is valid, matches the certificate, and the broker took the agent's login.

    `running` is the running agent's status snapshot (None: no agent runs).
    """
    lines = Lines("thing")
    name = thing_name(config)
    source = "mqtt.thing_name" if config.mqtt.thing_name else "the host name"
    try:
        validate_thing_name(name)
    except AgentError as exc:
        return lines.fail(
            f"{exc} (from {source})",
            "set mqtt.thing_name to letters, digits and _ . : - (at most 128 characters)",
        )
    if running is None:
        lines.info(
            f"{name} (from {source}) is valid; whether the broker takes it shows once the agent "
            "runs (doctor never logs in as the agent: that would take over its session)"
        )
    elif running.thing_name != name:
        lines.warn(
            f"the running agent uses {running.thing_name}, the config now says {name}",
            f"restart it: systemctl restart {UNIT}",
        )
    elif running.broker_connected:
        lines.ok(
            f"{name} (from {source}): the agent is connected with it to {running.broker_endpoint}"
        )
    else:
        lines.fail(
            f"the running agent is not connected to {running.broker_endpoint} as {name}",
            f"its log says why each attempt failed: {config.log_dir / config.program_name}.log "
            f"or {JOURNAL}",
        )
    tls = config.mqtt.endpoint.lower().startswith("mqtts:")
    cert = _decode_certificate(config.mqtt.cert_file) if tls and config.mqtt.cert_file else None
    common_name = _common_name(cert) if cert is not None else None
    if common_name is not None and common_name != name:
        lines.warn(
            f"the client certificate's CN is {common_name!r}, not the thing name {name!r}: a "
            "per-host broker ACL on the certificate's identity (%u) will not match its topics",
            "issue the certificate for CN=<thing name>, or set mqtt.thing_name to the CN",
        )
    return lines.findings


async def check_clock(config: AgentConfig) -> list[Finding]:
    """The skew against the configured NTP servers, and what it means for AWS-signed calls."""
    lines = Lines("clock")
    settings = config.clock
    if not settings.ntp_servers:
        return lines.add(Status.SKIP, "clock.ntp_servers is empty: no NTP check")
    per_server = min(settings.timeout_seconds, NTP_TIMEOUT)
    reading = await measure_skew(dataclasses.replace(settings, timeout_seconds=per_server))
    if reading is None:
        return lines.warn(
            f"no NTP server answered ({', '.join(settings.ntp_servers)}; {per_server:g} s each): "
            "the skew is unknown, and a clock off by more than 5 minutes makes AWS-signed "
            "requests fail with InvalidSignatureException (Signature expired)",
            "allow UDP port 123 to one of clock.ntp_servers or list reachable ones; "
            "`chronyc tracking` or `timedatectl timesync-status` shows this host's view",
        )
    skew = reading.offset_seconds
    side = "behind" if skew > 0 else "ahead of"
    text = f"the local clock is {abs(skew):.3f} s {side} {reading.server}"
    limit = settings.max_skew_seconds
    if abs(skew) > limit:
        return lines.fail(
            f"{text}: more than the {limit:g} s AWS accepts. AWS-signed requests (S3 downloads, "
            "AWS APIs) fail with InvalidSignatureException (Signature expired); the agent "
            "refuses to send them",
            TIME_SYNC_HINT,
        )
    if abs(skew) > settings.warn_seconds:
        return lines.warn(
            f"{text} (warning at {settings.warn_seconds:g} s; past {limit:g} s AWS-signed "
            "requests fail with InvalidSignatureException)",
            TIME_SYNC_HINT,
        )
    return lines.ok(f"{text} (AWS accepts up to {limit:g} s)")
