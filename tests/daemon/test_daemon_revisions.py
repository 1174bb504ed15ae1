"""The daemon runs job documents whose revision is a git commit (`git http-backend` on
127.0.0.1, pinned to a commit that is not the branch head), a GitHub archive (a local server in
place of api.github.com) and a URL (a local HTTP server): the real agent process, the real
sources, hooks that see BUNDLE_COMMIT, and the job SUCCEEDED."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from codedeploy_agent.protocol.jobdoc import build_job_document
from codedeploy_agent.protocol.messages import JobStatus
from codedeploy_agent.protocol.signing import load_private_key, sign_document
from codedeploy_agent.spec import BundleType, GitHubRevision, GitRevision, Revision, UrlRevision
from tests.daemon.conftest import KEY_ID, THING, Agent
from tests.fakes.bundles import make_tgz, write_bundle
from tests.fakes.jobs_service import FakeJobsService
from tests.sources.conftest import LocalServer
from tests.sources.git_server import GitHttpServer, git

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

#: Deployments here download over loopback: a job ends within seconds unless something hangs.
JOB_TIMEOUT = 60


@pytest.fixture
def web_server() -> Iterator[LocalServer]:
    """A plain HTTP server on 127.0.0.1 (archives, the GitHub API stand-in)."""
    server = LocalServer().start()
    yield server
    server.stop()


def signed(keys: tuple[Path, Path], deployment_id: str, revision: Revision) -> dict[str, Any]:
    """A signed job document deploying `revision` to group dg-web."""
    now = datetime.now(UTC)
    document = build_job_document(
        deployment_id=deployment_id,
        deployment_group_id="dg-web",
        deployment_group_name="web",
        application_name="shop",
        revision=revision,
        issued_at=now,
        expires_at=now + timedelta(hours=1),
    )
    return sign_document(document, load_private_key(keys[0]), KEY_ID)


def downloaded(service: FakeJobsService, job_id: str) -> list[str]:
    """The DownloadBundle outcomes the agent reported for `job_id`."""
    return [
        u.status_details["eventStatus"]
        for u in service.updates(THING, job_id)
        if u.status is JobStatus.IN_PROGRESS
        and u.status_details.get("lifecycleEvent") == "DownloadBundle"
        and "endTime" in u.status_details
    ]


async def test_git_revision_at_a_pinned_commit(
    agent: Agent,
    service: FakeJobsService,
    keys: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """A GitRevision over http to loopback: the agent clones the pinned commit (not the head),
    the hooks of that commit run and see BUNDLE_COMMIT, the job SUCCEEDS."""
    proof = tmp_path / "proof"
    work = write_bundle(
        tmp_path / "work",
        {"ApplicationStart": f'echo "pinned $BUNDLE_COMMIT" > {proof}'},
        files={"app/version.txt": "pinned\n"},
    )
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "the deployed commit", cwd=work)
    commit = git("rev-parse", "HEAD", cwd=work)
    (work / "scripts" / "ApplicationStart.sh").write_text(f"#!/bin/bash\necho head > {proof}\n")
    git("commit", "--quiet", "--all", "-m", "a later commit: the branch head", cwd=work)
    remotes = tmp_path / "remotes"
    git("clone", "--quiet", "--bare", str(work), str(remotes / "shop.git"))
    server = GitHttpServer(remotes).start()
    try:
        service.queue_job(
            THING,
            "job-git",
            signed(keys, "d-GITREV001", GitRevision(server.url("shop.git"), commit)),
        )
        agent.start()
        execution = await service.wait_for_status(
            THING, "job-git", {JobStatus.SUCCEEDED, JobStatus.FAILED}, timeout=JOB_TIMEOUT
        )
    finally:
        server.stop()
    assert execution.status is JobStatus.SUCCEEDED, execution.status_details
    assert proof.read_text() == f"pinned {commit}\n"
    archive = agent.root_dir / "dg-web" / "d-GITREV001" / "deployment-archive"
    assert (archive / "app" / "version.txt").read_text() == "pinned\n"
    assert not (archive / ".git").exists()
    assert downloaded(service, "job-git") == ["Succeeded"]
    assert any(r.path.endswith("/git-upload-pack") for r in server.requests)
    assert service.violations == []


async def test_url_revision_from_a_local_server(
    agent: Agent,
    service: FakeJobsService,
    keys: tuple[Path, Path],
    web_server: LocalServer,
    tmp_path: Path,
) -> None:
    """A UrlRevision (http to loopback, Sha256 checked): the archive is fetched and unpacked,
    its hook runs, the job SUCCEEDS."""
    proof = tmp_path / "proof"
    bundle = write_bundle(
        tmp_path / "bundle", {"ApplicationStart": f'echo "from the url revision" > {proof}'}
    )
    data = make_tgz(bundle, tmp_path / "app.tgz").read_bytes()
    url = web_server.serve_bytes("/releases/app.tgz", data)
    revision = UrlRevision(url, BundleType.TGZ, hashlib.sha256(data).hexdigest())
    service.queue_job(THING, "job-url", signed(keys, "d-URLREV001", revision))
    agent.start()
    execution = await service.wait_for_status(
        THING, "job-url", {JobStatus.SUCCEEDED, JobStatus.FAILED}, timeout=JOB_TIMEOUT
    )
    assert execution.status is JobStatus.SUCCEEDED, execution.status_details
    assert proof.read_text() == "from the url revision\n"
    assert downloaded(service, "job-url") == ["Succeeded"]
    assert web_server.requests_to("/releases/app.tgz")
    assert service.violations == []


async def test_github_revision_through_the_configured_api(
    agent: Agent,
    service: FakeJobsService,
    keys: tuple[Path, Path],
    web_server: LocalServer,
    tmp_path: Path,
) -> None:
    """A GitHubRevision fetched from `github.api_url` (a local stand-in serving the tarball
    with GitHub's `<owner>-<repo>-<sha7>/` top folder): the hooks see BUNDLE_COMMIT and the job
    SUCCEEDS."""
    commit = "4f2c1e8a9b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e"
    proof = tmp_path / "proof"
    files = {
        "appspec.yml": (
            "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n"
            "    - location: scripts/start.sh\n      timeout: 60\n"
        ),
        "scripts/start.sh": f'#!/bin/bash\necho "github $BUNDLE_COMMIT" > {proof}\n',
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, text in files.items():
            content = text.encode()
            info = tarfile.TarInfo(f"octo-shop-{commit[:7]}/{name}")
            info.size, info.mode = len(content), 0o755
            archive.addfile(info, io.BytesIO(content))
    web_server.serve_bytes(f"/repos/octo/shop/tarball/{commit}", buffer.getvalue())
    agent.extra = {"github": {"api_url": web_server.url}}
    revision = GitHubRevision("octo", "shop", commit, BundleType.TAR)
    service.queue_job(THING, "job-github", signed(keys, "d-GHUBREV01", revision))
    agent.start()
    execution = await service.wait_for_status(
        THING, "job-github", {JobStatus.SUCCEEDED, JobStatus.FAILED}, timeout=JOB_TIMEOUT
    )
    assert execution.status is JobStatus.SUCCEEDED, execution.status_details
    assert proof.read_text() == f"github {commit}\n"
    assert downloaded(service, "job-github") == ["Succeeded"]
    [request] = web_server.requests_to(f"/repos/octo/shop/tarball/{commit}")
    assert request.headers["accept"] == "application/vnd.github+json"
    assert service.violations == []
