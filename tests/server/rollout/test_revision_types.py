"""Every revision type of the sources issue, through the control plane: the locations of
api/locations.py resolved into job-document revisions (revisions.py), and real deployments.

- The resolver, in-process: each encoded location becomes the agent's revision, and the job
  document built from it decodes, with the agent's own parser, into that revision again.
- End to end (`codedeploy-server run`, boto3, a real agent on a private Mosquitto): a commit of
  a local git repository (`git+file://`, not the branch head) and the automatic rollback to it,
  which redeploys that commit; a bundle URL on a local HTTP server, and the same URL with a wrong
  sha256, which fails DownloadBundle with the agent's message; a Bitbucket archive (the agent's
  `bitbucket.api_url` pointed at a local server) and a CodeCommit repository (the agent's
  `git.codecommit_url_template` pointed at `git http-backend` on loopback), each checked in the
  job document the agent received and in what it installed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from codedeploy_agent.protocol.jobdoc import (
    IN_PLACE_EVENTS,
    build_job_document,
    parse_job_document,
    to_deployment_spec,
)
from codedeploy_agent.spec import (
    BitbucketRevision,
    BundleType,
    CodeCommitRevision,
    GitHubRevision,
    GitRevision,
    Revision,
    UrlRevision,
)
from codedeploy_server.revisions import RevisionError, RevisionResolver
from tests.fakes.bundles import make_tgz, write_bundle
from tests.server.e2e.conftest import System, system  # noqa: F401 - the fixture
from tests.sources.conftest import LocalServer
from tests.sources.git_server import GitHttpServer, git

NOW = 1_800_000_000.0
SHA1 = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
APP = "shop"
GROUP = "web"


def commit(repository: str, commit_id: str = SHA1) -> dict[str, Any]:
    """A gitHubLocation revision."""
    return {
        "revisionType": "GitHub",
        "gitHubLocation": {"repository": repository, "commitId": commit_id},
    }


def bundle_url(url: str, sha256: str = DIGEST) -> dict[str, Any]:
    """A String revision: a bundle URL and its digest."""
    return {"revisionType": "String", "string": {"content": url, "sha256": sha256}}


# --- the resolver -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_each_location_resolves_to_the_agents_revision() -> None:
    """Each form becomes its job-document revision (CodeCommit without a region in the server's
    region), and the agent's job-document parser gives back the same revision."""
    resolver = RevisionResolver(bundles=None, region="eu-central-1")
    cases: list[tuple[dict[str, Any], Revision, dict[str, Any]]] = [
        (
            commit("acme/shop"),
            GitHubRevision(account="acme", repository="shop", commit_id=SHA1),
            # Default bundle types (tar here, tgz for Bitbucket) are left out.
            {"Account": "acme", "Repository": "shop", "CommitId": SHA1},
        ),
        (
            commit("bitbucket:team/shop"),
            BitbucketRevision(workspace="team", repository="shop", commit_id=SHA1),
            {"Workspace": "team", "Repository": "shop", "CommitId": SHA1},
        ),
        (
            commit("codecommit:shop"),
            CodeCommitRevision(repository="shop", commit_id=SHA1, region="eu-central-1"),
            {"Repository": "shop", "CommitId": SHA1, "Region": "eu-central-1"},
        ),
        (
            commit("codecommit:ap-southeast-2/shop", "abcdef1"),
            CodeCommitRevision(repository="shop", commit_id="abcdef1", region="ap-southeast-2"),
            {"Repository": "shop", "CommitId": "abcdef1", "Region": "ap-southeast-2"},
        ),
        (
            commit("git+ssh://git@git.example.com/team/shop.git"),
            GitRevision(url="ssh://git@git.example.com/team/shop.git", commit_id=SHA1),
            {"Url": "ssh://git@git.example.com/team/shop.git", "CommitId": SHA1},
        ),
        (
            commit("git+file:///srv/git/shop.git"),
            GitRevision(url="file:///srv/git/shop.git", commit_id=SHA1),
            {"Url": "file:///srv/git/shop.git", "CommitId": SHA1},
        ),
        (
            bundle_url("https://downloads.example.com/shop/v1.tar.gz?sig=x", DIGEST.upper()),
            UrlRevision(
                url="https://downloads.example.com/shop/v1.tar.gz?sig=x",
                bundle_type=BundleType.TGZ,
                sha256=DIGEST,
            ),
            {
                "Url": "https://downloads.example.com/shop/v1.tar.gz?sig=x",
                "BundleType": "tgz",
                "Sha256": DIGEST,
            },
        ),
        (
            bundle_url("http://127.0.0.1:8000/shop.zip"),
            UrlRevision(
                url="http://127.0.0.1:8000/shop.zip", bundle_type=BundleType.ZIP, sha256=DIGEST
            ),
            {"Url": "http://127.0.0.1:8000/shop.zip", "BundleType": "zip", "Sha256": DIGEST},
        ),
    ]
    for location, expected, block in cases:
        revision = await resolver.resolve(location, expires_at=NOW + 60, now=NOW)
        assert revision == expected, location
        document = build_job_document(
            deployment_id="d-ABCDEFGHI",
            deployment_group_id="11111111-2222-3333-4444-555555555555",
            deployment_group_name=GROUP,
            application_name=APP,
            revision=revision,
            issued_at=datetime.fromtimestamp(NOW, UTC),
            expires_at=datetime.fromtimestamp(NOW + 60, UTC),
            lifecycle_events=IN_PLACE_EVENTS,
        )
        kind = str(expected.type)
        block_key = {"URL": "UrlRevision"}.get(kind, f"{kind}Revision")
        assert document["Revision"] == {"RevisionType": kind, block_key: block}
        assert to_deployment_spec(parse_job_document(document)).revision == expected


@pytest.mark.asyncio
async def test_locations_written_around_the_api_are_invalid_revisions() -> None:
    """A malformed location that reached the engine some other way (the API refuses them) fails
    the deployment with INVALID_REVISION and the API's message; `codecommit:REPO` needs a
    region from somewhere."""
    cases = {
        "gitHubLocation.repository 'bitbucket:team' must be 'bitbucket:WORKSPACE/REPOSITORY'": (
            commit("bitbucket:team")
        ),
        "names no region and this server has none configured: use "
        "'codecommit:REGION/REPOSITORY' or set region in the server config.": commit(
            "codecommit:shop"
        ),
        "string.sha256 must be the bundle's SHA-256": bundle_url(
            "https://downloads.example.com/shop.tgz", "nope"
        ),
        "The String revision has no string.": {"revisionType": "String"},
    }
    resolver = RevisionResolver(bundles=None, region=None)
    for message, location in cases.items():
        with pytest.raises(RevisionError) as caught:
            await resolver.resolve(location, expires_at=NOW + 60, now=NOW)
        assert caught.value.code == "INVALID_REVISION"
        assert message in str(caught.value)


# --- end to end ---------------------------------------------------------------------------------


def record_hook(log: Path, event: str) -> str:
    """A hook appending `<host> <event> <BUNDLE_COMMIT or -> <VERSION>` to `log`."""
    return f'echo "$HOST_NAME {event} ${{BUNDLE_COMMIT:--}} $(cat VERSION)" >> {log}\n'


def write_revision(root: Path, version: str, log: Path, *, validate: str | None = None) -> Path:
    """A bundle in `root` whose hooks log to `log`, VERSION = `version`; `validate` replaces the
    ValidateService hook."""
    hooks = {event: record_hook(log, event) for event in ("AfterInstall", "ValidateService")}
    if validate is not None:
        hooks["ValidateService"] = validate
    return write_bundle(root, hooks, files={"VERSION": f"{version}\n"})


def git_repository(bare: Path, log: Path, versions: dict[str, str | None]) -> dict[str, str]:
    """A bare repository at `bare` with one commit per version (in order, the last one the
    branch head), each a bundle of `write_revision`; the commit ids by version."""
    work = bare.parent / f"{bare.name}-work"
    work.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    commits: dict[str, str] = {}
    for version, validate in versions.items():
        write_revision(work, version, log, validate=validate)
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "-m", f"version {version}", cwd=work)
        commits[version] = git("rev-parse", "HEAD", cwd=work)
    git("clone", "--quiet", "--bare", str(work), str(bare))
    return commits


def setup(system: System, *, auto_rollback: bool = False) -> str:  # noqa: F811
    """Application `shop`, web-1 registered and tagged, group `web` by tag; the group id."""
    client = system.client
    client.create_application(applicationName=APP, computePlatform="Server")
    system.register_instances("web-1")
    extra: dict[str, Any] = {}
    if auto_rollback:
        extra["autoRollbackConfiguration"] = {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]}
    client.create_deployment_group(
        applicationName=APP,
        deploymentGroupName=GROUP,
        onPremisesInstanceTagFilters=[{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        serviceRoleArn="arn:aws:iam::000000000000:role/codedeploy",
        **extra,
    )
    group = client.get_deployment_group(applicationName=APP, deploymentGroupName=GROUP)
    return str(group["deploymentGroupInfo"]["deploymentGroupId"])


def deploy(system: System, revision: dict[str, Any]) -> str:  # noqa: F811
    """CreateDeployment of `revision` through boto3; the deployment id."""
    answer = system.client.create_deployment(
        applicationName=APP, deploymentGroupName=GROUP, revision=revision
    )
    return str(answer["deploymentId"])


def wait(system: System, deployment_id: str, timeout: float = 90) -> dict[str, Any]:  # noqa: F811
    """The deployment once it ended."""
    deadline = time.monotonic() + timeout
    while True:
        info = system.client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        if info["status"] in ("Succeeded", "Failed", "Stopped"):
            return dict(info)
        if time.monotonic() > deadline:
            raise AssertionError(f"{deployment_id} still {info['status']}: {info}")
        time.sleep(0.3)


def job_revision(system: System, deployment_id: str) -> dict[str, Any]:  # noqa: F811
    """The `Revision` block of the job document the server queued for the deployment's
    instances (its row in the server's database), after checking that the agent's own parser
    accepts the whole document."""
    database = system.server.base / "state.db"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
        (doc,) = connection.execute(
            "SELECT doc FROM deployments WHERE deployment_id = ?", (deployment_id,)
        ).fetchone()
    document = json.loads(doc)["_jobDocument"]
    parse_job_document(document)
    revision: dict[str, Any] = document["Revision"]
    return revision


def installed_version(system: System, group_id: str) -> str:  # noqa: F811
    """The VERSION of the revision web-1 last installed successfully."""
    current = system.last_successful("web-1", group_id)
    assert current is not None
    return (current / "deployment-archive" / "VERSION").read_text().strip()


def log_lines(log: Path, event: str) -> list[list[str]]:
    """The `record_hook` lines of `event`, split."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [line.split() for line in lines if line.split()[1] == event]


@pytest.mark.broker
@pytest.mark.slow
def test_git_commit_deployment_and_rollback(system: System, tmp_path: Path) -> None:  # noqa: F811
    """A commit of a local git repository (not the branch head) deploys through
    `git+file://`; a later commit fails ValidateService and the automatic rollback redeploys the
    first commit: the job document names it and the agent runs it (BUNDLE_COMMIT)."""
    log = tmp_path / "hooks.log"
    repository = tmp_path / "git" / "shop.git"
    broken = 'echo "version 2 does not answer" >&2\nexit 1\n'
    commits = git_repository(repository, log, {"1": None, "2": broken, "3": None})
    system.start_agents("web-1")
    group_id = setup(system, auto_rollback=True)
    good = commit(f"git+file://{repository}", commits["1"])
    bad = commit(f"git+file://{repository}", commits["2"])

    first = wait(system, deploy(system, good))
    assert first["status"] == "Succeeded", first
    assert first["revision"] == good
    assert job_revision(system, first["deploymentId"]) == {
        "RevisionType": "Git",
        "GitRevision": {"Url": f"file://{repository}", "CommitId": commits["1"]},
    }
    assert installed_version(system, group_id) == "1"
    assert log_lines(log, "ValidateService") == [["web-1", "ValidateService", commits["1"], "1"]]
    registered = system.client.get_application_revision(applicationName=APP, revision=good)
    assert registered["revision"] == good
    assert registered["revisionInfo"]["deploymentGroups"] == [GROUP]

    failed = wait(system, deploy(system, bad))
    assert failed["status"] == "Failed"
    rollback = wait(system, failed["rollbackInfo"]["rollbackDeploymentId"])
    assert rollback["status"] == "Succeeded", rollback
    assert rollback["creator"] == "codeDeployRollback"
    assert rollback["revision"] == good
    assert job_revision(system, rollback["deploymentId"])["GitRevision"] == {
        "Url": f"file://{repository}",
        "CommitId": commits["1"],
    }
    assert installed_version(system, group_id) == "1"
    assert log_lines(log, "AfterInstall")[-1] == ["web-1", "AfterInstall", commits["1"], "1"]
    listed = system.client.list_application_revisions(applicationName=APP, sortBy="registerTime")
    assert listed["revisions"] == [good, bad]


@pytest.mark.broker
@pytest.mark.slow
def test_bundle_url_deployment(system: System, tmp_path: Path) -> None:  # noqa: F811
    """A String revision: the agent downloads the URL from a local HTTP server and checks its
    sha256; with a wrong sha256 the deployment fails at DownloadBundle with the agent's message."""
    log = tmp_path / "hooks.log"
    body = make_tgz(write_revision(tmp_path / "v1", "1", log), tmp_path / "shop-1.tgz").read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    with_server = LocalServer().start()
    try:
        url = with_server.serve_bytes("/releases/shop-1.tgz", body)
        system.start_agents("web-1")
        group_id = setup(system)
        good = bundle_url(url, digest)
        done = wait(system, deploy(system, good))
        assert done["status"] == "Succeeded", done
        assert done["revision"] == good
        assert job_revision(system, done["deploymentId"]) == {
            "RevisionType": "URL",
            "UrlRevision": {"Url": url, "BundleType": "tgz", "Sha256": digest},
        }
        assert installed_version(system, group_id) == "1"
        assert len(with_server.requests_to("/releases/shop-1.tgz")) >= 1

        wrong = hashlib.sha256(b"another bundle").hexdigest()
        failed = wait(system, deploy(system, bundle_url(url, wrong)))
        assert failed["status"] == "Failed"
        target = system.client.get_deployment_target(
            deploymentId=failed["deploymentId"], targetId="web-1"
        )["deploymentTarget"]["instanceTarget"]
        events = {e["lifecycleEventName"]: e for e in target["lifecycleEvents"]}
        assert events["DownloadBundle"]["status"] == "Failed"
        message = events["DownloadBundle"]["diagnostics"]["message"]
        assert f"its SHA-256 is {digest} but {wrong} was expected" in message, message
        assert events["Install"]["status"] == "Skipped"
        assert installed_version(system, group_id) == "1"
    finally:
        with_server.stop()


@pytest.mark.broker
@pytest.mark.slow
def test_bitbucket_and_codecommit_deployments(system: System, tmp_path: Path) -> None:  # noqa: F811
    """`bitbucket:team/shop` reaches the agent as a BitbucketRevision (fetched from a local
    server standing in for Bitbucket Cloud's archive URLs) and `codecommit:shop` as a
    CodeCommitRevision in the server's region (cloned from `git http-backend` with the agent's
    CodeCommit Git credentials); both install what they name."""
    log = tmp_path / "hooks.log"
    top = tmp_path / "archive" / f"team-shop-{SHA1[:12]}"
    body = make_tgz(write_revision(top, "bb", log), tmp_path / "bb.tgz").read_bytes()
    archive_path = f"/team/shop/get/{SHA1}.tar.gz"
    codecommit_root = tmp_path / "codecommit"
    commits = git_repository(
        codecommit_root / "us-east-1" / "shop.git", log, {"cc1": None, "cc2": None}
    )
    (tmp_path / "cc-password").write_text("s3cret\n")
    bitbucket = LocalServer().start()
    codecommit = GitHttpServer(
        codecommit_root,
        authorize=lambda user, password, _path: (user, password) == ("deployer", "s3cret"),
    ).start()
    try:
        bitbucket.serve_bytes(archive_path, body)
        system.agents["web-1"].extra.update(
            bitbucket={"api_url": f"{bitbucket.url}/2.0"},
            git={
                "codecommit_url_template": (
                    f"http://127.0.0.1:{codecommit.port}/{{region}}/{{repository}}.git"
                ),
                "codecommit_username": "deployer",
                "codecommit_password_file": str(tmp_path / "cc-password"),
            },
        )
        system.start_agents("web-1")
        group_id = setup(system)

        from_bitbucket = commit("bitbucket:team/shop")
        done = wait(system, deploy(system, from_bitbucket))
        assert done["status"] == "Succeeded", done
        assert job_revision(system, done["deploymentId"]) == {
            "RevisionType": "Bitbucket",
            "BitbucketRevision": {
                "Workspace": "team",
                "Repository": "shop",
                "CommitId": SHA1,
            },
        }
        assert installed_version(system, group_id) == "bb"
        assert len(bitbucket.requests_to(archive_path)) >= 1
        assert log_lines(log, "ValidateService")[-1] == ["web-1", "ValidateService", SHA1, "bb"]

        from_codecommit = commit("codecommit:shop", commits["cc1"])
        done = wait(system, deploy(system, from_codecommit))
        assert done["status"] == "Succeeded", done
        assert job_revision(system, done["deploymentId"]) == {
            "RevisionType": "CodeCommit",
            "CodeCommitRevision": {
                "Repository": "shop",
                "CommitId": commits["cc1"],
                "Region": "us-east-1",  # the server's region: its config sets none
            },
        }
        assert installed_version(system, group_id) == "cc1"
        served = [r for r in codecommit.requests if r.status == 200]
        assert served, codecommit.requests
        assert all(r.path.startswith("/us-east-1/shop.git/") for r in served)
        assert {r.user for r in served} == {"deployer"}
        assert log_lines(log, "ValidateService")[-1] == [
            "web-1",
            "ValidateService",
            commits["cc1"],
            "cc1",
        ]
    finally:
        codecommit.stop()
        bitbucket.stop()
