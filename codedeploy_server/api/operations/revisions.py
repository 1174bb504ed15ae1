"""Application revisions: Register, Get, List, BatchGet, and the implicit registration that
CreateDeployment does (as on AWS, deploying a revision registers it).

A revision row holds a `GenericRevisionInfo` document (description, deploymentGroups,
firstUsedTime, lastUsedTime, registerTime) and the normalised location under `_location`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from codedeploy_server.api import errors as e
from codedeploy_server.api import queries
from codedeploy_server.api.context import ApiContext, Handler, Params, Result
from codedeploy_server.api.locations import key_of, normalise
from codedeploy_server.api.paging import paginate
from codedeploy_server.store import Tx, dumps, loads

MAX_DESCRIPTION: Final = 256
MAX_BATCH: Final = 25
_GENERIC: Final = (
    "description",
    "deploymentGroups",
    "firstUsedTime",
    "lastUsedTime",
    "registerTime",
)


def check_description(description: str | None) -> str | None:
    """`description` when it is at most 256 characters, else DescriptionTooLongException."""
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise e.DescriptionTooLongException(
            f"The description is too long: {len(description)} characters, the maximum is "
            f"{MAX_DESCRIPTION}."
        )
    return description


async def record_revision(
    tx: Tx,
    application: str,
    location: Mapping[str, Any],
    *,
    now: float,
    description: str | None = None,
    used_by_group: str | None = None,
) -> None:
    """Register (or update) a normalised revision; `used_by_group` marks a deployment of it."""
    key = key_of(location)
    row = await tx.fetchone(
        "SELECT doc FROM revisions WHERE application_name = ? AND revision_key = ?" + tx.for_update,  # noqa: S608 - placeholders/constants only
        (application, key),
    )
    doc: dict[str, Any] = (
        {"registerTime": now, "deploymentGroups": [], "_location": dict(location)}
        if row is None
        else loads(row["doc"])
    )
    if description is not None:
        doc["description"] = description
    if used_by_group is not None:
        doc["deploymentGroups"] = list(dict.fromkeys([*doc["deploymentGroups"], used_by_group]))
        doc.setdefault("firstUsedTime", now)
        doc["lastUsedTime"] = now
    await tx.execute(
        "INSERT INTO revisions (application_name, revision_key, register_time, doc) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (application_name, revision_key) "
        "DO UPDATE SET doc = excluded.doc",
        (application, key, doc["registerTime"], dumps(doc)),
    )


def _generic(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {name: doc[name] for name in _GENERIC if name in doc}


async def register_application_revision(ctx: ApiContext, params: Params) -> Result:
    """RegisterApplicationRevision."""
    description = check_description(params.get("description"))
    location = normalise(params["revision"])
    async with ctx.store.transaction() as tx:
        await queries.application(tx, params["applicationName"])
        await record_revision(
            tx, params["applicationName"], location, now=ctx.now(), description=description
        )
    return {}


async def get_application_revision(ctx: ApiContext, params: Params) -> Result:
    """GetApplicationRevision."""
    application: str = params["applicationName"]
    location = normalise(params["revision"])
    async with ctx.store.snapshot() as tx:
        await queries.application(tx, application)
        row = await tx.fetchone(
            "SELECT doc FROM revisions WHERE application_name = ? AND revision_key = ?",
            (application, key_of(location)),
        )
    if row is None:
        raise e.RevisionDoesNotExistException(
            f"No application revision found for revision {key_of(location)} in application "
            f"{application}. Register it with RegisterApplicationRevision (or deploy it)."
        )
    doc = loads(row["doc"])
    return {
        "applicationName": application,
        "revision": doc["_location"],
        "revisionInfo": _generic(doc),
    }


async def _targets(tx: Tx, application: str) -> set[str]:
    """Keys of the revisions that are some group's target revision (its last success)."""
    keys: set[str] = set()
    for row in await tx.fetchall(
        "SELECT name FROM deployment_groups WHERE application_name = ?", (application,)
    ):
        last = await queries.last_deployment(tx, application, row["name"], succeeded=True)
        if last is not None and last.get("revision"):
            keys.add(key_of(last["revision"]))
    return keys


async def list_application_revisions(ctx: ApiContext, params: Params) -> Result:
    """ListApplicationRevisions: S3 bucket/prefix filters, deployed filter, sorting."""
    application: str = params["applicationName"]
    bucket, prefix = params.get("s3Bucket"), params.get("s3KeyPrefix")
    if prefix is not None and not bucket:
        raise e.BucketNameFilterRequiredException(
            "A bucket name is required, but was not provided: s3KeyPrefix needs s3Bucket."
        )
    deployed = params.get("deployed", "ignore")
    async with ctx.store.snapshot() as tx:
        await queries.application(tx, application)
        rows = await tx.fetchall(
            "SELECT revision_key, doc FROM revisions WHERE application_name = ?", (application,)
        )
        targets = await _targets(tx, application) if deployed != "ignore" else set()
    docs = []
    for row in rows:
        doc = loads(row["doc"])
        s3 = doc["_location"].get("s3Location", {})
        if bucket is not None and s3.get("bucket") != bucket:
            continue
        if prefix is not None and not str(s3.get("key", "")).startswith(prefix):
            continue
        if deployed != "ignore" and (row["revision_key"] in targets) != (deployed == "include"):
            continue
        docs.append((row["revision_key"], doc))
    sort_by = params.get("sortBy", "registerTime")
    descending = params.get("sortOrder") == "descending"
    # Revisions never used have no firstUsedTime/lastUsedTime: they sort after the used ones.
    docs.sort(key=lambda item: (item[1].get(sort_by) is None, item[1].get(sort_by) or 0.0, item[0]))
    if descending:
        used = [item for item in docs if item[1].get(sort_by) is not None]
        docs = used[::-1] + [item for item in docs if item[1].get(sort_by) is None]
    listing = (
        f"ListApplicationRevisions/{application}/{bucket}/{prefix}/{deployed}/{sort_by}/"
        f"{descending}"
    )
    page, token = paginate(
        [doc["_location"] for _, doc in docs], params.get("nextToken"), listing=listing
    )
    return {"revisions": page, "nextToken": token}


async def batch_get_application_revisions(ctx: ApiContext, params: Params) -> Result:
    """BatchGetApplicationRevisions: revisions not registered are named in `errorMessage`."""
    application: str = params["applicationName"]
    revisions: list[dict[str, Any]] = params["revisions"]
    if len(revisions) > MAX_BATCH:
        raise e.BatchLimitExceededException(
            f"The maximum number of revisions allowed for this request ({MAX_BATCH}) was "
            f"exceeded: {len(revisions)} given."
        )
    locations = [normalise(revision) for revision in revisions]
    found: list[dict[str, Any]] = []
    missing: list[str] = []
    async with ctx.store.snapshot() as tx:
        await queries.application(tx, application)
        for location in locations:
            row = await tx.fetchone(
                "SELECT doc FROM revisions WHERE application_name = ? AND revision_key = ?",
                (application, key_of(location)),
            )
            if row is None:
                missing.append(key_of(location))
                continue
            doc = loads(row["doc"])
            found.append(
                {"revisionLocation": doc["_location"], "genericRevisionInfo": _generic(doc)}
            )
    result: Result = {"applicationName": application, "revisions": found}
    if missing:
        result["errorMessage"] = f"Revisions not registered: {', '.join(missing)}"
    return result


OPERATIONS: Final[dict[str, Handler]] = {
    "RegisterApplicationRevision": register_application_revision,
    "GetApplicationRevision": get_application_revision,
    "ListApplicationRevisions": list_application_revisions,
    "BatchGetApplicationRevisions": batch_get_application_revisions,
}
