"""The daemon on its host: systemd notifications, clock skew, log files, other brokers, lost
and rejected replies, and SIGKILL in the agent's own events."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from codedeploy_agent.protocol.jobdoc import build_job_document
from codedeploy_agent.protocol.messages import JobStatus, PresenceState, RejectedErrorCode
from codedeploy_agent.protocol.signing import load_private_key, sign_document
from codedeploy_agent.spec import BundleType, RevisionType, S3Revision
from tests.daemon.conftest import KEY_ID, THING, Agent
from tests.daemon.test_daemon import IN_PLACE, document, events_reported
from tests.fakes.broker_fixtures import amqtt_broker  # noqa: F401 - a fixture
from tests.fakes.brokers import EmbeddedBroker
from tests.fakes.bundles import make_tgz, signed_job_document, write_bundle
from tests.fakes.jobs_service import FakeJobsService
from tests.fakes.ntp import FakeNtpServer

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """A real AF_UNIX datagram socket standing in for systemd's notification socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.setblocking(False)
    yield sock
    sock.close()


def drain(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(65536).decode())
        except BlockingIOError:
            return messages


async def collect(sock: socket.socket, into: list[str]) -> None:
    """Read notifications as they come, as systemd does (the socket's queue is short)."""
    while True:
        into.extend(drain(sock))
        await asyncio.sleep(0.02)


async def test_sd_notify_ready_status_watchdog_stopping(
    agent: Agent,
    service: FakeJobsService,
    keys: tuple[Path, Path],
    tmp_path: Path,
    notify_socket: socket.socket,
) -> None:
    """Under systemd the agent sends READY=1, human STATUS lines, WATCHDOG=1 pings and
    STOPPING=1, as datagrams on $NOTIFY_SOCKET."""
    agent.env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    bundle = write_bundle(tmp_path / "bundle", {"ApplicationStart": "sleep 0.5"})
    service.queue_job(THING, "job-s", document(keys, bundle, "d-SYSTEMD01"))
    messages: list[str] = []
    reader = asyncio.create_task(collect(notify_socket, messages))
    agent.start()
    await service.wait_for_status(THING, "job-s", {JobStatus.SUCCEEDED}, timeout=30)
    await asyncio.sleep(1.0)  # idle for a few watchdog periods
    agent.signal(signal.SIGTERM)
    assert await asyncio.to_thread(agent.wait, 30) == 0
    reader.cancel()
    messages.extend(drain(notify_socket))
    assert any(m.startswith("READY=1") for m in messages), messages
    statuses = [m for m in messages if m.startswith("STATUS=")]
    assert any("deploying d-SYSTEMD01: ApplicationStart" in m for m in statuses), statuses
    assert any("idle; connected to mqtt://127.0.0.1" in m for m in statuses), statuses
    assert sum(m == "WATCHDOG=1" for m in messages) >= 2, messages
    assert "STOPPING=1" in messages
    assert messages.index("STOPPING=1") > max(
        i for i, m in enumerate(messages) if m.startswith("READY=1")
    )


@pytest.mark.parametrize("offset", [0.0, 60.0, 600.0])
async def test_clock_skew_in_presence_and_status(
    agent: Agent, service: FakeJobsService, tmp_path: Path, offset: float
) -> None:
    """The skew measured against an NTP server on 127.0.0.1 shows in presence and `status`."""
    with FakeNtpServer(offset) as ntp:
        agent.extra["clock"] = {"ntp_servers": [ntp.address], "check_interval_seconds": 3600}
        agent.start()
        await service.wait_for(
            lambda: (
                (p := service.presence(THING)) is not None
                and p.clock_skew_seconds is not None
                and abs(p.clock_skew_seconds - offset) < 1.0
            ),
            timeout=30,
        )
        await asyncio.sleep(1.2)  # one heartbeat: the status file is rewritten
        status = agent.status()
        assert abs(status["clock_skew_seconds"] - offset) < 1.0


async def test_clock_skew_refuses_aws_signed_work(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path]
) -> None:
    """Past the SigV4 tolerance, a job that would sign AWS calls fails with the fix, while the
    skew is still reported."""
    with FakeNtpServer(600.0) as ntp:
        agent.extra["clock"] = {"ntp_servers": [ntp.address]}
        revision = S3Revision("bucket", "app.tgz", BundleType.TGZ, type=RevisionType.S3)
        now = datetime.now(UTC)
        unsigned = build_job_document(
            deployment_id="d-SKEW00001",
            deployment_group_id="dg-web",
            deployment_group_name="web",
            application_name="app",
            revision=revision,
            issued_at=now,
            expires_at=now + timedelta(hours=2),
            lifecycle_events=tuple(IN_PLACE),
        )
        signed = sign_document(unsigned, load_private_key(keys[0]), KEY_ID)
        service.queue_job(THING, "job-k", signed)
        agent.start()
        execution = await service.wait_for_status(THING, "job-k", {JobStatus.FAILED}, timeout=30)
    message = execution.status_details["message"]
    assert "InvalidSignatureException" in message
    assert "chrony" in message


async def test_sighup_reopens_the_log_file(agent: Agent, service: FakeJobsService) -> None:
    """After logrotate moves the log away, SIGHUP makes the agent write a new file."""
    agent.start()
    await service.wait_for(lambda: service.presence(THING) is not None, timeout=30)
    rotated = agent.log_file.with_name("codedeploy-agent.log.1")
    agent.log_file.rename(rotated)
    agent.signal(signal.SIGHUP)
    await asyncio.sleep(0.3)
    agent.signal(signal.SIGTERM)
    assert await asyncio.to_thread(agent.wait, 30) == 0
    assert "agent started" in rotated.read_text()
    assert "agent stopped" in agent.log_file.read_text()


async def test_json_log_format(agent: Agent, service: FakeJobsService) -> None:
    """`log_format: json` writes one JSON object per line with the bound context."""
    agent.extra["log_format"] = "json"
    agent.start()
    await service.wait_for(lambda: service.presence(THING) is not None, timeout=30)
    agent.stop()
    lines = [json.loads(line) for line in agent.log_file.read_text().splitlines()]
    started = next(line for line in lines if line["event"] == "agent started")
    assert started["thing_name"] == THING
    assert started["level"] == "info"


async def test_json_log_lines_of_a_deployment_name_it(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Every line a deployment logs, whoever logs it (executor, hook runner, archive code in a
    worker thread), names the job and the deployment, and the lifecycle event while one runs."""
    agent.extra["log_format"] = "json"
    # One top-level folder in the archive: the unpacker logs that it strips it (DownloadBundle).
    write_bundle(tmp_path / "wrapped" / "app-1.0", {"AfterInstall": "echo hi"})
    archive = make_tgz(tmp_path / "wrapped", tmp_path / "app.tgz")
    doc = signed_job_document(
        keys[0],
        KEY_ID,
        deployment_id="d-LOGCTX001",
        group_id="dg-web",
        location=archive,
        bundle_type="tgz",
    )
    service.queue_job(THING, "job-log", doc)
    agent.start()
    await service.wait_for_status(THING, "job-log", {JobStatus.SUCCEEDED}, timeout=30)
    await asyncio.to_thread(agent.stop)
    lines = [json.loads(line) for line in agent.log_file.read_text().splitlines()]
    context = {"job_id": "job-log", "deployment_id": "d-LOGCTX001"}

    def only(event: str) -> dict[str, object]:
        found: list[dict[str, object]] = [line for line in lines if line["event"] == event]
        assert len(found) == 1, (event, found)
        return found[0]

    assert only("script finished").items() >= {**context, "lifecycle_event": "AfterInstall"}.items()
    stripping = only("Stripping leading directory from archive bundle contents.")
    assert stripping.items() >= {**context, "lifecycle_event": "DownloadBundle"}.items()
    assert only("deployment started").items() >= context.items()
    finished = only("job finished")
    assert finished.items() >= context.items()
    assert "lifecycle_event" not in finished  # no event runs any more
    deployment = [line for line in lines if line.get("deployment_id") == "d-LOGCTX001"]
    assert len(deployment) > 15  # the 7 events start and finish, among others
    assert all(line.get("job_id") == "job-log" for line in deployment), deployment


async def test_embedded_broker_mqtt_311(
    amqtt_broker: EmbeddedBroker,  # noqa: F811
    keys: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """The agent runs a job over the embedded broker (amqtt, MQTT 3.1.1, a user name)."""
    agent = Agent(tmp_path / "agent", amqtt_broker.endpoint, protocol="3.1.1")
    agent.extra["mqtt"] = {"username": "agent"}
    bundle = write_bundle(tmp_path / "bundle", {"ApplicationStart": "echo hi"})
    async with FakeJobsService(
        "127.0.0.1", amqtt_broker.port, things={THING}, protocol="3.1.1", username="service"
    ) as service:
        service.queue_job(THING, "job-e", document(keys, bundle, "d-EMBEDDED1"))
        agent.start()
        try:
            await service.wait_for_status(THING, "job-e", {JobStatus.SUCCEEDED}, timeout=30)
            assert [e for e, _ in events_reported(service, "job-e")] == IN_PLACE
            assert service.violations == []
        finally:
            agent.stop()
            print(agent.output())


async def test_rejected_updates_are_resolved(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A VersionMismatch and a throttled update are resolved: every event is reported once."""
    bundle = write_bundle(tmp_path / "bundle", {"ApplicationStart": "true"})
    service.reject_next_update(RejectedErrorCode.VERSION_MISMATCH)
    service.reject_next_update(RejectedErrorCode.REQUEST_THROTTLED)
    service.queue_job(THING, "job-v", document(keys, bundle, "d-VERSION01"))
    agent.start()
    await service.wait_for_status(THING, "job-v", {JobStatus.SUCCEEDED}, timeout=30)
    assert [e for e, _ in events_reported(service, "job-v")] == IN_PLACE
    assert service.violations == []


@pytest.mark.slow
async def test_lost_replies_are_resent(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Update replies that never arrive: the agent resends the same request (same clientToken)
    and the service applies it once."""
    bundle = write_bundle(tmp_path / "bundle", {"ApplicationStart": "true"})
    service.drop_next_responses(2, topic_suffix="update/accepted")
    service.queue_job(THING, "job-l", document(keys, bundle, "d-LOSTREP01"))
    agent.start()
    await service.wait_for_status(THING, "job-l", {JobStatus.SUCCEEDED}, timeout=60)
    assert [e for e, _ in events_reported(service, "job-l")] == IN_PLACE
    assert service.violations == []


@pytest.mark.slow
@pytest.mark.parametrize("event", ["DownloadBundle", "Install"])
async def test_sigkill_in_an_agent_event(
    agent: Agent,
    service: FakeJobsService,
    keys: tuple[Path, Path],
    tmp_path: Path,
    event: str,
) -> None:
    """SIGKILL while the agent itself unpacks or installs a big bundle: FailedAfterRestart for
    that event, nothing half-installed is marked last successful, then the next job runs."""
    big = tmp_path / "big"
    files = {f"site/d{i // 200}/f{i}.txt": os.urandom(2048).hex() for i in range(12000)}
    write_bundle(big, {}, files=files, install={"site": str(tmp_path / "www")})
    bundle = make_tgz(big, tmp_path / "big.tgz")
    small = write_bundle(tmp_path / "small", {"ApplicationStart": "true"})
    doc = signed_job_document(
        keys[0],
        KEY_ID,
        deployment_id="d-AGENTEV01",
        group_id="dg-web",
        location=bundle,
        bundle_type="tgz",
    )
    service.queue_job(THING, "job-1", doc)
    agent.start()
    await asyncio.to_thread(agent.wait_for_event, "d-AGENTEV01", event)
    await asyncio.sleep(0.1)
    agent.kill()
    service.queue_job(THING, "job-2", document(keys, small, "d-AGENTEV02"))
    agent.start()
    failed = await service.wait_for_status(THING, "job-1", {JobStatus.FAILED}, timeout=30)
    assert failed.status_details["errorCode"] == "FailedAfterRestart"
    assert failed.status_details["lifecycleEvent"] == event
    await service.wait_for_status(THING, "job-2", {JobStatus.SUCCEEDED}, timeout=60)
    pointer = agent.root_dir / "deployment-instructions" / "dg-web_last_successful_install"
    assert pointer.read_text() == str(agent.root_dir / "dg-web" / "d-AGENTEV02")
    assert service.violations == []


async def test_presence_offline_on_clean_stop(agent: Agent, service: FakeJobsService) -> None:
    """A clean stop publishes the retained offline presence itself."""
    agent.start()
    await service.wait_for(
        lambda: (p := service.presence(THING)) is not None and p.state is PresenceState.ONLINE,
        timeout=30,
    )
    agent.stop()
    await service.wait_for(
        lambda: (p := service.presence(THING)) is not None and p.state is PresenceState.OFFLINE,
        timeout=10,
    )
