"""The agent's MQTT session: the only module of the agent that imports aiomqtt or paho.

`MqttSession.run(handler)` keeps one connection to the broker named by `mqtt.endpoint` alive
until it is cancelled: connect, subscribe (QoS 1) to the session's topics, call `on_connect`,
then hand every incoming message to `handler`, one at a time in arrival order. When the
connection is lost it logs why, waits (`Backoff`: capped exponential backoff with full jitter,
0.5 s doubling up to 30 s, reset by a connection that lasted 10 s) and connects again: an outer
loop around one aiomqtt.Client per connection. The client is entered and exited by hand rather
than with `async with`, because aiomqtt does not notice a socket that closes before CONNACK or
during SUBSCRIBE (it waits for its timeout); paho's disconnect callback tells us at once.
`publish()` is for anyone else (the handler and `on_connect` included) while connected.

What the broker must keep for an offline agent is kept: the client id is stable (the thing
name) and the session is persistent (MQTT 5: clean start off and a Session Expiry Interval of
`mqtt.session_expiry_seconds`; 3.1.1: clean session off), so QoS 1 commands published while the
agent was away are delivered when it comes back. aiomqtt's default for MQTT 5 ("clean start on
the first connection") would wipe them on every start; the platform notes measured 0/10.

Failures, and what the session does about them:
- configuration an operator must fix (an unreadable CA, certificate, key or password file; an
  invalid endpoint): `TransportError` at once, from the constructor or `prepare()`/`run()`;
- the broker refusing us (bad credentials, not authorised, TLS verification failed, a refused
  subscription): an ERROR log with the reason and the fix, then retry with backoff: the broker
  or its certificates may be fixed while we wait, and the agent must then come back by itself;
- the network or the broker going away: a WARNING, then retry with backoff.
`last_error` holds the latest of these as a `TransportError` (None while connected). Every
aiomqtt/paho exception is mapped to `TransportError` or `NotConnectedError` here.

A clean stop (cancelling `run()`) sends DISCONNECT, so the broker does not publish the last
will: the daemon publishes its own "offline" presence with `publish()` before it cancels.
Only a connection that dies (crash, SIGKILL, network loss) makes the broker publish the will.

Delivery: paho acknowledges an incoming QoS 1 message when it arrives, before `handler` ran;
messages received but not yet handled when a connection drops are still handled (they wait in
the session's inbox). A crash in between loses them; the Jobs protocol recovers from that,
since the agent asks for its next job (`start-next`) on every connection.

AWS IoT Core uses `$aws/things/...` topics: Mosquitto accepts client publishes there, but amqtt
(the embedded broker) refuses every publish to a topic that starts with `$`, hence the default
topic root `codedeploy/things`. Nothing here depends on the topic names.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import random
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttCodeError, MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from codedeploy_agent.config import MqttSettings
from codedeploy_agent.errors import AgentError
from codedeploy_agent.log import get_logger

log = get_logger(__name__)

_DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}
#: Small packets (PUBACK, a short update) must not wait for Nagle: 44 ms -> 0.3 ms per round trip.
_SOCKET_OPTIONS: Final = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


class TransportError(AgentError):
    """Raised when the broker cannot be reached, refuses us, or the MQTT settings are unusable.

    `refused` is True when the broker answered "no" (credentials, authorisation, TLS
    verification, a subscription): an operator has to act, so the session logs it as an ERROR.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class NotConnectedError(TransportError):
    """Raised by `MqttSession.publish` when there is no connection (keep the message, retry)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One incoming MQTT message."""

    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Will:
    """The last will: published by the broker (QoS 1) when the connection dies uncleanly."""

    topic: str
    payload: bytes
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A decoded `mqtt.endpoint`: `mqtt://host[:port]` (plain) or `mqtts://host[:port]` (TLS)."""

    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Decode `url`; TransportError when it is not an mqtt:// or mqtts:// URL with a host."""
        problem = "it must look like mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
        try:
            parts = urlsplit(url.strip())
            scheme = parts.scheme.lower()
            host = parts.hostname
            port = parts.port
        except ValueError as exc:
            raise TransportError(f"Invalid mqtt.endpoint {url!r}: {exc}; {problem}") from None
        if scheme not in _DEFAULT_PORTS or not host or parts.path not in ("", "/"):
            raise TransportError(f"Invalid mqtt.endpoint {url!r}: {problem}")
        return cls(host=host, port=port or _DEFAULT_PORTS[scheme], tls=scheme == "mqtts")

    @property
    def is_loopback(self) -> bool:
        """Whether the broker is on this host (127.0.0.0/8, ::1 or the name localhost)."""
        if self.host.lower().rstrip(".") == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


class Backoff:
    """Capped exponential backoff with full jitter between connection attempts.

    The n-th wait after a failure is uniform in [0, min(cap, base * 2**n)] ("full jitter":
    a fleet that lost its broker does not come back in lockstep). A connection that lasted at
    least `reset_after` seconds resets n to 0; a shorter one (a broker that accepts and then
    drops us) keeps counting, so flapping slows down too. `sleep`, `clock` and `rng` are
    injectable: tests record the waits instead of sleeping. Jitter is not a secret: `random`.
    """

    def __init__(
        self,
        *,
        base: float = 0.5,
        cap: float = 30.0,
        reset_after: float = 10.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"backoff needs 0 < base <= cap, not base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self.reset_after = reset_after
        self.sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._clock = clock
        self._attempt = 0
        self._connected_at: float | None = None

    @property
    def attempt(self) -> int:
        """How many waits there have been since the last reset."""
        return self._attempt

    def ceiling(self, attempt: int) -> float:
        """The longest wait for the `attempt`-th retry (0-based)."""
        # The exponent is bounded so that a very long outage cannot overflow; the cap wins anyway.
        return min(self.cap, math.ldexp(self.base, min(attempt, 64)))

    def next_delay(self) -> float:
        """The next wait in seconds (and count it)."""
        delay = self._rng.uniform(0.0, self.ceiling(self._attempt))
        self._attempt += 1
        return delay

    def connected(self) -> None:
        """Note that a connection was established now."""
        self._connected_at = self._clock()

    def disconnected(self) -> None:
        """Note that the connection ended; a long-lived one resets the backoff."""
        if self._connected_at is not None and self._clock() - self._connected_at >= (
            self.reset_after
        ):
            self._attempt = 0
        self._connected_at = None


@dataclass(frozen=True, slots=True)
class _Credentials:
    """What `prepare()` read from disk once: the TLS context and the password."""

    tls_context: ssl.SSLContext | None
    password: str | None


class MqttSession:
    """A persistent MQTT session that reconnects by itself (see the module docstring).

    `run()` is not reentrant; it may be called again after it returned or was cancelled.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        subscriptions: Sequence[str],
        will: Will | None = None,
        on_connect: Callable[[], Awaitable[None]] | None = None,
        backoff: Backoff | None = None,
        connect_timeout: float = 10.0,
        publish_timeout: float = 10.0,
    ) -> None:
        if not client_id:
            # An empty id makes the broker invent one per connection: no persistent session.
            raise TransportError("The MQTT client id must not be empty (it is the thing name)")
        self.settings = settings
        self.endpoint = Endpoint.parse(settings.endpoint)
        self.client_id = client_id
        self.subscriptions = tuple(subscriptions)
        self.will = will
        self._on_connect = on_connect
        self._backoff = backoff or Backoff()
        self._connect_timeout = connect_timeout
        self._publish_timeout = publish_timeout
        self._credentials: _Credentials | None = None
        self._client: aiomqtt.Client | None = None
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._down.set()
        self._running = False
        self._last_error: TransportError | None = None
        if not self.endpoint.tls and not self.endpoint.is_loopback:
            log.warning(
                "The MQTT connection is not encrypted: commands and credentials cross the "
                "network in clear text. Use an mqtts:// endpoint (and mqtt.ca_file).",
                endpoint=str(self.endpoint),
            )

    @property
    def connected(self) -> bool:
        """Whether the session is connected and subscribed, so that `publish()` can work."""
        return self._up.is_set()

    @property
    def last_error(self) -> TransportError | None:
        """Why the last connection attempt failed or the last connection ended; None when up."""
        return self._last_error

    # The deadline is the point: a bool answer, not a TimeoutError from asyncio.timeout().
    async def wait_connected(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until connected; False when `timeout` seconds passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._up.wait()
        except TimeoutError:
            return False
        return True

    async def prepare(self) -> None:
        """Read the TLS files and the password file once (in a thread); TransportError if bad.

        `run()` calls it; the daemon may call it earlier to fail at startup, before it reports
        itself ready. The files are not read again on reconnection.
        """
        if self._credentials is None:
            self._credentials = await asyncio.to_thread(self._load_credentials)

    async def run(self, handler: Callable[[Message], Awaitable[None]]) -> None:
        """Stay connected and feed incoming messages to `handler` until cancelled.

        Raises TransportError only for configuration errors found before the first attempt.
        Exceptions from `handler` are logged and the next message is handled; an exception from
        `on_connect` is logged and ends that connection (the next one calls it again).
        `handler` should return quickly: long work belongs in a task of its own. Cancelling
        `run()` disconnects cleanly (no last will) and cancels a handler call in progress.
        """
        if self._running:
            raise RuntimeError("MqttSession.run() is already running")
        self._running = True
        try:
            await self.prepare()
            inbox: asyncio.Queue[Message] = asyncio.Queue()
            consumer = asyncio.create_task(self._consume(inbox, handler))
            try:
                await self._connect_forever(inbox)
            finally:
                consumer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consumer
        finally:
            self._running = False

    async def publish(
        self, topic: str, payload: bytes, *, qos: Literal[0, 1] = 1, retain: bool = False
    ) -> None:
        """Publish; for QoS 1 return once the broker acknowledged it (PUBACK).

        Raises NotConnectedError when there is no connection, when it is lost before the PUBACK, or
        when no PUBACK came within `publish_timeout`: the caller keeps the message and sends it
        again after a reconnection (at least once; the protocol is idempotent).
        """
        client = self._client
        if client is None or not self._up.is_set():
            raise NotConnectedError(f"Not connected to the MQTT broker {self.endpoint}")
        sending = asyncio.ensure_future(
            client.publish(topic, payload, qos=qos, retain=retain, timeout=self._publish_timeout)
        )
        lost = asyncio.ensure_future(self._down.wait())
        try:
            await asyncio.wait((sending, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not sending.done():
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await sending
        if sending.cancelled():
            raise NotConnectedError(
                f"The connection to the MQTT broker {self.endpoint} was lost before it "
                f"acknowledged the message to {topic}"
            )
        try:
            sending.result()
        except aiomqtt.MqttError as exc:
            raise NotConnectedError(
                f"Could not publish to {topic} on the MQTT broker {self.endpoint}: "
                f"{_describe_publish_failure(exc, self._publish_timeout)}"
            ) from exc

    # -- the connection loop -----------------------------------------------------------------

    async def _connect_forever(self, inbox: asyncio.Queue[Message]) -> None:
        while True:
            error = await self._connect_once(inbox)
            self._last_error = error
            delay = self._backoff.next_delay()
            fields = {"endpoint": str(self.endpoint), "retry_in": round(delay, 3)}
            if error.refused:
                log.error(str(error), **fields)
            else:
                log.warning(str(error), **fields)
            await self._backoff.sleep(delay)

    async def _connect_once(self, inbox: asyncio.Queue[Message]) -> TransportError:
        """One connection, from CONNECT until it is lost; returns why it ended."""
        attempt = _Attempt(self._new_client)
        client = attempt.client
        entering = asyncio.ensure_future(client.__aenter__())
        try:
            await asyncio.wait((entering, attempt.closed), return_when=asyncio.FIRST_COMPLETED)
            if not entering.done():
                # The socket closed before CONNACK (a TLS alert after the handshake, a broker
                # that hung up): aiomqtt would wait for its timeout. A refusing CONNACK closes
                # the socket in the same callback, so give it a moment to be the answer.
                await asyncio.wait((entering,), timeout=0.2)
        finally:
            if not entering.done():
                entering.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await entering
                attempt.discard()
        if entering.cancelled():
            return self._closed_early(attempt.paho_error)
        try:
            entering.result()
        except aiomqtt.MqttError as exc:
            attempt.discard()
            return self._connect_failure(exc, attempt.paho_error)
        self._backoff.connected()
        # Publishers must learn of a lost connection at once, not when the iterator notices.
        attempt.closed.add_done_callback(lambda _: self._mark_down(client))
        try:
            return await self._serve(attempt, inbox)
        finally:
            self._mark_down(client)
            self._backoff.disconnected()
            if attempt.closed.done():
                # Messages paho acknowledged before the loss are still ours to handle; reading
                # to the end also collects aiomqtt's disconnection error ("never retrieved").
                with contextlib.suppress(aiomqtt.MqttError):
                    async for received in client.messages:
                        inbox.put_nowait(_message(received))
            # Graceful DISCONNECT (no will) on cancellation; a no-op when the link is dead.
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)

    async def _serve(self, attempt: _Attempt, inbox: asyncio.Queue[Message]) -> TransportError:
        client = attempt.client
        lost = f"Lost the connection to the MQTT broker {self.endpoint}"
        try:
            if self.subscriptions:
                subscribing = asyncio.ensure_future(
                    client.subscribe(
                        [(topic, 1) for topic in self.subscriptions], timeout=self._connect_timeout
                    )
                )
                # aiomqtt's pending calls do not notice a lost connection; we do.
                await asyncio.wait(
                    (subscribing, attempt.closed), return_when=asyncio.FIRST_COMPLETED
                )
                if not subscribing.done():
                    subscribing.cancel()
                    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                        await subscribing
                    return TransportError(f"{lost}: {attempt.loss_reason()}")
                refused = [
                    f"{topic} ({code})"
                    for topic, code in zip(self.subscriptions, subscribing.result(), strict=False)
                    if isinstance(code, ReasonCode) and code.is_failure
                ]
                if refused:
                    return TransportError(
                        f"The MQTT broker {self.endpoint} refused the subscription to "
                        f"{', '.join(refused)} for client id '{self.client_id}'. Allow this "
                        "client to subscribe to its topics in the broker's ACL (or IoT policy).",
                        refused=True,
                    )
            self._client = client
            self._down.clear()
            self._up.set()
            self._last_error = None
            log.info(
                "Connected to the MQTT broker",
                endpoint=str(self.endpoint),
                client_id=self.client_id,
                protocol=self.settings.protocol,
            )
            if self._on_connect is not None:
                try:
                    await self._on_connect()
                except TransportError as exc:
                    if attempt.closed.done():
                        return TransportError(f"{lost}: {attempt.loss_reason()}")
                    return TransportError(f"Reconnecting because on_connect failed: {exc}")
                except Exception:
                    log.exception("on_connect failed; reconnecting", endpoint=str(self.endpoint))
                    return TransportError("on_connect failed (see the traceback above)")
            async for received in client.messages:
                inbox.put_nowait(_message(received))
        except aiomqtt.MqttError as exc:
            return TransportError(f"{lost}: {attempt.loss_reason(exc)}")
        # The iterator only ends by raising; a broker closing the stream lands here too.
        return TransportError(f"{lost}: {attempt.loss_reason()}")

    def _mark_down(self, client: aiomqtt.Client) -> None:
        if self._client is client:
            self._client = None
            self._up.clear()
            self._down.set()

    @staticmethod
    async def _consume(
        inbox: asyncio.Queue[Message], handler: Callable[[Message], Awaitable[None]]
    ) -> None:
        while True:
            message = await inbox.get()
            try:
                await handler(message)
            except Exception:
                log.exception("MQTT message handler failed", topic=message.topic)

    def _new_client(self, logger: logging.Logger) -> aiomqtt.Client:
        settings = self.settings
        credentials = self._credentials
        assert credentials is not None, "prepare() runs first"  # noqa: S101 - internal invariant
        v5 = settings.protocol == "5"
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = settings.session_expiry_seconds
        will = None
        if self.will is not None:
            will = aiomqtt.Will(self.will.topic, self.will.payload, qos=1, retain=self.will.retain)
        return aiomqtt.Client(
            self.endpoint.host,
            self.endpoint.port,
            identifier=self.client_id,
            username=settings.username,
            password=credentials.password,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            # paho rejects clean_session for MQTT 5; clean_start is the MQTT 5 spelling.
            clean_session=None if v5 else False,
            # paho refuses any clean_start but its default for 3.1.1 (where it means nothing).
            clean_start=False if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            keepalive=settings.keepalive_seconds,
            will=will,
            tls_context=credentials.tls_context,
            socket_options=_SOCKET_OPTIONS,
            timeout=self._connect_timeout,
            logger=logger,
        )

    # -- errors --------------------------------------------------------------------------------

    def _connect_failure(self, exc: aiomqtt.MqttError, paho_error: str | None) -> TransportError:
        where = f"the MQTT broker {self.endpoint}"
        if isinstance(exc, MqttConnectError):
            return TransportError(self._refusal_text(exc.rc), refused=True)
        cause = exc.__cause__ or exc.__context__
        ca = self.settings.ca_file or "the system's trust store"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return TransportError(
                f"TLS verification of {where} failed: {cause.verify_message}. Check that "
                f"mqtt.ca_file ({ca}) holds the CA that signed the broker's certificate and "
                f"that the certificate names {self.endpoint.host}.",
                refused=True,
            )
        if isinstance(cause, ssl.SSLError):
            return TransportError(
                f"The TLS handshake with {where} failed: {_ssl_text(cause)}. {_CLIENT_CERT_HINT}",
                refused=True,
            )
        if str(exc) == "Operation timed out":  # its context is a TimeoutError, an OSError
            text = (
                f"The MQTT broker {self.endpoint} did not answer the connection within "
                f"{self._connect_timeout:g} s" + (f" ({paho_error})" if paho_error else "") + "."
            )
            if self.settings.protocol == "5":
                # amqtt misreads an MQTT 5 CONNECT as 3.1.1 and waits for bytes never sent.
                text += (
                    " If the broker only speaks MQTT 3.1.1 (the embedded broker does), set "
                    "mqtt.protocol to '3.1.1'."
                )
            return TransportError(text)
        if isinstance(cause, OSError):
            return TransportError(
                f"Cannot connect to {where}: {cause.strerror or cause}. Check that the broker "
                "is running and that mqtt.endpoint is right."
            )
        return TransportError(f"Cannot connect to {where}: {_reason(exc)}")

    def _closed_early(self, paho_error: str | None) -> TransportError:
        text = f"The MQTT broker {self.endpoint} closed the connection before accepting it"
        if paho_error:
            text += f" ({paho_error})"
        if self.endpoint.tls:
            # Brokers check client certificates after the TLS 1.3 handshake and hang up.
            return TransportError(f"{text}. {_CLIENT_CERT_HINT}", refused=True)
        return TransportError(text)

    def _refusal_text(self, rc: int | ReasonCode | None) -> str:
        code = rc.value if isinstance(rc, ReasonCode) else rc
        head = (
            f"The MQTT broker {self.endpoint} refused the connection of client id "
            f"'{self.client_id}': {rc} (CONNACK {code})."
        )
        credentials = f"mqtt.username ({self.settings.username})"
        if self.settings.password_file is not None:
            credentials += (
                f" and the password in mqtt.password_file ({self.settings.password_file})"
            )
        hint = {
            0x84: "The broker does not speak this MQTT version: set mqtt.protocol to '3.1.1'.",
            0x85: "The broker does not accept this client id (the thing name); check its rules.",
            0x86: f"Check {credentials} against the broker's users.",
            # Mosquitto 2 answers a wrong password with this code too.
            0x87: "The broker does not authorise this client: "
            + (f"check {credentials}, and " if self.settings.username else "")
            + "allow its user name, certificate or client id in the broker's ACL (or IoT "
            "policy).",
            0x8A: "The broker has banned this client.",
            0x8C: "The broker wants another authentication method.",
        }.get(code or 0, "")
        return f"{head} {hint}".rstrip()

    def _load_credentials(self) -> _Credentials:
        """Runs in a thread: reads the files once; every failure names the file and the fix."""
        settings = self.settings
        password = None
        if settings.password_file is not None:
            password = _read_password(settings.password_file)
        context = None
        if self.endpoint.tls:
            context = _tls_context(settings.ca_file, settings.cert_file, settings.key_file)
        return _Credentials(tls_context=context, password=password)


_CLIENT_CERT_HINT: Final = (
    "If the broker requires client certificates, set mqtt.cert_file and mqtt.key_file to a "
    "certificate signed by a CA the broker trusts."
)


class _Attempt:
    """One aiomqtt client and what paho tells us about its connection attempt.

    `closed` resolves when paho closes the socket (before CONNACK, aiomqtt ignores that);
    `paho_error` is paho's last error line (such as a TLS alert), which aiomqtt only logs.
    """

    def __init__(self, make_client: Callable[[logging.Logger], aiomqtt.Client]) -> None:
        loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.paho_error: str | None = None
        # Not getLogger(): that registry would keep one logger per attempt forever.
        logger = logging.Logger(f"{__name__}.paho")  # noqa: LOG001
        logger.setLevel(logging.WARNING)
        logger.addHandler(_PahoLogHandler(self))
        self.client = make_client(logger)
        # aiomqtt has no public hook for "the socket closed before CONNACK"; wrap paho's.
        paho_client = self.client._client
        aiomqtt_on_disconnect = paho_client.on_disconnect

        def on_disconnect(*args: Any) -> None:
            if aiomqtt_on_disconnect is not None:
                aiomqtt_on_disconnect(*args)
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._set_closed)

        paho_client.on_disconnect = on_disconnect

    def _set_closed(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def loss_reason(self, exc: aiomqtt.MqttError | None = None) -> str:
        """Why the established connection ended, as well as paho and aiomqtt can tell."""
        if self.paho_error:  # "[Errno 104] Connection reset by peer", a TLS alert...
            return self.paho_error
        cause = exc.__cause__ if exc is not None else None
        if isinstance(cause, MqttCodeError) and isinstance(cause.rc, ReasonCode):
            # An MQTT 5 DISCONNECT from the broker says why ("Session taken over", ...);
            # paho reports a plain socket close as "Unspecified error".
            if cause.rc.value != 0x80:
                return f"the broker disconnected us: {cause.rc}"
        elif isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        return "the connection was closed"

    def discard(self) -> None:
        """Close what a failed CONNECT left open.

        aiomqtt leaves the socket (and its reader callback) of an attempt that timed out or was
        abandoned; over days of retries that would leak one descriptor per attempt.
        """
        with contextlib.suppress(Exception):
            self.client._client._sock_close()


class _PahoLogHandler(logging.Handler):
    """Keeps paho's error lines for our messages; passes aiomqtt's warnings on to our log."""

    def __init__(self, attempt: _Attempt) -> None:
        super().__init__(logging.WARNING)
        self._attempt = attempt

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.ERROR:
            # "failed to receive on socket: [SSL: X] x (_ssl.c:2580)" -> "[SSL: X] x"
            text = text.removeprefix("failed to receive on socket: ")
            self._attempt.paho_error = _without_ssl_location(text)
        else:
            log.warning(text, source="aiomqtt")


def _message(received: aiomqtt.Message) -> Message:
    return Message(topic=received.topic.value, payload=received.payload, retain=received.retain)


def _read_password(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TransportError(
            f"Cannot read the MQTT password file {path} (mqtt.password_file): {reason}. "
            "Put the broker password in it (UTF-8), readable by the agent only (chmod 600)."
        ) from None
    # Editors add one trailing newline (\n, or \r\n); anything else is part of the password.
    return text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")


def _tls_context(
    ca_file: Path | None, cert_file: Path | None, key_file: Path | None
) -> ssl.SSLContext:
    try:
        # Certificate and host name verification on, TLS 1.2 or later (Python's defaults).
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        context.sslsocket_class = _ClosingSSLSocket
    except (OSError, ssl.SSLError) as exc:
        raise TransportError(
            f"Cannot load the CA file {ca_file} (mqtt.ca_file): {_file_reason(exc)}. It must be "
            "a readable PEM file with the certificate of the CA that signed the broker's "
            "certificate."
        ) from None
    if cert_file is not None and key_file is not None:
        try:
            context.load_cert_chain(str(cert_file), str(key_file))
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(
                f"Cannot load the client certificate {cert_file} (mqtt.cert_file) with the key "
                f"{key_file} (mqtt.key_file): {_file_reason(exc)}. Both must be readable PEM "
                "files, the key unencrypted and belonging to the certificate."
            ) from None
    return context


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSLSocket that closes itself when its handshake fails.

    paho does the handshake in `connect()` and drops the socket without closing it when the
    handshake fails (a wrong CA): one leaked descriptor per retry until the GC finds it.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def _file_reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return _ssl_text(exc)
    return exc.strerror or str(exc)


def _ssl_text(exc: ssl.SSLError) -> str:
    return _without_ssl_location(str(exc))


def _without_ssl_location(text: str) -> str:
    """`[SSL: X] x (_ssl.c:1006)` without the C source location, which helps nobody."""
    return re.sub(r" \(_ssl\.c:\d+\)$", "", text)


def _reason(exc: aiomqtt.MqttError) -> str:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    text = str(exc)
    if isinstance(exc, aiomqtt.MqttCodeError) and isinstance(exc.rc, int):
        text = paho.error_string(exc.rc)
    return text or type(exc).__name__


def _describe_publish_failure(exc: aiomqtt.MqttError, timeout: float) -> str:
    if str(exc) == "Operation timed out":
        return f"no acknowledgement (PUBACK) within {timeout:g} s"
    return _reason(exc)
