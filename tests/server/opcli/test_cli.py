"""`codedeploy` arguments, exit statuses and error messages (no traceback for a user's mistake)."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped,unused-ignore]

from codedeploy_server.opcli.client import api_errors
from codedeploy_server.opcli.errors import ApiError
from tests.fakes.brokers import free_port
from tests.server.opcli.conftest import CliRunner


@pytest.mark.usefixtures("aws_env")
def test_no_command_is_a_usage_error(cli: CliRunner) -> None:
    """Without a command, argparse's usage error and status 2."""
    result = cli()
    assert result.status == 2
    assert result.err.endswith("codedeploy: error: the following arguments are required: COMMAND\n")


@pytest.mark.usefixtures("aws_env")
def test_deploy_needs_a_revision_location(cli: CliRunner) -> None:
    """`deploy` without a revision location is a usage error listing every source flag."""
    result = cli("deploy", "--application-name", "web", "--deployment-group-name", "prod")
    assert result.status == 2
    assert result.err.endswith(
        "error: one of the arguments --s3-location --github-location --github-repository "
        "--bitbucket-repository --codecommit-repository --git-url --bundle-url is required\n"
    )


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("bucket=b,key=k", "--s3-location must specify bucket, key and bundleType."),
        (
            "bucket=b,key=k,bundleType=rar",
            "Invalid bundleType 'rar' in --s3-location: valid choices are tar, tgz, zip",
        ),
        (
            "bucket=b,key=k,bundleType=zip,colour=blue",
            (
                "Unknown key 'colour' in --s3-location; valid keys are: bucket, key, bundleType, "
                "eTag, version"
            ),
        ),
        (
            "bucketb",
            (
                "Error parsing parameter '--s3-location': Expected: '=', received: 'bucketb' (use "
                "key=value pairs separated by commas)"
            ),
        ),
    ],
)
def test_bad_s3_location_is_refused_before_any_call(
    cli: CliRunner, location: str, message: str
) -> None:
    """A malformed --s3-location is a usage error with the AWS CLI's text; no call is made."""
    result = cli(
        "deploy",
        "--endpoint-url",
        f"http://127.0.0.1:{free_port()}",
        "--application-name",
        "web",
        "--deployment-group-name",
        "prod",
        "--s3-location",
        location,
    )
    assert (result.status, result.out, result.err) == (2, "", f"codedeploy: error: {message}\n")


@pytest.mark.usefixtures("aws_env")
def test_github_location_needs_both_keys(cli: CliRunner) -> None:
    """--github-location without commitId is refused with the AWS CLI's text."""
    result = cli(
        "deploy",
        "--application-name",
        "web",
        "--deployment-group-name",
        "prod",
        "--github-location",
        "repository=acme/web",
    )
    assert result.status == 2
    assert result.err == (
        "codedeploy: error: --github-location must specify repository and commitId.\n"
    )


@pytest.mark.usefixtures("aws_env")
def test_list_needs_application_and_group_together(cli: CliRunner) -> None:
    """`list --application-name` without its group is a usage error that says the fix."""
    result = cli("list", "--application-name", "web")
    assert result.status == 2
    assert result.err == (
        "codedeploy: error: --application-name and --deployment-group-name go together: give "
        "both to list one deployment group's deployments, or neither to list all.\n"
    )


@pytest.mark.usefixtures("aws_env")
def test_push_s3_url_must_name_bucket_and_key(cli: CliRunner, tmp_path: Path) -> None:
    """`push --s3-location` that is not s3://bucket/key is refused with the AWS CLI's text."""
    result = cli(
        "push", "--application-name", "web", "--source", str(tmp_path), "--s3-location", "b/k"
    )
    assert result.status == 2
    assert result.err == (
        "codedeploy: error: --s3-location must specify the Amazon S3 URL format as "
        "s3://<bucket>/<key>.\n"
    )


@pytest.mark.usefixtures("aws_env")
def test_push_to_aws_needs_an_s3_location(cli: CliRunner, tmp_path: Path) -> None:
    """Against AWS CodeDeploy (no endpoint given) there is no bundle store: say so, exit 2."""
    result = cli("push", "--application-name", "web", "--source", str(tmp_path))
    assert result.status == 2
    assert result.err == (
        "codedeploy: error: --s3-location is required with AWS CodeDeploy: the bundle store is "
        "a codedeploy-server feature. Give --s3-location s3://<bucket>/<key>, or "
        "--endpoint-url (or CODEDEPLOY_ENDPOINT_URL) for a codedeploy-server.\n"
    )


@pytest.mark.usefixtures("aws_env")
def test_invalid_endpoint_url_is_a_usage_error(cli: CliRunner) -> None:
    """An endpoint that is not an http(s) URL is refused with an example of one."""
    result = cli("status", "d-ABCDEFGH1", "--endpoint-url", "127.0.0.1:8443")
    assert result.status == 2
    assert result.err == (
        "codedeploy: error: Invalid endpoint URL '127.0.0.1:8443': give the server's URL, for "
        "example http://127.0.0.1:8443 (--endpoint-url or CODEDEPLOY_ENDPOINT_URL).\n"
    )


@pytest.mark.usefixtures("aws_env")
def test_follow_needs_the_broker(cli: CliRunner) -> None:
    """`logs --follow` without an MQTT endpoint says where to give it."""
    result = cli("logs", "d-ABCDEFGH1", "--follow", "--endpoint-url", "http://127.0.0.1:1")
    assert result.status == 2
    assert result.err == (
        "codedeploy: error: --follow reads the live log topic on the MQTT broker the agents "
        "use: give --mqtt-endpoint mqtt://HOST[:PORT] (or set CODEDEPLOY_MQTT_ENDPOINT).\n"
    )


def test_api_error_reads_like_the_aws_cli(moto_url: str, cli: CliRunner) -> None:
    """An API error from a real server: the AWS CLI's one-line text on stderr, status 255."""
    result = cli("status", "d-NOPE12345", "--endpoint-url", moto_url)
    assert result.status == 255
    assert result.out == ""
    assert result.err == (
        "An error occurred (DeploymentDoesNotExistException) when calling the GetDeployment "
        "operation: The deployment d-NOPE12345 does not exist with the user or AWS account.\n"
    )


def test_endpoint_comes_from_the_environment(
    moto_url: str, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CODEDEPLOY_ENDPOINT_URL is used when --endpoint-url is not given."""
    monkeypatch.setenv("CODEDEPLOY_ENDPOINT_URL", moto_url)
    result = cli("status", "d-NOPE12345")
    assert result.status == 255
    assert "(DeploymentDoesNotExistException) when calling the GetDeployment" in result.err


@pytest.mark.usefixtures("aws_env")
def test_unreachable_endpoint_says_what_to_check(cli: CliRunner) -> None:
    """Connection refused: botocore's text and the fix, status 255, no traceback."""
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("status", "d-ABCDEFGH1", "--endpoint-url", url)
    assert result.status == 255
    assert result.err == (
        f'Could not connect to the endpoint URL: "{url}/". Check that codedeploy-server is '
        "running and listening there, and that --endpoint-url (or CODEDEPLOY_ENDPOINT_URL) "
        "names it.\n"
    )


@pytest.mark.usefixtures("aws_env")
def test_missing_credentials_say_how_to_set_them(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No credentials anywhere: the AWS CLI's sentence and the ways to provide them."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = cli("status", "d-ABCDEFGH1", "--endpoint-url", f"http://127.0.0.1:{free_port()}")
    assert result.status == 255
    assert result.err == (
        "Unable to locate credentials. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for "
        "codedeploy-server: an access key listed under `credentials` in its config), choose a "
        'profile with --profile or AWS_PROFILE, or run "aws configure".\n'
    )


@pytest.mark.usefixtures("aws_env")
def test_unknown_profile_is_named(cli: CliRunner) -> None:
    """A --profile that does not exist is named, with where profiles live."""
    result = cli("status", "d-ABCDEFGH1", "--profile", "nope", "--endpoint-url", "http://x:1")
    assert result.status == 255
    assert result.err == (
        "The config profile (nope) could not be found. Check --profile (or AWS_PROFILE) against "
        "~/.aws/config and ~/.aws/credentials.\n"
    )


def test_client_error_mapping_keeps_code_operation_and_message() -> None:
    """A ClientError becomes an ApiError (status 255) with botocore's exact sentence."""
    error = ClientError(
        {
            "Error": {
                "Code": "DeploymentLimitExceededException",
                "Message": "The Deployment Group 'prod' already has an active Deployment "
                "'d-ABCDEFGH1'",
            }
        },
        "CreateDeployment",
    )
    with pytest.raises(ApiError) as caught, api_errors():
        raise error
    assert caught.value.exit_status == 255
    assert str(caught.value) == (
        "An error occurred (DeploymentLimitExceededException) when calling the CreateDeployment "
        "operation: The Deployment Group 'prod' already has an active Deployment 'd-ABCDEFGH1'"
    )


@pytest.mark.usefixtures("aws_env")
def test_push_of_a_missing_folder(cli: CliRunner, tmp_path: Path) -> None:
    """A --source that is not a folder: status 1 and what to give instead."""
    missing = tmp_path / "nope"
    result = cli(
        "push",
        "--endpoint-url",
        f"http://127.0.0.1:{free_port()}",
        "--application-name",
        "web",
        "--source",
        str(missing),
    )
    assert (result.status, result.out) == (1, "")
    assert result.err == f"{missing} is not a directory. Give --source the revision's folder.\n"


@pytest.mark.usefixtures("aws_env")
def test_empty_tag_filter_is_a_usage_error(cli: CliRunner) -> None:
    """`instances --tag ''` is refused before any call, with the forms accepted."""
    result = cli("instances", "--tag", "", "--endpoint-url", f"http://127.0.0.1:{free_port()}")
    assert (result.status, result.err) == (
        2,
        "codedeploy: error: Invalid --tag '': give KEY=VALUE, KEY or =VALUE.\n",
    )
