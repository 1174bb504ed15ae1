"""ServerMqtt on a real Mosquitto: ordered outbox, persistent session, close without losing
messages, TLS and passwords, configuration errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from codedeploy_server.errors import ServerConfigError
from codedeploy_server.mqtt import ServerMqtt
from tests.fakes.broker_fixtures import MosquittoFactory
from tests.fakes.brokers import MosquittoBroker, make_test_pki
from tests.server.jobs.conftest import poll

pytestmark = [pytest.mark.broker, pytest.mark.asyncio, pytest.mark.timeout(60)]


@contextlib.asynccontextmanager
async def running(
    mqtt: ServerMqtt, filters: list[str], received: list[tuple[str, bytes]], delay: float = 0.0
) -> AsyncIterator[asyncio.Task[None]]:
    """`mqtt.run()` in a task, recording what the handler gets (taking `delay` s each)."""

    async def handler(topic: str, payload: bytes) -> None:
        received.append((topic, payload))
        if delay:
            await asyncio.sleep(delay)

    task = asyncio.create_task(mqtt.run(filters, handler))
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def server(broker: MosquittoBroker, client_id: str = "server", **options: object) -> ServerMqtt:
    return ServerMqtt(endpoint=broker.endpoint, client_id=client_id, **options)  # type: ignore[arg-type]


async def test_the_outbox_keeps_order_across_a_broker_restart(
    mosquitto: MosquittoBroker,
) -> None:
    """Messages enqueued while the broker is down are published once it is back, in the order
    they were enqueued; `publish` returns after the broker's acknowledgement."""
    mqtt = server(mosquitto)

    def watcher() -> aiomqtt.Client:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 300
        return aiomqtt.Client(
            "127.0.0.1",
            mosquitto.port,
            identifier="watcher",
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=properties,
        )

    async with running(mqtt, [], []):
        async with watcher() as client:
            await client.subscribe("t/#", qos=1)
        assert await mqtt.wait_connected(10)
        await mqtt.publish("t/first", b"0")
        await asyncio.to_thread(mosquitto.stop)
        for n in range(1, 300):
            mqtt.enqueue(f"t/{n % 7}", str(n).encode())
        await asyncio.sleep(0.3)
        assert mqtt.outbox_size == 299
        await asyncio.to_thread(mosquitto.start)
        assert await mqtt.flush(20)
        assert mqtt.connections == 2
        received: list[int] = []
        async with watcher() as client, asyncio.timeout(10):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                received.append(int(message.payload))
                if len(received) == 300:
                    break
    assert received == list(range(300))


async def test_close_hands_every_received_message_to_the_handler(
    mosquitto: MosquittoBroker,
) -> None:
    """close() disconnects, then returns once the handler has seen every message received; the
    broker keeps the rest for the session, and the next session with that id gets them: none
    is lost."""
    first_seen: list[tuple[str, bytes]] = []
    first = server(mosquitto, "closing")
    async with running(first, ["req/+"], first_seen, delay=0.02) as task:
        assert await first.wait_connected(10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="agent") as agent:
            for n in range(100):
                await agent.publish(f"req/{n}", str(n).encode(), qos=1)
            await poll(lambda: bool(first_seen), 10)
            assert await first.close(10)
            assert task.done()
            handled = len(first_seen)
            for n in range(100, 120):
                await agent.publish(f"req/{n}", str(n).encode(), qos=1)
        assert len(first_seen) == handled

    second_seen: list[tuple[str, bytes]] = []
    second = server(mosquitto, "closing")
    async with running(second, ["req/+"], second_seen):
        await poll(lambda: len(first_seen) + len(second_seen) >= 120, 10)
    numbers = [int(p) for _, p in first_seen + second_seen]
    assert numbers == list(range(120))
    print(f"handled before close: {handled}, after: {len(second_seen)}")


async def test_flush_outbox_publishes_what_close_left(mosquitto: MosquittoBroker) -> None:
    """Messages enqueued after close() are published by flush_outbox() on a connection of its
    own."""
    mqtt = server(mosquitto)
    async with running(mqtt, [], []):
        assert await mqtt.wait_connected(10)
        assert await mqtt.close()
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="watcher") as watcher:
        await watcher.subscribe("late/+", qos=1)
        mqtt.enqueue("late/1", b"a")
        mqtt.enqueue("late/2", b"b")
        assert await mqtt.flush_outbox(5)
        got = []
        async with asyncio.timeout(5):
            async for message in watcher.messages:
                got.append((message.topic.value, message.payload))
                if len(got) == 2:
                    break
    assert got == [("late/1", b"a"), ("late/2", b"b")]
    assert await mqtt.flush_outbox(1)  # nothing left


async def test_tls_and_password(mosquitto_factory: MosquittoFactory, tmp_path: Path) -> None:
    """Over TLS with the broker's CA and a user name and password the session connects; a wrong
    password leaves it retrying with the broker's refusal as last_error."""
    pki = make_test_pki(tmp_path / "pki")
    broker = mosquitto_factory(users={"server": "s3cret"}, tls=pki)
    secret, wrong = "s3cret", "nope"
    good = server(broker, "tls-good", username="server", password=secret, ca_file=pki.ca_file)
    bad = server(broker, "tls-bad", username="server", password=wrong, ca_file=pki.ca_file)
    assert good.tls
    async with running(good, ["x/+"], []), running(bad, ["x/+"], []):
        assert await good.wait_connected(10)
        assert not await bad.wait_connected(1)
        assert bad.last_error is not None
        assert "Not authorized" in bad.last_error or "authori" in bad.last_error.lower()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"endpoint": "http://127.0.0.1"}, "must look like mqtt://HOST"),
        ({"shared_group": "g", "protocol": "3.1.1"}, "Shared subscriptions need MQTT 5"),
        ({"shared_group": "a/b"}, "Invalid shared subscription group 'a/b'"),
        ({"cert_file": Path("c.pem")}, "mqtt.cert_file and mqtt.key_file go together"),
        ({"client_id": ""}, "client id must not be empty"),
    ],
)
async def test_configuration_errors(options: dict[str, object], message: str) -> None:
    """Unusable settings raise ServerConfigError saying what to fix."""
    settings: dict[str, object] = {"endpoint": "mqtt://127.0.0.1:1", "client_id": "s", **options}
    with pytest.raises(ServerConfigError, match=message):
        ServerMqtt(**settings)  # type: ignore[arg-type]


async def test_shared_subscriptions_split_requests_between_servers(
    mosquitto: MosquittoBroker,
) -> None:
    """Two sessions of one shared group each get some of the requests, and every request
    reaches exactly one of them."""
    seen: list[list[tuple[str, bytes]]] = [[], []]
    servers = [server(mosquitto, f"s{n}", shared_group="grp") for n in (0, 1)]
    async with running(servers[0], ["req/+"], seen[0]), running(servers[1], ["req/+"], seen[1]):
        for mqtt in servers:
            assert await mqtt.wait_connected(10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="agent") as agent:
            for n in range(40):
                await agent.publish(f"req/{n}", b"x", qos=1)
        await poll(lambda: len(seen[0]) + len(seen[1]) >= 40, 10)
    topics = sorted(t for t, _ in seen[0] + seen[1])
    assert topics == sorted(f"req/{n}" for n in range(40))
    assert seen[0]
    assert seen[1]


async def test_unreadable_tls_files_fail_at_prepare(tmp_path: Path) -> None:
    """A CA file that cannot be read is reported by prepare() (the Jobs service calls it in
    start()), naming the setting."""
    mqtt = ServerMqtt(
        endpoint="mqtts://127.0.0.1:8883", client_id="s", ca_file=tmp_path / "missing.pem"
    )
    with pytest.raises(ServerConfigError, match=r"Cannot load the MQTT TLS files \(mqtt.ca_file"):
        await mqtt.prepare()
