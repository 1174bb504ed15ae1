"""`codedeploy-server`'s config loader: defaults, every refusal names the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from codedeploy_server.config import load_server_config
from codedeploy_server.errors import ServerConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_empty_file_is_all_defaults_with_the_embedded_broker(tmp_path: Path) -> None:
    config = load_server_config(write(tmp_path, ""))
    assert config.mqtt.embedded
    assert config.mqtt.endpoint is None
    assert config.tls_cert is None
    assert config.credentials == {}


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cr3t\n")
    config = load_server_config(
        write(
            tmp_path,
            "database: state.db\n"
            "mqtt: {embedded: true, users_file: users.json}\n"
            "credentials:\n  - {access_key_id: AKIAEXAMPLEEXAMPLE, secret_access_key_file: secret}\n"
            "tls_cert: tls/cert.pem\ntls_key: tls/key.pem\n",
        )
    )
    assert config.database == str(tmp_path / "state.db")
    assert config.mqtt.users_file == tmp_path / "users.json"
    assert config.credentials == {"AKIAEXAMPLEEXAMPLE": "s3cr3t"}
    assert (config.tls_cert, config.tls_key) == (
        tmp_path / "tls/cert.pem",
        tmp_path / "tls/key.pem",
    )


def test_postgresql_url_is_kept(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/test"
    assert load_server_config(write(tmp_path, f"database: {url}\n")).database == url


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("listne: 1\n", "Unknown key(s) in"),
        ("mqtt: {endpont: mqtt://127.0.0.1}\n", "Unknown key(s) under mqtt"),
        ("tls_cert: c.pem\n", "tls_cert and tls_key go together"),
        ("s3_endpoint: 127.0.0.1:9000\n", "s3_endpoint: '127.0.0.1:9000' must be a URL"),
        (
            "mqtt: {embedded: true, endpoint: 'mqtt://127.0.0.1:1883'}\n",
            "mqtt.embedded and mqtt.endpoint exclude each other",
        ),
        ("mqtt: {embedded: false}\n", "mqtt.embedded is false but mqtt.endpoint is not set"),
        (
            "mqtt: {endpoint: 'http://127.0.0.1'}\n",
            "must be a URL starting with mqtt:// or mqtts://",
        ),
        ("mqtt: {protocol: 4}\n", "mqtt.protocol must be 5 or '3.1.1'"),
        ("mqtt: {listen: nowhere}\n", "mqtt.listen"),
        ("credentials: {a: b}\n", "credentials must be a list"),
        ("credentials:\n  - {access_key_id: short}\n", "must be 16 to 128 upper-case"),
        (
            "credentials:\n  - {access_key_id: AKIAEXAMPLEEXAMPLE, secret_access_key_file: nope}\n",
            "credentials[0].secret_access_key_file",
        ),
        ("rollout: {pickup_deadline_seconds: soon}\n", "rollout.pickup_deadline_seconds must be"),
        ("rollout: {job_ttl_seconds: -1}\n", "rollout.job_ttl_seconds must be a positive number"),
        ("bundle_store: {url_ttl_seconds: x}\n", "bundle_store.url_ttl_seconds must be"),
        ("bundle_store: {public_url: ftp://h}\n", "bundle_store.public_url"),
        (
            "bundle_store: {public_url: 'http://deploy.example.internal:8443'}\n",
            "agents refuse download links over plain http to another host",
        ),
        ("s3_endpoint: 'http://minio:9000'\n", "s3_endpoint 'http://minio:9000': agents refuse"),
        ("- a\n", "must be a mapping"),
        ("listen: [\n", "is not valid YAML"),
    ],
)
def test_refusals_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ServerConfigError) as caught:
        load_server_config(write(tmp_path, text))
    assert message in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ServerConfigError, match="Cannot read the server config"):
        load_server_config(tmp_path / "missing.yml")


def test_plain_http_links_to_loopback_are_accepted(tmp_path: Path) -> None:
    """Loopback stays allowed: a server beside its agents, the demo and the tests."""
    config = load_server_config(
        write(
            tmp_path,
            "s3_endpoint: 'http://127.0.0.1:9000'\n"
            "bundle_store: {public_url: 'http://localhost:8443'}\n",
        )
    )
    assert config.s3_endpoint == "http://127.0.0.1:9000"
    assert config.bundle_store.public_url == "http://localhost:8443"
