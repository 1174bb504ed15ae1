"""The real API app (`create_api`) served on 127.0.0.1 for the CLI's end-to-end tests.

The server runs in its own thread and event loop (the CLI under test is synchronous boto3), with
a SQLite store, the server's bundle store mounted, and a `ScriptedRollout` as the rollout
engine: it records the API's calls and, standing in for the engine, moves deployments through
the states a test scripts, one step per GetDeployment call (the step is applied before the call
is answered, so poll k of the CLI sees state k, deployment and targets alike).
Steps write the store the way the engine does (server.md: the engine owns the status fields of
`deployments.doc` and `deployment_targets.doc`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from codedeploy_server.api.app import SIGV4_VERIFIER, create_api
from codedeploy_server.bundles import BundleStore, mount
from codedeploy_server.store import Store, dumps, loads, open_store

T = TypeVar("T")
Step = Callable[[Store, str], Awaitable[None]]


@dataclass
class ScriptedRollout:
    """A RolloutControl that records calls and plays scripted steps.

    `steps` are applied one per GetDeployment call (of any deployment), each given the store and
    the id of the deployment created last.
    """

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    stop_answer: str = "Pending"
    created: list[str] = field(default_factory=list)

    async def deployment_created(self, deployment_id: str) -> None:
        """Record it."""
        self.calls.append(("deployment_created", deployment_id))
        self.created.append(deployment_id)

    async def stop_deployment(self, deployment_id: str, auto_rollback_enabled: bool | None) -> str:
        """Record it and answer `stop_answer`."""
        self.calls.append(("stop_deployment", deployment_id, auto_rollback_enabled))
        return self.stop_answer

    async def continue_deployment(self, deployment_id: str, wait_type: str) -> None:
        """Record it."""
        self.calls.append(("continue_deployment", deployment_id, wait_type))

    async def before_get_deployment(self, store: Store) -> None:
        """Apply the next step, if any."""
        if self.steps and self.created:
            await self.steps.pop(0)(store, self.created[-1])


@dataclass
class ApiServer:
    """A running API server: its URL, store, bundle folder and scripted engine."""

    url: str
    store: Store
    bundles: Path
    rollout: ScriptedRollout
    loop: asyncio.AbstractEventLoop

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run `work` on the server's loop (store access) and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, self.loop)
        return future.result(timeout)


class ServerThread:
    """Starts the API in a thread; `stop()` shuts it down and closes the store."""

    def __init__(self, directory: Path, credentials: Mapping[str, str]) -> None:
        self.directory = directory
        self.credentials = dict(credentials)
        self.rollout = ScriptedRollout()
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.server: ApiServer | None = None
        self._thread = threading.Thread(target=self._main, name="api-server", daemon=True)

    def start(self) -> ApiServer:
        """Start serving; the running server."""
        self._thread.start()
        if not self._ready.wait(30) or self.server is None:
            raise RuntimeError(f"the API server did not start: {self._error!r}")
        return self.server

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self.server is not None and self._stopping is not None:
            self.server.loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(30)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        store = await open_store(str(self.directory / "state.db"))
        bundles = self.directory / "bundles"
        bundle_store = BundleStore(bundles, b"0123456789abcdef0123456789abcdef", "http://x")
        app = create_api(
            store,
            credentials=self.credentials,
            rollout=self.rollout,
            bundles_route=lambda a: mount(a, bundle_store, verifier=a[SIGV4_VERIFIER]),
        )
        app.middlewares.append(self._scripted(store))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.server = ApiServer(
            f"http://127.0.0.1:{port}", store, bundles, self.rollout, asyncio.get_running_loop()
        )
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()
            await store.close()

    def _scripted(self, store: Store) -> Any:
        rollout = self.rollout

        @web.middleware
        async def middleware(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if request.headers.get("X-Amz-Target", "").endswith(".GetDeployment"):
                await rollout.before_get_deployment(store)
            return await handler(request)

        return middleware


# --- Steps: what the engine would write ----------------------------------------------------


async def update_deployment(store: Store, deployment_id: str, **changes: Any) -> None:
    """Merge `changes` into the deployment's DeploymentInfo (and its status column)."""
    async with store.transaction() as tx:
        row = await tx.fetchone(
            "SELECT doc FROM deployments WHERE deployment_id = ?", (deployment_id,)
        )
        assert row is not None, deployment_id
        doc = loads(row["doc"])
        doc.update(changes)
        if doc["status"] in ("Succeeded", "Failed", "Stopped"):
            doc.setdefault("completeTime", time.time())
        await tx.execute(
            "UPDATE deployments SET status = ?, doc = ? WHERE deployment_id = ?",
            (doc["status"], dumps(doc), deployment_id),
        )


async def update_target(
    store: Store,
    deployment_id: str,
    target_id: str,
    status: str,
    events: Mapping[str, str] | None = None,
    *,
    diagnostics: Mapping[str, dict[str, str]] | None = None,
) -> None:
    """Set a target's status and some of its lifecycle events' statuses and diagnostics."""
    async with store.transaction() as tx:
        row = await tx.fetchone(
            "SELECT doc FROM deployment_targets WHERE deployment_id = ? AND target_id = ?",
            (deployment_id, target_id),
        )
        assert row is not None, (deployment_id, target_id)
        doc = loads(row["doc"])
        now = time.time()
        doc["status"] = status
        doc["lastUpdatedAt"] = now
        for event in doc["lifecycleEvents"]:
            name = event["lifecycleEventName"]
            if events and name in events:
                event["status"] = events[name]
                if events[name] != "Pending":
                    event.setdefault("startTime", now)
                if events[name] in ("Succeeded", "Failed", "Skipped"):
                    event["endTime"] = now
            if diagnostics and name in diagnostics:
                event["diagnostics"] = diagnostics[name]
        await tx.execute(
            "UPDATE deployment_targets SET status = ?, doc = ? "
            "WHERE deployment_id = ? AND target_id = ?",
            (status, dumps(doc), deployment_id, target_id),
        )


async def copy_as_rollback(store: Store, original: str, rollback_id: str, status: str) -> None:
    """Write a rollback deployment of `original` (its targets too), as the engine does."""
    async with store.transaction() as tx:
        row = await tx.fetchone(
            "SELECT application_name, group_name, doc FROM deployments WHERE deployment_id = ?",
            (original,),
        )
        assert row is not None
        doc = loads(row["doc"])
        doc.update(
            deploymentId=rollback_id,
            status=status,
            creator="codeDeployRollback",
            rollbackInfo={"rollbackTriggeringDeploymentId": original},
            completeTime=time.time(),
        )
        doc.pop("errorInformation", None)
        targets = await tx.fetchall(
            "SELECT target_id, position, doc FROM deployment_targets WHERE deployment_id = ?",
            (original,),
        )
        counts = dict.fromkeys(("Pending", "InProgress", "Succeeded", "Failed", "Skipped"), 0)
        doc["deploymentOverview"] = {**counts, "Ready": 0, status: len(targets)}
        await tx.execute(
            "INSERT INTO deployments (deployment_id, application_name, group_name, status, "
            "create_time, doc) VALUES (?, ?, ?, ?, ?, ?)",
            (
                rollback_id,
                row["application_name"],
                row["group_name"],
                status,
                time.time(),
                dumps(doc),
            ),
        )
        for target in targets:
            tdoc = loads(target["doc"])
            tdoc.update(deploymentId=rollback_id, status=status)
            for event in tdoc["lifecycleEvents"]:
                event["status"] = status
                event.pop("diagnostics", None)
            await tx.execute(
                "INSERT INTO deployment_targets (deployment_id, target_id, status, position, doc) "
                "VALUES (?, ?, ?, ?, ?)",
                (rollback_id, target["target_id"], status, target["position"], dumps(tdoc)),
            )
