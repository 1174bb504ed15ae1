"""The signed job document of a deployment: built once when the deployment starts, stored in
the deployment's row (`_jobDocument`) and queued unchanged for every instance.

- `LifecycleEvents`: the 7 events of an in-place deployment without a load balancer (service
  reference §3; this server has no load balancer support yet), which are also each target's
  `lifecycleEvents` names.
- `AllPossibleLifecycleEvents`: every event a host agent can run (the agent's default order:
  the 7 plus the four traffic hooks; BlockTraffic/AllowTraffic are the service's own and never
  reach a host).
- `DeploymentCreator`: `user`, or `codeDeployRollback` for automatic rollbacks (the agent then
  picks the scripts a rollback runs, agent reference §1.4).
- `ExpiresAt`: issue time + `ttl_seconds` (default 8 h: the longest an EC2/on-premises
  in-place deployment may run, service reference §10), so an agent that comes back after the
  deployment ended can never run it; download links are valid at least as long.
- `IgnoreApplicationStopFailures` and `AgentActionOverrides.FileExistsBehavior` from the
  deployment's own fields (CreateDeployment's overrides, or the rollback's choice).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from codedeploy_agent.lifecycle import DEFAULT_ORDER
from codedeploy_agent.protocol.jobdoc import IN_PLACE_EVENTS, build_job_document
from codedeploy_agent.protocol.signing import Signer, sign_document
from codedeploy_agent.spec import Revision

#: The in-place events (no load balancer), in order: each target's `lifecycleEvents`.
LIFECYCLE_EVENTS: Final[tuple[str, ...]] = IN_PLACE_EVENTS
#: Everything a host agent may be asked to run.
ALL_POSSIBLE_EVENTS: Final[tuple[str, ...]] = DEFAULT_ORDER
#: The longest an EC2/on-premises in-place deployment may run (service reference §10).
DEFAULT_TTL_SECONDS: Final = 8 * 3600


def build_signed_document(
    deployment: Mapping[str, Any],
    *,
    group_id: str,
    revision: Revision,
    issued_at: float,
    expires_at: float,
    key: Signer,
    key_id: str,
) -> dict[str, Any]:
    """The signed job document for `deployment` (a `DeploymentInfo` document)."""
    document = build_job_document(
        deployment_id=str(deployment["deploymentId"]),
        deployment_group_id=group_id,
        deployment_group_name=str(deployment["deploymentGroupName"]),
        application_name=str(deployment["applicationName"]),
        revision=revision,
        issued_at=datetime.fromtimestamp(issued_at, UTC),
        expires_at=datetime.fromtimestamp(expires_at, UTC),
        lifecycle_events=LIFECYCLE_EVENTS,
        all_possible_lifecycle_events=ALL_POSSIBLE_EVENTS,
        deployment_creator=str(deployment.get("creator") or "user"),
        deployment_type="IN_PLACE",
        file_exists_behavior=deployment.get("fileExistsBehavior") or None,
        ignore_application_stop_failures=bool(deployment.get("ignoreApplicationStopFailures")),
    )
    return sign_document(document, key, key_id)


__all__ = [
    "ALL_POSSIBLE_EVENTS",
    "DEFAULT_TTL_SECONDS",
    "LIFECYCLE_EVENTS",
    "build_signed_document",
]
