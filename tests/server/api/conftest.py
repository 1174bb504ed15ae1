"""The API served on 127.0.0.1 (aiohttp's TestServer on a free port) for each store backend,
driven by a real botocore `codedeploy` client (retries off, so each refusal is seen once)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import botocore.session  # type: ignore[import-untyped,unused-ignore]
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from botocore.auth import SigV4Auth  # type: ignore[import-untyped,unused-ignore]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped,unused-ignore]
from botocore.client import BaseClient, Config  # type: ignore[import-untyped,unused-ignore]
from botocore.credentials import Credentials  # type: ignore[import-untyped,unused-ignore]
from botocore.exceptions import ClientError  # type: ignore[import-untyped,unused-ignore]

from codedeploy_server.api import create_api
from codedeploy_server.store import Store, dumps, loads

ACCESS_KEY = "AKIDCODEDEPLOYTEST01"
SECRET_KEY = "cd-test-secret/Key+0123456789abcdefghij"  # noqa: S105 - a test key
CREDENTIALS = {ACCESS_KEY: SECRET_KEY}
REGION = "us-east-1"
ACCOUNT = "123456789012"
USER_ARN = "arn:aws:iam::123456789012:user/host-{}"
ROLE_ARN = "arn:aws:iam::123456789012:role/CodeDeployServiceRole"
BUNDLE_SHA = "a" * 64
S3_REVISION = {
    "revisionType": "S3",
    "s3Location": {"bucket": "releases", "key": "app/v1.zip", "bundleType": "zip"},
}


class RecordingRollout:
    """Records what the API asks of the rollout engine through `RolloutControl`.

    This tests the API's side of the contract (what it calls, when, with which arguments); it
    is not a stand-in for the engine's behaviour, which the rollout tests cover.
    """

    def __init__(self) -> None:
        self.created: list[str] = []
        self.stops: list[tuple[str, bool | None]] = []
        self.continues: list[tuple[str, str]] = []
        self.stop_answer = "Succeeded"

    async def deployment_created(self, deployment_id: str) -> None:
        """Record the call."""
        self.created.append(deployment_id)

    async def stop_deployment(self, deployment_id: str, auto_rollback_enabled: bool | None) -> str:
        """Record the call; answer `stop_answer`."""
        self.stops.append((deployment_id, auto_rollback_enabled))
        return self.stop_answer

    async def continue_deployment(self, deployment_id: str, wait_type: str) -> None:
        """Record the call."""
        self.continues.append((deployment_id, wait_type))


@pytest.fixture(scope="session")
def botocore_session() -> botocore.session.Session:
    """One botocore session: the service model is loaded once for every test."""
    return botocore.session.get_session()


def make_client(
    session: botocore.session.Session,
    url: str,
    *,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    region: str = REGION,
) -> BaseClient:
    """A codedeploy client for `url` that never retries."""
    return session.create_client(
        "codedeploy",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=20),
    )


@dataclass
class Api:
    """A running API and a client for it."""

    client: BaseClient
    url: str
    store: Store
    rollout: RecordingRollout
    session: botocore.session.Session
    clients: list[BaseClient] = field(default_factory=list)

    async def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Call an operation (in a thread: botocore blocks, the server runs on this loop)."""
        method: Callable[..., dict[str, Any]] = getattr(self.client, operation)
        return await asyncio.to_thread(method, **params)

    async def error(self, operation: str, **params: Any) -> ClientError:
        """Call an operation that must fail; the ClientError."""
        with pytest.raises(ClientError) as info:
            await self.call(operation, **params)
        return info.value

    async def register(self, name: str, **tags: str) -> None:
        """Register an on-premises instance and tag it."""
        await self.call(
            "register_on_premises_instance", instanceName=name, iamUserArn=USER_ARN.format(name)
        )
        if tags:
            await self.call(
                "add_tags_to_on_premises_instances",
                instanceNames=[name],
                tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )

    async def group(self, app: str = "web", group: str = "prod", **settings: Any) -> None:
        """Create an application and a deployment group in it."""
        await self.call("create_application", applicationName=app)
        await self.call(
            "create_deployment_group",
            applicationName=app,
            deploymentGroupName=group,
            serviceRoleArn=ROLE_ARN,
            **settings,
        )

    async def deploy(self, app: str = "web", group: str = "prod", **params: Any) -> str:
        """CreateDeployment of S3_REVISION (unless `revision` is given); the deployment id."""
        params.setdefault("revision", S3_REVISION)
        answer = await self.call(
            "create_deployment", applicationName=app, deploymentGroupName=group, **params
        )
        deployment_id: str = answer["deploymentId"]
        return deployment_id

    async def set_status(
        self, deployment_id: str, status: str, *, targets: dict[str, str] | None = None
    ) -> None:
        """Write statuses into the rows as the rollout engine would."""
        async with self.store.transaction() as tx:
            row = await tx.fetchone(
                "SELECT doc FROM deployments WHERE deployment_id = ?", (deployment_id,)
            )
            assert row is not None
            doc = loads(row["doc"])
            doc["status"] = status
            if status in ("Succeeded", "Failed", "Stopped"):
                doc["completeTime"] = doc["createTime"] + 1
            await tx.execute(
                "UPDATE deployments SET status = ?, doc = ? WHERE deployment_id = ?",
                (status, dumps(doc), deployment_id),
            )
            for target, target_status in (targets or {}).items():
                trow = await tx.fetchone(
                    "SELECT doc FROM deployment_targets WHERE deployment_id = ? AND target_id = ?",
                    (deployment_id, target),
                )
                assert trow is not None
                tdoc = loads(trow["doc"])
                tdoc["status"] = target_status
                await tx.execute(
                    "UPDATE deployment_targets SET status = ?, doc = ? "
                    "WHERE deployment_id = ? AND target_id = ?",
                    (target_status, dumps(tdoc), deployment_id, target),
                )


@pytest_asyncio.fixture
async def api(store: Store, botocore_session: botocore.session.Session) -> AsyncIterator[Api]:
    """The API on a free loopback port, over `store` (SQLite and PostgreSQL)."""
    rollout = RecordingRollout()
    app = create_api(
        store, credentials=CREDENTIALS, rollout=rollout, region=REGION, account_id=ACCOUNT
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    try:
        yield Api(make_client(botocore_session, url), url, store, rollout, botocore_session)
    finally:
        await server.close()


def signed_headers(
    url: str,
    body: bytes,
    *,
    target: str | None = None,
    method: str = "POST",
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    region: str = REGION,
    service: str = "codedeploy",
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """Headers botocore's own SigV4 signer puts on a request to `url` with `body`."""
    wanted = {"Content-Type": "application/x-amz-json-1.1", **(headers or {})}
    if target is not None:
        wanted["X-Amz-Target"] = f"CodeDeploy_20141006.{target}"
    request = AWSRequest(method=method, url=url, data=body, headers=wanted)
    SigV4Auth(Credentials(access_key, secret_key), service, region).add_auth(request)
    return dict(request.headers.items())
