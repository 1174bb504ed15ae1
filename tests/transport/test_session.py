"""MqttSession against real brokers: round trips, persistent sessions, reconnection, publishing."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import time

import psutil
import pytest
from structlog.testing import capture_logs

from codedeploy_agent.transport import Message, MqttSession, NotConnectedError
from tests.fakes.brokers import EmbeddedBroker, MosquittoBroker
from tests.transport.helpers import Inbox, eventually, fast_backoff, peer, running, settings

pytestmark = [pytest.mark.broker, pytest.mark.asyncio, pytest.mark.timeout(30)]

ROOT = "codedeploy/things/thing-1/jobs"
BROKERS_AND_PROTOCOLS = [
    pytest.param("mosquitto", "5", id="mosquitto-v5"),
    pytest.param("mosquitto", "3.1.1", id="mosquitto-v3.1.1"),
    pytest.param("amqtt_broker", "3.1.1", id="amqtt-v3.1.1"),
]


def agent_session(
    broker: MosquittoBroker | EmbeddedBroker, protocol: str = "5", **options: object
) -> MqttSession:
    """The agent's session as the daemon builds it: thing name as client id, its job topics."""
    return MqttSession(
        settings(broker.endpoint, protocol=protocol, username="thing-1"),
        client_id="thing-1",
        subscriptions=[f"{ROOT}/notify-next", f"{ROOT}/start-next/+"],
        backoff=fast_backoff(),
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(("broker_fixture", "protocol"), BROKERS_AND_PROTOCOLS)
async def test_round_trip(
    broker_fixture: str, protocol: str, request: pytest.FixtureRequest
) -> None:
    """The session publishes from on_connect and receives what the control plane sends back."""
    broker = request.getfixturevalue(broker_fixture)
    inbox = Inbox()
    session: MqttSession

    async def on_connect() -> None:
        await session.publish(f"{ROOT}/start-next", b'{"clientToken":"c1"}')

    session = agent_session(broker, protocol, on_connect=on_connect)
    async with (
        peer(broker.port, (f"{ROOT}/start-next",)) as control_plane,
        running(session, inbox),
    ):
        request_message = await control_plane.inbox.next()
        assert request_message == Message(f"{ROOT}/start-next", b'{"clientToken":"c1"}')
        await control_plane.publish(f"{ROOT}/start-next/accepted", b'{"execution":{}}')
        assert await inbox.next() == Message(f"{ROOT}/start-next/accepted", b'{"execution":{}}')
        assert session.connected


@pytest.mark.parametrize(("broker_fixture", "protocol"), BROKERS_AND_PROTOCOLS)
async def test_messages_queued_while_offline_arrive_on_reconnect(
    broker_fixture: str, protocol: str, request: pytest.FixtureRequest
) -> None:
    """QoS 1 messages sent while the agent was away arrive, in order, after on_connect."""
    broker = request.getfixturevalue(broker_fixture)
    async with running(agent_session(broker, protocol), Inbox()):
        pass  # the broker now knows the session and its subscriptions
    async with peer(broker.port) as control_plane:
        for n in (1, 2, 3):
            await control_plane.publish(f"{ROOT}/notify-next", b"%d" % n)

    events: list[str] = []

    async def on_connect() -> None:
        events.append("connected")

    async def handler(message: Message) -> None:
        events.append(message.payload.decode())

    # A new session object, as after an agent restart: only the client id links the two.
    async with running(agent_session(broker, protocol, on_connect=on_connect), handler):
        await eventually(lambda: len(events) >= 4)
        await asyncio.sleep(0.1)
    assert events == ["connected", "1", "2", "3"]


async def test_mqtt5_against_amqtt_times_out_with_a_hint(amqtt_broker: EmbeddedBroker) -> None:
    """MQTT 5 against the embedded broker (3.1.1 only): a WARNING that says to use 3.1.1."""
    session = agent_session(amqtt_broker, "5", connect_timeout=0.3)
    with capture_logs() as logs:
        async with running(session, Inbox(), connected=False):
            await eventually(lambda: session.last_error is not None)
    expected = (
        f"The MQTT broker {amqtt_broker.endpoint} did not answer the connection within 0.3 s. "
        "If the broker only speaks MQTT 3.1.1 (the embedded broker does), set mqtt.protocol "
        "to '3.1.1'."
    )
    assert str(session.last_error) == expected
    assert session.last_error is not None
    assert not session.last_error.refused
    assert [e["log_level"] for e in logs if e["event"] == expected] == ["warning"]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_broker_restart_reconnects_and_session_survives(
    mosquitto: MosquittoBroker, protocol: str
) -> None:
    """After a broker restart the session reconnects by itself; publishing meanwhile fails."""
    inbox = Inbox()
    connects = 0

    async def on_connect() -> None:
        nonlocal connects
        connects += 1

    session = agent_session(mosquitto, protocol, on_connect=on_connect)
    async with running(session, inbox):
        await asyncio.to_thread(mosquitto.stop)
        await eventually(lambda: not session.connected)
        with pytest.raises(NotConnectedError) as raised:
            await session.publish(f"{ROOT}/start-next", b"{}")
        assert str(raised.value) == f"Not connected to the MQTT broker {mosquitto.endpoint}"
        await eventually(lambda: "Cannot connect" in str(session.last_error))
        assert str(session.last_error) == (
            f"Cannot connect to the MQTT broker {mosquitto.endpoint}: Connection refused. "
            "Check that the broker is running and that mqtt.endpoint is right."
        )
        await asyncio.to_thread(mosquitto.start)
        assert await session.wait_connected(5)
        assert session.last_error is None
        async with peer(mosquitto.port) as control_plane:
            await control_plane.publish(f"{ROOT}/notify-next", b"after restart")
        assert await inbox.next() == Message(f"{ROOT}/notify-next", b"after restart")
        await session.publish(f"{ROOT}/start-next", b"{}")
    assert connects == 2


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_queued_messages_survive_a_broker_restart(
    mosquitto: MosquittoBroker, protocol: str
) -> None:
    """With persistence, messages queued for the offline agent survive a broker restart."""
    async with running(agent_session(mosquitto, protocol), Inbox()):
        pass
    async with peer(mosquitto.port) as control_plane:
        await control_plane.publish(f"{ROOT}/notify-next", b"queued")
    await asyncio.to_thread(mosquitto.restart)
    inbox = Inbox()
    async with running(agent_session(mosquitto, protocol), inbox):
        assert await inbox.next() == Message(f"{ROOT}/notify-next", b"queued")


async def test_lost_connection_is_logged_as_a_warning(mosquitto: MosquittoBroker) -> None:
    """A broker that goes away gives one WARNING naming the endpoint and the retry delay."""
    session = agent_session(mosquitto)
    with capture_logs() as logs:
        async with running(session, Inbox()):
            await asyncio.to_thread(mosquitto.kill)
            await eventually(lambda: not session.connected)
            await eventually(lambda: any(e["event"].startswith("Lost") for e in logs))
    lost = [e for e in logs if e["event"].startswith("Lost")]
    assert lost[0]["event"].startswith(
        f"Lost the connection to the MQTT broker {mosquitto.endpoint}: "
    )
    assert lost[0]["log_level"] == "warning"
    assert lost[0]["endpoint"] == mosquitto.endpoint
    assert 0 <= lost[0]["retry_in"] <= 0.05


async def test_publish_without_puback_times_out(mosquitto: MosquittoBroker) -> None:
    """A QoS 1 publish that gets no PUBACK raises NotConnectedError after publish_timeout."""
    session = agent_session(mosquitto, publish_timeout=0.3)
    async with running(session, Inbox()):
        os.kill(mosquitto.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(NotConnectedError) as raised:
                await session.publish(f"{ROOT}/start-next", b"{}")
            assert 0.25 < time.monotonic() - started < 2
        finally:
            os.kill(mosquitto.pid, signal.SIGCONT)
    assert str(raised.value) == (
        f"Could not publish to {ROOT}/start-next on the MQTT broker {mosquitto.endpoint}: "
        "no acknowledgement (PUBACK) within 0.3 s"
    )


async def test_handler_failure_is_logged_and_the_next_message_handled(
    mosquitto: MosquittoBroker,
) -> None:
    """An exception in the handler is logged with its topic; later messages still arrive."""
    inbox = Inbox()

    async def handler(message: Message) -> None:
        if message.payload == b"bad":
            raise ValueError("boom")
        await inbox(message)

    with capture_logs() as logs:
        async with (
            running(agent_session(mosquitto), handler) as task,
            peer(mosquitto.port) as control_plane,
        ):
            await control_plane.publish(f"{ROOT}/notify-next", b"bad")
            await control_plane.publish(f"{ROOT}/notify-next", b"good")
            assert await inbox.next() == Message(f"{ROOT}/notify-next", b"good")
            assert not task.done()
    failures = [e for e in logs if e["event"] == "MQTT message handler failed"]
    assert [(e["log_level"], e["topic"]) for e in failures] == [("error", f"{ROOT}/notify-next")]


async def test_run_is_not_reentrant(mosquitto: MosquittoBroker) -> None:
    """A second run() of the same session while the first runs is a programming error."""
    session = agent_session(mosquitto)
    async with running(session, Inbox()):
        with pytest.raises(RuntimeError, match=r"already running"):
            await session.run(Inbox())
        assert session.connected


async def test_tcp_nodelay_is_set_on_the_socket(mosquitto: MosquittoBroker) -> None:
    """The agent's socket to the broker has TCP_NODELAY (no 40 ms Nagle delays)."""
    async with running(agent_session(mosquitto), Inbox()):
        ours = [
            c
            for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == mosquitto.port and c.status == psutil.CONN_ESTABLISHED
        ]
        assert len(ours) == 1
        with socket.socket(fileno=os.dup(ours[0].fd)) as sock:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


async def test_round_trip_latency(mosquitto: MosquittoBroker) -> None:
    """A request/response round trip through the broker (two QoS 1 hops) takes milliseconds."""
    replies = Inbox()
    agent = agent_session(mosquitto)
    responder: MqttSession

    async def respond(message: Message) -> None:
        await responder.publish(f"{ROOT}/start-next/accepted", message.payload)

    responder = MqttSession(
        settings(mosquitto.endpoint),
        client_id="control-plane",
        subscriptions=[f"{ROOT}/start-next"],
    )
    samples: list[float] = []
    async with running(responder, respond), running(agent, replies):
        for n in range(60):
            started = time.perf_counter()
            await agent.publish(f"{ROOT}/start-next", b"%d" % n)
            reply = await replies.next()
            samples.append(time.perf_counter() - started)
            assert reply.payload == b"%d" % n
    median_ms = statistics.median(samples[10:]) * 1000
    print(f"median round trip: {median_ms:.2f} ms")
    # Nagle plus delayed ACKs would make this 40 ms or more.
    assert median_ms < 15


async def test_on_connect_failure_reconnects_and_calls_it_again(
    mosquitto: MosquittoBroker,
) -> None:
    """A bug in on_connect is logged with its traceback; the next connection calls it again."""
    calls = 0

    async def on_connect() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first connection")

    session = agent_session(mosquitto, on_connect=on_connect)
    with capture_logs() as logs:
        async with running(session, Inbox()):
            await eventually(lambda: calls == 2)
    failures = [e for e in logs if e["event"] == "on_connect failed; reconnecting"]
    assert [(e["log_level"], e["exc_info"]) for e in failures] == [("error", True)]
    assert "on_connect failed (see the traceback above)" in [e["event"] for e in logs]
