"""The revision types codedeploy-server encodes in RevisionLocation members (api/locations.py):
Bitbucket, CodeCommit and git remotes in `gitHubLocation.repository`, bundle URLs in `string`.

Everything goes through botocore's own `codedeploy` client, which is the point: these locations
must pass its client-side validation unchanged. They round-trip exactly as given through
Register/Get/List/BatchGetApplicationRevisions and CreateDeployment/GetDeployment, and each
malformed form is an InvalidRevisionException that says what is wrong.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.api.conftest import Api

SHA1 = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def commit(repository: str, commit_id: str = SHA1) -> dict[str, Any]:
    """A gitHubLocation revision."""
    return {
        "revisionType": "GitHub",
        "gitHubLocation": {"repository": repository, "commitId": commit_id},
    }


def bundle(url: str, sha256: str | None = DIGEST) -> dict[str, Any]:
    """A String revision (a bundle URL)."""
    raw: dict[str, str] = {"content": url}
    if sha256 is not None:
        raw["sha256"] = sha256
    return {"revisionType": "String", "string": raw}


ACCEPTED = [
    commit("acme/web"),
    commit("bitbucket:team/web-app"),
    commit("codecommit:shop"),
    commit("codecommit:eu-west-1/shop", "abcdef1"),
    commit("git+https://git.example.com/team/shop.git"),
    commit("git+ssh://git@git.example.com/team/shop.git"),
    commit("git+file:///srv/git/shop.git"),
    commit("git+http://127.0.0.1:8080/shop.git"),
    bundle("https://downloads.example.com/shop/v1.tgz"),
    bundle("https://downloads.example.com/shop/v1.tar.gz?token=abc", DIGEST.upper()),
    bundle("http://127.0.0.1:9000/shop.zip"),
    bundle("http://localhost/shop.tar"),
]


@pytest.mark.asyncio
async def test_locations_round_trip(api: Api) -> None:
    """Every accepted form registers and reads back exactly as given, from Get, List and
    BatchGet; the same repository at another commit is another revision."""
    await api.call("create_application", applicationName="web")
    for location in ACCEPTED:
        await api.call(
            "register_application_revision",
            applicationName="web",
            revision=location,
            description=str(location)[:200],
        )
    for location in ACCEPTED:
        answer = await api.call(
            "get_application_revision", applicationName="web", revision=location
        )
        assert answer["revision"] == location
        assert answer["revisionInfo"]["description"] == str(location)[:200]
    listed = await api.call(
        "list_application_revisions", applicationName="web", sortBy="registerTime"
    )
    assert listed["revisions"] == ACCEPTED
    other_commit = commit("git+file:///srv/git/shop.git", "fedcba9876543210")
    batch = await api.call(
        "batch_get_application_revisions",
        applicationName="web",
        revisions=[ACCEPTED[1], ACCEPTED[8], other_commit],
    )
    assert [r["revisionLocation"] for r in batch["revisions"]] == [ACCEPTED[1], ACCEPTED[8]]
    assert "fedcba9876543210" in batch["errorMessage"]


@pytest.mark.asyncio
async def test_deployments_keep_the_location(api: Api) -> None:
    """CreateDeployment accepts each new form; GetDeployment shows the location as given and
    deploying registers it (with the group that used it)."""
    await api.group()
    for location in (
        commit("git+file:///srv/git/shop.git"),
        commit("codecommit:shop"),
        bundle("https://downloads.example.com/shop/v1.zip"),
    ):
        deployment_id = await api.deploy(revision=location)
        info = (await api.call("get_deployment", deploymentId=deployment_id))["deploymentInfo"]
        assert info["revision"] == location
        registered = await api.call(
            "get_application_revision", applicationName="web", revision=location
        )
        assert registered["revisionInfo"]["deploymentGroups"] == ["prod"]
        # One active deployment per group: end this one before the next.
        await api.set_status(deployment_id, "Succeeded")
    assert len(api.rollout.created) == 3


FORMS = (
    "'owner/repository' (GitHub), 'bitbucket:WORKSPACE/REPOSITORY', 'codecommit:REPOSITORY' or "
    "'codecommit:REGION/REPOSITORY', or 'git+URL' (git+https://, git+ssh://, git+file:///)"
)
GIT_FORM = (
    "must be 'git+' followed by an https://, ssh:// or file:/// URL (http:// for loopback hosts "
    "only)"
)
CODECOMMIT_FORM = (
    "must be 'codecommit:REPOSITORY' or 'codecommit:REGION/REPOSITORY': REPOSITORY a name of "
    "letters, digits, '.', '_' and '-' (at most 100), REGION an AWS region such as eu-west-1."
)
BUNDLE_FORM = (
    "A String revision is a bundle URL: string.content 'https://host/path/app.tgz' and "
    "string.sha256 the bundle's SHA-256 (`sha256sum app.tgz`)"
)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("revision", "message"),
    [
        (
            commit("gitlab:team/web"),
            f"gitHubLocation.repository must be {FORMS}, got 'gitlab:team/web'.",
        ),
        (
            commit("team/web/extra"),
            f"gitHubLocation.repository must be {FORMS}, got 'team/web/extra'.",
        ),
        (
            commit("bitbucket:team"),
            (
                "gitHubLocation.repository 'bitbucket:team' must be 'bitbucket:WORKSPACE/REPOSITORY', "
                "each part a name of letters, digits, '.', '_' and '-' (at most 100)."
            ),
        ),
        (
            commit("bitbucket:team/../web"),
            (
                "gitHubLocation.repository 'bitbucket:team/../web' must be "
                "'bitbucket:WORKSPACE/REPOSITORY', each part a name of letters, digits, '.', '_' and "
                "'-' (at most 100)."
            ),
        ),
        (
            commit("codecommit:Europe/shop"),
            f"gitHubLocation.repository 'codecommit:Europe/shop' {CODECOMMIT_FORM}",
        ),
        (commit("codecommit:"), f"gitHubLocation.repository 'codecommit:' {CODECOMMIT_FORM}"),
        (
            commit("bitbucket:team/web", "main"),
            "gitHubLocation.commitId must be a commit SHA (7 to 64 hex digits), got 'main'.",
        ),
        (
            commit("git+ftp://git.example.com/shop.git"),
            (
                f"gitHubLocation.repository 'git+ftp://git.example.com/shop.git' {GIT_FORM}, "
                "without white space."
            ),
        ),
        (
            commit("git+https://git.example.com/my shop.git"),
            (
                f"gitHubLocation.repository 'git+https://git.example.com/my shop.git' {GIT_FORM}, "
                "without white space."
            ),
        ),
        (
            commit("git+file://server/srv/git/shop.git"),
            (
                f"gitHubLocation.repository 'git+file://server/srv/git/shop.git' {GIT_FORM}; a file "
                "URL is git+file:///absolute/path (on each instance)."
            ),
        ),
        (
            commit("git+ssh://-oProxyCommand=evil/shop.git"),
            (
                f"gitHubLocation.repository 'git+ssh://-oProxyCommand=evil/shop.git' {GIT_FORM}; this "
                "one names no valid host."
            ),
        ),
        (
            commit("git+https://git.example.com/shop.git#main"),
            (
                f"gitHubLocation.repository 'git+https://git.example.com/shop.git#main' {GIT_FORM}, "
                "without a #fragment: the commit to deploy is gitHubLocation.commitId."
            ),
        ),
        (
            commit("git+http://git.example.com/shop.git"),
            (
                "gitHubLocation.repository 'git+http://git.example.com/shop.git' uses plain http://, "
                "accepted for loopback hosts only: use git+https:// or git+ssh://."
            ),
        ),
        (
            commit("git+https://deploy:hunter2@git.example.com/shop.git"),
            # The password is masked in the message (it ends up in logs and terminals).
            (
                "gitHubLocation.repository 'git+https://***@git.example.com/shop.git' carries a "
                "password: the location is stored and shown by GetDeployment and "
                "GetApplicationRevision. Give the agents git.username and git.password_file (or "
                "git.ssh_key_file) in their configuration instead."
            ),
        ),
        (
            {"revisionType": "GitHub"},
            (
                f"A GitHub revision needs gitHubLocation {{repository, commitId}}; repository is "
                f"{FORMS}."
            ),
        ),
        (
            bundle("https://downloads.example.com/shop.tgz", None),
            (
                "string.sha256 must be the bundle's SHA-256 (64 hex digits, `sha256sum app.tgz`); it "
                "is missing. Agents check the download against it before extracting."
            ),
        ),
        (
            bundle("https://downloads.example.com/shop.tgz", "abc123"),
            (
                "string.sha256 must be the bundle's SHA-256 (64 hex digits, `sha256sum app.tgz`); got "
                "'abc123'. Agents check the download against it before extracting."
            ),
        ),
        (
            bundle("version: 0.0\nos: linux\n"),
            f"{BUNDLE_FORM}; string.content 'version: 0.0\\nos: linux\\n' is not such a URL.",
        ),
        (
            bundle("ftp://downloads.example.com/shop.tgz"),
            (
                f"{BUNDLE_FORM}; string.content 'ftp://downloads.example.com/shop.tgz' is not such a "
                "URL."
            ),
        ),
        (
            bundle("http://downloads.example.com/shop.tgz"),
            (
                "string.content 'http://downloads.example.com/shop.tgz' uses http://: serve the "
                "bundle over https:// (http:// is accepted for loopback hosts only, 127.0.0.1, ::1 or "
                "localhost)."
            ),
        ),
        (
            bundle("https://user:secret@downloads.example.com/shop.tgz"),
            (
                "string.content 'https://***@downloads.example.com/shop.tgz' carries credentials: "
                "the location is stored and shown by GetDeployment and GetApplicationRevision, so put "
                "no user name or password in it (use a URL that needs none, or an S3 location)."
            ),
        ),
        (
            bundle("https://downloads.example.com/shop.rpm?v=.tgz"),
            (
                "The bundle type of a String revision comes from its URL path, and '/shop.rpm' ends "
                "in none of .tar, .tar.gz, .tgz or .zip: serve the bundle under a name with one of "
                "them."
            ),
        ),
        (
            {"revisionType": "String"},
            (
                "A String revision needs string {content, sha256}: content the https:// URL of a "
                "tar, tgz or zip bundle, sha256 the bundle's SHA-256."
            ),
        ),
    ],
)
async def test_malformed_forms_are_refused(
    api: Api, revision: dict[str, Any], message: str
) -> None:
    """Each malformed form is InvalidRevisionException with its message, from Register and from
    CreateDeployment alike; nothing is stored or started."""
    await api.group()
    for operation, params in (
        ("register_application_revision", {"applicationName": "web"}),
        ("create_deployment", {"applicationName": "web", "deploymentGroupName": "prod"}),
    ):
        error = await api.error(operation, revision=revision, **params)
        assert error.response["Error"]["Code"] == "InvalidRevisionException"
        assert error.response["Error"]["Message"] == message
    assert (await api.call("list_application_revisions", applicationName="web"))["revisions"] == []
    assert api.rollout.created == []
