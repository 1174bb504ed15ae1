"""A deployment and its targets as the engine reads and writes them inside one transaction.

`load` reads the `deployments` row (locked with `tx.for_update`: the row lock is what
serialises every change to one deployment across servers sharing PostgreSQL) and its
`deployment_targets` rows in scheduling order (`position`). The engine changes the documents in
place, marks changed targets dirty, and `save` writes them back with the deployment's
`deploymentOverview` recomputed from the targets' statuses.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from codedeploy_server.rollout.events import TargetStatus, status_of
from codedeploy_server.store import Tx, dumps, loads

#: Deployment statuses that still hold the group's one active slot (and that the engine drives).
ACTIVE: Final = ("Created", "Queued", "InProgress", "Ready", "Baking")
TERMINAL: Final = frozenset({"Succeeded", "Failed", "Stopped"})
#: `deploymentOverview` keys; all present (0 when empty), as AWS shows them.
_OVERVIEW_KEYS: Final = ("Pending", "InProgress", "Succeeded", "Failed", "Skipped", "Ready")


@dataclass(eq=False, slots=True)
class TargetRecord:
    """One `deployment_targets` row."""

    target_id: str
    position: int
    doc: dict[str, Any]
    dirty: bool = False

    @property
    def status(self) -> TargetStatus:
        """The target's status."""
        return status_of(self.doc)


@dataclass(eq=False, slots=True)
class DeploymentRecord:
    """One `deployments` row and its targets."""

    deployment_id: str
    application_name: str
    group_name: str
    status: str
    owner: str | None
    lease_until: float | None
    doc: dict[str, Any]
    targets: list[TargetRecord] = field(default_factory=list)

    @property
    def engine(self) -> dict[str, Any]:
        """The engine's private state in the document (`_engine`)."""
        state: dict[str, Any] = self.doc.setdefault("_engine", {})
        return state

    def target(self, target_id: str) -> TargetRecord | None:
        """The target named `target_id`."""
        return next((t for t in self.targets if t.target_id == target_id), None)

    def in_status(self, *statuses: TargetStatus) -> list[TargetRecord]:
        """The targets in one of `statuses`, in scheduling order."""
        return [t for t in self.targets if t.status in statuses]


async def load(tx: Tx, deployment_id: str) -> DeploymentRecord | None:
    """The deployment with its targets, its row locked until the transaction ends."""
    row = await tx.fetchone(
        "SELECT deployment_id, application_name, group_name, status, owner, lease_until, doc "
        "FROM deployments WHERE deployment_id = ?" + tx.for_update,
        (deployment_id,),
    )
    if row is None:
        return None
    targets = await tx.fetchall(
        "SELECT target_id, position, doc FROM deployment_targets WHERE deployment_id = ? "
        "ORDER BY position, target_id",
        (deployment_id,),
    )
    return DeploymentRecord(
        deployment_id=row["deployment_id"],
        application_name=row["application_name"],
        group_name=row["group_name"],
        status=row["status"],
        owner=row["owner"],
        lease_until=None if row["lease_until"] is None else float(row["lease_until"]),
        doc=loads(row["doc"]),
        targets=[
            TargetRecord(t["target_id"], int(t["position"]), loads(t["doc"])) for t in targets
        ],
    )


def overview(targets: list[TargetRecord]) -> dict[str, int]:
    """`deploymentOverview`: how many targets are in each status."""
    counts = Counter(t.status.value for t in targets)
    return {key: counts.get(key, 0) for key in _OVERVIEW_KEYS}


async def save(tx: Tx, record: DeploymentRecord) -> None:
    """Write the dirty targets and the deployment (status columns, overview, document)."""
    for target in record.targets:
        if target.dirty:
            await tx.execute(
                "UPDATE deployment_targets SET status = ?, doc = ? "
                "WHERE deployment_id = ? AND target_id = ?",
                (target.status.value, dumps(target.doc), record.deployment_id, target.target_id),
            )
            target.dirty = False
    record.doc["deploymentOverview"] = overview(record.targets)
    record.doc["status"] = record.status
    await tx.execute(
        "UPDATE deployments SET status = ?, complete_time = ?, owner = ?, lease_until = ?, "
        "doc = ? WHERE deployment_id = ?",
        (
            record.status,
            record.doc.get("completeTime"),
            record.owner,
            record.lease_until,
            dumps(record.doc),
            record.deployment_id,
        ),
    )


async def load_group(tx: Tx, application: str, name: str) -> tuple[str, dict[str, Any]] | None:
    """The deployment group's id and document (`DeploymentGroupInfo`), row locked."""
    # Only the constant `tx.for_update` is ever appended to these queries (S608).
    sql = "SELECT group_id, doc FROM deployment_groups WHERE application_name = ? AND name = ?"
    row = await tx.fetchone(sql + tx.for_update, (application, name))
    if row is None:
        return None
    doc: dict[str, Any] = loads(row["doc"])
    return str(row["group_id"]), doc


async def save_group(tx: Tx, application: str, name: str, doc: dict[str, Any]) -> None:
    """Write the deployment group's document back."""
    await tx.execute(
        "UPDATE deployment_groups SET doc = ? WHERE application_name = ? AND name = ?",
        (dumps(doc), application, name),
    )


async def deployment_doc(
    tx: Tx, deployment_id: str, *, lock: bool = False
) -> dict[str, Any] | None:
    """Another deployment's document (the last successful one, a rollback's trigger)."""
    sql = "SELECT doc FROM deployments WHERE deployment_id = ?"
    row = await tx.fetchone(sql + (tx.for_update if lock else ""), (deployment_id,))
    return None if row is None else dict(loads(row["doc"]))


async def write_deployment_doc(tx: Tx, deployment_id: str, doc: dict[str, Any]) -> None:
    """Replace another deployment's document (its status columns unchanged)."""
    await tx.execute(
        "UPDATE deployments SET doc = ? WHERE deployment_id = ?", (dumps(doc), deployment_id)
    )


__all__ = [
    "ACTIVE",
    "TERMINAL",
    "DeploymentRecord",
    "TargetRecord",
    "deployment_doc",
    "load",
    "load_group",
    "overview",
    "save",
    "save_group",
    "write_deployment_doc",
]
