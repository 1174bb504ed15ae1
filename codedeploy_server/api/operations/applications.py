"""Applications: Create, Get, List, BatchGet, Update (rename), Delete.

Only the `Server` compute platform exists here (on-premises instances). Deleting an application
deletes its deployment groups and registered revisions; its deployments stay readable by id
(GetDeployment), as a history. Renaming carries the groups, revisions and deployments along; it
is refused while one of the application's deployments is running, because the rollout engine
addresses a running deployment's group by name.
"""

from __future__ import annotations

from typing import Any, Final

from codedeploy_server.api import errors as e
from codedeploy_server.api import queries
from codedeploy_server.api.context import ApiContext, Handler, Params, Result, new_uuid
from codedeploy_server.api.operations.tags import resource_tags
from codedeploy_server.api.paging import paginate
from codedeploy_server.store import Tx, dumps, loads

MAX_APPLICATIONS: Final = 1000
MAX_BATCH: Final = 100


def check_platform(platform: str | None) -> str:
    """`Server` (the default); InvalidComputePlatformException for Lambda/ECS."""
    if platform in (None, "Server"):
        return "Server"
    raise e.InvalidComputePlatformException(
        f"Compute platform {platform} is not supported: this server deploys to on-premises "
        "instances (computePlatform Server)."
    )


async def create_application(ctx: ApiContext, params: Params) -> Result:
    """CreateApplication."""
    name: str = params["applicationName"]
    platform = check_platform(params.get("computePlatform"))
    tags = resource_tags(params.get("tags", []))
    async with ctx.store.transaction() as tx:
        if await tx.fetchone("SELECT name FROM applications WHERE name = ?", (name,)):
            raise e.ApplicationAlreadyExistsException(
                f"Application {name} already exists. Use another name, or deploy with the "
                "existing application."
            )
        count = await tx.fetchone("SELECT COUNT(*) AS n FROM applications")
        if count is not None and int(count["n"]) >= MAX_APPLICATIONS:
            raise e.ApplicationLimitExceededException(
                f"The limit of {MAX_APPLICATIONS} applications was reached. Delete unused "
                "applications first."
            )
        now = ctx.now()
        doc: dict[str, Any] = {
            "applicationId": new_uuid(),
            "applicationName": name,
            "createTime": now,
            "linkedToGitHub": False,
            "computePlatform": platform,
            "_tags": tags,
        }
        await tx.execute(
            "INSERT INTO applications (name, application_id, create_time, doc) VALUES (?, ?, ?, ?)",
            (name, doc["applicationId"], now, dumps(doc)),
        )
    return {"applicationId": doc["applicationId"]}


async def get_application(ctx: ApiContext, params: Params) -> Result:
    """GetApplication."""
    async with ctx.store.snapshot() as tx:
        doc = await queries.application(tx, params["applicationName"])
    return {"application": doc}


async def list_applications(ctx: ApiContext, params: Params) -> Result:
    """ListApplications: names in alphabetical order, 100 a page."""
    async with ctx.store.snapshot() as tx:
        rows = await tx.fetchall("SELECT name FROM applications ORDER BY name")
    page, token = paginate(
        [row["name"] for row in rows], params.get("nextToken"), listing="ListApplications"
    )
    return {"applications": page, "nextToken": token}


async def batch_get_applications(ctx: ApiContext, params: Params) -> Result:
    """BatchGetApplications: every name must exist (ApplicationDoesNotExistException)."""
    names: list[str] = params["applicationNames"]
    if len(names) > MAX_BATCH:
        raise e.BatchLimitExceededException(
            f"The maximum number of names or IDs allowed for this request ({MAX_BATCH}) was "
            f"exceeded: {len(names)} given."
        )
    async with ctx.store.snapshot() as tx:
        infos = [await queries.application(tx, name) for name in dict.fromkeys(names)]
    return {"applicationsInfo": infos}


async def update_application(ctx: ApiContext, params: Params) -> Result:
    """UpdateApplication: rename an application (and everything that refers to it by name)."""
    old = params.get("applicationName")
    if not old:
        raise e.ApplicationNameRequiredException(
            "Value null at 'applicationName' failed to satisfy constraint: Member must not be null"
        )
    new = params.get("newApplicationName")
    async with ctx.store.transaction() as tx:
        doc = await queries.application(tx, old, lock=True)
        if not new or new == old:
            return {}
        if await tx.fetchone("SELECT name FROM applications WHERE name = ?", (new,)):
            raise e.ApplicationAlreadyExistsException(
                f"Application {new} already exists. Choose another new name."
            )
        running = await tx.fetchone(
            "SELECT deployment_id FROM deployments WHERE application_name = ? AND status IN "  # noqa: S608 - placeholders/constants only
            f"({queries.marks(len(queries.ACTIVE_STATUSES))})",
            (old, *queries.ACTIVE_STATUSES),
        )
        if running is not None:
            raise e.InvalidApplicationNameException(
                f"Application {old} cannot be renamed while deployment "
                f"{running['deployment_id']} is running. Wait for it to end (or stop it), then "
                "rename."
            )
        doc["applicationName"] = new
        await tx.execute(
            "UPDATE applications SET name = ?, doc = ? WHERE name = ?", (new, dumps(doc), old)
        )
        await _rename_everywhere(tx, old, new)
    return {}


async def _rename_everywhere(tx: Tx, old: str, new: str) -> None:
    for row in await tx.fetchall(
        "SELECT name, doc FROM deployment_groups WHERE application_name = ?", (old,)
    ):
        group = loads(row["doc"])
        group["applicationName"] = new
        await tx.execute(
            "UPDATE deployment_groups SET application_name = ?, doc = ? "
            "WHERE application_name = ? AND name = ?",
            (new, dumps(group), old, row["name"]),
        )
    await tx.execute(
        "UPDATE revisions SET application_name = ? WHERE application_name = ?", (new, old)
    )
    for row in await tx.fetchall(
        "SELECT deployment_id, doc FROM deployments WHERE application_name = ?", (old,)
    ):
        deployment = loads(row["doc"])
        deployment["applicationName"] = new
        await tx.execute(
            "UPDATE deployments SET application_name = ?, doc = ? WHERE deployment_id = ?",
            (new, dumps(deployment), row["deployment_id"]),
        )


async def delete_application(ctx: ApiContext, params: Params) -> Result:
    """DeleteApplication: idempotent (an unknown name is not an error, as on AWS)."""
    name: str = params["applicationName"]
    async with ctx.store.transaction() as tx:
        await tx.execute("DELETE FROM deployment_groups WHERE application_name = ?", (name,))
        await tx.execute("DELETE FROM revisions WHERE application_name = ?", (name,))
        await tx.execute("DELETE FROM applications WHERE name = ?", (name,))
    return {}


OPERATIONS: Final[dict[str, Handler]] = {
    "CreateApplication": create_application,
    "GetApplication": get_application,
    "ListApplications": list_applications,
    "BatchGetApplications": batch_get_applications,
    "UpdateApplication": update_application,
    "DeleteApplication": delete_application,
}
