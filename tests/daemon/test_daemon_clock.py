"""The daemon's clock skew without NTP: estimated from the Jobs service's message timestamps.

With `clock.ntp_servers: []` the only clue is the `timestamp` the Jobs service puts on each
reply (PROTOCOL.md). Here the fake service's clock runs ten minutes off the host's
(`clock_offset_seconds`), as a host whose clock drifted would see the real AWS IoT Jobs: the real
`codedeploy-agent run` process must report the skew (presence, status file, `codedeploy-agent
status`), refuse a job that would sign AWS requests with the reason and the fix, and still run a
job that signs nothing.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from codedeploy_agent.protocol.jobdoc import build_job_document
from codedeploy_agent.protocol.messages import JobStatus, PresenceState
from codedeploy_agent.protocol.signing import load_private_key, sign_document
from codedeploy_agent.spec import BundleType, RevisionType, S3Revision
from tests.daemon.conftest import KEY_ID, THING, Agent
from tests.daemon.test_daemon import IN_PLACE, document, events_reported
from tests.fakes.brokers import MosquittoBroker
from tests.fakes.bundles import write_bundle
from tests.fakes.jobs_service import FakeJobsService

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

#: How far the service's clock is off the host's: twice SigV4's 5-minute tolerance.
OFFSET = 600.0
#: The estimate is a lower bound from whole-second timestamps and the loopback round trip: it
#: may fall short of the true offset by a little over a second, never exceed it.
SLACK = 5.0


def s3_job(keys: tuple[Path, Path], deployment_id: str) -> dict[str, Any]:
    """A signed job whose revision is an S3 object without a presigned URL: the agent would
    fetch it with a SigV4-signed GetObject."""
    revision = S3Revision("bucket", "app.tgz", BundleType.TGZ, type=RevisionType.S3)
    now = datetime.now(UTC)
    unsigned = build_job_document(
        deployment_id=deployment_id,
        deployment_group_id="dg-web",
        deployment_group_name="web",
        application_name="app",
        revision=revision,
        issued_at=now,
        expires_at=now + timedelta(hours=2),
        lifecycle_events=tuple(IN_PLACE),
    )
    return sign_document(unsigned, load_private_key(keys[0]), KEY_ID)


def near(value: object, expected: float) -> bool:
    """`value` is a skew within SLACK short of `expected` (the estimate never overstates)."""
    return (
        isinstance(value, int | float)
        and abs(value) <= abs(expected) + 1.0
        and (abs(value - expected) <= SLACK)
    )


async def wait_for_status_file(agent: Agent, expected: float) -> dict[str, Any]:
    """Poll the status file (written behind the daemon) until it shows the skew."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = agent.status()
        if near(status.get("clock_skew_seconds"), expected):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"the status file never showed a skew of ~{expected:+g} s: {status}")


@pytest.mark.parametrize("offset", [OFFSET, -OFFSET], ids=["host-behind", "host-ahead"])
async def test_skew_from_jobs_timestamps_is_reported_and_refuses_signed_work(
    agent: Agent,
    broker: MosquittoBroker,
    keys: tuple[Path, Path],
    tmp_path: Path,
    offset: float,
) -> None:
    """No NTP; the Jobs service's clock is 10 minutes off. The agent estimates the skew from
    its replies, reports it in presence, the status file and `status`, fails the S3 job (which
    would sign AWS calls) naming InvalidSignatureException, and runs the local one."""
    agent.extra["clock"] = {"ntp_servers": []}
    marker = tmp_path / "local-job-ran"
    bundle = write_bundle(tmp_path / "bundle", {"ApplicationStart": f"touch {marker}"})
    async with FakeJobsService(
        "127.0.0.1", broker.port, things={THING}, clock_offset_seconds=offset
    ) as service:
        service.queue_job(THING, "job-s3", s3_job(keys, "d-SKEWJOBS1"))
        service.queue_job(THING, "job-local", document(keys, bundle, "d-SKEWJOBS2"))
        agent.start()
        refused = await service.wait_for_status(THING, "job-s3", {JobStatus.FAILED}, timeout=30)
        local = await service.wait_for_status(THING, "job-local", {JobStatus.SUCCEEDED}, timeout=30)
        await service.wait_for(
            lambda: (
                (p := service.presence(THING)) is not None
                and p.state is PresenceState.ONLINE
                and near(p.clock_skew_seconds, offset)
            ),
            timeout=30,
        )
        # The fake really answered from a shifted clock (the agent had nothing else to go on).
        stamps = [
            payload["timestamp"]
            for topic, payload in service.log
            if topic.endswith("/start-next/accepted")
        ]
        assert stamps
        assert all(abs(stamp - time.time() - offset) < 60 for stamp in stamps), stamps
        assert service.violations == []

    details = refused.status_details
    assert details["errorCode"] == "UnknownError"
    message = details["message"]
    direction = "behind" if offset > 0 else "ahead of"
    said = re.match(rf"The local clock is ([\d.]+) s {direction} the Jobs service's ", message)
    assert said is not None, message
    assert near(float(said[1]) * (1 if offset > 0 else -1), offset), message
    assert "message timestamps (a lower bound; no NTP reading)" in message
    assert "InvalidSignatureException (Signature expired)" in message
    assert "chrony" in message
    assert events_reported(service, "job-s3") == []  # refused before any lifecycle event ran

    assert local.status is JobStatus.SUCCEEDED
    assert marker.exists()

    status = await wait_for_status_file(agent, offset)
    assert status["clock_checked_at"] is not None
    shown = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "codedeploy_agent", "status", "-c", str(agent.config_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    line = re.search(r"^clock_skew_seconds: ([+-][\d.]+)$", shown.stdout, re.MULTILINE)
    assert line is not None, shown.stdout
    assert near(float(line[1]), offset), shown.stdout
