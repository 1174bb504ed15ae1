"""The embedded broker (amqtt in a subprocess): users, authentication, offline queueing, and its
lifetime bound to the server's."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiomqtt
import psutil
import pytest

from codedeploy_server.broker import BrokerError, EmbeddedBroker, load_users
from codedeploy_server.errors import ServerConfigError

pytestmark = [pytest.mark.broker, pytest.mark.timeout(60)]


def test_load_users_generates_keeps_and_protects_passwords(tmp_path: Path) -> None:
    """Missing users get a generated password written to a 0600 file; known ones keep theirs."""
    path = tmp_path / "state" / "mqtt-users.json"
    first = load_users(path, ["server", "agent"])
    assert sorted(first) == ["agent", "server"]
    assert len(first["server"]) == 32
    assert first["server"] != first["agent"]
    assert path.stat().st_mode & 0o777 == 0o600
    second = load_users(path, ["server", "agent", "agent-2"])
    assert {k: second[k] for k in first} == first
    assert json.loads(path.read_text()) == second
    assert load_users(path, []) == second


def test_a_broken_users_file_is_reported(tmp_path: Path) -> None:
    """A users file that is not a JSON object of names to passwords names itself and the fix."""
    path = tmp_path / "users.json"
    path.write_text('["server"]')
    with pytest.raises(ServerConfigError, match="must be a JSON object of user name -> password"):
        load_users(path, ["server"])


def _client(port: int, identifier: str, password: str | None) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=identifier,
        username="agent" if password is not None else None,
        password=password,
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=False,
        timeout=5,
    )


@pytest.mark.asyncio
async def test_users_log_in_others_are_refused_and_offline_messages_are_queued(
    tmp_path: Path,
) -> None:
    """A listed user with its password connects; a wrong password or no user name is refused;
    QoS 1 messages for an offline persistent session are delivered when it comes back."""
    started = time.perf_counter()
    async with EmbeddedBroker(
        users={"agent": "secret"}, port=0, log_file=tmp_path / "amqtt.log"
    ) as broker:
        print(f"embedded broker listening after {(time.perf_counter() - started) * 1000:.0f} ms")
        assert broker.endpoint == f"mqtt://127.0.0.1:{broker.port}"
        for password in ("wrong", None):
            with pytest.raises(aiomqtt.MqttCodeError) as refused:
                async with _client(broker.port, "intruder", password):
                    pass
            assert "Not authorized" in str(refused.value)

        async with _client(broker.port, "sub", "secret") as subscriber:
            await subscriber.subscribe("codedeploy/things/host-1/jobs/notify", qos=1)
        async with _client(broker.port, "pub", "secret") as publisher:
            await publisher.publish("codedeploy/things/host-1/jobs/notify", b"while away", qos=1)
        async with _client(broker.port, "sub", "secret") as subscriber:
            async with asyncio.timeout(5):
                async for message in subscriber.messages:
                    assert message.payload == b"while away"
                    break
    assert not broker.running


@pytest.mark.asyncio
async def test_a_taken_port_is_reported(tmp_path: Path) -> None:
    """A second broker on the same port fails with BrokerError naming the address."""
    async with EmbeddedBroker(users={"a": "b"}, port=0) as first:
        second = EmbeddedBroker(users={"a": "b"}, port=first.port, log_file=tmp_path / "b.log")
        with pytest.raises(BrokerError, match=rf"could not listen on 127.0.0.1:{first.port}"):
            await second.start()
        assert not second.running


def test_the_broker_stops_when_the_server_dies(tmp_path: Path) -> None:
    """SIGKILL of the process that started the broker closes its stdin: the broker exits."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from codedeploy_server.broker import EmbeddedBroker

        async def main():
            broker = EmbeddedBroker(users={"a": "b"}, port=0)
            await broker.start()
            print(broker.pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    server = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, stdin=subprocess.DEVNULL
    )
    try:
        assert server.stdout is not None
        broker_pid = int(server.stdout.readline())
        assert psutil.pid_exists(broker_pid)
        server.send_signal(signal.SIGKILL)
        server.wait(5)
        deadline = time.monotonic() + 10
        while psutil.pid_exists(broker_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        exited = not psutil.pid_exists(broker_pid) or (
            psutil.Process(broker_pid).status() == psutil.STATUS_ZOMBIE
        )
        assert exited, "the embedded broker outlived the server"
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
