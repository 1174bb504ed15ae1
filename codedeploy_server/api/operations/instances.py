"""On-premises instances: Register, Deregister, Get, BatchGet, List, AddTags, RemoveTags.

An instance's name is also its agent's MQTT thing name, so it must be a valid thing name
(`[A-Za-z0-9_.:-]{1,128}`). Registration takes exactly one of an IAM user ARN or an IAM session
ARN (checked loosely for their form, stored, never used to authenticate: agents authenticate to
the broker). A deregistered instance stays listed (`registrationStatus` Deregistered, with its
`deregisterTime`) and its name may be registered again. Tags live in the `instance_tags` table,
which deployment groups select from.
"""

from __future__ import annotations

import re
from typing import Any, Final

from codedeploy_agent.protocol.errors import ProtocolError
from codedeploy_agent.protocol.topics import validate_thing_name
from codedeploy_server.api import errors as e
from codedeploy_server.api import queries
from codedeploy_server.api.context import ApiContext, Handler, Params, Result, random_suffix
from codedeploy_server.api.paging import paginate
from codedeploy_server.api.tagging import check_tag, decode_filters, matches_any
from codedeploy_server.store import Tx, dumps, loads

MAX_BATCH: Final = 100
MAX_INSTANCES_PER_TAG_CALL: Final = 100
MAX_TAGS_PER_INSTANCE: Final = 50
_USER_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:user/\S+")
_SESSION_ARN = re.compile(r"arn:aws[a-z-]*:sts::\d{12}:assumed-role/[^/\s]+/\S+")


def check_instance_name(name: str) -> str:
    """`name` when it is a valid instance (thing) name, else InvalidInstanceNameException."""
    try:
        return validate_thing_name(name)
    except ProtocolError:
        raise e.InvalidInstanceNameException(
            f"The on-premises instance name was specified in an invalid format: {name!r}. Use "
            "1 to 128 letters, digits, '_', '.', ':' or '-' (the name is also the agent's "
            "MQTT thing name)."
        ) from None


def _check_arns(params: Params) -> tuple[str, str]:
    user, session = params.get("iamUserArn"), params.get("iamSessionArn")
    if user and session:
        raise e.MultipleIamArnsProvidedException(
            "Both an IAM user ARN and an IAM session ARN were included in the request. Use "
            "only one ARN type."
        )
    if user:
        if not _USER_ARN.fullmatch(user):
            raise e.InvalidIamUserArnException(
                f"The IAM user ARN was specified in an invalid format: {user}. Expected "
                "arn:aws:iam::<account>:user/<name>."
            )
        return "iamUserArn", user
    if session:
        if not _SESSION_ARN.fullmatch(session):
            raise e.InvalidIamSessionArnException(
                f"The IAM session ARN was specified in an invalid format: {session}. Expected "
                "arn:aws:sts::<account>:assumed-role/<role>/<session>."
            )
        return "iamSessionArn", session
    raise e.IamArnRequiredException(
        "No IAM ARN was included in the request. You must use an IAM session ARN or IAM user "
        "ARN in the request."
    )


async def register_on_premises_instance(ctx: ApiContext, params: Params) -> Result:
    """RegisterOnPremisesInstance."""
    name = check_instance_name(params["instanceName"])
    arn_kind, arn = _check_arns(params)
    async with ctx.store.transaction() as tx:
        existing = await tx.fetchone(
            "SELECT registered FROM instances WHERE name = ?" + tx.for_update,  # noqa: S608 - placeholders/constants only
            (name,),
        )
        if existing is not None and existing["registered"]:
            raise e.InstanceNameAlreadyRegisteredException(
                f"The on-premises instance name {name} is already registered. Deregister it "
                "first, or choose another name."
            )
        for row in await tx.fetchall("SELECT name, doc FROM instances WHERE registered = 1"):
            if loads(row["doc"]).get(arn_kind) == arn:
                exception = (
                    e.IamUserArnAlreadyRegisteredException
                    if arn_kind == "iamUserArn"
                    else e.IamSessionArnAlreadyRegisteredException
                )
                raise exception(
                    f"{arn} is already registered with on-premises instance {row['name']}. "
                    "Each instance needs its own IAM identity."
                )
        now = ctx.now()
        doc = {
            "instanceName": name,
            arn_kind: arn,
            "instanceArn": ctx.instance_arn(name, random_suffix()),
            "registerTime": now,
        }
        await tx.execute(
            "INSERT INTO instances (name, registered, register_time, doc) VALUES (?, 1, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET registered = 1, "
            "register_time = excluded.register_time, doc = excluded.doc",
            (name, now, dumps(doc)),
        )
    return {}


async def deregister_on_premises_instance(ctx: ApiContext, params: Params) -> Result:
    """DeregisterOnPremisesInstance: idempotent; the instance stays listed as Deregistered."""
    name = check_instance_name(params["instanceName"])
    async with ctx.store.transaction() as tx:
        row = await tx.fetchone(
            "SELECT registered, doc FROM instances WHERE name = ?" + tx.for_update,  # noqa: S608 - placeholders/constants only
            (name,),
        )
        if row is None or not row["registered"]:
            return {}
        doc = loads(row["doc"])
        doc["deregisterTime"] = ctx.now()
        await tx.execute(
            "UPDATE instances SET registered = 0, doc = ? WHERE name = ?", (dumps(doc), name)
        )
    return {}


async def _infos(tx: Tx, names: list[str] | None) -> list[dict[str, Any]]:
    """`InstanceInfo` documents with their tags (`names` order; every instance when None)."""
    if names is None:
        rows = await tx.fetchall("SELECT name, doc FROM instances ORDER BY name")
    elif not names:
        rows = []
    else:
        rows = await tx.fetchall(
            f"SELECT name, doc FROM instances WHERE name IN ({queries.marks(len(names))})",  # noqa: S608 - placeholders/constants only
            names,
        )
        order = {name: index for index, name in enumerate(names)}
        rows.sort(key=lambda row: order[row["name"]])
    tags = await queries.instance_tags(tx, [row["name"] for row in rows])
    infos = []
    for row in rows:
        doc = loads(row["doc"])
        doc["tags"] = [
            {"Key": key, "Value": value} for key, value in tags.get(row["name"], {}).items()
        ]
        infos.append(doc)
    return infos


async def get_on_premises_instance(ctx: ApiContext, params: Params) -> Result:
    """GetOnPremisesInstance (a deregistered instance shows its deregisterTime)."""
    name = check_instance_name(params["instanceName"])
    async with ctx.store.snapshot() as tx:
        infos = await _infos(tx, [name])
    if not infos:
        raise e.InstanceNotRegisteredException(
            f"The on-premises instance {name} is not registered. Register it with "
            "RegisterOnPremisesInstance."
        )
    return {"instanceInfo": infos[0]}


async def batch_get_on_premises_instances(ctx: ApiContext, params: Params) -> Result:
    """BatchGetOnPremisesInstances: unknown names are left out."""
    names = [check_instance_name(name) for name in dict.fromkeys(params["instanceNames"])]
    if len(names) > MAX_BATCH:
        raise e.BatchLimitExceededException(
            f"The maximum number of names or IDs allowed for this request ({MAX_BATCH}) was "
            f"exceeded: {len(names)} given."
        )
    async with ctx.store.snapshot() as tx:
        infos = await _infos(tx, names)
    return {"instanceInfos": infos}


async def list_on_premises_instances(ctx: ApiContext, params: Params) -> Result:
    """ListOnPremisesInstances: by registration status and tag filters (OR), by name."""
    status = params.get("registrationStatus")
    filters = decode_filters(
        params.get("tagFilters", []), e.InvalidTagFilterException, "tagFilters"
    )
    async with ctx.store.snapshot() as tx:
        rows = await tx.fetchall("SELECT name, registered FROM instances ORDER BY name")
        tags = await queries.instance_tags(tx) if filters else {}
    names = [
        row["name"]
        for row in rows
        if (status is None or (status == "Registered") == bool(row["registered"]))
        and (not filters or matches_any(tags.get(row["name"], {}), filters))
    ]
    listing = f"ListOnPremisesInstances/{status}/{dumps([f.to_doc() for f in filters])}"
    page, token = paginate(names, params.get("nextToken"), listing=listing)
    return {"instanceNames": page, "nextToken": token}


def _tag_call(params: Params) -> tuple[list[str], list[tuple[str, str | None]]]:
    names = [check_instance_name(name) for name in dict.fromkeys(params["instanceNames"])]
    if not names:
        raise e.InstanceNameRequiredException("An on-premises instance name was not specified.")
    if len(names) > MAX_INSTANCES_PER_TAG_CALL:
        raise e.InstanceLimitExceededException(
            f"The maximum number of on-premises instances in a single call "
            f"({MAX_INSTANCES_PER_TAG_CALL}) was exceeded: {len(names)} given."
        )
    if not params["tags"]:
        raise e.TagRequiredException("A tag was not specified: tags is empty.")
    tags = []
    for index, tag in enumerate(params["tags"]):
        key, value = check_tag(
            tag.get("Key"), tag.get("Value"), e.InvalidTagException, f"tags[{index}]"
        )
        tags.append((key, value if "Value" in tag else None))
    return names, tags


async def _registered(tx: Tx, names: list[str]) -> None:
    rows = await tx.fetchall(
        "SELECT name FROM instances WHERE registered = 1 AND name IN "  # noqa: S608 - placeholders/constants only
        f"({queries.marks(len(names))})",
        names,
    )
    missing = sorted(set(names) - {row["name"] for row in rows})
    if missing:
        raise e.InstanceNotRegisteredException(
            f"The specified on-premises instance is not registered: {', '.join(missing)}."
        )


async def add_tags_to_on_premises_instances(ctx: ApiContext, params: Params) -> Result:
    """AddTagsToOnPremisesInstances: a key already present gets the new value."""
    names, tags = _tag_call(params)
    async with ctx.store.transaction() as tx:
        await _registered(tx, names)
        current = await queries.instance_tags(tx, names)
        for name in names:
            keys = set(current.get(name, {})) | {key for key, _ in tags}
            if len(keys) > MAX_TAGS_PER_INSTANCE:
                raise e.TagLimitExceededException(
                    f"On-premises instance {name} would carry {len(keys)} tags; the maximum is "
                    f"{MAX_TAGS_PER_INSTANCE}."
                )
            for key, value in tags:
                await tx.execute(
                    "INSERT INTO instance_tags (instance_name, tag_key, tag_value) "
                    "VALUES (?, ?, ?) ON CONFLICT (instance_name, tag_key) "
                    "DO UPDATE SET tag_value = excluded.tag_value",
                    (name, key, value or ""),
                )
    return {}


async def remove_tags_from_on_premises_instances(ctx: ApiContext, params: Params) -> Result:
    """RemoveTagsFromOnPremisesInstances: a tag given with a Value is removed only when the
    instance's value matches; one given with its Key only is removed whatever its value."""
    names, tags = _tag_call(params)
    async with ctx.store.transaction() as tx:
        await _registered(tx, names)
        for name in names:
            for key, value in tags:
                if value is None:
                    await tx.execute(
                        "DELETE FROM instance_tags WHERE instance_name = ? AND tag_key = ?",
                        (name, key),
                    )
                else:
                    await tx.execute(
                        "DELETE FROM instance_tags WHERE instance_name = ? AND tag_key = ? "
                        "AND tag_value = ?",
                        (name, key, value),
                    )
    return {}


OPERATIONS: Final[dict[str, Handler]] = {
    "RegisterOnPremisesInstance": register_on_premises_instance,
    "DeregisterOnPremisesInstance": deregister_on_premises_instance,
    "GetOnPremisesInstance": get_on_premises_instance,
    "BatchGetOnPremisesInstances": batch_get_on_premises_instances,
    "ListOnPremisesInstances": list_on_premises_instances,
    "AddTagsToOnPremisesInstances": add_tags_to_on_premises_instances,
    "RemoveTagsFromOnPremisesInstances": remove_tags_from_on_premises_instances,
}
