"""Install warnings reach the Jobs updates: the real worker, executor and outbox, no broker.

The worker queues every update in the on-disk outbox before anything is published; with no
connection the sender never runs, so the outbox holds exactly what the service would receive.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from codedeploy_agent.config import AgentConfig, HookSettings
from codedeploy_agent.daemon.jobs import JobsClient
from codedeploy_agent.daemon.state import JobLedger, Outbox
from codedeploy_agent.daemon.worker import JobWorker
from codedeploy_agent.executor import DeploymentExecutor
from codedeploy_agent.protocol.messages import (
    MAX_DETAIL_CHARS,
    JobExecution,
    JobStatus,
    UpdateRequest,
    check_status_details,
)
from codedeploy_agent.protocol.topics import JobsTopics
from tests.fakes.bundles import job_document, write_bundle

pytestmark = [pytest.mark.asyncio, pytest.mark.root]

THING = "host-1"
GROUP = "dg-web"
UNREMOVABLE = (
    "Operation not permitted. Remove it by hand or fix its permissions (lsattr/chattr -i, "
    "mount rw); the deployment continues, and the next deployment tries to remove it again."
)


class Offline:
    """The MQTT session, never connected: updates stay in the outbox."""

    connected = False

    async def publish(
        self, topic: str, payload: bytes, *, qos: Literal[0, 1] = 1, retain: bool = False
    ) -> None:
        raise AssertionError(f"nothing is published without a connection ({topic})")


class Host:
    """A worker with its executor, ledger and outbox under one tmp dir."""

    def __init__(self, base: Path) -> None:
        self.base = base
        state = base / "state"
        state.mkdir(parents=True)
        config = AgentConfig(
            root_dir=base / "root", log_dir=base / "logs", hooks=HookSettings(kill_grace_seconds=1)
        )
        ledger = JobLedger(state)
        ledger.load()
        self.outbox = Outbox(state)
        client = JobsClient(
            Offline(),
            JobsTopics("codedeploy/things", THING),
            self.outbox,
            on_next_job=lambda: None,
            on_job_stopped=lambda _job, _status: None,
        )
        self.worker = JobWorker(DeploymentExecutor(config), client, ledger, trusted_keys={})

    async def deploy(self, job_id: str, deployment_id: str, bundle: Path) -> JobStatus:
        """Run one job to its end; its final status."""
        now = int(time.time())
        document = job_document(
            deployment_id=deployment_id, group_id=GROUP, location=bundle, bundle_type="directory"
        )
        execution = JobExecution(
            job_id=job_id,
            status=JobStatus.IN_PROGRESS,
            queued_at=now,
            last_updated_at=now,
            version_number=1,
            execution_number=1,
            thing_name=THING,
            job_document=document,
        )
        await self.worker.run(execution)
        return self.updates(job_id)[-1].status

    def updates(self, job_id: str) -> list[UpdateRequest]:
        return [u.request for u in self.outbox.pending() if u.job_id == job_id]

    def install_update(self, job_id: str) -> dict[str, str]:
        """The statusDetails of the job's IN_PROGRESS update for Install."""
        (details,) = [
            u.status_details
            for u in self.updates(job_id)
            if u.status is JobStatus.IN_PROGRESS
            and u.status_details.get("lifecycleEvent") == "Install"
        ]
        return details


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path / "agent")


def app_bundle(base: Path, names: list[str]) -> Path:
    """A bundle that installs `app/<name>` for each name into `<base>/dest`."""
    return write_bundle(
        base / "bundle",
        {"ValidateService": "exit 0"},
        files={f"app/{name}": name for name in names},
        install={"app": str(base / "dest")},
    )


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Files made immutable by the test (chattr +i), made mutable again afterwards."""
    locked: list[Path] = []
    yield locked
    for path in locked:
        subprocess.run(["chattr", "-i", str(path)], check=False)


async def lock(paths: list[Path], locked: list[Path]) -> None:
    """`chattr +i` each path, remembering it for the `immutable` fixture to undo."""
    for path in paths:
        done = await asyncio.to_thread(
            subprocess.run, ["chattr", "+i", str(path)], check=False, capture_output=True
        )
        if done.returncode:
            pytest.skip("chattr +i is not supported here")
        locked.append(path)


async def test_unremovable_previous_file_is_a_warning_in_the_install_update(
    host: Host, tmp_path: Path, immutable: list[Path]
) -> None:
    """Install still reports Succeeded, with `message` naming the file, the error and the fix;
    the job SUCCEEDS, and once the file is mutable again the next job removes it silently."""
    bundle = app_bundle(tmp_path, ["locked.txt"])
    assert await host.deploy("job-1", "d-AAAAAAAA1", bundle) is JobStatus.SUCCEEDED
    locked = tmp_path / "dest" / "locked.txt"
    await lock([locked], immutable)
    (bundle / "app" / "locked.txt").unlink()
    (bundle / "app" / "new.txt").write_text("new")

    assert await host.deploy("job-2", "d-AAAAAAAA2", bundle) is JobStatus.SUCCEEDED

    details = host.install_update("job-2")
    assert details["eventStatus"] == "Succeeded"
    assert details["message"] == (
        f"warning: Could not remove {locked} (previous revision's file) during cleanup: "
        + UNREMOVABLE
    )
    assert "message" not in host.install_update("job-1")

    await asyncio.to_thread(subprocess.run, ["chattr", "-i", str(locked)], check=True)
    assert await host.deploy("job-3", "d-AAAAAAAA3", bundle) is JobStatus.SUCCEEDED
    assert "message" not in host.install_update("job-3")
    assert not locked.exists()
    assert (tmp_path / "dest" / "new.txt").read_text() == "new"


async def test_many_warnings_fit_in_one_status_detail(
    host: Host, tmp_path: Path, immutable: list[Path]
) -> None:
    """Warnings that do not fit in 1,024 characters are cut, saying how many there were; the
    first ones are whole, one per line (U+2028), and AWS IoT's limits hold."""
    names = [f"file-{i:02}-with-a-name-long-enough-to-fill-the-detail.txt" for i in range(12)]
    bundle = app_bundle(tmp_path, names)
    assert await host.deploy("job-1", "d-AAAAAAAA1", bundle) is JobStatus.SUCCEEDED
    await lock([tmp_path / "dest" / name for name in names], immutable)
    for name in names:
        (bundle / "app" / name).unlink()

    assert await host.deploy("job-2", "d-AAAAAAAA2", bundle) is JobStatus.SUCCEEDED

    details = host.install_update("job-2")
    check_status_details(details)
    message = details["message"]
    assert len(message) == MAX_DETAIL_CHARS
    assert message.endswith("\u2026 (12 warnings in all; the agent log lists every one)")
    # Removed last first: the last recorded file is the first warning.
    first = message.split("\u2028")[0]
    assert first == (
        f"warning: Could not remove {tmp_path / 'dest' / names[-1]} (previous revision's file) "
        "during cleanup: " + UNREMOVABLE
    )
