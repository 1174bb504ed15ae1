"""Resource tags: TagResource, UntagResource, ListTagsForResource on application and
deployment group ARNs.

ARNs are `arn:aws:codedeploy:<region>:<account>:application:<name>` and
`arn:aws:codedeploy:<region>:<account>:deploymentgroup:<application>/<group>`, with this
server's region and account. Tags live in the resource's document under `_tags` (a list of
`{Key, Value}`, keys unique), so they move with a rename and go with a delete.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from codedeploy_server.api import errors as e
from codedeploy_server.api import queries
from codedeploy_server.api.context import ApiContext, Handler, Params, Result
from codedeploy_server.api.tagging import check_tag
from codedeploy_server.store import Tx, dumps

MAX_RESOURCE_TAGS: Final = 50
_ARN = re.compile(r"arn:aws[a-z-]*:codedeploy:([a-z0-9-]+):(\d{12}):(.+)")


def resource_tags(items: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Validated resource tags (InvalidTagsToAddException), later keys winning."""
    merged: dict[str, str] = {}
    for index, item in enumerate(items):
        key, value = check_tag(
            item.get("Key"), item.get("Value"), e.InvalidTagsToAddException, f"Tags[{index}]"
        )
        merged[key] = value
    return _limited(merged)


def _limited(tags: Mapping[str, str]) -> list[dict[str, str]]:
    if len(tags) > MAX_RESOURCE_TAGS:
        raise e.InvalidTagsToAddException(
            f"A resource may carry at most {MAX_RESOURCE_TAGS} tags ({len(tags)} requested)."
        )
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


@dataclass(frozen=True, slots=True)
class Resource:
    """A taggable resource an ARN names."""

    application: str
    group: str | None


def parse_arn(ctx: ApiContext, arn: str) -> Resource:
    """The application or group `arn` names; InvalidArnException / ArnNotSupportedException."""
    match = _ARN.fullmatch(arn)
    if match is None:
        raise e.InvalidArnException(
            f"The specified ARN is not in a valid format: {arn}. Expected "
            f"{ctx.application_arn('<application>')} or "
            f"{ctx.group_arn('<application>', '<group>')}."
        )
    region, account, resource = match.groups()
    if region != ctx.region or account != ctx.account_id:
        raise e.InvalidArnException(
            f"The ARN {arn} is for region {region}, account {account}; this server is region "
            f"{ctx.region}, account {ctx.account_id}."
        )
    kind, _, name = resource.partition(":")
    if kind == "application" and name:
        return Resource(name, None)
    if kind == "deploymentgroup":
        application, _, group = name.partition("/")
        if application and group:
            return Resource(application, group)
    if kind in ("application", "deploymentgroup"):
        raise e.InvalidArnException(f"The specified ARN is not in a valid format: {arn}.")
    raise e.ArnNotSupportedException(
        f"The specified ARN is not supported: {arn}. Only applications and deployment groups "
        "can be tagged."
    )


async def _load(tx: Tx, resource: Resource) -> dict[str, Any]:
    if resource.group is None:
        return await queries.application(tx, resource.application, lock=True)
    await queries.application(tx, resource.application)
    return await queries.group(tx, resource.application, resource.group, lock=True)


async def _save(tx: Tx, resource: Resource, doc: Mapping[str, Any]) -> None:
    if resource.group is None:
        await tx.execute(
            "UPDATE applications SET doc = ? WHERE name = ?", (dumps(doc), resource.application)
        )
    else:
        await tx.execute(
            "UPDATE deployment_groups SET doc = ? WHERE application_name = ? AND name = ?",
            (dumps(doc), resource.application, resource.group),
        )


def _current(doc: Mapping[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag.get("Value", "") for tag in doc.get("_tags", [])}


async def tag_resource(ctx: ApiContext, params: Params) -> Result:
    """TagResource: add tags, replacing the values of keys already present."""
    resource = parse_arn(ctx, params["ResourceArn"])
    added = resource_tags(params["Tags"])
    if not added:
        raise e.TagRequiredException("A tag was not specified: Tags is empty.")
    async with ctx.store.transaction() as tx:
        doc = await _load(tx, resource)
        tags = _current(doc)
        tags.update({tag["Key"]: tag["Value"] for tag in added})
        doc["_tags"] = _limited(tags)
        await _save(tx, resource, doc)
    return {}


async def untag_resource(ctx: ApiContext, params: Params) -> Result:
    """UntagResource: remove the named keys (absent keys are ignored)."""
    resource = parse_arn(ctx, params["ResourceArn"])
    keys: list[str] = params["TagKeys"]
    if not keys:
        raise e.TagRequiredException("A tag was not specified: TagKeys is empty.")
    async with ctx.store.transaction() as tx:
        doc = await _load(tx, resource)
        tags = _current(doc)
        for key in keys:
            tags.pop(key, None)
        doc["_tags"] = _limited(tags)
        await _save(tx, resource, doc)
    return {}


async def list_tags_for_resource(ctx: ApiContext, params: Params) -> Result:
    """ListTagsForResource: every tag (one page: a resource has at most 50)."""
    resource = parse_arn(ctx, params["ResourceArn"])
    async with ctx.store.snapshot() as tx:
        if resource.group is None:
            doc = await queries.application(tx, resource.application)
        else:
            await queries.application(tx, resource.application)
            doc = await queries.group(tx, resource.application, resource.group)
    return {"Tags": list(doc.get("_tags", []))}


OPERATIONS: Final[dict[str, Handler]] = {
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListTagsForResource": list_tags_for_resource,
}
