"""`codedeploy deploy`'s flags for codedeploy-server's other revision types (--git-url,
--bitbucket-repository, --codecommit-repository, --github-repository with --commit-id;
--bundle-url with --sha256): the location each builds, checked against the real API app, and a
usage error naming the flag for each wrong combination (no call is made)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.brokers import free_port
from tests.server.opcli.api_server import ApiServer, update_deployment
from tests.server.opcli.conftest import CliRunner
from tests.server.opcli.e2e import client

SHA1 = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def deploy(url: str, *flags: str) -> list[str]:
    """`deploy` of web/prod with the revision `flags`."""
    return [
        "deploy",
        "--endpoint-url",
        url,
        "--application-name",
        "web",
        "--deployment-group-name",
        "prod",
        *flags,
    ]


def commit(repository: str) -> dict[str, Any]:
    return {
        "revisionType": "GitHub",
        "gitHubLocation": {"repository": repository, "commitId": SHA1},
    }


@pytest.mark.parametrize(
    ("flags", "location"),
    [
        (("--git-url", "file:///srv/git/shop.git"), commit("git+file:///srv/git/shop.git")),
        (  # the git+ prefix may be given too
            ("--git-url", "git+https://git.example.com/shop.git"),
            commit("git+https://git.example.com/shop.git"),
        ),
        (("--bitbucket-repository", "team/shop"), commit("bitbucket:team/shop")),
        (("--codecommit-repository", "shop"), commit("codecommit:shop")),
        (("--codecommit-repository", "eu-west-1/shop"), commit("codecommit:eu-west-1/shop")),
        (("--github-repository", "acme/shop"), commit("acme/shop")),
    ],
)
def test_commit_flags_build_the_location(
    fleet: ApiServer, cli: CliRunner, flags: tuple[str, str], location: dict[str, Any]
) -> None:
    """Each repository flag with --commit-id deploys the gitHubLocation it stands for."""
    result = cli(*deploy(fleet.url, *flags, "--commit-id", SHA1))
    assert (result.status, result.err) == (0, "")
    info = client(fleet).get_deployment(deploymentId=result.out.strip())["deploymentInfo"]
    assert info["revision"] == location


def test_bundle_url_builds_a_string_location(fleet: ApiServer, cli: CliRunner) -> None:
    """--bundle-url with --sha256 deploys a String revision; another one after it finished."""
    url = "https://downloads.example.com/shop/v1.tgz"
    first = cli(*deploy(fleet.url, "--bundle-url", url, "--sha256", DIGEST))
    assert (first.status, first.err) == (0, "")
    deployment_id = first.out.strip()
    info = client(fleet).get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    assert info["revision"] == {
        "revisionType": "String",
        "string": {"content": url, "sha256": DIGEST},
    }
    fleet.run(update_deployment(fleet.store, deployment_id, status="Succeeded"))
    second = cli(*deploy(fleet.url, "--git-url", "file:///srv/git/shop.git", "--commit-id", SHA1))
    assert (second.status, second.err) == (0, "")


def test_the_server_refuses_what_it_cannot_deploy(fleet: ApiServer, cli: CliRunner) -> None:
    """A well-formed flag whose value the server refuses: its message, like the AWS CLI, 255."""
    result = cli(
        *deploy(fleet.url, "--git-url", "http://git.example.com/shop.git", "--commit-id", SHA1)
    )
    assert result.status == 255
    assert result.err == (
        "An error occurred (InvalidRevisionException) when calling the CreateDeployment "
        "operation: gitHubLocation.repository 'git+http://git.example.com/shop.git' uses plain "
        "http://, accepted for loopback hosts only: use git+https:// or git+ssh://.\n"
    )
    assert fleet.rollout.created == []


COMMIT_NEEDED = (
    "needs --commit-id SHA, the commit to deploy: deployments are pinned to a commit, not a "
    "branch (`git rev-parse main` prints the SHA of main's head)."
)


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--git-url", "file:///srv/git/shop.git"), f"--git-url {COMMIT_NEEDED}"),
        (("--bitbucket-repository", "team/shop"), f"--bitbucket-repository {COMMIT_NEEDED}"),
        (("--codecommit-repository", "shop"), f"--codecommit-repository {COMMIT_NEEDED}"),
        (
            ("--git-url", "file:///srv/git/shop.git", "--commit-id", "main"),
            (
                "--commit-id must be a commit SHA (7 to 64 hex digits), got 'main': "
                "`git rev-parse <branch or tag>` prints it."
            ),
        ),
        (
            ("--s3-location", "bucket=b,key=k.zip,bundleType=zip", "--commit-id", SHA1),
            (
                "--commit-id goes with --github-repository, --bitbucket-repository, "
                "--codecommit-repository, --git-url: it names the commit to deploy from that "
                "repository."
            ),
        ),
        (
            ("--bundle-url", "https://downloads.example.com/shop.tgz", "--commit-id", SHA1),
            (
                "--commit-id goes with --github-repository, --bitbucket-repository, "
                "--codecommit-repository, --git-url: it names the commit to deploy from that "
                "repository."
            ),
        ),
        (
            ("--bundle-url", "https://downloads.example.com/shop.tgz"),
            (
                "--bundle-url needs --sha256 HEX, the bundle's SHA-256 (`sha256sum app.tgz`): "
                "agents refuse a download that does not match it."
            ),
        ),
        (
            ("--bundle-url", "https://downloads.example.com/shop.tgz", "--sha256", "abc"),
            "--sha256 must be 64 hex digits (`sha256sum app.tgz` prints them), got 'abc'.",
        ),
        (
            ("--git-url", "file:///srv/git/shop.git", "--commit-id", SHA1, "--sha256", DIGEST),
            "--sha256 goes with --bundle-url: it is the SHA-256 of that bundle.",
        ),
        (
            ("--github-repository", "bitbucket:team/shop", "--commit-id", SHA1),
            (
                "--github-repository is OWNER/REPO, got 'bitbucket:team/shop': for Bitbucket, "
                "CodeCommit or another git remote use --bitbucket-repository, "
                "--codecommit-repository or --git-url."
            ),
        ),
    ],
)
def test_wrong_combinations_are_usage_errors(
    cli: CliRunner, flags: tuple[str, ...], message: str
) -> None:
    """Each wrong combination is a usage error (status 2) saying what goes with what; nothing
    is sent (the endpoint is a closed port)."""
    result = cli(*deploy(f"http://127.0.0.1:{free_port()}", *flags))
    assert (result.status, result.out, result.err) == (2, "", f"codedeploy: error: {message}\n")


@pytest.mark.usefixtures("aws_env")
def test_two_sources_are_refused_by_argparse(cli: CliRunner) -> None:
    """Two revision sources at once: argparse's mutually-exclusive error, status 2."""
    result = cli(
        *deploy(
            f"http://127.0.0.1:{free_port()}",
            "--git-url",
            "file:///srv/git/shop.git",
            "--bitbucket-repository",
            "team/shop",
            "--commit-id",
            SHA1,
        )
    )
    assert result.status == 2
    assert result.err.endswith(
        "error: argument --bitbucket-repository: not allowed with argument --git-url\n"
    )
