"""CodeCommit and the host clock: SigV4-derived Git passwords are refused when the clock is off.

A password signed from the host's AWS keys carries the host's time, and CodeCommit refuses one
more than 5 minutes off (the `SigV4Check` stand-in refuses it past 15, with no message but
"Authentication failed"). So before it signs, the agent measures the clock against the NTP
server of `clock.ntp_servers` (a fake one on 127.0.0.1 here) and refuses with the reason and
the fix, without a single request to the remote.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from codedeploy_agent.clock import ClockSkewError
from codedeploy_agent.config import ClockSettings
from codedeploy_agent.sources import aws
from codedeploy_agent.sources.codecommit import fetch_codecommit
from codedeploy_agent.spec import CodeCommitRevision
from tests.fakes.ntp import FakeNtpServer
from tests.sources.git_server import GitHttpServer, Repository, make_deployment, tree
from tests.sources.test_codecommit import (
    KEY_ID,
    REGION,
    SECOND,
    SECRET,
    SigV4Check,
    codecommit,
    codecommit_root,
    host_credentials,
    make_config,
)

__all__ = ["codecommit", "codecommit_root", "host_credentials"]  # fixtures, imported for pytest

pytestmark = pytest.mark.asyncio


@pytest.fixture(autouse=True)
def fresh_clock_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the process's cached NTP readings: they are keyed by the clock settings, and a
    fake NTP server of an earlier test may have had the same ephemeral port (and another offset).
    """
    monkeypatch.setattr(aws, "_clock_readings", {})


@pytest.mark.parametrize(
    ("offset", "direction"), [(600.0, "behind"), (-600.0, "ahead of")], ids=["behind", "ahead"]
)
async def test_skewed_clock_refuses_before_any_git_request(  # noqa: PLR0917 - fixtures + params
    tmp_path: Path,
    codecommit_root: tuple[Path, Repository],
    codecommit: GitHttpServer,
    host_credentials: pytest.MonkeyPatch,
    offset: float,
    direction: str,
) -> None:
    """10 minutes off the NTP server: ClockSkewError naming InvalidSignatureException and the
    fix; the remote sees no request, and the checkout folder is gone."""
    del host_credentials
    codecommit.authorize = SigV4Check({KEY_ID: (SECRET, None)})
    commit = codecommit_root[1].commits["second"]
    deployment = make_deployment(tmp_path)
    with FakeNtpServer(offset_seconds=offset) as ntp:
        config = dataclasses.replace(
            make_config(tmp_path, codecommit), clock=ClockSettings(ntp_servers=(ntp.address,))
        )
        with pytest.raises(ClockSkewError) as caught:
            await fetch_codecommit(
                CodeCommitRevision("MyDemoRepo", commit, REGION), deployment, config
            )
        address = ntp.address
        assert ntp.requests == 1
    message = str(caught.value)
    assert message.startswith(f"The local clock is 600.0 s {direction} the NTP server {address}")
    assert "more than the 300 s that AWS accepts for SigV4-signed requests" in message
    assert "InvalidSignatureException (Signature expired)" in message
    assert "The agent makes no AWS-signed calls until the clock is right." in message
    assert "chronyc tracking" in message
    assert abs(caught.value.skew_seconds - offset) < 1.0
    assert codecommit.requests == []
    assert not (deployment.path / "git-checkout").exists()
    assert not deployment.archive.exists()


async def test_small_skew_signs_and_clones(
    tmp_path: Path,
    codecommit_root: tuple[Path, Repository],
    codecommit: GitHttpServer,
    host_credentials: pytest.MonkeyPatch,
) -> None:
    """Within the tolerance (2 s off) the NTP check passes and the signed clone succeeds: the
    refusal above is the clock's doing, not the setup's."""
    del host_credentials
    check = SigV4Check({KEY_ID: (SECRET, None)})
    codecommit.authorize = check
    commit = codecommit_root[1].commits["second"]
    deployment = make_deployment(tmp_path)
    with FakeNtpServer(offset_seconds=2.0) as ntp:
        config = dataclasses.replace(
            make_config(tmp_path, codecommit), clock=ClockSettings(ntp_servers=(ntp.address,))
        )
        await fetch_codecommit(CodeCommitRevision("MyDemoRepo", commit, REGION), deployment, config)
        assert ntp.requests == 1
    assert tree(deployment.archive) == SECOND
    assert check.accepted
