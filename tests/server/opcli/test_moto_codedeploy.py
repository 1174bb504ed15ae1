"""`deploy` and `list` against moto's CodeDeploy: the plain API commands work with any
CodeDeploy implementation boto3 speaks to, not only codedeploy-server."""

from __future__ import annotations

import boto3  # type: ignore[import-untyped,unused-ignore]
import pytest

from tests.server.opcli.conftest import CliRunner


@pytest.fixture
def group(moto_url: str) -> str:
    """Application `web` with deployment group `prod` on moto; returns the endpoint URL."""
    client = boto3.client("codedeploy", endpoint_url=moto_url, region_name="us-east-1")
    client.create_application(applicationName="web", computePlatform="Server")
    client.create_deployment_group(
        applicationName="web",
        deploymentGroupName="prod",
        serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy",
    )
    return moto_url


def test_deploy_prints_the_deployment_id_alone(group: str, cli: CliRunner) -> None:
    """Without --wait, stdout is the new deployment's id and nothing else."""
    result = cli(
        "deploy",
        "--endpoint-url",
        group,
        "--application-name",
        "web",
        "--deployment-group-name",
        "prod",
        "--s3-location",
        "bucket=revisions,key=web/app.zip,bundleType=zip,eTag=abc",
        "--description",
        "first one",
    )
    assert result.status == 0, result.err
    deployment_id = result.out.strip()
    client = boto3.client("codedeploy", endpoint_url=group, region_name="us-east-1")
    info = client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    assert result.out == f"{deployment_id}\n"
    assert info["revision"] == {
        "revisionType": "S3",
        "s3Location": {
            "bucket": "revisions",
            "key": "web/app.zip",
            "bundleType": "zip",
            "eTag": "abc",
        },
    }
    assert info["description"] == "first one"


def test_list_shows_deployments_as_a_table(group: str, cli: CliRunner) -> None:
    """`list` reads ListDeployments + BatchGetDeployments and prints one row each."""
    created = cli(
        "deploy",
        "--endpoint-url",
        group,
        "--application-name",
        "web",
        "--deployment-group-name",
        "prod",
        "--github-location",
        "repository=acme/web,commitId=0123456789abcdef0123456789abcdef01234567",
    )
    deployment_id = created.out.strip()
    result = cli(
        "list",
        "--endpoint-url",
        group,
        "--application-name",
        "web",
        "--deployment-group-name",
        "prod",
    )
    assert result.status == 0, result.err
    lines = [line.rstrip() for line in result.out.splitlines()]
    assert lines[0].split() == [
        "Deployment",
        "Status",
        "Application",
        "Group",
        "Created",
        "Completed",
        "Creator",
        "Instances",
        "Description",
    ]
    row = lines[1].split()
    assert row[:4] == [deployment_id, "Created", "web", "prod"]
    assert row[6:] == ["-", "user", "-"]
    assert len(lines) == 2


def test_list_with_no_match_says_so(group: str, cli: CliRunner) -> None:
    """No deployment with the status asked for: a note on stderr, nothing on stdout."""
    result = cli("list", "--endpoint-url", group, "--status", "Succeeded")
    assert (result.status, result.out, result.err) == (0, "", "No deployments found.\n")
