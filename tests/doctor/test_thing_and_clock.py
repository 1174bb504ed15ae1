"""doctor's thing-name check (against the running agent's snapshot) and its NTP clock check."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import pytest

from codedeploy_agent.clock import TIME_SYNC_HINT
from codedeploy_agent.doctor import Finding, Status, check_clock, check_thing
from codedeploy_agent.host.status import AgentState, AgentStatus
from tests.doctor.conftest import THING, Host
from tests.doctor.pki import TestCa
from tests.fakes.ntp import NtpServerFactory

NOW = datetime(2026, 2, 19, 15, 12, 11, tzinfo=UTC)
CONNECTED = AgentStatus(
    pid=4242,
    started_at=NOW,
    state=AgentState.IDLE,
    broker_connected=True,
    broker_endpoint="mqtts://broker:8883",
    thing_name=THING,
    agent_version="0.1.0",
    updated_at=NOW,
)


def test_thing_name_taken_by_the_broker(host: Host) -> None:
    """The running agent is connected with the configured thing name: OK."""
    assert check_thing(host.config(), CONNECTED) == [
        Finding(
            "thing",
            Status.OK,
            "host-1 (from mqtt.thing_name): the agent is connected with it to mqtts://broker:8883",
        )
    ]


def test_thing_name_without_a_running_agent(host: Host) -> None:
    """No agent runs: the name is only validated, and the line says why doctor cannot know more."""
    assert check_thing(host.config(), None) == [
        Finding(
            "thing",
            Status.INFO,
            "host-1 (from mqtt.thing_name) is valid; whether the broker takes it shows once the "
            "agent runs (doctor never logs in as the agent: that would take over its session)",
        )
    ]


def test_agent_not_connected_fails(host: Host) -> None:
    """A running agent without a broker connection fails and points at its log."""
    stuck = dataclasses.replace(CONNECTED, broker_connected=False)
    config = host.config()
    assert check_thing(config, stuck) == [
        Finding(
            "thing",
            Status.FAIL,
            "the running agent is not connected to mqtts://broker:8883 as host-1",
            f"its log says why each attempt failed: {host.log_dir}/codedeploy-agent.log or "
            "journalctl -u codedeploy-agent.service -n 50",
        )
    ]


def test_config_changed_since_the_agent_started(host: Host) -> None:
    """The agent runs with another thing name than the config now says: restart it."""
    other = dataclasses.replace(CONNECTED, thing_name="old-name")
    assert check_thing(host.config(), other) == [
        Finding(
            "thing",
            Status.WARN,
            "the running agent uses old-name, the config now says host-1",
            "restart it: systemctl restart codedeploy-agent.service",
        )
    ]


def test_invalid_host_name_fails(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no mqtt.thing_name, a host name MQTT topics cannot carry fails with the rule."""
    host.mqtt = {"endpoint": "mqtt://127.0.0.1:1", "thing_name": None}
    monkeypatch.setattr("socket.gethostname", lambda: "web 1")  # the host's name is outside input
    [finding] = check_thing(host.config(), None)
    assert finding == Finding(
        "thing",
        Status.FAIL,
        "Invalid thing name 'web 1': it must be 1 to 128 characters of letters, digits, '_', "
        "'.', ':' and '-' (set the agent's instance name accordingly) (from the host name)",
        "set mqtt.thing_name to letters, digits and _ . : - (at most 128 characters)",
    )


def test_certificate_common_name_differs(host: Host) -> None:
    """A client certificate whose CN is not the thing name warns: %u ACLs would not match."""
    identity = TestCa(host.base / "pki").issue("web-9")
    host.mqtt = {
        "endpoint": "mqtts://127.0.0.1:8883",
        "cert_file": str(identity.cert),
        "key_file": str(identity.key),
    }
    findings = check_thing(host.config(), CONNECTED)
    assert findings[1] == Finding(
        "thing",
        Status.WARN,
        "the client certificate's CN is 'web-9', not the thing name 'host-1': a per-host broker "
        "ACL on the certificate's identity (%u) will not match its topics",
        "issue the certificate for CN=<thing name>, or set mqtt.thing_name to the CN",
    )
    matching = TestCa(host.base / "pki2").issue(THING)
    host.mqtt = {**host.mqtt, "cert_file": str(matching.cert), "key_file": str(matching.key)}
    assert [f.status for f in check_thing(host.config(), CONNECTED)] == [Status.OK]


@pytest.mark.asyncio
async def test_clock_in_sync(host: Host, ntp_server: NtpServerFactory) -> None:
    """A skew well under the warning level passes, naming the server and AWS's limit."""
    server = ntp_server(0.0)
    host.ntp_servers = [server.address]
    [finding] = await check_clock(host.config())
    assert finding.status is Status.OK
    assert re.fullmatch(
        rf"the local clock is 0\.0\d\d s (behind|ahead of) {server.address} "
        r"\(AWS accepts up to 300 s\)",
        finding.message,
    )


@pytest.mark.asyncio
async def test_clock_skew_past_the_sigv4_limit_fails(
    host: Host, ntp_server: NtpServerFactory
) -> None:
    """Ten minutes behind: a FAIL that names InvalidSignatureException and the time-sync fix."""
    server = ntp_server(600.0)
    host.ntp_servers = [server.address]
    [finding] = await check_clock(host.config())
    assert finding.status is Status.FAIL
    assert re.fullmatch(
        rf"the local clock is (599\.9\d\d|600\.0\d\d) s behind {server.address}: more than the 300 s AWS "
        r"accepts\. AWS-signed requests \(S3 downloads, AWS APIs\) fail with "
        r"InvalidSignatureException \(Signature expired\); the agent refuses to send them",
        finding.message,
    )
    assert finding.fix == TIME_SYNC_HINT


@pytest.mark.asyncio
async def test_clock_drifting_warns(host: Host, ntp_server: NtpServerFactory) -> None:
    """A minute ahead: over the 30 s warning level, under the limit."""
    server = ntp_server(-60.0)
    host.ntp_servers = [server.address]
    [finding] = await check_clock(host.config())
    assert finding.status is Status.WARN
    assert re.fullmatch(
        rf"the local clock is (59\.9\d\d|60\.0\d\d) s ahead of {server.address} \(warning at "
        r"30 s; past 300 s AWS-signed requests fail with InvalidSignatureException\)",
        finding.message,
    )


@pytest.mark.asyncio
async def test_no_ntp_answer_warns(host: Host, ntp_server: NtpServerFactory) -> None:
    """A server that never answers: the skew is unknown, and the line says what that risks."""
    silent = ntp_server(0.0, answer=False)
    host.ntp_servers = [silent.address]
    [finding] = await check_clock(host.config())
    assert finding.status is Status.WARN
    assert finding.message == (
        f"no NTP server answered ({silent.address}; 1 s each): the skew is unknown, and a clock "
        "off by more than 5 minutes makes AWS-signed requests fail with InvalidSignatureException "
        "(Signature expired)"
    )
    assert silent.requests >= 1


@pytest.mark.asyncio
async def test_no_ntp_servers_skips(host: Host) -> None:
    """An empty clock.ntp_servers skips the check."""
    assert await check_clock(host.config()) == [
        Finding("clock", Status.SKIP, "clock.ntp_servers is empty: no NTP check")
    ]
