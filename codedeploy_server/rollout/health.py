"""Instance health per deployment group, and the scheduling order it gives (reference §1.3).

CodeDeploy tracks, per instance, an *instance health* (`Healthy`: the last deployment to it
succeeded; `Unhealthy`: it failed, or was never deployed to) and a *revision health* against
the group's target revision (`Current`, `Old`, `Unknown`). A deployment starts with the
Unhealthy instances, then Unknown-revision, then Old-revision, then Current-revision ones.

The engine records each target's outcome in the `instance_health` table (migration 2) when the
target ends, in the transaction that ends it:

- Succeeded: Healthy, revision = the deployment's revision (so Current after a successful
  deployment, since the group's `targetRevision` then becomes that revision);
- Failed: Unhealthy, revision Unknown (NULL): the host may be half-installed;
- Skipped (never started): unchanged.

The table is kept apart from `instances.doc` so the engine never read-modify-writes a document
the API also writes (tags, deregistration). The API orders a new deployment's targets with
`scheduling_order(tx, group_id, names, target_revision)` and writes the result as `position`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from codedeploy_server.store import Tx, dumps


class Rank(IntEnum):
    """Scheduling rank: lower goes first."""

    UNHEALTHY = 0
    UNKNOWN_REVISION = 1
    OLD_REVISION = 2
    CURRENT_REVISION = 3


@dataclass(frozen=True, slots=True)
class InstanceHealth:
    """What the engine knows about one instance in one deployment group."""

    instance_name: str
    healthy: bool
    #: `revision_key` of the revision it last installed successfully; None: Unknown.
    revision: str | None
    deployment_id: str
    updated_at: float

    def rank(self, target_revision: Mapping[str, Any] | None) -> Rank:
        """Where this instance goes in the scheduling order."""
        if not self.healthy:
            return Rank.UNHEALTHY
        if self.revision is None:
            return Rank.UNKNOWN_REVISION
        if target_revision is None or self.revision != revision_key(target_revision):
            return Rank.OLD_REVISION
        return Rank.CURRENT_REVISION


def revision_key(location: Mapping[str, Any]) -> str:
    """A stable key for a `RevisionLocation` (unset members ignored), for comparisons."""
    return dumps(_prune(location))


def _prune(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _prune(v) for k, v in value.items() if v not in (None, "", {}, [])}
    return value


async def record(
    tx: Tx,
    group_id: str,
    instance_name: str,
    *,
    succeeded: bool,
    revision: Mapping[str, Any] | None,
    deployment_id: str,
    now: float,
) -> None:
    """Record the outcome of one instance's deployment (module docstring)."""
    key = revision_key(revision) if succeeded and revision is not None else None
    await tx.execute(
        "INSERT INTO instance_health "
        "(group_id, instance_name, healthy, revision, deployment_id, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (group_id, instance_name) DO UPDATE SET "
        "healthy = excluded.healthy, revision = excluded.revision, "
        "deployment_id = excluded.deployment_id, updated_at = excluded.updated_at",
        (group_id, instance_name, 1 if succeeded else 0, key, deployment_id, now),
    )


async def health_of(tx: Tx, group_id: str, names: Iterable[str]) -> dict[str, InstanceHealth]:
    """The recorded health of `names` in the group (instances never deployed to are absent)."""
    wanted = set(names)
    rows = await tx.fetchall(
        "SELECT instance_name, healthy, revision, deployment_id, updated_at "
        "FROM instance_health WHERE group_id = ?",
        (group_id,),
    )
    return {
        row["instance_name"]: InstanceHealth(
            instance_name=row["instance_name"],
            healthy=bool(row["healthy"]),
            revision=row["revision"],
            deployment_id=row["deployment_id"],
            updated_at=float(row["updated_at"]),
        )
        for row in rows
        if row["instance_name"] in wanted
    }


def rank_of(health: InstanceHealth | None, target_revision: Mapping[str, Any] | None) -> Rank:
    """The rank of an instance (never deployed to in this group: Unhealthy)."""
    return Rank.UNHEALTHY if health is None else health.rank(target_revision)


async def scheduling_order(
    tx: Tx,
    group_id: str,
    names: Sequence[str],
    target_revision: Mapping[str, Any] | None,
) -> list[str]:
    """`names` in CodeDeploy's order: Unhealthy, Unknown, Old, then Current revision; ties keep
    the order they were given in."""
    known = await health_of(tx, group_id, names)
    return sorted(names, key=lambda name: rank_of(known.get(name), target_revision))


def is_current(health: InstanceHealth | None, revision: Mapping[str, Any]) -> bool:
    """True when the instance is Healthy on exactly `revision`."""
    return health is not None and health.rank(revision) is Rank.CURRENT_REVISION


__all__ = [
    "InstanceHealth",
    "Rank",
    "health_of",
    "is_current",
    "rank_of",
    "record",
    "revision_key",
    "scheduling_order",
]
