"""Job documents: decoding every block and every error, expiry, and the server-side builder."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from codedeploy_agent.errors import AgentError, DeploymentSpecError
from codedeploy_agent.protocol.errors import JobRejected, RejectReason
from codedeploy_agent.protocol.jobdoc import (
    EXACTLY_ONE_REVISION,
    IN_PLACE_EVENTS,
    JobDocument,
    accept_job_document,
    build_job_document,
    check_expiry,
    decode_job_document,
    parse_job_document,
    parse_time,
    revision_block,
    spec_revision,
    to_deployment_spec,
)
from codedeploy_agent.protocol.keys import Ed25519PrivateKey
from codedeploy_agent.protocol.signing import sign_document
from codedeploy_agent.spec import (
    BitbucketRevision,
    BundleType,
    CodeCommitRevision,
    DeploymentSpec,
    GitHubRevision,
    GitRevision,
    LocalRevision,
    Revision,
    RevisionType,
    S3Revision,
    UrlRevision,
)

MakeDoc = Callable[..., dict[str, Any]]
SHA = "0123456789abcdef0123456789abcdef01234567"
NOW = datetime(2026, 11, 26, 10, 30, tzinfo=UTC)


def rejected(document: object) -> JobRejected:
    """Decode `document`, expecting an InvalidJobDocument rejection, and return it."""
    with pytest.raises(JobRejected) as info:
        parse_job_document(document)
    assert info.value.reason_code is RejectReason.INVALID_JOB_DOCUMENT
    return info.value


def test_protocol_example_decodes_to_the_expected_spec(document: dict[str, Any]) -> None:
    """PROTOCOL.md's example document becomes this exact DeploymentSpec."""
    doc = parse_job_document(document)
    spec = to_deployment_spec(doc, environment={"DB_PASSWORD": "hunter2"})
    assert spec == DeploymentSpec(
        deployment_id="d-ABCDEFGHI",
        deployment_group_id="5b9c7a8e-1111-2222-3333-444455556666",
        deployment_group_name="web",
        application_name="shop",
        revision=S3Revision(
            bucket="b",
            key="app.zip",
            bundle_type=BundleType.ZIP,
            version="v1",
            etag='"0123abcd"',
            download_url="https://store.example/app.zip?sig=1",
            sha256="ab" * 32,
            size=123,
        ),
        deployment_creator="user",
        deployment_type="IN_PLACE",
        appspec_filename="appspec.yml",
        file_exists_behavior="DISALLOW",
        all_possible_lifecycle_events=tuple(document["AllPossibleLifecycleEvents"]),
        lifecycle_events=IN_PLACE_EVENTS,
        ignore_application_stop_failures=False,
        environment={"DB_PASSWORD": "hunter2"},
    )
    assert doc.issued_at == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert doc.expires_at == datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
    assert doc.environment["DB_PASSWORD"].ssm_parameter == "/shop/db/password"
    assert spec.revision.hook_environment() == {
        "BUNDLE_BUCKET": "b",
        "BUNDLE_KEY": "app.zip",
        "BUNDLE_VERSION": "v1",
        "BUNDLE_ETAG": '"0123abcd"',
    }


def test_minimal_document_gets_the_real_agents_defaults(make_document: MakeDoc) -> None:
    """Without optional keys: creator user, IN_PLACE, appspec.yml, 7 in-place events."""
    doc = parse_job_document(
        make_document(
            DeploymentCreator=None,
            DeploymentType=None,
            AppSpecFilename=None,
            AgentActionOverrides=None,
            AllPossibleLifecycleEvents=None,
            LifecycleEvents=None,
            IgnoreApplicationStopFailures=None,
            Environment=None,
            IssuedAt=None,
            ExpiresAt=None,
        )
    )
    assert (doc.deployment_creator, doc.deployment_type, doc.app_spec_filename) == (
        "user",
        "IN_PLACE",
        "appspec.yml",
    )
    assert doc.lifecycle_events == (
        "ApplicationStop",
        "DownloadBundle",
        "BeforeInstall",
        "Install",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
    )
    assert doc.file_exists_behavior is None
    assert doc.all_possible_lifecycle_events is None
    assert doc.environment == {}
    assert doc.issued_at is None
    assert doc.expires_at is None
    assert not doc.ignore_application_stop_failures


def test_empty_lifecycle_events_count_as_unset(make_document: MakeDoc) -> None:
    """An empty LifecycleEvents list is "not set" and gives the in-place default."""
    assert parse_job_document(make_document(LifecycleEvents=[])).lifecycle_events == (
        IN_PLACE_EVENTS
    )


def test_lifecycle_events_keep_their_order(make_document: MakeDoc) -> None:
    """LifecycleEvents is what the job runs, in the given order, custom names included."""
    events = ["BeforeBlockTraffic", "ApplicationStop", "DownloadBundle", "Install", "MyCheck"]
    doc = parse_job_document(make_document(LifecycleEvents=events, AllPossibleLifecycleEvents=None))
    assert doc.lifecycle_events == tuple(events)


def test_file_exists_behavior_is_upper_cased(make_document: MakeDoc) -> None:
    """FileExistsBehavior is upper-cased but not validated, as the real agent."""
    doc = parse_job_document(
        make_document(AgentActionOverrides={"AgentOverrides": {"FileExistsBehavior": "overWrite"}})
    )
    assert doc.file_exists_behavior == "OVERWRITE"
    odd = make_document(AgentActionOverrides={"AgentOverrides": {"FileExistsBehavior": "maybe"}})
    assert parse_job_document(odd).file_exists_behavior == "MAYBE"


def test_ignore_application_stop_failures_true(make_document: MakeDoc) -> None:
    """IgnoreApplicationStopFailures true reaches the spec."""
    doc = parse_job_document(make_document(IgnoreApplicationStopFailures=True))
    assert to_deployment_spec(
        doc, environment={"DB_PASSWORD": "x"}
    ).ignore_application_stop_failures


# --- DeploymentId ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("arn:aws:codedeploy:us-east-1:123412341234:deployment/d-ABCDEFGHI", "d-ABCDEFGHI"),
        (
            "arn:aws-cn:codedeploy:cn-north-1:1:deployment/12341234-1234-1234-1234-123412341234",
            "12341234-1234-1234-1234-123412341234",
        ),
        ("d-XYZ", "d-XYZ"),
    ],
)
def test_deployment_id_arn_gives_the_part_after_deployment(
    make_document: MakeDoc, value: str, expected: str
) -> None:
    """An ARN DeploymentId is reduced to the id after `deployment/`, as the real agent does."""
    assert parse_job_document(make_document(DeploymentId=value)).deployment_id == expected


def test_arn_without_deployment_resource_is_rejected(make_document: MakeDoc) -> None:
    """An ARN that does not end in deployment/<id> is refused."""
    err = rejected(make_document(DeploymentId="arn:aws:codedeploy:us-east-1:1:application/x"))
    assert str(err) == (
        "DeploymentId 'arn:aws:codedeploy:us-east-1:1:application/x' is an ARN without a "
        "deployment/<id> resource"
    )


@pytest.mark.parametrize("value", ["..", ".", "a/b", "../etc", "arn:aws:cd:r:1:deployment/../x"])
def test_deployment_id_must_be_a_directory_name(make_document: MakeDoc, value: str) -> None:
    """A DeploymentId that could leave the deployment root is refused."""
    err = rejected(make_document(DeploymentId=value))
    assert "must be 1 to 128 letters, digits, '_', '.', ':' or '-'" in str(err)
    assert "(it names a directory under the deployment root)" in str(err)


def test_deployment_group_id_must_be_a_directory_name(make_document: MakeDoc) -> None:
    """DeploymentGroupId is a directory name too."""
    err = rejected(make_document(DeploymentGroupId="../../etc"))
    assert str(err) == (
        "DeploymentGroupId '../../etc' must be 1 to 128 letters, digits, '_', '.', ':' or '-', "
        "starting with a letter or digit (it names a directory under the deployment root)"
    )


# --- required keys, with the real agent's messages ---------------------------------------------


@pytest.mark.parametrize(
    "key", ["DeploymentId", "DeploymentGroupId", "DeploymentGroupName", "ApplicationName"]
)
@pytest.mark.parametrize("value", [None, "", "MISSING"])
def test_missing_identity_keys_use_the_real_agents_message(
    document: dict[str, Any], key: str, value: str | None
) -> None:
    """A key that is absent, null or empty gives `Deployment Spec has no <Key>`."""
    if value == "MISSING":
        del document[key]
    else:
        document[key] = value
    assert str(rejected(document)) == f"Deployment Spec has no {key}"


def test_non_string_identity_key_is_rejected(make_document: MakeDoc) -> None:
    """A DeploymentId that is not a string is refused with its type."""
    err = rejected(make_document(DeploymentId=42))
    assert str(err) == "DeploymentId in Deployment Spec must be a string, got int"


def test_nul_in_a_string_is_rejected(make_document: MakeDoc) -> None:
    """A NUL could never reach a hook's environment, so it is refused up front."""
    err = rejected(make_document(ApplicationName="shop\0"))
    assert str(err) == "ApplicationName in Deployment Spec must not contain a NUL character"


@pytest.mark.parametrize("revision", [None, {}, "MISSING"])
def test_missing_revision(document: dict[str, Any], revision: object) -> None:
    """No Revision gives the real agent's (misspelt) `Must specify a revison`."""
    if revision == "MISSING":
        del document["Revision"]
    else:
        document["Revision"] = revision
    assert str(rejected(document)) == "Must specify a revison"


@pytest.mark.parametrize("source", [None, ""])
def test_missing_revision_source(document: dict[str, Any], source: str | None) -> None:
    """No RevisionType gives `Must specify a revision source`."""
    document["Revision"]["RevisionType"] = source
    assert str(rejected(document)) == "Must specify a revision source"


def test_unknown_revision_type(document: dict[str, Any]) -> None:
    """An unknown RevisionType gives the extended `Exactly one of ...` message."""
    document["Revision"]["RevisionType"] = "FTP"
    assert str(rejected(document)) == (
        "Exactly one of S3Revision, GitHubRevision, BitbucketRevision, CodeCommitRevision, "
        "GitRevision, UrlRevision, or LocalRevision must be specified (unknown RevisionType "
        "'FTP')"
    )


def test_two_revision_blocks_are_rejected(document: dict[str, Any]) -> None:
    """A document with two revision blocks is ambiguous and refused."""
    document["Revision"]["LocalRevision"] = {"Location": "/x", "BundleType": "tar"}
    assert str(rejected(document)) == (f"{EXACTLY_ONE_REVISION} (found LocalRevision, S3Revision)")


# --- every revision block ----------------------------------------------------------------------


def with_revision(make_document: MakeDoc, revision: dict[str, Any]) -> dict[str, Any]:
    """The example document with `Revision` replaced."""
    return make_document(Revision=revision)


@pytest.mark.parametrize(
    ("revision", "expected", "hook_env"),
    [
        (
            {"RevisionType": "S3", "S3Revision": {"Bucket": "b", "Key": "k", "BundleType": "tgz"}},
            S3Revision("b", "k", BundleType.TGZ),
            {"BUNDLE_BUCKET": "b", "BUNDLE_KEY": "k"},
        ),
        (
            {
                "RevisionType": "GitHub",
                "GitHubRevision": {"Account": "acme", "Repository": "shop", "CommitId": SHA},
            },
            GitHubRevision("acme", "shop", SHA, BundleType.TAR),
            {"BUNDLE_COMMIT": SHA},
        ),
        (
            {
                "RevisionType": "GitHub",
                "GitHubRevision": {
                    "Account": "acme",
                    "Repository": "shop.web",
                    "CommitId": SHA,
                    "BundleType": "zip",
                    "OAuthToken": "ignored",
                },
            },
            GitHubRevision("acme", "shop.web", SHA, BundleType.ZIP),
            {"BUNDLE_COMMIT": SHA},
        ),
        (
            {
                "RevisionType": "Bitbucket",
                "BitbucketRevision": {"Workspace": "team", "Repository": "app", "CommitId": SHA},
            },
            BitbucketRevision("team", "app", SHA, BundleType.TGZ),
            {"BUNDLE_COMMIT": SHA},
        ),
        (
            {
                "RevisionType": "CodeCommit",
                "CodeCommitRevision": {
                    "Repository": "app",
                    "CommitId": SHA[:12],
                    "Region": "eu-west-1",
                },
            },
            CodeCommitRevision("app", SHA[:12], "eu-west-1"),
            {"BUNDLE_COMMIT": SHA[:12]},
        ),
        (
            {
                "RevisionType": "Git",
                "GitRevision": {"Url": "https://git.example/app.git", "CommitId": SHA},
            },
            GitRevision("https://git.example/app.git", SHA),
            {"BUNDLE_COMMIT": SHA},
        ),
        (
            {
                "RevisionType": "Git",
                "GitRevision": {"Url": "git@git.example:team/app.git", "CommitId": SHA},
            },
            GitRevision("git@git.example:team/app.git", SHA),
            {"BUNDLE_COMMIT": SHA},
        ),
        (
            {"RevisionType": "Git", "GitRevision": {"Url": "/srv/git/app", "CommitId": SHA}},
            GitRevision("/srv/git/app", SHA),
            {"BUNDLE_COMMIT": SHA},
        ),
        (
            {
                "RevisionType": "URL",
                "UrlRevision": {
                    "Url": "https://dl.example/app.tar",
                    "BundleType": "tar",
                    "Sha256": "AB" * 32,
                },
            },
            UrlRevision("https://dl.example/app.tar", BundleType.TAR, "ab" * 32),
            {},
        ),
        (
            {
                "RevisionType": "Local File",
                "LocalRevision": {"Location": "/tmp/app.zip", "BundleType": "zip"},
            },
            LocalRevision("/tmp/app.zip", BundleType.ZIP, RevisionType.LOCAL_FILE),
            {},
        ),
        (
            {
                "RevisionType": "Local Directory",
                "LocalRevision": {"Location": "/srv/app", "BundleType": "directory"},
            },
            LocalRevision("/srv/app", BundleType.DIRECTORY, RevisionType.LOCAL_DIRECTORY),
            {},
        ),
    ],
    ids=lambda value: value.get("RevisionType", "") if isinstance(value, dict) else "",
)
def test_every_revision_block_decodes(
    make_document: MakeDoc,
    revision: dict[str, Any],
    expected: Revision,
    hook_env: dict[str, str],
) -> None:
    """Each revision block becomes its spec revision with the right hook variables."""
    doc = parse_job_document(with_revision(make_document, revision))
    assert spec_revision(doc.revision) == expected
    assert expected.hook_environment() == hook_env
    # And back: the block the control plane would send decodes to the same revision.
    assert spec_revision(revision_block(expected)) == expected


@pytest.mark.parametrize(
    ("revision", "message"),
    [
        (
            {"RevisionType": "S3", "S3Revision": {"Bucket": "b", "Key": "k"}},
            "S3Revision in Deployment Spec must specify Bucket, Key and BundleType",
        ),
        (
            {"RevisionType": "S3"},
            "S3Revision in Deployment Spec must specify Bucket, Key and BundleType",
        ),
        (
            {"RevisionType": "S3", "S3Revision": {"Bucket": "", "Key": "k", "BundleType": "zip"}},
            "S3Revision in Deployment Spec must specify Bucket, Key and BundleType",
        ),
        (
            {"RevisionType": "S3", "S3Revision": {"Bucket": "b", "Key": "k", "BundleType": "rar"}},
            "BundleType in S3Revision must be tar, tgz or zip",
        ),
        (
            {
                "RevisionType": "S3",
                "S3Revision": {"Bucket": "b", "Key": "k", "BundleType": "directory"},
            },
            "BundleType in S3Revision must be tar, tgz or zip",
        ),
        (
            {"RevisionType": "Local File", "LocalRevision": {"Location": "/x"}},
            "LocalRevision in Deployment Spec must specify Location and BundleType",
        ),
        (
            {"RevisionType": "Local Directory"},
            "LocalRevision in Deployment Spec must specify Location and BundleType",
        ),
        (
            {"RevisionType": "Local File", "LocalRevision": {"Location": "/x", "BundleType": "7z"}},
            "BundleType in LocalRevision must be tar, tgz, zip, or directory",
        ),
        (
            {"RevisionType": "GitHub", "GitHubRevision": {"Account": "a", "Repository": "r"}},
            "GitHubRevision in Deployment Spec must specify Account, Repository and CommitId",
        ),
        (
            {
                "RevisionType": "GitHub",
                "GitHubRevision": {
                    "Account": "a",
                    "Repository": "r",
                    "CommitId": SHA,
                    "BundleType": "tgz",
                },
            },
            "BundleType in GitHubRevision must be tar or zip",
        ),
        (
            {"RevisionType": "Bitbucket", "BitbucketRevision": {"Workspace": "w"}},
            "BitbucketRevision in Deployment Spec must specify Workspace, Repository and CommitId",
        ),
        (
            {
                "RevisionType": "Bitbucket",
                "BitbucketRevision": {
                    "Workspace": "w",
                    "Repository": "r",
                    "CommitId": SHA,
                    "BundleType": "tar",
                },
            },
            "BundleType in BitbucketRevision must be tgz or zip",
        ),
        (
            {"RevisionType": "CodeCommit", "CodeCommitRevision": {"Repository": "r"}},
            "CodeCommitRevision in Deployment Spec must specify Repository, CommitId and Region",
        ),
        (
            {
                "RevisionType": "CodeCommit",
                "CodeCommitRevision": {"Repository": "r", "CommitId": SHA, "Region": "evil.com/"},
            },
            "Region in CodeCommitRevision must be an AWS region such as us-east-1",
        ),
        (
            {"RevisionType": "Git", "GitRevision": {"Url": "https://x/y"}},
            "GitRevision in Deployment Spec must specify Url and CommitId",
        ),
        (
            {"RevisionType": "URL", "UrlRevision": {"Url": "https://x/y", "BundleType": "zip"}},
            "UrlRevision in Deployment Spec must specify Url, BundleType and Sha256",
        ),
        (
            {
                "RevisionType": "URL",
                "UrlRevision": {"Url": "https://x/y", "BundleType": "directory", "Sha256": SHA},
            },
            "BundleType in UrlRevision must be tar, tgz or zip",
        ),
        (
            {
                "RevisionType": "URL",
                "UrlRevision": {"Url": "https://x/y", "BundleType": "zip", "Sha256": "abc"},
            },
            "Sha256 in UrlRevision must be 64 hexadecimal characters",
        ),
        (
            {
                "RevisionType": "URL",
                "UrlRevision": {"Url": "ftp://x/y", "BundleType": "zip", "Sha256": "a" * 64},
            },
            "Url in UrlRevision must be an http:// or https:// URL, got 'ftp://x/y'",
        ),
        (
            {"RevisionType": "Git", "GitRevision": {"Url": "https://x/y", "CommitId": "main"}},
            (
                "CommitId in GitRevision must be a commit SHA (7 to 64 hexadecimal characters), "
                "got 'main'"
            ),
        ),
        (
            {
                "RevisionType": "GitHub",
                "GitHubRevision": {
                    "Account": "a",
                    "Repository": "r",
                    "CommitId": "--upload-pack=x",
                },
            },
            (
                "CommitId in GitHubRevision must be a commit SHA (7 to 64 hexadecimal characters), "
                "got '--upload-pack=x'"
            ),
        ),
        (
            {
                "RevisionType": "GitHub",
                "GitHubRevision": {"Account": "a/../b", "Repository": "r", "CommitId": SHA},
            },
            "Account in GitHubRevision must be a name of letters, digits, '.', '_' and '-'",
        ),
        (
            {"RevisionType": "Git", "GitRevision": {"Url": "ext::sh -c evil", "CommitId": SHA}},
            (
                "Url in GitRevision must be an https://, http://, ssh://, git:// or file:// URL, "
                "an scp-like user@host:path or an absolute path, got 'ext::sh -c evil'"
            ),
        ),
        (
            {"RevisionType": "Git", "GitRevision": {"Url": "--upload-pack=x", "CommitId": SHA}},
            (
                "Url in GitRevision must be an https://, http://, ssh://, git:// or file:// URL, "
                "an scp-like user@host:path or an absolute path, got '--upload-pack=x'"
            ),
        ),
        (
            {
                "RevisionType": "GitHub",
                "S3Revision": {"Bucket": "b", "Key": "k", "BundleType": "zip"},
            },
            "GitHubRevision in Deployment Spec must specify Account, Repository and CommitId",
        ),
        (
            {"RevisionType": "S3", "S3Revision": "b/k.zip"},
            "S3Revision in Deployment Spec must specify Bucket, Key and BundleType",
        ),
        (
            {"RevisionType": "S3", "S3Revision": {"Bucket": 1, "Key": "k", "BundleType": "zip"}},
            "Bucket in S3Revision must be a string, got int",
        ),
        (
            {
                "RevisionType": "Local File",
                "LocalRevision": {"Location": "/x", "BundleType": "zip"},
                "Download": {"Url": "https://x/y"},
            },
            "Revision.Download is only used with S3 revisions, not Local File",
        ),
        (
            {
                "RevisionType": "S3",
                "S3Revision": {"Bucket": "b", "Key": "k", "BundleType": "zip"},
                "Download": {"Url": "https://x/y", "Size": -1},
            },
            "Size in Download must be a non-negative integer (bytes)",
        ),
        (
            {
                "RevisionType": "S3",
                "S3Revision": {"Bucket": "b", "Key": "k", "BundleType": "zip"},
                "Download": {"Sha256": "a" * 64},
            },
            "Download in Revision must specify Url",
        ),
        (
            {
                "RevisionType": "S3",
                "S3Revision": {"Bucket": "b", "Key": "k", "BundleType": "zip"},
                "Download": {"Url": "file:///etc/passwd"},
            },
            "Url in Download must be an http:// or https:// URL, got 'file:///etc/passwd'",
        ),
    ],
)
def test_revision_errors(make_document: MakeDoc, revision: dict[str, Any], message: str) -> None:
    """Each invalid revision block gives its exact message."""
    assert str(rejected(with_revision(make_document, revision))) == message


# --- other keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"Schema": None}, "The job document has no Schema; expected 'codedeploy-agent/job/1'"),
        (
            {"Schema": "codedeploy-agent/job/2"},
            (
                "Unsupported job document Schema 'codedeploy-agent/job/2': this agent reads major "
                "version 1 ('codedeploy-agent/job/1'); upgrade the agent to run this job"
            ),
        ),
        (
            {"Schema": "other/1"},
            "Unsupported job document Schema 'other/1'; this agent reads 'codedeploy-agent/job/1'",
        ),
        (
            {"DeploymentType": "CANARY"},
            "DeploymentType must be IN_PLACE or BLUE_GREEN, got 'CANARY'",
        ),
        (
            {"AppSpecFilename": "../../etc/shadow"},
            (
                "AppSpecFilename '../../etc/shadow' must be a relative path inside the revision "
                "(no leading '/', no '..')"
            ),
        ),
        (
            {"AppSpecFilename": "/etc/shadow"},
            (
                "AppSpecFilename '/etc/shadow' must be a relative path inside the revision "
                "(no leading '/', no '..')"
            ),
        ),
        (
            {"LifecycleEvents": ["Install", "Install"]},
            "LifecycleEvents lists Install more than once",
        ),
        (
            {"LifecycleEvents": ["Install", 3]},
            "LifecycleEvents contains 3, which is not a lifecycle event name",
        ),
        ({"LifecycleEvents": "Install"}, "LifecycleEvents must be a list of lifecycle event names"),
        (
            {"LifecycleEvents": ["Install", "Custom"], "AllPossibleLifecycleEvents": ["Install"]},
            "LifecycleEvents ['Custom'] are not in AllPossibleLifecycleEvents ['Install']",
        ),
        (
            {"IgnoreApplicationStopFailures": "yes"},
            "IgnoreApplicationStopFailures must be true or false",
        ),
        (
            {"AgentActionOverrides": ["OVERWRITE"]},
            "AgentActionOverrides in Deployment Spec must be an object, got list",
        ),
        (
            {"IssuedAt": "2026-11-26 10:00"},
            "IssuedAt '2026-11-26 10:00' is not an RFC 3339 time such as '2026-11-26T10:00:00Z'",
        ),
        (
            {"ExpiresAt": "2026-11-26T10:00:00"},
            (
                "ExpiresAt '2026-11-26T10:00:00' is not an RFC 3339 time such as "
                "'2026-11-26T10:00:00Z'"
            ),
        ),
        (
            {"ExpiresAt": "2026-02-30T10:00:00Z"},
            (
                "ExpiresAt '2026-02-30T10:00:00Z' is not an RFC 3339 time such as "
                "'2026-11-26T10:00:00Z'"
            ),
        ),
        (
            {"ExpiresAt": "2026-11-26T09:00:00Z"},
            "ExpiresAt (2026-11-26T09:00:00Z) must be later than IssuedAt (2026-11-26T10:00:00Z)",
        ),
        (
            {"Environment": {"1BAD": {"SsmParameter": "/x"}}},
            (
                "Environment name '1BAD' is not a valid environment variable name (letters, digits "
                "and '_', not starting with a digit)"
            ),
        ),
        (
            {"Environment": {"DEPLOYMENT_ID": {"SsmParameter": "/x"}}},
            "Environment name 'DEPLOYMENT_ID' is set by the agent for every hook",
        ),
        (
            {"Environment": {"TOKEN": "/x"}},
            'Environment entry TOKEN must be {"SsmParameter": "<parameter name>"}',
        ),
        (
            {"Environment": {"TOKEN": {"SsmParameter": "/x", "Region": "us-east-1"}}},
            'Environment entry TOKEN must be {"SsmParameter": "<parameter name>"}',
        ),
        (
            {"Environment": {"TOKEN": {"SsmParameter": ""}}},
            'Environment entry TOKEN must be {"SsmParameter": "<parameter name>"}',
        ),
        (
            {"Signature": "abc"},
            "Signature must be an object with string Algorithm, KeyId and Value",
        ),
    ],
)
def test_document_errors(make_document: MakeDoc, changes: dict[str, Any], message: str) -> None:
    """Each invalid top-level key gives its exact message."""
    assert str(rejected(make_document(**changes))) == message


@pytest.mark.parametrize(
    "schema", ["codedeploy-agent/job/1", "codedeploy-agent/job/1.0", "codedeploy-agent/job/1.7"]
)
def test_minor_schema_versions_are_accepted(make_document: MakeDoc, schema: str) -> None:
    """Minor versions of major 1 only add optional keys and are accepted."""
    assert parse_job_document(make_document(Schema=schema)).schema == schema


def test_unknown_keys_are_ignored(make_document: MakeDoc) -> None:
    """Keys a newer control plane adds are ignored (forward compatibility)."""
    doc = make_document(FutureKey={"x": [1, 2]}, GitHubAccessToken="never-used")
    assert parse_job_document(doc).deployment_id == "d-ABCDEFGHI"


def test_not_an_object_is_rejected() -> None:
    """A job document that is a list, string or number is refused."""
    assert str(rejected([1, 2])) == "The job document must be a JSON object, got list"
    assert str(rejected("x")) == "The job document must be a JSON object, got str"


def test_invalid_json_bytes_are_rejected() -> None:
    """decode_job_document turns malformed JSON into InvalidJobDocument."""
    with pytest.raises(JobRejected, match=r"^The job document is not valid JSON: ") as info:
        decode_job_document(b'{"Schema": ')
    assert info.value.reason_code is RejectReason.INVALID_JOB_DOCUMENT


def test_decode_job_document_reads_bytes(document: dict[str, Any]) -> None:
    """decode_job_document reads JSON bytes like parse_job_document reads a dict."""
    assert decode_job_document(json.dumps(document).encode()) == parse_job_document(document)


def test_document_over_32_kb_is_rejected(make_document: MakeDoc) -> None:
    """A document over 32,768 bytes (compact JSON) is refused with its size."""
    big = make_document(Padding="x" * 33_000)
    err = rejected(big)
    assert str(err).startswith("The job document is 3")
    assert str(err).endswith(
        " bytes; the limit is 32768 bytes (keep bundles out of the document: reference them by URL)"
    )


def test_document_just_under_32_kb_is_accepted(make_document: MakeDoc) -> None:
    """A document of exactly 32,768 bytes is accepted."""
    doc = make_document(Padding="")
    size = len(msgspec.json.encode(doc))
    doc["Padding"] = "x" * (32 * 1024 - size)
    assert len(msgspec.json.encode(doc)) == 32 * 1024
    parse_job_document(doc)


def test_job_rejected_is_an_agent_error() -> None:
    """JobRejected belongs to our tree, carrying its reason code."""
    err = JobRejected(RejectReason.JOB_EXPIRED, "late")
    assert isinstance(err, DeploymentSpecError)
    assert isinstance(err, AgentError)
    assert (err.reason_code, str(err)) == (RejectReason.JOB_EXPIRED, "late")


# --- times and expiry ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T10:00:00Z", datetime(2026, 11, 26, 10, 0, tzinfo=UTC)),
        ("2026-11-26t10:00:00z", datetime(2026, 11, 26, 10, 0, tzinfo=UTC)),
        ("2026-11-26T12:00:00+02:00", datetime(2026, 11, 26, 10, 0, tzinfo=UTC)),
        ("2026-11-26T10:00:00.123456789Z", datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_parse_time_accepts_rfc3339(text: str, expected: datetime) -> None:
    """RFC 3339 times with Z or an offset parse into UTC."""
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["2026-11-26", "2026-11-26T10:00Z", "20261126T100000Z", ""])
def test_parse_time_refuses_other_iso_forms(text: str) -> None:
    """Forms Python accepts but RFC 3339 does not are refused."""
    with pytest.raises(ValueError, match=r"2026|^$"):
        parse_time(text)


def test_check_expiry_passes_before_expires_at(document: dict[str, Any]) -> None:
    """A document is valid up to and including its ExpiresAt."""
    doc = parse_job_document(document)
    check_expiry(doc, datetime(2026, 11, 26, 11, 0, tzinfo=UTC))


def test_check_expiry_rejects_after_expires_at(document: dict[str, Any]) -> None:
    """After ExpiresAt the job is rejected with JobExpired and both times."""
    doc = parse_job_document(document)
    with pytest.raises(JobRejected) as info:
        check_expiry(doc, datetime(2026, 11, 26, 11, 0, 1, tzinfo=UTC))
    assert info.value.reason_code is RejectReason.JOB_EXPIRED
    assert str(info.value) == (
        "The job document expired at 2026-11-26T11:00:00Z (now 2026-11-26T11:00:01Z); create a "
        "new deployment, and check this host's clock if that time looks wrong"
    )


def test_check_expiry_leeway(document: dict[str, Any]) -> None:
    """A leeway tolerates a small clock skew."""
    doc = parse_job_document(document)
    check_expiry(doc, datetime(2026, 11, 26, 11, 0, 30, tzinfo=UTC), leeway=timedelta(minutes=1))


def test_no_expires_at_never_expires(make_document: MakeDoc) -> None:
    """Without ExpiresAt there is nothing to expire."""
    doc = parse_job_document(make_document(ExpiresAt=None))
    check_expiry(doc, datetime(2100, 1, 1, tzinfo=UTC))


# --- accept_job_document ------------------------------------------------------------------------


def test_accept_checks_the_signature_before_decoding(
    make_document: MakeDoc, private_key: Ed25519PrivateKey
) -> None:
    """An unsigned malformed document is SignatureInvalid, not InvalidJobDocument."""
    trusted = {"cp-1": private_key.public_key()}
    with pytest.raises(JobRejected) as info:
        accept_job_document(make_document(Revision=None), trusted_keys=trusted, now=NOW)
    assert info.value.reason_code is RejectReason.SIGNATURE_INVALID


def test_accept_signed_valid_document(
    document: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    """A signed, valid, unexpired document is accepted and keeps its signature block."""
    signed = sign_document(document, private_key, "cp-1")
    doc = accept_job_document(signed, trusted_keys={"cp-1": private_key.public_key()}, now=NOW)
    assert doc.signature is not None
    assert (doc.signature.algorithm, doc.signature.key_id) == ("Ed25519", "cp-1")


def test_accept_rejects_expired_signed_document(
    document: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    """A well-signed document past ExpiresAt is JobExpired."""
    signed = sign_document(document, private_key, "cp-1")
    with pytest.raises(JobRejected) as info:
        accept_job_document(
            signed,
            trusted_keys={"cp-1": private_key.public_key()},
            now=NOW + timedelta(hours=1),
        )
    assert info.value.reason_code is RejectReason.JOB_EXPIRED


def test_accept_without_trusted_keys_skips_the_signature(document: dict[str, Any]) -> None:
    """With no trusted keys an unsigned document is accepted."""
    assert accept_job_document(document, trusted_keys={}, now=NOW).deployment_id == "d-ABCDEFGHI"


def test_accept_rejects_non_objects() -> None:
    """accept_job_document refuses a non-object before anything else."""
    with pytest.raises(JobRejected, match="must be a JSON object, got list"):
        accept_job_document([], trusted_keys={}, now=NOW)


# --- spec conversion and building ---------------------------------------------------------------


def test_to_deployment_spec_requires_every_secret(document: dict[str, Any]) -> None:
    """The resolved environment must hold exactly the document's names."""
    doc = parse_job_document(document)
    with pytest.raises(ValueError, match="does not match the document's"):
        to_deployment_spec(doc)
    with pytest.raises(ValueError, match="does not match the document's"):
        to_deployment_spec(doc, environment={"DB_PASSWORD": "x", "EXTRA": "y"})


@pytest.mark.parametrize(
    "revision",
    [
        S3Revision("b", "k", BundleType.ZIP, "v1", '"e"', "https://x/y", "cd" * 32, 10),
        GitHubRevision("acme", "shop", SHA),
        BitbucketRevision("team", "app", SHA, BundleType.ZIP),
        CodeCommitRevision("app", SHA, "us-east-1"),
        GitRevision("ssh://git@host/app.git", SHA),
        UrlRevision("https://x/app.tgz", BundleType.TGZ, "ef" * 32),
        LocalRevision("/tmp/a.tar", BundleType.TAR),
        LocalRevision("/srv/app", BundleType.DIRECTORY, RevisionType.LOCAL_DIRECTORY),
    ],
    ids=lambda revision: str(revision.type),
)
def test_build_job_document_round_trips(revision: Revision) -> None:
    """What the control plane builds decodes back into the same spec on the agent."""
    issued = datetime(2026, 11, 26, 10, 0, 0, 999_999, tzinfo=UTC)
    built = build_job_document(
        deployment_id="d-1",
        deployment_group_id="dg-1",
        deployment_group_name="web",
        application_name="shop",
        revision=revision,
        issued_at=issued,
        expires_at=issued + timedelta(hours=1),
        all_possible_lifecycle_events=list(IN_PLACE_EVENTS),
        file_exists_behavior="retain",
        ignore_application_stop_failures=True,
        environment={"TOKEN": "/app/token"},
    )
    assert built["Schema"] == "codedeploy-agent/job/1"
    assert built["IssuedAt"] == "2026-11-26T10:00:00Z"
    assert built["ExpiresAt"] == "2026-11-26T11:00:00Z"
    assert built["Environment"] == {"TOKEN": {"SsmParameter": "/app/token"}}
    assert built["AgentActionOverrides"] == {"AgentOverrides": {"FileExistsBehavior": "RETAIN"}}
    spec = to_deployment_spec(parse_job_document(built), environment={"TOKEN": "t"})
    assert spec.revision == revision
    assert spec.lifecycle_events == IN_PLACE_EVENTS
    assert spec.ignore_application_stop_failures


def test_build_job_document_exact_keys() -> None:
    """A built document uses PROTOCOL.md's key names and leaves unset keys out."""
    built = build_job_document(
        deployment_id="d-1",
        deployment_group_id="dg-1",
        deployment_group_name="web",
        application_name="shop",
        revision=S3Revision("b", "k", BundleType.ZIP, etag='"e"'),
        issued_at=NOW,
        expires_at=None,
    )
    assert built == {
        "Schema": "codedeploy-agent/job/1",
        "DeploymentId": "d-1",
        "DeploymentGroupId": "dg-1",
        "DeploymentGroupName": "web",
        "ApplicationName": "shop",
        "Revision": {
            "RevisionType": "S3",
            "S3Revision": {"Bucket": "b", "Key": "k", "BundleType": "zip", "ETag": '"e"'},
        },
        "LifecycleEvents": list(IN_PLACE_EVENTS),
        "IssuedAt": "2026-11-26T10:30:00Z",
    }


def test_build_job_document_refuses_what_agents_would_reject() -> None:
    """The builder decodes its own output, so an invalid document never leaves the server."""
    with pytest.raises(JobRejected, match=r"DeploymentGroupId '\.\./x' must be"):
        build_job_document(
            deployment_id="d-1",
            deployment_group_id="../x",
            deployment_group_name="web",
            application_name="shop",
            revision=LocalRevision("/x", BundleType.TAR),
            issued_at=NOW,
            expires_at=None,
        )


def test_job_document_to_dict_is_plain_json(document: dict[str, Any]) -> None:
    """JobDocument.to_dict gives lists and strings, and decodes to the same document."""
    doc = parse_job_document(document)
    plain = doc.to_dict()
    assert isinstance(plain["LifecycleEvents"], list)
    assert plain["IssuedAt"] == "2026-11-26T10:00:00Z"
    assert parse_job_document(plain) == doc
    assert isinstance(doc, JobDocument)
