"""Which registered on-premises instances a new deployment targets, and in which order.

The group's selection (`onPremisesTagSet` when set, else `onPremisesInstanceTagFilters`) is
applied to the tags of REGISTERED instances. CreateDeployment's `targetInstances` replaces the
group's selection for that deployment: its `tagFilters` (OR) or `ec2TagSet` (AND of ORs) are
matched against the same on-premises tags. (On AWS `targetInstances` describes a blue/green
replacement fleet and an in-place deployment refuses it; here it is the in-place override the
issue asks for.) The order is the rollout engine's scheduling order (health.py): Unhealthy,
then Unknown, Old and Current revision, ties by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from codedeploy_server.api import errors as e
from codedeploy_server.api import queries
from codedeploy_server.api.tagging import (
    MAX_TAG_GROUPS,
    TagFilter,
    decode_filters,
    decode_tag_set,
    matches_all_groups,
    matches_any,
)
from codedeploy_server.rollout.health import health_of, is_current, scheduling_order
from codedeploy_server.store import Tx

#: "The limit of 10 tags for a tag type" (InvalidTargetInstancesException's documentation).
MAX_TARGET_TAGS: Final = 10


class Selection:
    """A decoded instance selection: an OR of filters, or a tag set (AND of ORs)."""

    def __init__(
        self, *, filters: Sequence[TagFilter] = (), groups: Sequence[Sequence[TagFilter]] = ()
    ):
        self.filters = list(filters)
        self.groups = [list(group) for group in groups]

    def matches(self, tags: Mapping[str, str]) -> bool:
        """True when an instance with `tags` is selected."""
        if self.groups:
            return matches_all_groups(tags, self.groups)
        return matches_any(tags, self.filters)


def group_selection(group: Mapping[str, Any]) -> Selection:
    """The deployment group's own selection (already validated when stored)."""
    tag_set = (group.get("onPremisesTagSet") or {}).get("onPremisesTagSetList") or []
    if tag_set:
        return Selection(groups=decode_tag_set(tag_set, e.InvalidTagException, "onPremisesTagSet"))
    filters = group.get("onPremisesInstanceTagFilters") or []
    return Selection(filters=decode_filters(filters, e.InvalidTagException, "tagFilters"))


def override_selection(target_instances: Mapping[str, Any]) -> Selection | None:
    """CreateDeployment's `targetInstances` as a selection, or None when it selects nothing."""
    if target_instances.get("autoScalingGroups"):
        raise e.InvalidTargetInstancesException(
            "targetInstances.autoScalingGroups is not supported: this server deploys to "
            "registered on-premises instances. Use targetInstances.tagFilters or ec2TagSet."
        )
    filters = target_instances.get("tagFilters") or []
    tag_set = (target_instances.get("ec2TagSet") or {}).get("ec2TagSetList") or []
    if filters and tag_set:
        raise e.InvalidTargetInstancesException(
            "targetInstances.tagFilters and targetInstances.ec2TagSet cannot be used in the same "
            "call."
        )
    if len(filters) > MAX_TARGET_TAGS or any(len(group) > MAX_TARGET_TAGS for group in tag_set):
        raise e.InvalidTargetInstancesException(
            f"The limit of {MAX_TARGET_TAGS} tags for a tag type was exceeded in targetInstances."
        )
    if len(tag_set) > MAX_TAG_GROUPS:
        raise e.InvalidTargetInstancesException(
            f"targetInstances.ec2TagSet has {len(tag_set)} tag groups; the maximum is "
            f"{MAX_TAG_GROUPS}."
        )
    if tag_set:
        return Selection(
            groups=decode_tag_set(tag_set, e.InvalidTargetInstancesException, "ec2TagSetList")
        )
    if filters:
        return Selection(
            filters=decode_filters(filters, e.InvalidTargetInstancesException, "tagFilters")
        )
    return None


async def resolve(tx: Tx, selection: Selection) -> list[str]:
    """Names of the registered instances `selection` picks, sorted."""
    rows = await tx.fetchall("SELECT name FROM instances WHERE registered = 1 ORDER BY name")
    names = [row["name"] for row in rows]
    tags = await queries.instance_tags(tx, names)
    return [name for name in names if selection.matches(tags.get(name, {}))]


async def order_targets(
    tx: Tx,
    group_id: str,
    names: Sequence[str],
    *,
    group_revision: Mapping[str, Any] | None,
    revision: Mapping[str, Any],
    outdated_only: bool,
) -> list[str]:
    """`names` in scheduling order; with `outdated_only`, those already Healthy on `revision`
    are left out (CreateDeployment `updateOutdatedInstancesOnly`)."""
    chosen = list(names)
    if outdated_only:
        health = await health_of(tx, group_id, chosen)
        chosen = [name for name in chosen if not is_current(health.get(name), revision)]
    return await scheduling_order(tx, group_id, chosen, group_revision)
