"""doctor's broker checks against real Mosquitto brokers on 127.0.0.1: TCP, TLS, MQTT login."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from codedeploy_agent.doctor import Finding, Status, check_broker, check_login, check_tls
from tests.doctor.conftest import THING, Host
from tests.doctor.pki import TestCa
from tests.fakes.broker_fixtures import MosquittoFactory
from tests.fakes.brokers import Pki, free_port

pytestmark = pytest.mark.broker


@pytest.fixture
def pki(tmp_path: Path) -> tuple[TestCa, Pki]:
    """A CA, the broker's certificate and a client certificate for host-1."""
    ca = TestCa(tmp_path / "pki")
    server = ca.issue("127.0.0.1", server=True)
    client = ca.issue(THING)
    return ca, Pki(ca.ca_file, server.cert, server.key, client.cert, client.key)


def tls_host(host: Host, port: int, pki: Pki, **mqtt: object) -> Host:
    host.mqtt = {
        "endpoint": f"mqtts://127.0.0.1:{port}",
        "ca_file": str(pki.ca_file),
        "cert_file": str(pki.client_cert),
        "key_file": str(pki.client_key),
        **mqtt,
    }
    return host


def test_broker_reachable(host: Host, mosquitto_factory: MosquittoFactory) -> None:
    """A listening broker passes with its endpoint and the connect time."""
    broker = mosquitto_factory()
    host.mqtt = {"endpoint": broker.endpoint}
    [finding] = check_broker(host.config())
    assert finding.status is Status.OK
    assert re.fullmatch(
        rf"mqtt://127\.0\.0\.1:{broker.port} accepts TCP connections \(\d+ ms\)", finding.message
    )


def test_broker_refusing_connections_fails(host: Host) -> None:
    """Nothing listening: a FAIL with the system's reason and the fix."""
    port = free_port()
    host.mqtt = {"endpoint": f"mqtt://127.0.0.1:{port}"}
    assert check_broker(host.config()) == [
        Finding(
            "broker",
            Status.FAIL,
            f"cannot connect to 127.0.0.1:{port}: Connection refused",
            "check that the broker runs and listens there, and that mqtt.endpoint is right",
        )
    ]


def test_plain_mqtt(host: Host) -> None:
    """Plain MQTT is information on loopback and a warning across the network (no connection)."""
    host.mqtt = {"endpoint": "mqtt://127.0.0.1:1883"}
    assert check_tls(host.config()) == [
        Finding("tls", Status.INFO, "plain MQTT to a broker on this host (mqtt://127.0.0.1:1883)")
    ]
    host.mqtt = {"endpoint": "mqtt://192.0.2.10:1883"}
    [remote] = check_tls(host.config())
    assert remote.status is Status.WARN
    assert remote.message.startswith("mqtt://192.0.2.10:1883 is plain MQTT: job documents")


def test_mutual_tls_passes(
    host: Host, mosquitto_factory: MosquittoFactory, pki: tuple[TestCa, Pki]
) -> None:
    """The right CA and a client certificate the broker trusts: the handshake line passes."""
    broker = mosquitto_factory(tls=pki[1], require_certificate=True)
    findings = check_tls(tls_host(host, broker.port, pki[1]).config())
    assert [f.status for f in findings] == [Status.OK]
    assert re.fullmatch(
        rf"handshake with mqtts://127\.0\.0\.1:{broker.port} \(TLSv1\.3, \d+ ms\)",
        findings[0].message,
    )


def test_wrong_ca_fails(
    host: Host, mosquitto_factory: MosquittoFactory, pki: tuple[TestCa, Pki], tmp_path: Path
) -> None:
    """A CA file that did not sign the broker's certificate: verification fails, and says why."""
    broker = mosquitto_factory(tls=pki[1])
    other = TestCa(tmp_path / "other", name="other-ca")
    host = tls_host(host, broker.port, pki[1], ca_file=str(other.ca_file))
    assert check_tls(host.config()) == [
        Finding(
            "tls",
            Status.FAIL,
            f"the certificate of mqtts://127.0.0.1:{broker.port} was not accepted: self-signed "
            "certificate in certificate chain",
            "mqtt.ca_file must hold the CA that signed it, and it must name 127.0.0.1",
        )
    ]


def test_missing_client_certificate_fails(
    host: Host, mosquitto_factory: MosquittoFactory, pki: tuple[TestCa, Pki]
) -> None:
    """A broker that requires a client certificate refuses a host without one, after TLS 1.3."""
    broker = mosquitto_factory(tls=pki[1], require_certificate=True)
    host.mqtt = {"endpoint": f"mqtts://127.0.0.1:{broker.port}", "ca_file": str(pki[1].ca_file)}
    findings = check_tls(host.config())
    assert findings == [
        Finding(
            "tls",
            Status.FAIL,
            f"TLS with mqtts://127.0.0.1:{broker.port} failed: TLSV13_ALERT_CERTIFICATE_REQUIRED",
            "check that the broker speaks TLS there and trusts the CA of mqtt.cert_file",
        ),
        Finding(
            "tls",
            Status.INFO,
            "no client certificate (mqtt.cert_file): the broker must know this host another way",
        ),
    ]


def test_unreadable_certificate_files_fail(host: Host, pki: tuple[TestCa, Pki]) -> None:
    """A key that does not exist fails before any connection, naming the three settings."""
    host = tls_host(host, free_port(), pki[1], key_file=str(host.base / "missing.key"))
    [finding] = check_tls(host.config())
    assert finding.status is Status.FAIL
    assert finding.message.startswith("cannot load mqtt.ca_file ")


def test_client_certificate_expiry(
    host: Host, mosquitto_factory: MosquittoFactory, pki: tuple[TestCa, Pki]
) -> None:
    """A client certificate expiring within 30 days is a warning naming the date."""
    ca, server_pki = pki
    broker = mosquitto_factory(tls=server_pki, require_certificate=True)
    soon = ca.issue("soon", valid_days=5)
    host = tls_host(host, broker.port, server_pki, cert_file=str(soon.cert), key_file=str(soon.key))
    findings = check_tls(host.config())
    day = (datetime.now(UTC) + timedelta(days=5)).strftime("%Y-%m-%d")
    assert [f.status for f in findings] == [Status.OK, Status.WARN]
    assert findings[1] == Finding(
        "tls",
        Status.WARN,
        f"client certificate {soon.cert} expires on {day}",
        "issue a new certificate before then",
    )


def test_expired_client_certificate_fails(
    host: Host, mosquitto_factory: MosquittoFactory, pki: tuple[TestCa, Pki]
) -> None:
    """An expired client certificate fails twice: the broker refuses it, and the date says why."""
    ca, server_pki = pki
    broker = mosquitto_factory(tls=server_pki, require_certificate=True)
    old = ca.issue("old", valid_days=-1)
    host = tls_host(host, broker.port, server_pki, cert_file=str(old.cert), key_file=str(old.key))
    findings = check_tls(host.config())
    day = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    assert [f.status for f in findings] == [Status.FAIL, Status.FAIL]
    assert findings[0].message == (
        f"TLS with mqtts://127.0.0.1:{broker.port} failed: SSLV3_ALERT_CERTIFICATE_EXPIRED"
    )
    assert findings[1] == Finding(
        "tls",
        Status.FAIL,
        f"client certificate {old.cert} expired on {day}",
        "issue a new certificate",
    )


@pytest.mark.asyncio
async def test_login_uses_its_own_client_id(
    host: Host, mosquitto_factory: MosquittoFactory
) -> None:
    """The login is accepted as <thing>-doctor, never as the agent's own client id."""
    broker = mosquitto_factory()
    host.mqtt = {"endpoint": broker.endpoint}
    assert await check_login(host.config()) == [
        Finding("login", Status.OK, "MQTT 5 login accepted (client id host-1-doctor)")
    ]
    log = broker.log_text()
    assert f"as {THING}-doctor (p5, c0," in log
    assert f"as {THING} (" not in log


@pytest.mark.asyncio
async def test_login_refused(host: Host, mosquitto_factory: MosquittoFactory) -> None:
    """A wrong password: the transport's refusal message and a fix that mentions the client id."""
    broker = mosquitto_factory(users={"agent": "right"})
    password = host.base / "password"
    password.write_text("wrong\n")
    host.mqtt = {
        "endpoint": broker.endpoint,
        "protocol": "3.1.1",
        "username": "agent",
        "password_file": str(password),
    }
    [finding] = await check_login(host.config())
    assert finding.status is Status.FAIL
    assert finding.message.startswith(
        f"The MQTT broker mqtt://127.0.0.1:{broker.port} refused the connection of client id "
        f"'{THING}-doctor'"
    )
    assert finding.fix is not None
    assert "a broker that allows only the thing name as client id refuses it" in finding.fix


@pytest.mark.asyncio
async def test_login_with_unreadable_password_file(
    host: Host, mosquitto_factory: MosquittoFactory
) -> None:
    """A password file that cannot be read fails with the transport's message."""
    broker = mosquitto_factory()
    host.mqtt = {
        "endpoint": broker.endpoint,
        "username": "agent",
        "password_file": str(host.base / "missing"),
    }
    [finding] = await check_login(host.config())
    assert finding.status is Status.FAIL
    assert finding.message.startswith(
        f"Cannot read the MQTT password file {host.base / 'missing'} (mqtt.password_file)"
    )


@pytest.mark.asyncio
async def test_login_over_mutual_tls(
    host: Host, mosquitto_factory: MosquittoFactory, pki: tuple[TestCa, Pki]
) -> None:
    """The login goes through TLS with the client certificate."""
    broker = mosquitto_factory(tls=pki[1], require_certificate=True)
    host = tls_host(host, broker.port, pki[1])
    assert [f.status for f in await check_login(host.config())] == [Status.OK]
