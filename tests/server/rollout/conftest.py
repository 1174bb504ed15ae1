"""The rollout engine with everything real: the store (SQLite and PostgreSQL), a private
Mosquitto, the real JobsService, and real `codedeploy-agent run` processes, one per instance.

`Fleet` writes applications, groups, instances and deployments the way the API does
(server.md: `deployments` + `deployment_targets` rows in one transaction, status `Created`,
every lifecycle event `Pending`, `position` from `health.scheduling_order`), then calls the
engine's `deployment_created`, as the API does.

Revisions are S3 locations `s3://test-bundles/<name>.tgz`; `LocalResolver` hands the agents
the bundle built under the test's directory as a local file (the engine does not care how a
location becomes a job-document revision; revisions.py is tested on its own with the bundle
store and moto).
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from codedeploy_agent.protocol.signing import load_private_key
from codedeploy_agent.spec import BundleType, LocalRevision, Revision, RevisionType
from codedeploy_server.jobs import JobsService
from codedeploy_server.mqtt import ServerMqtt
from codedeploy_server.revisions import Resolver
from codedeploy_server.rollout import health
from codedeploy_server.rollout.document import LIFECYCLE_EVENTS
from codedeploy_server.rollout.engine import RolloutEngine
from codedeploy_server.rollout.events import pending_events
from codedeploy_server.store import Store, dumps, loads, open_store
from tests.daemon.conftest import KEY_ID, Agent
from tests.fakes.broker_fixtures import mosquitto, mosquitto_factory  # noqa: F401 - fixtures
from tests.fakes.brokers import MosquittoBroker
from tests.fakes.bundles import make_keys, make_tgz, write_bundle

TOPIC_ROOT = "codedeploy/things"
APP = "shop"
GROUP = "web"
BUCKET = "test-bundles"
#: A hook that fails on one host only: the script's own path names the agent's directory.
FAIL_ON = 'case "$0" in */{thing}/*) echo "{thing} is unhealthy" >&2; exit 3;; esac\n'


def s3_location(name: str) -> dict[str, Any]:
    """The RevisionLocation of bundle `name`."""
    return {
        "revisionType": "S3",
        "s3Location": {"bucket": BUCKET, "key": f"{name}.tgz", "bundleType": "tgz"},
    }


class LocalResolver:
    """Resolves `s3://test-bundles/<name>.tgz` to the local bundle file `<directory>/<name>.tgz`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.calls: list[dict[str, Any]] = []

    async def resolve(
        self, location: Mapping[str, Any], *, expires_at: float, now: float
    ) -> Revision:
        """A LocalRevision for the bundle the location names."""
        self.calls.append({"location": dict(location), "expires_at": expires_at, "now": now})
        key = location["s3Location"]["key"]
        return LocalRevision(str(self.directory / key), BundleType.TGZ, RevisionType.LOCAL_FILE)


@dataclass
class Fleet:
    """The test's control plane and agents."""

    base: Path
    database: str
    broker: MosquittoBroker
    private_key: Path
    public_key: Path
    store: Store | None = None
    jobs: JobsService | None = None
    engine: RolloutEngine | None = None
    agents: dict[str, Agent] = field(default_factory=dict)
    resolver: LocalResolver | None = None
    client_id: str = field(default_factory=lambda: f"server-{uuid.uuid4().hex[:8]}")
    engine_options: dict[str, Any] = field(default_factory=dict)

    # --- the control plane ------------------------------------------------------------------

    async def start_server(
        self,
        *,
        server_id: str = "server-1",
        resolver: Resolver | None = None,
        shared_group: str | None = None,
        session_expiry_seconds: int = 3600,
        **options: Any,
    ) -> RolloutEngine:
        """Open the store, start the JobsService and the engine (revisions resolved by
        `LocalResolver` unless `resolver` is given; MQTT 5 shared subscriptions with
        `shared_group`)."""
        self.store = await open_store(self.database)
        mqtt = ServerMqtt(
            endpoint=self.broker.endpoint,
            client_id=self.client_id,
            shared_group=shared_group,
            session_expiry_seconds=session_expiry_seconds,
        )
        self.jobs = JobsService(
            self.store, mqtt, topic_root=TOPIC_ROOT, time_scale=options.pop("time_scale", 60.0)
        )
        await self.jobs.start()
        assert await mqtt.wait_connected(10), mqtt.last_error
        self.resolver = LocalResolver(self.base / "bundles")
        settings: dict[str, Any] = {
            "pickup_deadline_seconds": 60.0,
            "lease_seconds": 2.0,
            "tick_seconds": 0.1,
            **self.engine_options,
            **options,
        }
        self.engine = RolloutEngine(
            self.store,
            self.jobs,
            signing_key=load_private_key(self.private_key),
            key_id=KEY_ID,
            revisions=resolver or self.resolver,
            server_id=server_id,
            **settings,
        )
        await self.engine.start()
        return self.engine

    async def stop_server(self, *, crash: bool = False) -> None:
        """Stop the engine (releasing its leases, or not when `crash`), the JobsService and the
        store."""
        if self.engine is not None:
            if crash:
                # A dead process: nothing finishes, no lease is released.
                tasks = [*self.engine._tasks, *self.engine._spawned]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                assert self.jobs is not None
                self.jobs.remove_listener(self.engine._on_change)
            else:
                await self.engine.stop()
            self.engine = None
        if self.jobs is not None:
            await self.jobs.stop()
            self.jobs = None
        if self.store is not None:
            await self.store.close()
            self.store = None

    # --- agents -----------------------------------------------------------------------------

    def add_agent(self, thing: str, *, start: bool = True) -> Agent:
        """A real agent for `thing`, trusting the server's signing key."""
        agent = Agent(self.base / thing, self.broker.endpoint, thing=thing)
        (agent.base / "keys").mkdir(parents=True, exist_ok=True)
        shutil.copy(self.public_key, agent.base / "keys" / "signing.pub.pem")
        self.agents[thing] = agent
        if start:
            agent.start()
        return agent

    def last_successful(self, thing: str) -> Path | None:
        """The deployment directory `<dg>_last_successful_install` of `thing` points at."""
        agent = self.agents[thing]
        pointers = list(
            (agent.root_dir / "deployment-instructions").glob("*_last_successful_install")
        )
        if not pointers:
            return None
        (pointer,) = pointers
        return Path(pointer.read_text().strip())

    def installed_version(self, thing: str) -> str | None:
        """The VERSION file of the revision `thing` last installed successfully."""
        directory = self.last_successful(thing)
        if directory is None:
            return None
        return (directory / "deployment-archive" / "VERSION").read_text().strip()

    # --- bundles ----------------------------------------------------------------------------

    def bundle(self, name: str, hooks: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Build bundle `name` (a VERSION file, echo hooks unless `hooks` replaces some) and
        return its RevisionLocation."""
        source = self.base / "sources" / name
        scripts = {event: f"echo {event} of {name}\n" for event in HOOKS}
        scripts.update(hooks or {})
        write_bundle(source, scripts, files={"VERSION": f"{name}\n"})
        make_tgz(source, self.base / "bundles" / f"{name}.tgz")
        return s3_location(name)

    # --- rows, as the API writes them -------------------------------------------------------

    def db(self) -> Store:
        assert self.store is not None
        return self.store

    async def create_group(
        self,
        instances: list[str],
        *,
        config: str = "CodeDeployDefault.OneAtATime",
        auto_rollback: dict[str, Any] | None = None,
    ) -> str:
        """The application, its group `web` and the registered instances; the group id."""
        now = time.time()
        group_id = str(uuid.uuid4())
        group: dict[str, Any] = {
            "applicationName": APP,
            "deploymentGroupId": group_id,
            "deploymentGroupName": GROUP,
            "deploymentConfigName": config,
            "onPremisesInstanceTagFilters": [
                {"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}
            ],
            "serviceRoleArn": "arn:aws:iam::000000000000:role/CodeDeploy",
            "deploymentStyle": {
                "deploymentType": "IN_PLACE",
                "deploymentOption": "WITHOUT_TRAFFIC_CONTROL",
            },
            "computePlatform": "Server",
        }
        if auto_rollback is not None:
            group["autoRollbackConfiguration"] = auto_rollback
        async with self.db().transaction() as tx:
            await tx.execute(
                "INSERT INTO applications (name, application_id, create_time, doc) "
                "VALUES (?, ?, ?, ?)",
                (APP, str(uuid.uuid4()), now, dumps({"applicationName": APP, "createTime": now})),
            )
            await tx.execute(
                "INSERT INTO deployment_groups (application_name, name, group_id, doc) "
                "VALUES (?, ?, ?, ?)",
                (APP, GROUP, group_id, dumps(group)),
            )
            for name in instances:
                await tx.execute(
                    "INSERT INTO instances (name, registered, register_time, doc) "
                    "VALUES (?, 1, ?, ?)",
                    (name, now, dumps({"instanceName": name, "registerTime": now})),
                )
        return group_id

    async def deploy(
        self,
        revision: dict[str, Any],
        instances: list[str],
        *,
        config: str | None = "CodeDeployDefault.OneAtATime",
        ordered: bool = False,
        **fields: Any,
    ) -> str:
        """Write a deployment of `revision` to `instances` (scheduling order from the health
        table unless `ordered`), then tell the engine; the deployment id."""
        assert self.engine is not None
        deployment_id = "d-" + uuid.uuid4().hex[:9].upper()
        now = time.time()
        async with self.db().transaction() as tx:
            group = await tx.fetchone(
                "SELECT group_id, doc FROM deployment_groups WHERE application_name = ? AND name = ?",
                (APP, GROUP),
            )
            assert group is not None
            group_doc = loads(group["doc"])
            order = (
                instances
                if ordered
                else await health.scheduling_order(
                    tx, group["group_id"], instances, group_doc.get("targetRevision")
                )
            )
            doc: dict[str, Any] = {
                "applicationName": APP,
                "deploymentGroupName": GROUP,
                "deploymentId": deployment_id,
                "revision": revision,
                "status": "Created",
                "createTime": now,
                "creator": "user",
                "ignoreApplicationStopFailures": False,
                "updateOutdatedInstancesOnly": False,
                "deploymentStyle": group_doc["deploymentStyle"],
                "computePlatform": "Server",
                "deploymentOverview": {
                    "Pending": len(order),
                    "InProgress": 0,
                    "Succeeded": 0,
                    "Failed": 0,
                    "Skipped": 0,
                    "Ready": 0,
                },
                "_groupId": group["group_id"],
                **fields,
            }
            if config is not None:
                doc["deploymentConfigName"] = config
            await tx.execute(
                "INSERT INTO deployments (deployment_id, application_name, group_name, status, "
                "create_time, complete_time, owner, lease_until, doc) "
                "VALUES (?, ?, ?, 'Created', ?, NULL, NULL, NULL, ?)",
                (deployment_id, APP, GROUP, now, dumps(doc)),
            )
            for position, name in enumerate(order):
                target = {
                    "deploymentId": deployment_id,
                    "targetId": name,
                    "targetArn": f"arn:aws:codedeploy:us-east-1:000000000000:instance/{name}",
                    "status": "Pending",
                    "lastUpdatedAt": now,
                    "lifecycleEvents": pending_events(LIFECYCLE_EVENTS),
                }
                await tx.execute(
                    "INSERT INTO deployment_targets (deployment_id, target_id, status, position, "
                    "doc) VALUES (?, ?, 'Pending', ?, ?)",
                    (deployment_id, name, position, dumps(target)),
                )
        await self.engine.deployment_created(deployment_id)
        return deployment_id

    async def deployment(self, deployment_id: str) -> dict[str, Any]:
        """The deployment's document."""
        async with self.db().transaction() as tx:
            row = await tx.fetchone(
                "SELECT doc FROM deployments WHERE deployment_id = ?", (deployment_id,)
            )
        assert row is not None, deployment_id
        doc: dict[str, Any] = loads(row["doc"])
        return doc

    async def targets(self, deployment_id: str) -> list[dict[str, Any]]:
        """The deployment's target documents in scheduling order."""
        async with self.db().transaction() as tx:
            rows = await tx.fetchall(
                "SELECT doc FROM deployment_targets WHERE deployment_id = ? ORDER BY position",
                (deployment_id,),
            )
        return [loads(row["doc"]) for row in rows]

    async def group(self) -> dict[str, Any]:
        """The group's document."""
        async with self.db().transaction() as tx:
            row = await tx.fetchone(
                "SELECT doc FROM deployment_groups WHERE application_name = ? AND name = ?",
                (APP, GROUP),
            )
        assert row is not None
        doc: dict[str, Any] = loads(row["doc"])
        return doc

    async def wait_for(
        self,
        deployment_id: str,
        statuses: tuple[str, ...] = ("Succeeded", "Failed", "Stopped"),
        timeout: float = 60.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Poll until the deployment has one of `statuses`; its document."""
        deadline = time.monotonic() + timeout
        while True:
            doc = await self.deployment(deployment_id)
            if doc["status"] in statuses:
                return doc
            if time.monotonic() > deadline:
                outputs = "\n".join(
                    f"--- {t}\n{a.output()[-3000:]}" for t, a in self.agents.items()
                )
                raise AssertionError(
                    f"{deployment_id} is {doc['status']}, not {statuses}: {doc}\n"
                    f"{await self.targets(deployment_id)}\n{outputs}"
                )
            await asyncio.sleep(0.05)

    async def wait_target(
        self,
        deployment_id: str,
        thing: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Poll until `predicate(target doc)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            target = next(t for t in await self.targets(deployment_id) if t["targetId"] == thing)
            if predicate(target):
                return target
            if time.monotonic() > deadline:
                raise AssertionError(f"{thing} of {deployment_id} never matched: {target}")
            await asyncio.sleep(0.05)


#: The hook events a test bundle has scripts for.
HOOKS = ("ApplicationStop", "BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService")


def event_states(target: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, status) of each lifecycle event."""
    return [(e["lifecycleEventName"], e["status"]) for e in target["lifecycleEvents"]]


def span(target: dict[str, Any]) -> tuple[float, float]:
    """When the target's first event started and its last finished event ended."""
    times = [e for e in target["lifecycleEvents"] if "endTime" in e]
    starts = [e["startTime"] for e in target["lifecycleEvents"] if "startTime" in e]
    return min(starts), max(e["endTime"] for e in times)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """The server's signing key pair (agents trust the public half)."""
    return make_keys(tmp_path / "server-keys")


@pytest_asyncio.fixture
async def fleet(
    tmp_path: Path,
    database: str,
    mosquitto: MosquittoBroker,  # noqa: F811 - the fixture imported above
    keys: tuple[Path, Path],
) -> AsyncIterator[Fleet]:
    """A fleet with no agent started yet and the control plane not started."""
    private, public = keys
    result = Fleet(tmp_path, database, mosquitto, private, public)
    try:
        yield result
    finally:
        await result.stop_server()
        for thing, agent in result.agents.items():
            agent.stop()
            print(f"---- agent {thing} ----\n{agent.output()[-5000:]}")
