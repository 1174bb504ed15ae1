"""`describe_revision`: one line per RevisionLocation form, the server's extra forms included."""

from __future__ import annotations

from typing import Any

import pytest

from codedeploy_server.opcli.model import describe_revision

SHA = "d281a242035724e53bc93ba46e5bc6376c0f54d4"
DIGEST = "ab" * 32


def github(repository: str) -> dict[str, Any]:
    return {"revisionType": "GitHub", "gitHubLocation": {"repository": repository, "commitId": SHA}}


@pytest.mark.parametrize(
    ("revision", "text"),
    [
        (
            {
                "revisionType": "S3",
                "s3Location": {"bucket": "b", "key": "app.zip", "bundleType": "zip", "eTag": "e"},
            },
            "s3://b/app.zip (zip, eTag e)",
        ),
        (github("shop/web"), f"GitHub shop/web@{SHA}"),
        (github("bitbucket:team/shop"), f"Bitbucket team/shop@{SHA}"),
        (github("codecommit:eu-west-1/shop"), f"CodeCommit eu-west-1/shop@{SHA}"),
        (
            github("git+https://git.example.com/shop.git"),
            f"git https://git.example.com/shop.git@{SHA}",
        ),
        (
            {
                "revisionType": "String",
                "string": {"content": "https://h/app.tgz", "sha256": DIGEST},
            },
            f"https://h/app.tgz (sha256 {DIGEST})",
        ),
        (
            {"revisionType": "AppSpecContent", "appSpecContent": {"sha256": DIGEST}},
            f"AppSpecContent (sha256 {DIGEST})",
        ),
        ({}, None),
    ],
)
def test_each_form_reads_as_one_line(revision: dict[str, Any], text: str | None) -> None:
    assert describe_revision(revision) == text
