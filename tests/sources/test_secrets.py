"""Parameter Store secrets against moto's server: values, batching, missing parameters,
permissions, the clock check, and values kept out of every log line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from codedeploy_agent.clock import ClockSkewError
from codedeploy_agent.config import AgentConfig, ClockSettings
from codedeploy_agent.sources.secrets import SecretError, resolve_environment
from tests.fakes.ntp import FakeNtpServer
from tests.sources.aws_fixtures import (  # noqa: F401 - *_fixture: pytest fixtures
    REGION,
    admin_client,
    aws_config_fixture,
    aws_env_fixture,
    iam_user,
    make_config,
    moto_fixture,
    tap_fixture,
)
from tests.sources.moto_server import MotoServer, TcpTap


def _put(moto: MotoServer, parameters: dict[str, str], kind: str = "SecureString") -> None:
    ssm = admin_client(moto, "ssm")
    for name, value in parameters.items():
        ssm.put_parameter(Name=name, Value=value, Type=kind, Overwrite=True)


@pytest.mark.asyncio
async def test_secure_strings_reach_the_result(
    aws_env: MotoServer, aws_config: AgentConfig, no_blocking: None
) -> None:
    """Each variable gets its decrypted parameter value; two variables may share a parameter;
    the event loop is never blocked."""
    _put(aws_env, {"/app/db-password": "s3cr3t-db", "/app/api-key": "k-123"})
    _put(aws_env, {"/app/region": "plain"}, kind="String")
    result = await resolve_environment(
        {
            "DB_PASSWORD": "/app/db-password",
            "API_KEY": "/app/api-key",
            "API_KEY_AGAIN": "/app/api-key",
            "REGION_NAME": "/app/region",
        },
        aws_config,
    )
    assert result == {
        "DB_PASSWORD": "s3cr3t-db",
        "API_KEY": "k-123",
        "API_KEY_AGAIN": "k-123",
        "REGION_NAME": "plain",
    }


@pytest.mark.asyncio
async def test_versions_and_arns_are_accepted(aws_env: MotoServer, aws_config: AgentConfig) -> None:
    """A `name:version` selector picks that version; a parameter ARN works like its name."""
    _put(aws_env, {"/app/token": "first"})
    _put(aws_env, {"/app/token": "second"})
    arn = f"arn:aws:ssm:{REGION}:123456789012:parameter/app/token"
    result = await resolve_environment(
        {"OLD": "/app/token:1", "NEW": "/app/token", "BY_ARN": arn}, aws_config
    )
    assert result == {"OLD": "first", "NEW": "second", "BY_ARN": "second"}


@pytest.mark.asyncio
async def test_more_than_ten_parameters_take_one_call_per_ten(
    tap: TcpTap, aws_env: MotoServer, aws_config: AgentConfig
) -> None:
    """23 parameters are read in 3 GetParameters calls (the API takes 10 names at most)."""
    parameters = {f"/app/p{i:02d}": f"value-{i}" for i in range(23)}
    _put(aws_env, parameters)
    result = await resolve_environment(
        {f"VAR_{i:02d}": name for i, name in enumerate(parameters)}, aws_config
    )
    assert result == {f"VAR_{i:02d}": f"value-{i}" for i in range(23)}
    assert len(tap.requests_for("/", method="POST")) == 3


@pytest.mark.asyncio
async def test_missing_parameters_are_all_named(
    aws_env: MotoServer, aws_config: AgentConfig
) -> None:
    """Every missing parameter is named with the variables that wanted it, across batches."""
    present = {f"/app/p{i:02d}": "v" for i in range(12)}
    _put(aws_env, present)
    entries = {f"VAR_{i:02d}": name for i, name in enumerate(present)}
    entries |= {"DB_PASSWORD": "/app/db-pasword", "TOKEN": "/zz/token", "TOKEN2": "/zz/token"}
    with pytest.raises(SecretError) as caught:
        await resolve_environment(entries, aws_config)
    assert str(caught.value) == (
        "Parameter Store has no parameters /app/db-pasword (for DB_PASSWORD), /zz/token (for "
        "TOKEN, TOKEN2) in region us-east-1, so the deployment stops before any hook runs. "
        "Check the names (they are case-sensitive and usually start with /), the version or "
        "label after ':', and the region."
    )
    assert caught.value.parameters == ("/app/db-pasword", "/zz/token")


@pytest.mark.asyncio
async def test_values_never_reach_the_logs(aws_env: MotoServer, aws_config: AgentConfig) -> None:
    """Log lines carry names and counts only, never a value, on success and on failure."""
    secrets = {"/app/one": "VALUE-ONE-9f2c", "/app/two": "VALUE-TWO-71ab"}
    _put(aws_env, secrets)
    with capture_logs() as logs:
        await resolve_environment({"ONE": "/app/one", "TWO": "/app/two"}, aws_config)
        with pytest.raises(SecretError) as caught:
            await resolve_environment({"ONE": "/app/one", "GONE": "/app/gone"}, aws_config)
    text = repr(logs)
    assert "VALUE-ONE" not in text
    assert "VALUE-TWO" not in text
    assert "VALUE-ONE" not in str(caught.value)
    resolved = [entry for entry in logs if entry["event"] == "parameters_resolved"]
    assert resolved == [
        {
            "event": "parameters_resolved",
            "log_level": "info",
            "component": "codedeploy_agent.sources.secrets",
            "count": 2,
            "variables": ["ONE", "TWO"],
            "parameters": ["/app/one", "/app/two"],
            "calls": 1,
        }
    ]


@pytest.mark.asyncio
async def test_access_denied_names_the_permissions(
    aws_env: MotoServer, aws_config: AgentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An identity without ssm:GetParameters is told which permissions it needs."""
    _put(aws_env, {"/app/one": "v"})
    key_id, secret = iam_user(aws_env, "no-ssm", ["s3:GetObject"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    aws_env.require_auth(True)
    with pytest.raises(SecretError) as caught:
        await resolve_environment({"ONE": "/app/one"}, aws_config)
    message = str(caught.value)
    assert message.startswith("Cannot read the Parameter Store parameters /app/one: "), message
    assert "AccessDenied" in message
    assert message.endswith(
        "The host's AWS identity (credentials from the environment (AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY)) needs ssm:GetParameters on "
        "arn:aws:ssm:us-east-1:<account>:parameter/... for /app/one, and kms:Decrypt on the "
        "KMS key that encrypts SecureString values. The deployment stops before any hook runs."
    )


@pytest.mark.asyncio
async def test_no_entries_make_no_call(tap: TcpTap, aws_config: AgentConfig) -> None:
    """An empty Environment resolves to nothing without any AWS request."""
    assert await resolve_environment({}, aws_config) == {}
    assert tap.requests == []


@pytest.mark.asyncio
async def test_skewed_clock_refuses_before_any_call(
    tap: TcpTap, aws_env: MotoServer, tmp_path: Path
) -> None:
    """With the clock 600 s behind, no GetParameters call is made: the clock error says why."""
    _put(aws_env, {"/app/one": "v"})
    with FakeNtpServer(offset_seconds=600.0) as ntp:
        config = dataclasses.replace(
            make_config(tmp_path), clock=ClockSettings(ntp_servers=(ntp.address,))
        )
        with pytest.raises(ClockSkewError) as caught:
            await resolve_environment({"ONE": "/app/one"}, config)
    assert "InvalidSignatureException (Signature expired)" in str(caught.value)
    assert tap.requests == []
