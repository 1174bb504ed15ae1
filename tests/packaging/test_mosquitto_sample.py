"""packaging/mosquitto: Mosquitto started with the sample's own files (paths and port moved to
the test's folder) lets each host's certificate reach that host's topics and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from tests.doctor.pki import Identity, TestCa
from tests.fakes.brokers import MOSQUITTO, free_port, wait_for_port

pytestmark = pytest.mark.broker

SAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "mosquitto"


@dataclass
class Fleet:
    """The broker's port and the certificates of two hosts and the control plane."""

    port: int
    ca: TestCa
    web1: Identity
    web2: Identity
    server: Identity
    log: Path


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """Mosquitto running codedeploy.conf and acl from packaging/mosquitto."""
    ca = TestCa(tmp_path / "pki")
    broker_id = ca.issue("127.0.0.1", server=True)
    port = free_port()
    conf = (SAMPLE / "codedeploy.conf").read_text()
    replacements = {
        "listener 8883\n": f"listener {port} 127.0.0.1\n",
        "cafile /etc/mosquitto/certs/ca.pem\n": f"cafile {ca.ca_file}\n",
        "certfile /etc/mosquitto/certs/broker.pem\n": f"certfile {broker_id.cert}\n",
        "keyfile /etc/mosquitto/certs/broker.key\n": f"keyfile {broker_id.key}\n",
        "acl_file /etc/mosquitto/conf.d/codedeploy.acl\n": f"acl_file {SAMPLE / 'acl'}\n",
    }
    for old, new in replacements.items():
        assert old in conf, old
        conf = conf.replace(old, new)
    data = tmp_path / "data"
    data.mkdir()
    # As root Mosquitto would switch to its own user, which cannot read pytest's 0700 folders.
    prefix = "user root\n" if os.geteuid() == 0 else ""
    extra = f"persistence_location {data}/\nlog_dest stderr\nlog_type all\n"
    config = tmp_path / "mosquitto.conf"
    config.write_text(prefix + conf + extra)
    log = tmp_path / "mosquitto.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(config)], stdout=out, stderr=out, stdin=subprocess.DEVNULL
        )
    try:
        wait_for_port(port, process, log)
        yield Fleet(
            port, ca, ca.issue("web-1"), ca.issue("web-2"), ca.issue("codedeploy-server"), log
        )
    finally:
        process.terminate()
        process.wait(10)
        print(log.read_text())


def client(fleet: Fleet, identity: Identity | None, client_id: str) -> aiomqtt.Client:
    context = ssl.create_default_context(cafile=str(fleet.ca.ca_file))
    if identity is not None:
        context.load_cert_chain(str(identity.cert), str(identity.key))
    return aiomqtt.Client(
        "127.0.0.1",
        fleet.port,
        identifier=client_id,
        tls_context=context,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=5,
    )


async def received(mqtt: aiomqtt.Client, seconds: float = 1.0) -> list[tuple[str, bytes]]:
    """What arrives on `mqtt`'s subscriptions within `seconds`."""
    got: list[tuple[str, bytes]] = []

    async def collect() -> None:
        async for message in mqtt.messages:
            got.append((message.topic.value, bytes(message.payload)))  # noqa: PERF401

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), seconds)
    return got


@pytest.mark.asyncio
async def test_a_host_reaches_its_own_topics_only(fleet: Fleet) -> None:
    """web-1 publishes to its topics (the control plane receives it) but not to web-2's."""
    async with (
        client(fleet, fleet.server, "control-plane") as server,
        client(fleet, fleet.web1, "web-1") as web1,
    ):
        await server.subscribe("codedeploy/things/#", qos=1)
        await web1.publish("codedeploy/things/web-1/presence", b"mine", qos=1)
        await web1.publish("codedeploy/things/web-2/presence", b"not mine", qos=1)
        assert await received(server) == [("codedeploy/things/web-1/presence", b"mine")]


@pytest.mark.asyncio
async def test_a_host_receives_its_own_jobs_only(fleet: Fleet) -> None:
    """The control plane's notification for web-1 reaches web-1, never web-2."""
    async with (
        client(fleet, fleet.server, "control-plane") as server,
        client(fleet, fleet.web1, "web-1") as web1,
        client(fleet, fleet.web2, "web-2") as web2,
    ):
        await web1.subscribe("codedeploy/things/web-1/jobs/#", qos=1)
        await web2.subscribe("codedeploy/things/web-1/jobs/#", qos=1)
        await server.publish("codedeploy/things/web-1/jobs/notify-next", b"job", qos=1)
        mine, theirs = await asyncio.gather(received(web1), received(web2))
        assert mine == [("codedeploy/things/web-1/jobs/notify-next", b"job")]
        assert theirs == []


@pytest.mark.asyncio
async def test_a_client_id_does_not_make_a_host(fleet: Fleet) -> None:
    """web-2's certificate connecting with client id web-1 (the %c trap) gets none of web-1's topics."""
    async with (
        client(fleet, fleet.server, "control-plane") as server,
        client(fleet, fleet.web2, "web-1") as impostor,
    ):
        await server.subscribe("codedeploy/things/#", qos=1)
        await impostor.subscribe("codedeploy/things/web-1/jobs/#", qos=1)
        await impostor.publish("codedeploy/things/web-1/jobs/start-next", b"{}", qos=1)
        await server.publish("codedeploy/things/web-1/jobs/notify-next", b"job", qos=1)
        seen_by_server, seen_by_impostor = await asyncio.gather(
            received(server), received(impostor)
        )
        assert seen_by_server == [("codedeploy/things/web-1/jobs/notify-next", b"job")]
        assert seen_by_impostor == []


def handshake(fleet: Fleet, identity: Identity | None) -> str:
    """How the broker answers a TLS client: `open` (it waits for CONNECT) or its TLS alert."""
    context = ssl.create_default_context(cafile=str(fleet.ca.ca_file))
    if identity is not None:
        context.load_cert_chain(str(identity.cert), str(identity.key))
    with (
        socket.create_connection(("127.0.0.1", fleet.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.settimeout(0.5)
        try:
            return "closed" if tls.recv(1) == b"" else "data"
        except TimeoutError:
            return "open"
        except ssl.SSLError as exc:
            return str(exc.reason)


def test_no_client_certificate_no_connection(fleet: Fleet) -> None:
    """Only a certificate signed by the fleet's CA gets past TLS (require_certificate true)."""
    assert handshake(fleet, fleet.web1) == "open"
    assert handshake(fleet, None) == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    stranger = TestCa(fleet.ca.directory / "other", name="other-ca").issue("web-1")
    assert handshake(fleet, stranger) == "TLSV1_ALERT_UNKNOWN_CA"
