"""The on-premises identity file (reference §7.2), with the real agent's messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from codedeploy_agent.config import OnPremConfig, load_onprem_config
from codedeploy_agent.errors import ConfigError

USER_ARN = "arn:aws:iam::123456789012:user/host-1"
SESSION_ARN = "arn:aws:sts::123456789012:assumed-role/CodeDeploy/host-1"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "codedeploy.onpremises.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_file_means_not_on_premises(tmp_path: Path) -> None:
    """No file (or an unreadable one) is not an error: the host is simply not on-premises."""
    assert load_onprem_config(tmp_path / "absent.yml") is None


def test_iam_user_identity(tmp_path: Path) -> None:
    """iam_user_arn with region and both keys gives the IAM user identity."""
    path = _write(
        tmp_path,
        f"---\nregion: eu-west-1\niam_user_arn: {USER_ARN}\n"
        "aws_access_key_id: AKIAEXAMPLE\naws_secret_access_key: s3cr3t\n",
    )
    config = load_onprem_config(path)
    assert config == OnPremConfig(
        region="eu-west-1",
        iam_user_arn=USER_ARN,
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="s3cr3t",  # noqa: S106 (a test value)
        source=path,
    )
    assert config.host_identifier == USER_ARN


def test_secret_key_is_not_in_repr(tmp_path: Path) -> None:
    """The secret access key never shows up when the config is logged."""
    path = _write(
        tmp_path,
        f"region: r\niam_user_arn: {USER_ARN}\naws_access_key_id: A\n"
        "aws_secret_access_key: s3cr3t\n",
    )
    assert "s3cr3t" not in repr(load_onprem_config(path))


def test_iam_session_identity_with_ruby_style_keys(tmp_path: Path) -> None:
    """iam_session_arn with region and a credentials file; `:key:` spelling works too."""
    path = _write(
        tmp_path,
        f":region: us-east-1\n:iam_session_arn: {SESSION_ARN}\n:aws_credentials_file: creds\n",
    )
    config = load_onprem_config(path)
    assert config == OnPremConfig(
        region="us-east-1",
        iam_session_arn=SESSION_ARN,
        aws_credentials_file=tmp_path / "creds",
        source=path,
    )
    assert config.host_identifier == SESSION_ARN


def test_region_only_is_on_premises_without_identity(tmp_path: Path) -> None:
    """A readable file without an ARN still marks the host on-premises, as in the real agent."""
    path = _write(tmp_path, "region: eu-central-1\n")
    assert load_onprem_config(path) == OnPremConfig(region="eu-central-1", source=path)


def test_both_arns_are_an_error(tmp_path: Path) -> None:
    """Both ARNs give the real agent's exact message."""
    path = _write(
        tmp_path, f"region: r\niam_user_arn: {USER_ARN}\niam_session_arn: {SESSION_ARN}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_onprem_config(path)
    assert str(caught.value) == (
        "On Premises config cannot contain both 'iam_user_arn' and 'iam_session_arn' keys."
    )


USER_KEYS = {"aws_access_key_id": "A", "aws_secret_access_key": "S"}
SESSION_KEYS = {"aws_credentials_file": "/c"}
# (the ARN, the keys it requires, the one left out)
REQUIRED = [
    *[("iam_user_arn", USER_ARN, USER_KEYS, missing) for missing in ("region", *USER_KEYS)],
    *[("iam_session_arn", SESSION_ARN, SESSION_KEYS, m) for m in ("region", *SESSION_KEYS)],
]


@pytest.mark.parametrize(("arn", "arn_value", "keys", "missing"), REQUIRED)
def test_required_key_missing(
    tmp_path: Path, arn: str, arn_value: str, keys: dict[str, str], missing: str
) -> None:
    """Each key the chosen ARN needs is required, with the real agent's message."""
    entries = {"region": "r", arn: arn_value, **keys}
    del entries[missing]
    path = _write(tmp_path, "".join(f"{key}: {value}\n" for key, value in entries.items()))
    with pytest.raises(ConfigError) as caught:
        load_onprem_config(path)
    assert str(caught.value) == (
        f"'{missing}' key is required when '{arn}' is provided. Add it to {path}."
    )


@pytest.mark.parametrize("text", ["region: [unclosed\n", "", "just a string\n", "- a\n- b\n"])
def test_invalid_format(tmp_path: Path, text: str) -> None:
    """Broken YAML or a file that is not a mapping gives the real agent's format message."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_onprem_config(path)
    assert str(caught.value).startswith(
        "The deployment failed because the format of the following on-premises configuration "
        f"file is invalid: {path}"
    )


def test_non_string_value_is_invalid(tmp_path: Path) -> None:
    """A value that is not a string (here a number) is refused with the key named."""
    path = _write(tmp_path, f"region: 5\niam_session_arn: {SESSION_ARN}\naws_credentials_file: c\n")
    with pytest.raises(ConfigError) as caught:
        load_onprem_config(path)
    assert str(caught.value) == (
        "The deployment failed because the format of the following on-premises configuration "
        f"file is invalid: {path} ('region' must be a string, not 5)"
    )
