"""The server's MQTT connection: one persistent session that reconnects by itself.

    mqtt = ServerMqtt(endpoint="mqtt://127.0.0.1:1883", client_id="codedeploy-server-1",
                      protocol=5, username=None, password=None)
    task = asyncio.create_task(mqtt.run(request_filters, handler, broadcast=presence_filters))
    mqtt.enqueue(topic, payload)        # ordered, survives reconnections
    await mqtt.publish(topic, payload)  # the same, and waits for the broker's PUBACK

`run()` connects, subscribes (QoS 1), hands every incoming message to `handler(topic, payload)`
one at a time in arrival order, and publishes the outbox; when the connection is lost it waits
(capped exponential backoff with jitter) and connects again, until `close()` or cancellation.

paho acknowledges a QoS 1 message when it arrives, before anyone handled it, so nothing received
is dropped: messages go through an inbox that outlives connections, what paho received before a
connection ended is taken too, and `close()` disconnects first (the broker then keeps later
messages for the session) and returns once the handler has seen everything received. The
outbox may still hold replies then: `flush_outbox()` publishes them over a short connection of
its own.

What the broker must keep while the server is away is kept: the client id is stable and the
session persistent (MQTT 5: clean start off and a Session Expiry Interval; 3.1.1: clean session
off; the platform notes measured aiomqtt's default wiping queued messages), so agent requests
published while the server restarts are delivered when it is back. TCP_NODELAY is set: without it
Nagle's algorithm and delayed ACKs add ~40 ms to every small reply.

Publishing goes through one outbox, in the order `enqueue`/`publish` were called: replies and
notifications of one thing reach the broker in the order the state changed. Up to `window`
messages are in flight at once (paho sends them in call order on one socket); a message whose
PUBACK did not come before the connection was lost is sent again after the next connection
(at least once: every reply and notification of the Jobs protocol may be repeated).

Shared subscriptions (`shared_group`, MQTT 5 only: Mosquitto, EMQX...): the `subscriptions`
given to `run()` become `$share/<group>/<filter>`, so each agent request reaches one of the
servers of the group; `broadcast` filters (presence, live logs) are subscribed as they are, so
every server sees them (and retained messages, which brokers never send to shared
subscriptions). Mosquitto keeps queueing a share for a member that is offline with an
unexpired session: give servers of a group a short `session_expiry_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from codedeploy_server.errors import ServerConfigError

log = structlog.get_logger("codedeploy_server.mqtt")

_DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}
_NODELAY: Final = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
#: How long one batch of QoS 1 publishes may wait for its PUBACKs before the link counts as lost.
PUBLISH_TIMEOUT: Final = 10.0

Handler = Callable[[str, bytes], Awaitable[None]]


@dataclass(eq=False, slots=True)
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def parse_endpoint(url: str) -> tuple[str, int, bool]:
    """`mqtt://host[:port]` or `mqtts://host[:port]` -> (host, port, tls); ServerConfigError."""
    try:
        parts = urlsplit(url.strip())
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError as exc:
        raise ServerConfigError(
            f"Invalid mqtt.endpoint {url!r}: {exc}; it must look like mqtt://HOST[:PORT] or "
            "mqtts://HOST[:PORT]"
        ) from None
    if scheme not in _DEFAULT_PORTS or not host or parts.path not in ("", "/"):
        raise ServerConfigError(
            f"Invalid mqtt.endpoint {url!r}: it must look like mqtt://HOST[:PORT] or "
            "mqtts://HOST[:PORT]"
        )
    return host, port or _DEFAULT_PORTS[scheme], scheme == "mqtts"


class ServerMqtt:
    """A persistent, self-reconnecting MQTT session with an ordered outbox (module docstring).

    `run()` is not reentrant; it may be called again after it was cancelled (the outbox
    carries over). After `close()` it returns at once: a closed session stays closed.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        client_id: str,
        protocol: Literal[5, "3.1.1"] = 5,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        shared_group: str | None = None,
        keepalive: int = 30,
        session_expiry_seconds: int = 3600,
        connect_timeout: float = 10.0,
        backoff_base: float = 0.1,
        backoff_cap: float = 10.0,
        window: int = 64,
    ) -> None:
        self.host, self.port, tls = parse_endpoint(endpoint)
        self.endpoint = endpoint
        if not client_id:
            raise ServerConfigError("The MQTT client id must not be empty (persistent session)")
        if shared_group is not None:
            if protocol != 5:
                raise ServerConfigError(
                    "Shared subscriptions need MQTT 5: set mqtt.protocol to 5 (the embedded "
                    "broker speaks 3.1.1 only and serves one server)"
                )
            if not shared_group or any(c in shared_group for c in "/+#"):
                raise ServerConfigError(
                    f"Invalid shared subscription group {shared_group!r}: one topic level "
                    "without '/', '+' or '#'"
                )
        if (cert_file is None) != (key_file is None):
            raise ServerConfigError("mqtt.cert_file and mqtt.key_file go together")
        self.client_id = client_id
        self.protocol: Literal[5, "3.1.1"] = protocol
        self.username = username
        self.password = password
        self.ca_file, self.cert_file, self.key_file = ca_file, cert_file, key_file
        self.tls = tls or ca_file is not None
        self.shared_group = shared_group
        self.keepalive = keepalive
        self.session_expiry_seconds = session_expiry_seconds
        self.connect_timeout = connect_timeout
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.window = window
        #: Successful connections so far (2 after one reconnection).
        self.connections = 0
        #: Why the last connection attempt failed or the last connection ended (None while up).
        self.last_error: str | None = None
        self._outbox: deque[_Outgoing] = deque()
        self._outbox_ready = asyncio.Event()
        self._outbox_idle = asyncio.Event()
        self._outbox_idle.set()
        self._up = asyncio.Event()
        self._closing = asyncio.Event()
        self._finished = asyncio.Event()
        self._tls_context: ssl.SSLContext | None = None
        self._running = False

    # --- state ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the session is connected and subscribed."""
        return self._up.is_set()

    # A bool answer is the point of this deadline, not a TimeoutError.
    async def wait_connected(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until connected and subscribed; False when `timeout` seconds passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._up.wait()
        except TimeoutError:
            return False
        return True

    def shared(self, topic_filter: str) -> str:
        """The filter as subscribed: `$share/<group>/<filter>` with a shared group."""
        if self.shared_group is None:
            return topic_filter
        return f"$share/{self.shared_group}/{topic_filter}"

    async def prepare(self) -> None:
        """Load the TLS files once (in a thread); ServerConfigError when they are unusable.
        `run()` calls it; call it earlier to fail at start-up."""
        if self.tls and self._tls_context is None:
            self._tls_context = await asyncio.to_thread(self._make_tls_context)

    # --- publishing -----------------------------------------------------------------------

    def enqueue(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """Queue a message behind everything queued before; the future resolves on PUBACK.

        Never waits: callers holding a lock enqueue in the order their state changed.
        """
        outgoing = _Outgoing(topic, payload, qos, retain)
        self._outbox.append(outgoing)
        self._outbox_idle.clear()
        self._outbox_ready.set()
        return outgoing.done

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish in outbox order and wait until the broker acknowledged it (QoS 1) or it
        was written (QoS 0); waits across reconnections."""
        await self.enqueue(topic, payload, qos=qos, retain=retain)

    async def flush(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until the outbox is empty; False when `timeout` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._outbox_idle.wait()
        except TimeoutError:
            return False
        return True

    @property
    def outbox_size(self) -> int:
        """Messages not yet acknowledged by the broker."""
        return len(self._outbox)

    # --- the connection loop --------------------------------------------------------------

    async def run(
        self, subscriptions: Sequence[str], handler: Handler, *, broadcast: Sequence[str] = ()
    ) -> None:
        """Stay connected and feed incoming messages to `handler` until `close()` (or until
        cancelled).

        `subscriptions` are shared with the group (when there is one), `broadcast` never.
        `handler` is called one message at a time, in arrival order, across reconnections;
        its exceptions are logged and the next message is handled. It should return quickly.
        After `close()` this returns once every message received was handed to `handler`;
        a closed session does not connect again (make a new ServerMqtt).
        """
        if self._running:
            raise RuntimeError("ServerMqtt.run() is already running")
        self._running = True
        self._finished.clear()
        filters = [self.shared(f) for f in subscriptions] + list(broadcast)
        # The broker's acknowledgement (paho's, on receipt) is not handling: every message
        # received goes through this inbox, which outlives connections, to the handler.
        inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        consumer = asyncio.create_task(_consume(inbox, handler), name="mqtt-handler")
        try:
            await self.prepare()
            await self._connect_until_closed(filters, inbox)
            await inbox.join()
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            self._running = False
            self._finished.set()

    async def _connect_until_closed(
        self, filters: list[str], inbox: asyncio.Queue[tuple[str, bytes]]
    ) -> None:
        attempt = 0
        loop = asyncio.get_running_loop()
        while not self._closing.is_set():
            connected_at = loop.time()
            client = self._new_client()
            try:
                async with client:
                    try:
                        if filters:
                            await client.subscribe(
                                [(f, 1) for f in filters], timeout=self.connect_timeout
                            )
                        self.connections += 1
                        self.last_error = None
                        self._up.set()
                        log.info(
                            "connected to the MQTT broker",
                            endpoint=self.endpoint,
                            client_id=self.client_id,
                        )
                        connected_at = loop.time()
                        await self._serve(client, inbox)
                    finally:
                        self._up.clear()
                # Leaving `async with` sent DISCONNECT: the broker keeps what comes next for
                # the session. What paho received (and acknowledged) before is still ours.
            except aiomqtt.MqttError as exc:
                self.last_error = _reason(exc)
            finally:
                _take_received(client, inbox)
            if self._closing.is_set():
                return
            # A connection that lasted a while resets the backoff; a flapping one does not.
            if loop.time() - connected_at > 10:
                attempt = 0
            delay = random.uniform(  # noqa: S311 - jitter, not a secret
                0, min(self.backoff_cap, self.backoff_base * 2**attempt)
            )
            attempt = min(attempt + 1, 32)
            log.warning(
                "MQTT connection lost or refused; retrying",
                endpoint=self.endpoint,
                reason=self.last_error,
                retry_in=round(delay, 3),
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._closing.wait()

    async def close(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109
        """Stop receiving: DISCONNECT (the broker keeps later messages for the persistent
        session), then wait until `run()` handed every received message to the handler and
        returned. What is still in the outbox stays there (`flush_outbox`). False when
        `run()` did not finish within `timeout` seconds."""
        self._closing.set()
        if not self._running:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._finished.wait()
        except TimeoutError:
            return False
        return True

    async def flush_outbox(self, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """Publish what the outbox still holds (after `close()`) over a short connection of
        its own (a clean session, no subscriptions); False when some of it could not be."""
        if not self._outbox:
            return True
        if self._running and self.connected:
            return await self.flush(timeout)
        options = self._client_options()
        options["identifier"] = f"{self.client_id}-flush"
        if self.protocol == 5:
            client = aiomqtt.Client(
                self.host, self.port, protocol=aiomqtt.ProtocolVersion.V5, **options
            )
        else:
            client = aiomqtt.Client(
                self.host,
                self.port,
                protocol=aiomqtt.ProtocolVersion.V311,
                clean_session=True,
                **options,
            )
        client.pending_calls_threshold = self.window + 10
        try:
            async with asyncio.timeout(timeout), client:
                writer = asyncio.create_task(self._write(client))
                try:
                    await self._outbox_idle.wait()
                finally:
                    writer.cancel()
                    await asyncio.gather(writer, return_exceptions=True)
        except (TimeoutError, aiomqtt.MqttError) as exc:
            log.warning(
                "could not publish the last MQTT messages",
                endpoint=self.endpoint,
                count=len(self._outbox),
                reason=str(exc) or type(exc).__name__,
            )
            return False
        return True

    async def _serve(self, client: aiomqtt.Client, inbox: asyncio.Queue[tuple[str, bytes]]) -> None:
        """Read and write until the connection is lost (MqttError) or `close()` was called."""
        reader = asyncio.create_task(_read(client, inbox))
        writer = asyncio.create_task(self._write(client))
        closing = asyncio.create_task(self._closing.wait())
        tasks: set[asyncio.Task[Any]] = {reader, writer, closing}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if closing in done:
            return
        for finished in done:
            finished.result()  # re-raises the MqttError: reconnect
        raise aiomqtt.MqttError("the message stream ended")

    async def _write(self, client: aiomqtt.Client) -> None:
        while True:
            while not self._outbox:
                self._outbox_idle.set()
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            batch = [self._outbox[i] for i in range(min(self.window, len(self._outbox)))]
            # Tasks start in creation order, so paho writes the packets in outbox order.
            results = await asyncio.gather(
                *(
                    client.publish(
                        m.topic, m.payload, qos=m.qos, retain=m.retain, timeout=PUBLISH_TIMEOUT
                    )
                    for m in batch
                ),
                return_exceptions=True,
            )
            for outgoing, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    # This one and everything after it are sent again on the next connection.
                    if isinstance(result, aiomqtt.MqttError):
                        raise result
                    raise aiomqtt.MqttError(f"publish failed: {result!r}") from result
                self._outbox.popleft()
                if not outgoing.done.done():
                    outgoing.done.set_result(None)

    def _client_options(self) -> dict[str, Any]:
        return {
            "identifier": self.client_id,
            "username": self.username,
            "password": self.password,
            "keepalive": self.keepalive,
            "socket_options": _NODELAY,
            "timeout": self.connect_timeout,
            "tls_context": self._tls_context,
            "max_inflight_messages": self.window,
        }

    def _new_client(self) -> aiomqtt.Client:
        """The session's client: persistent (see the module docstring)."""
        client = self._persistent_client()
        # A full window of publishes in flight is normal here, not worth aiomqtt's warning.
        client.pending_calls_threshold = self.window + 10
        return client

    def _persistent_client(self) -> aiomqtt.Client:
        if self.protocol == 5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.session_expiry_seconds
            return aiomqtt.Client(
                self.host,
                self.port,
                protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=False,
                properties=properties,
                **self._client_options(),
            )
        return aiomqtt.Client(
            self.host,
            self.port,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=False,
            **self._client_options(),
        )

    def _make_tls_context(self) -> ssl.SSLContext:
        """Runs in a thread: certificate and host name verification on, TLS 1.2 or later."""
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            if self.cert_file is not None and self.key_file is not None:
                context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ServerConfigError(
                f"Cannot load the MQTT TLS files (mqtt.ca_file {self.ca_file}, mqtt.cert_file "
                f"{self.cert_file}, mqtt.key_file {self.key_file}): {exc}. They must be readable "
                "PEM files, the key unencrypted and matching the certificate."
            ) from exc
        return context


async def _read(client: aiomqtt.Client, inbox: asyncio.Queue[tuple[str, bytes]]) -> None:
    async for message in client.messages:
        inbox.put_nowait((message.topic.value, _bytes(message.payload)))


def _take_received(client: aiomqtt.Client, inbox: asyncio.Queue[tuple[str, bytes]]) -> None:
    """Move what paho received but nobody read yet into the inbox (aiomqtt's iterator stops at
    a disconnection even when its queue is not empty; the queue is only reachable this way)."""
    queue = client._queue
    while not queue.empty():
        message = queue.get_nowait()
        inbox.put_nowait((message.topic.value, _bytes(message.payload)))


async def _consume(inbox: asyncio.Queue[tuple[str, bytes]], handler: Handler) -> None:
    while True:
        topic, payload = await inbox.get()
        try:
            await handler(topic, payload)
        except Exception:
            log.exception("MQTT message handler failed", topic=topic)
        finally:
            inbox.task_done()


def _bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray):
        return bytes(payload)
    return str(payload if payload is not None else "").encode()


def _reason(exc: aiomqtt.MqttError) -> str:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(exc) or type(exc).__name__


__all__ = ["PUBLISH_TIMEOUT", "ServerMqtt", "parse_endpoint"]
