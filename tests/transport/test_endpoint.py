"""The endpoint URL, the client id, and the warning for clear-text MQTT across the network."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from codedeploy_agent.transport import Endpoint, MqttSession, TransportError
from tests.transport.helpers import settings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker.example", Endpoint("broker.example", 1883, tls=False)),
        ("mqtts://broker.example", Endpoint("broker.example", 8883, tls=True)),
        ("MQTTS://Broker.Example:9000/", Endpoint("broker.example", 9000, tls=True)),
        ("mqtt://127.0.0.1:1884", Endpoint("127.0.0.1", 1884, tls=False)),
        ("mqtt://[::1]:1884", Endpoint("::1", 1884, tls=False)),
    ],
)
def test_endpoints_parse(url: str, expected: Endpoint) -> None:
    """mqtt:// and mqtts:// URLs give host, port (default 1883 / 8883) and TLS."""
    assert Endpoint.parse(url) == expected


def test_endpoint_prints_as_a_url() -> None:
    """An endpoint prints as the URL it came from, with the port made explicit."""
    assert str(Endpoint.parse("mqtts://broker.example")) == "mqtts://broker.example:8883"
    assert str(Endpoint.parse("mqtt://[::1]")) == "mqtt://[::1]:1883"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://broker.example",
            (
                "Invalid mqtt.endpoint 'http://broker.example': it must look like "
                "mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
            ),
        ),
        (
            "mqtt://",
            (
                "Invalid mqtt.endpoint 'mqtt://': it must look like mqtt://HOST[:PORT] or "
                "mqtts://HOST[:PORT]"
            ),
        ),
        (
            "mqtt://broker.example/jobs",
            (
                "Invalid mqtt.endpoint 'mqtt://broker.example/jobs': it must look like "
                "mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
            ),
        ),
        (
            "mqtt://broker.example:99999",
            (
                "Invalid mqtt.endpoint 'mqtt://broker.example:99999': Port out of range 0-65535; it "
                "must look like mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
            ),
        ),
    ],
)
def test_invalid_endpoints_are_refused(url: str, message: str) -> None:
    """An endpoint that is not an mqtt(s) URL with a host is a TransportError naming it."""
    with pytest.raises(TransportError) as raised:
        Endpoint.parse(url)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("10.0.0.1", False),
        ("broker.example", False),
        ("localhost.example", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    """127.0.0.0/8, ::1 and localhost are this host; everything else is the network."""
    assert Endpoint.parse(f"mqtt://{host}").is_loopback is loopback


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("mqtt://broker.example:1883", True),
        ("mqtt://10.1.2.3", True),
        ("mqtts://broker.example", False),
        ("mqtt://127.0.0.1:1883", False),
        ("mqtt://localhost", False),
    ],
)
def test_clear_text_across_the_network_is_warned_about(url: str, warned: bool) -> None:
    """A plain mqtt:// endpoint that is not on this host gives a warning (nothing connects here)."""
    with capture_logs() as logs:
        MqttSession(settings(url), client_id="thing-1", subscriptions=[])
    expected = [
        {
            "event": "The MQTT connection is not encrypted: commands and credentials cross the "
            "network in clear text. Use an mqtts:// endpoint (and mqtt.ca_file).",
            "endpoint": str(Endpoint.parse(url)),
            "log_level": "warning",
            "component": "codedeploy_agent.transport",
        }
    ]
    assert logs == (expected if warned else [])


def test_empty_client_id_is_refused() -> None:
    """Without a stable client id there is no persistent session, so it is required."""
    with pytest.raises(TransportError) as raised:
        MqttSession(settings("mqtt://127.0.0.1"), client_id="", subscriptions=[])
    assert str(raised.value) == "The MQTT client id must not be empty (it is the thing name)"
