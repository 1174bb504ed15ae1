"""Instance health per group and CodeDeploy's scheduling order (health.py), on both stores;
and which ended deployments are rolled back (transitions.rolls_back)."""

from __future__ import annotations

from typing import Any

import pytest

from codedeploy_server.rollout import health
from codedeploy_server.rollout.records import DeploymentRecord
from codedeploy_server.rollout.transitions import rolls_back
from codedeploy_server.store import Store

S3_V1: dict[str, Any] = {"bucket": "b", "key": "v1.tgz", "bundleType": "tgz"}
V1: dict[str, Any] = {"revisionType": "S3", "s3Location": S3_V1}
V2: dict[str, Any] = {
    "revisionType": "S3",
    "s3Location": {"bucket": "b", "key": "v2.tgz", "bundleType": "tgz"},
}


@pytest.mark.asyncio
async def test_scheduling_order(store: Store) -> None:
    """Unhealthy (failed, or never deployed) first, then Unknown, Old and Current revision;
    ties keep the given order; other groups do not count."""
    async with store.transaction() as tx:
        await health.record(
            tx, "g", "current", succeeded=True, revision=V2, deployment_id="d-1", now=1.0
        )
        await health.record(
            tx, "g", "old", succeeded=True, revision=V1, deployment_id="d-1", now=1.0
        )
        await health.record(
            tx, "g", "failed", succeeded=False, revision=V2, deployment_id="d-2", now=2.0
        )
        await health.record(
            tx, "other", "new", succeeded=True, revision=V2, deployment_id="d-3", now=3.0
        )
        order = await health.scheduling_order(
            tx, "g", ["current", "old", "new", "failed"], target_revision=V2
        )
        known = await health.health_of(tx, "g", ["current", "failed", "new"])
    assert order == ["new", "failed", "old", "current"]
    assert set(known) == {"current", "failed"}
    assert known["failed"].healthy is False
    assert known["failed"].revision is None
    assert health.is_current(known["current"], V2)
    assert not health.is_current(known["current"], V1)
    # A later result replaces the earlier one.
    async with store.transaction() as tx:
        await health.record(
            tx, "g", "failed", succeeded=True, revision=V2, deployment_id="d-4", now=4.0
        )
        again = await health.health_of(tx, "g", ["failed"])
    assert again["failed"].healthy is True
    assert again["failed"].deployment_id == "d-4"


def test_revision_keys_ignore_unset_members() -> None:
    """Two locations that differ only in unset members have the same key."""
    with_nones = {
        "revisionType": "S3",
        "s3Location": {**S3_V1, "version": None, "eTag": ""},
    }
    assert health.revision_key(with_nones) == health.revision_key(V1)
    assert health.revision_key(V1) != health.revision_key(V2)


def _ended(status: str, doc: dict[str, Any]) -> DeploymentRecord:
    return DeploymentRecord("d-1", "shop", "web", status, None, None, {"creator": "user", **doc})


@pytest.mark.parametrize(
    ("status", "deployment", "group", "expected"),
    [
        ("Failed", {}, {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]}, True),
        ("Failed", {}, {"enabled": False, "events": ["DEPLOYMENT_FAILURE"]}, False),
        ("Failed", {}, {"enabled": True, "events": ["DEPLOYMENT_STOP_ON_REQUEST"]}, False),
        (
            "Failed",
            {"autoRollbackConfiguration": {"enabled": False}},
            {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]},
            False,
        ),
        (
            "Failed",
            {"creator": "codeDeployRollback"},
            {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]},
            False,
        ),
        (
            "Stopped",
            {"_stopRequest": {"autoRollbackEnabled": None}},
            {"enabled": True, "events": ["DEPLOYMENT_STOP_ON_REQUEST"]},
            True,
        ),
        (
            "Stopped",
            {"_stopRequest": {"autoRollbackEnabled": None}},
            {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]},
            False,
        ),
        ("Stopped", {"_stopRequest": {"autoRollbackEnabled": True}}, {}, True),
        (
            "Stopped",
            {"_stopRequest": {"autoRollbackEnabled": False}},
            {"enabled": True, "events": ["DEPLOYMENT_STOP_ON_REQUEST"]},
            False,
        ),
    ],
)
def test_rolls_back(
    status: str, deployment: dict[str, Any], group: dict[str, Any], expected: bool
) -> None:
    """DEPLOYMENT_FAILURE for failures; for stops an explicit autoRollbackEnabled wins, else
    DEPLOYMENT_STOP_ON_REQUEST; the deployment's own configuration replaces the group's; a
    rollback is never rolled back."""
    record = _ended(status, deployment)
    assert rolls_back(record, {"autoRollbackConfiguration": group}) is expected
