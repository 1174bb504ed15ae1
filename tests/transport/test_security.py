"""TLS, mutual TLS and passwords against a real Mosquitto, and the messages operators get."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from codedeploy_agent.transport import Message, MqttSession, TransportError
from tests.fakes.broker_fixtures import MosquittoFactory
from tests.fakes.brokers import Pki, make_test_pki
from tests.transport.helpers import Inbox, eventually, fast_backoff, running, settings

pytestmark = [pytest.mark.broker, pytest.mark.asyncio, pytest.mark.timeout(30)]

TOPIC = "codedeploy/things/thing-1/jobs/notify-next"


def session_for(endpoint: str, **options: object) -> MqttSession:
    """The agent's session with the given mqtt settings, subscribed to one topic."""
    return MqttSession(
        settings(endpoint, **options),
        client_id="thing-1",
        subscriptions=[TOPIC],
        backoff=fast_backoff(),
        connect_timeout=3,
    )


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA with a server certificate for 127.0.0.1/localhost and a client certificate."""
    return make_test_pki(tmp_path / "pki")


async def test_mutual_tls_round_trip(mosquitto_factory: MosquittoFactory, pki: Pki) -> None:
    """With the CA and a client certificate the session connects to a broker that demands one."""
    broker = mosquitto_factory(tls=pki, require_certificate=True)
    assert broker.endpoint == f"mqtts://127.0.0.1:{broker.port}"
    inbox = Inbox()
    session = session_for(
        # The certificate names localhost too: host name verification stays on.
        f"mqtts://localhost:{broker.port}",
        ca_file=pki.ca_file,
        cert_file=pki.client_cert,
        key_file=pki.client_key,
    )
    async with running(session, inbox):
        await session.publish(TOPIC, b"over tls")
        assert await inbox.next() == Message(TOPIC, b"over tls")


async def test_wrong_ca_is_a_clear_error_and_retried(
    mosquitto_factory: MosquittoFactory, pki: Pki, tmp_path: Path
) -> None:
    """A CA that did not sign the broker's certificate: an ERROR naming the file, then retries."""
    broker = mosquitto_factory(tls=pki)
    other = make_test_pki(tmp_path / "other")
    session = session_for(broker.endpoint, ca_file=other.ca_file)
    expected = (
        f"TLS verification of the MQTT broker {broker.endpoint} failed: self-signed certificate "
        f"in certificate chain. Check that mqtt.ca_file ({other.ca_file}) holds the CA that "
        "signed the broker's certificate and that the certificate names 127.0.0.1."
    )
    with capture_logs() as logs:
        async with running(session, Inbox(), connected=False):
            await eventually(lambda: sum(e["event"] == expected for e in logs) >= 2)
    assert str(session.last_error) == expected
    assert session.last_error is not None
    assert session.last_error.refused
    assert {e["log_level"] for e in logs if e["event"] == expected} == {"error"}
    assert not session.connected


async def test_missing_client_certificate_is_explained(
    mosquitto_factory: MosquittoFactory, pki: Pki
) -> None:
    """A broker that wants a client certificate hangs up; the error says to configure one."""
    broker = mosquitto_factory(tls=pki, require_certificate=True)
    session = session_for(broker.endpoint, ca_file=pki.ca_file)
    async with running(session, Inbox(), connected=False):
        await eventually(lambda: session.last_error is not None)
    assert str(session.last_error) == (
        f"The MQTT broker {broker.endpoint} closed the connection before accepting it "
        "([SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required). If the "
        "broker requires client certificates, set mqtt.cert_file and mqtt.key_file to a "
        "certificate signed by a CA the broker trusts."
    )


async def test_missing_ca_file_fails_at_start(tmp_path: Path) -> None:
    """A CA file that does not exist stops run() at once: nothing will fix it by waiting."""
    missing = tmp_path / "missing.pem"
    session = session_for("mqtts://127.0.0.1:8883", ca_file=missing)
    with pytest.raises(TransportError) as raised:
        await session.run(Inbox())
    assert str(raised.value) == (
        f"Cannot load the CA file {missing} (mqtt.ca_file): No such file or directory. It must "
        "be a readable PEM file with the certificate of the CA that signed the broker's "
        "certificate."
    )
    assert not session.connected


async def test_ca_file_that_is_not_pem_fails_at_start(tmp_path: Path) -> None:
    """A CA file with no certificate in it is refused when the session prepares."""
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    session = session_for("mqtts://127.0.0.1:8883", ca_file=garbage)
    with pytest.raises(TransportError) as raised:
        await session.prepare()
    assert str(raised.value) == (
        f"Cannot load the CA file {garbage} (mqtt.ca_file): [X509: NO_CERTIFICATE_OR_CRL_FOUND] "
        "no certificate or crl found. It must be a readable PEM file with the certificate of the "
        "CA that signed the broker's certificate."
    )


async def test_key_of_another_certificate_fails_at_start(pki: Pki, tmp_path: Path) -> None:
    """A client key that does not belong to the client certificate is refused up front."""
    other = make_test_pki(tmp_path / "other")
    session = session_for(
        "mqtts://127.0.0.1:8883",
        ca_file=pki.ca_file,
        cert_file=pki.client_cert,
        key_file=other.client_key,
    )
    with pytest.raises(TransportError) as raised:
        await session.prepare()
    assert str(raised.value) == (
        f"Cannot load the client certificate {pki.client_cert} (mqtt.cert_file) with the key "
        f"{other.client_key} (mqtt.key_file): [X509: KEY_VALUES_MISMATCH] key values mismatch. "
        "Both must be readable PEM files, the key unencrypted and belonging to the certificate."
    )


@pytest.mark.parametrize("content", ["s3cret\n", "s3cret\r\n", "s3cret"])
async def test_password_file(
    mosquitto_factory: MosquittoFactory, tmp_path: Path, content: str
) -> None:
    """The password is the file's content without its one trailing newline."""
    broker = mosquitto_factory(users={"thing-1": "s3cret"})
    password_file = tmp_path / "password"
    password_file.write_text(content, newline="")
    session = session_for(broker.endpoint, username="thing-1", password_file=password_file)
    async with running(session, Inbox()):
        assert session.connected


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_wrong_password_is_an_error_that_never_shows_the_password(
    mosquitto_factory: MosquittoFactory, tmp_path: Path, protocol: str
) -> None:
    """A refused login logs an ERROR with the reason and the fix on every retry, never the password."""
    broker = mosquitto_factory(users={"thing-1": "s3cret"})
    password_file = tmp_path / "password"
    password_file.write_text("wrong-password\n")
    session = session_for(
        broker.endpoint, username="thing-1", password_file=password_file, protocol=protocol
    )
    with capture_logs() as logs:
        async with running(session, Inbox(), connected=False):
            await eventually(lambda: sum(e["log_level"] == "error" for e in logs) >= 2)
    expected = (
        f"The MQTT broker {broker.endpoint} refused the connection of client id 'thing-1': "
        "Not authorized (CONNACK 135). The broker does not authorise this client: check "
        f"mqtt.username (thing-1) and the password in mqtt.password_file ({password_file}), "
        "and allow its user name, certificate or client id in the broker's ACL (or IoT policy)."
    )
    assert str(session.last_error) == expected
    errors = [e for e in logs if e["log_level"] == "error"]
    assert {e["event"] for e in errors} == {expected}
    assert "wrong-password" not in repr(logs)


async def test_missing_password_file_fails_at_start(tmp_path: Path) -> None:
    """A password file that cannot be read stops run() at once with the file and the fix."""
    missing = tmp_path / "password"
    session = session_for("mqtt://127.0.0.1:1", username="thing-1", password_file=missing)
    with pytest.raises(TransportError) as raised:
        await session.run(Inbox())
    assert str(raised.value) == (
        f"Cannot read the MQTT password file {missing} (mqtt.password_file): No such file or "
        "directory. Put the broker password in it (UTF-8), readable by the agent only "
        "(chmod 600)."
    )
