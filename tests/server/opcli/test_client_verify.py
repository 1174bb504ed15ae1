"""Which CA the `codedeploy` CLI trusts: botocore's own chain (AWS_CA_BUNDLE, then the profile's
`ca_bundle`), or nothing with --no-verify-ssl. An explicit `verify=True` would make botocore
ignore AWS_CA_BUNDLE, and the CLI's own SSL error message tells operators to set it."""

from __future__ import annotations

from pathlib import Path

import pytest

from codedeploy_server.opcli.client import Clients, ClientSettings

ENDPOINT = "https://127.0.0.1:8443"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))


def test_default_trust_store_without_a_ca_bundle() -> None:
    assert Clients(ClientSettings(endpoint_url=ENDPOINT)).verify is True


def test_aws_ca_bundle_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))
    clients = Clients(ClientSettings(endpoint_url=ENDPOINT))
    assert clients.verify == str(ca)
    endpoint = clients.codedeploy.meta.endpoint_url  # type: ignore[attr-defined]
    assert endpoint == ENDPOINT


def test_profile_ca_bundle_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "profile-ca.pem"
    (tmp_path / "config").write_text(f"[profile ops]\nca_bundle = {ca}\n")
    settings = ClientSettings(endpoint_url=ENDPOINT, profile="ops")
    assert Clients(settings).verify == str(ca)


def test_no_verify_ssl_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    assert Clients(ClientSettings(endpoint_url=ENDPOINT, verify_ssl=False)).verify is False
