"""Application revisions through boto3: register, get, list (filters, sorting), batch get, and
the revision types this server accepts (the encoded ones: test_revision_types.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.api.conftest import BUNDLE_SHA, S3_REVISION, Api


def s3(key: str, bucket: str = "releases", **extra: str) -> dict[str, Any]:
    """An S3 revision location."""
    return {
        "revisionType": "S3",
        "s3Location": {"bucket": bucket, "key": key, "bundleType": "zip", **extra},
    }


GITHUB = {
    "revisionType": "GitHub",
    "gitHubLocation": {
        "repository": "acme/web",
        "commitId": "0123456789abcdef0123456789abcdef01234567",
    },
}


@pytest.mark.asyncio
async def test_register_and_get(api: Api) -> None:
    """A registered revision reads back with its description and register time."""
    await api.call("create_application", applicationName="web")
    await api.call(
        "register_application_revision",
        applicationName="web",
        revision=S3_REVISION,
        description="first",
    )
    answer = await api.call("get_application_revision", applicationName="web", revision=S3_REVISION)
    assert answer["applicationName"] == "web"
    assert answer["revision"] == S3_REVISION
    assert answer["revisionInfo"]["description"] == "first"
    assert answer["revisionInfo"]["deploymentGroups"] == []
    assert "firstUsedTime" not in answer["revisionInfo"]


@pytest.mark.asyncio
async def test_unregistered_revision(api: Api) -> None:
    """GetApplicationRevision of an unknown revision is RevisionDoesNotExistException."""
    await api.call("create_application", applicationName="web")
    error = await api.error("get_application_revision", applicationName="web", revision=GITHUB)
    assert error.response["Error"]["Code"] == "RevisionDoesNotExistException"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("revision", "message"),
    [
        (
            {"revisionType": "AppSpecContent", "appSpecContent": {"content": "version: 0.0"}},
            (
                "Revision type AppSpecContent is for Lambda and Amazon ECS deployments; this "
                "server deploys to on-premises instances (compute platform Server). Use an S3 "
                "revision (or `codedeploy push`, which uploads to the server's bundle store), a "
                "gitHubLocation (GitHub, Bitbucket, CodeCommit or any git URL) or a String bundle "
                "URL with its sha256."
            ),
        ),
        (
            {
                "revisionType": "S3",
                "s3Location": {"bucket": "releases", "key": "a.yaml", "bundleType": "YAML"},
            },
            "s3Location.bundleType must be tar, tgz or zip for on-premises deployments, got 'YAML'.",
        ),
        (
            {"revisionType": "S3", "s3Location": {"bucket": "releases", "bundleType": "zip"}},
            "An S3 revision needs s3Location.bucket and s3Location.key.",
        ),
        (
            {
                "revisionType": "S3",
                "s3Location": {
                    "bucket": "codedeploy-server-bundles",
                    "key": "x.zip",
                    "bundleType": "zip",
                },
            },
            (
                "In the server's bundle store (codedeploy-server-bundles) the key is the bundle's "
                "sha256 (64 lower-case hex digits), got 'x.zip'. Upload with `codedeploy push`."
            ),
        ),
        (
            {
                "revisionType": "GitHub",
                "gitHubLocation": {"repository": "acme", "commitId": "abc1234"},
            },
            (
                "gitHubLocation.repository must be 'owner/repository' (GitHub), "
                "'bitbucket:WORKSPACE/REPOSITORY', 'codecommit:REPOSITORY' or "
                "'codecommit:REGION/REPOSITORY', or 'git+URL' (git+https://, git+ssh://, "
                "git+file:///), got 'acme'."
            ),
        ),
        (
            {
                "revisionType": "GitHub",
                "gitHubLocation": {"repository": "acme/web", "commitId": "main"},
            },
            "gitHubLocation.commitId must be a commit SHA (7 to 64 hex digits), got 'main'.",
        ),
    ],
)
async def test_refused_revisions(api: Api, revision: dict[str, Any], message: str) -> None:
    """Revisions this server cannot deploy are InvalidRevisionException saying why."""
    await api.call("create_application", applicationName="web")
    error = await api.error(
        "register_application_revision", applicationName="web", revision=revision
    )
    assert error.response["Error"]["Code"] == "InvalidRevisionException"
    assert error.response["Error"]["Message"] == message


@pytest.mark.asyncio
async def test_description_too_long(api: Api) -> None:
    """A 257-character description is DescriptionTooLongException."""
    await api.call("create_application", applicationName="web")
    error = await api.error(
        "register_application_revision",
        applicationName="web",
        revision=S3_REVISION,
        description="x" * 257,
    )
    assert error.response["Error"]["Code"] == "DescriptionTooLongException"


@pytest.mark.asyncio
async def test_list_filters_and_sorting(api: Api) -> None:
    """Bucket/prefix filters select S3 revisions; registerTime sorting goes both ways."""
    await api.call("create_application", applicationName="web")
    for revision in (
        s3("app/v1.zip"),
        s3("app/v2.zip"),
        s3("other/v1.zip"),
        s3("k.zip", "archive"),
        GITHUB,
    ):
        await api.call("register_application_revision", applicationName="web", revision=revision)
    listed = await api.call(
        "list_application_revisions", applicationName="web", sortBy="registerTime"
    )
    assert listed["revisions"] == [
        s3("app/v1.zip"),
        s3("app/v2.zip"),
        s3("other/v1.zip"),
        s3("k.zip", "archive"),
        GITHUB,
    ]
    listed = await api.call(
        "list_application_revisions",
        applicationName="web",
        s3Bucket="releases",
        s3KeyPrefix="app/",
        sortBy="registerTime",
        sortOrder="descending",
    )
    assert listed["revisions"] == [s3("app/v2.zip"), s3("app/v1.zip")]
    error = await api.error("list_application_revisions", applicationName="web", s3KeyPrefix="app/")
    assert error.response["Error"]["Code"] == "BucketNameFilterRequiredException"
    error = await api.error("list_application_revisions", applicationName="web", sortBy="name")
    assert error.response["Error"]["Code"] == "InvalidSortByException"


@pytest.mark.asyncio
async def test_deployment_registers_and_marks_use(api: Api) -> None:
    """CreateDeployment registers its revision and records the group and use times."""
    await api.group()
    deployment_id = await api.deploy(revision=s3("app/v9.zip"))
    info = (
        await api.call("get_application_revision", applicationName="web", revision=s3("app/v9.zip"))
    )["revisionInfo"]
    assert info["deploymentGroups"] == ["prod"]
    assert info["firstUsedTime"] == info["lastUsedTime"]
    await api.set_status(deployment_id, "Succeeded")
    await api.call(
        "register_application_revision", applicationName="web", revision=s3("app/v10.zip")
    )
    included = await api.call(
        "list_application_revisions", applicationName="web", deployed="include"
    )
    assert included["revisions"] == [s3("app/v9.zip")]
    excluded = await api.call(
        "list_application_revisions", applicationName="web", deployed="exclude"
    )
    assert excluded["revisions"] == [s3("app/v10.zip")]
    by_use = await api.call(
        "list_application_revisions", applicationName="web", sortBy="firstUsedTime"
    )
    assert by_use["revisions"] == [s3("app/v9.zip"), s3("app/v10.zip")]


@pytest.mark.asyncio
async def test_batch_get(api: Api) -> None:
    """BatchGetApplicationRevisions returns registered ones and names the others."""
    await api.call("create_application", applicationName="web")
    await api.call("register_application_revision", applicationName="web", revision=GITHUB)
    bundle = s3(BUNDLE_SHA, "codedeploy-server-bundles")
    answer = await api.call(
        "batch_get_application_revisions", applicationName="web", revisions=[GITHUB, bundle]
    )
    assert [r["revisionLocation"] for r in answer["revisions"]] == [GITHUB]
    assert answer["errorMessage"].startswith("Revisions not registered: ")
    assert BUNDLE_SHA in answer["errorMessage"]
