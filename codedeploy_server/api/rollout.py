"""The API's side of the contract with the rollout engine (server.md "Rollout control").

The API writes a new deployment (`deployments` row, status `Created`, and one
`deployment_targets` row per target, `position` = scheduling order) in one transaction, then
calls `deployment_created`. From then on the engine owns every status field of both documents.
StopDeployment and ContinueDeployment reach the engine only through this protocol.

An implementation may raise any `codedeploy_server.api.errors.CodeDeployError` (for example
`DeploymentAlreadyCompletedException` when the deployment ended between the API's check and the
call): the client gets it as is. Any other exception is answered as a 500 `InternalFailure`.
"""

from __future__ import annotations

from typing import Literal, Protocol

StopStatus = Literal["Pending", "Succeeded"]


class RolloutControl(Protocol):
    """What the API asks of the rollout engine."""

    async def deployment_created(self, deployment_id: str) -> None:
        """The deployment's rows are committed with status `Created`: start rolling it out."""

    async def stop_deployment(self, deployment_id: str, auto_rollback_enabled: bool | None) -> str:
        """Stop a running deployment; `Pending` (events still finishing) or `Succeeded`.

        `auto_rollback_enabled` is StopDeployment's flag as the client sent it (None: absent).
        """

    async def continue_deployment(self, deployment_id: str, wait_type: str) -> None:
        """ContinueDeployment (`READY_WAIT` or `TERMINATION_WAIT`), already validated."""
