"""Operations of the CodeDeploy API that have no subject on this server, answered the way AWS
answers when there is nothing to act on, with a message saying why.

- GitHub account connections (ListGitHubAccountTokenNames, DeleteGitHubAccountToken): agents
  fetch GitHub revisions with their own configured credentials, so there are none to list.
- PutLifecycleEventHookExecutionStatus and SkipWaitTimeForInstanceTermination belong to
  Lambda/ECS hooks and blue/green deployments, which this server does not run.
- DeleteResourcesByExternalId: nothing here carries an external id (CloudFormation's).
"""

from __future__ import annotations

from typing import Final

from codedeploy_server.api import errors as e
from codedeploy_server.api import queries
from codedeploy_server.api.context import ApiContext, Handler, Params, Result


async def list_github_account_token_names(ctx: ApiContext, params: Params) -> Result:
    """ListGitHubAccountTokenNames: always empty."""
    return {"tokenNameList": []}


async def delete_github_account_token(ctx: ApiContext, params: Params) -> Result:
    """DeleteGitHubAccountToken: there is no connection to delete."""
    raise e.GitHubAccountTokenDoesNotExistException(
        f"No GitHub account connection exists with the name {params.get('tokenName')!r}: agents "
        "use their own GitHub credentials (codedeploy-agent config), this server keeps none."
    )


async def put_lifecycle_event_hook_execution_status(ctx: ApiContext, params: Params) -> Result:
    """PutLifecycleEventHookExecutionStatus: Lambda/ECS hooks only."""
    deployment_id = params.get("deploymentId")
    if deployment_id:
        async with ctx.store.snapshot() as tx:
            await queries.deployment(tx, deployment_id)
    raise e.UnsupportedActionForDeploymentTypeException(
        "Lifecycle hook execution statuses are reported by Lambda and Amazon ECS hook "
        "functions; this server runs in-place deployments whose hooks are scripts the agents "
        "report themselves."
    )


async def skip_wait_time_for_instance_termination(ctx: ApiContext, params: Params) -> Result:
    """SkipWaitTimeForInstanceTermination: blue/green only."""
    deployment_id = params.get("deploymentId")
    if not deployment_id:
        raise e.DeploymentIdRequiredException("At least one deployment ID must be specified.")
    async with ctx.store.snapshot() as tx:
        await queries.deployment(tx, deployment_id)
    raise e.UnsupportedActionForDeploymentTypeException(
        f"Deployment {deployment_id} is an in-place deployment: there are no original instances "
        "waiting to be terminated (this applies to blue/green deployments)."
    )


async def delete_resources_by_external_id(ctx: ApiContext, params: Params) -> Result:
    """DeleteResourcesByExternalId: nothing carries an external id here."""
    return {}


OPERATIONS: Final[dict[str, Handler]] = {
    "ListGitHubAccountTokenNames": list_github_account_token_names,
    "DeleteGitHubAccountToken": delete_github_account_token,
    "PutLifecycleEventHookExecutionStatus": put_lifecycle_event_hook_execution_status,
    "SkipWaitTimeForInstanceTermination": skip_wait_time_for_instance_termination,
    "DeleteResourcesByExternalId": delete_resources_by_external_id,
}
