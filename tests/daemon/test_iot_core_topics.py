"""AWS IoT Core topics end to end: the real `codedeploy-agent run` with `topic_root: $aws/things`
runs a job signed by `codedeploy-server sign-job` and keeps its own topics (presence, last will,
live logs) out of the reserved `$aws/things/<thing>/` space (topics.py, "Topics under AWS IoT
Core")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import msgspec
import pytest

from codedeploy_agent.protocol.messages import JobStatus, Presence, PresenceState
from tests.daemon.conftest import KEY_ID, THING, Agent
from tests.fakes.brokers import MosquittoBroker
from tests.fakes.bundles import job_document, write_bundle
from tests.fakes.jobs_service import FakeJobsService

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

AWS_ROOT = "$aws/things"
PRESENCE = f"codedeploy/things/{THING}/presence"
RESERVED = f"{AWS_ROOT}/{THING}/"
DEPLOYMENT = "d-IOTCORE01"
# Mosquitto (`log_type all`): `Received PUBLISH from <client id> (d0, q1, r0, m3, '<topic>', ...`
_RECEIVED = re.compile(r"Received PUBLISH from (\S+) \(d\d, q\d, r(\d), m\d+, '([^']*)'")


@dataclass
class Recorder:
    """Every message a plain client subscribed to `#` and `$aws/#` received, in order."""

    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on(self, topic: str) -> list[bytes]:
        return [payload for t, payload, _ in self.messages if t == topic]

    def presence_states(self) -> list[PresenceState]:
        return [msgspec.json.decode(p, type=Presence).state for p in self.on(PRESENCE) if p]

    async def wait_for(self, state: PresenceState, timeout: float = 20) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while state not in self.presence_states():
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def recording(port: int) -> AsyncIterator[Recorder]:
    """A client that records everything published on the broker (`#` never matches `$...`)."""
    recorder = Recorder()
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="recorder", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe([("#", 1), ("$aws/#", 1)])

        async def read() -> None:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                recorder.messages.append((message.topic.value, payload, message.retain))
                recorder.changed.set()

        reader = asyncio.create_task(read())
        try:
            yield recorder
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader


def sign_job(private_key: Path, unsigned: Path, signed: Path) -> None:
    """`codedeploy-server sign-job` as an operator runs it before `aws iot create-job`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    args = ["sign-job", "--key", str(private_key), "--key-id", KEY_ID, "-o", str(signed)]
    result = subprocess.run(
        [sys.executable, "-m", "codedeploy_server", *args, str(unsigned)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def published_by(broker: MosquittoBroker, client_id: str) -> list[tuple[str, bool]]:
    """(topic, retained) of every message `client_id` published, in order (the broker's log)."""
    return [
        (topic, retain == "1")
        for sender, retain, topic in _RECEIVED.findall(broker.log_text())
        if sender == client_id
    ]


async def test_agent_on_aws_topic_root_keeps_presence_and_logs_out_of_reserved_topics(
    agent: Agent, broker: MosquittoBroker, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """With `$aws/things` the agent runs a job signed by sign-job to SUCCEEDED over the reserved
    Jobs topics, while its presence, last will and live logs go to `codedeploy/things/<thing>/`
    and nothing it publishes under `$aws/things/<thing>/` is anything but a Jobs topic."""
    bundle = write_bundle(tmp_path / "bundle", {"BeforeInstall": "echo hello from iot core"})
    unsigned = job_document(
        deployment_id=DEPLOYMENT, group_id="dg-web", location=bundle, bundle_type="directory"
    )
    del unsigned["IssuedAt"], unsigned["ExpiresAt"]  # sign-job sets them
    unsigned_file, signed_file = tmp_path / "job.json", tmp_path / "job.signed.json"
    unsigned_file.write_text(json.dumps(unsigned, indent=2))
    sign_job(keys[0], unsigned_file, signed_file)
    signed = json.loads(signed_file.read_text())
    assert signed["Signature"]["KeyId"] == KEY_ID

    agent.extra = {"mqtt": {"topic_root": AWS_ROOT}}
    async with (
        recording(broker.port) as seen,
        FakeJobsService("127.0.0.1", broker.port, topic_root=AWS_ROOT, things={THING}) as service,
    ):
        service.queue_job(THING, "iot-job-1", signed)
        agent.start()
        execution = await service.wait_for_status(
            THING, "iot-job-1", {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.REJECTED}, 30
        )
        assert execution.status is JobStatus.SUCCEEDED, execution.status_details
        await seen.wait_for(PresenceState.ONLINE)
        await service.wait_for(
            lambda: "[stdout]hello from iot core" in "\n".join(service.log_lines(THING, DEPLOYMENT))
        )
        # The last will, published by the broker when the connection dies without DISCONNECT.
        agent.kill()
        await seen.wait_for(PresenceState.OFFLINE)
        presence = service.presence(THING)
        assert presence is not None
        assert presence.state is PresenceState.OFFLINE
        assert service.violations == []

    # What the agent published (its client id is the thing name), by topic.
    published = published_by(broker, THING)
    agent_topics = [topic for topic, _ in published]
    assert PRESENCE in agent_topics
    assert all(retain for topic, retain in published if topic == PRESENCE)
    assert f"codedeploy/things/{THING}/logs/{DEPLOYMENT}" in agent_topics
    assert f"{RESERVED}jobs/start-next" in agent_topics
    assert f"{RESERVED}jobs/iot-job-1/update" in agent_topics
    outside_jobs = [t for t in agent_topics if t.startswith(RESERVED) and "/jobs/" not in t]
    assert outside_jobs == []
    assert not [t for t in agent_topics if not t.startswith((RESERVED + "jobs/", "codedeploy/"))]
    # And on the wire, whoever published it: nothing of ours under the reserved prefix.
    reserved = {t for t, _, _ in seen.messages if t.startswith(RESERVED)}
    assert reserved
    assert all(t.startswith(f"{RESERVED}jobs/") for t in reserved), reserved
