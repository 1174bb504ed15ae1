"""`codedeploy stop DEPLOYMENT_ID [--auto-rollback-enabled | --no-auto-rollback-enabled]`."""

from __future__ import annotations

from codedeploy_server.opcli.client import CodeDeployApi
from codedeploy_server.opcli.render import Output


def run_stop(
    api: CodeDeployApi, deployment_id: str, output: Output, *, auto_rollback: bool | None
) -> int:
    """StopDeployment; print `Succeeded: <message>` or `Pending: <message>`.

    Without either flag `autoRollbackEnabled` is not sent, so the deployment group's
    DEPLOYMENT_STOP_ON_REQUEST setting decides.
    """
    params: dict[str, object] = {"deploymentId": deployment_id}
    if auto_rollback is not None:
        params["autoRollbackEnabled"] = auto_rollback
    answer = api.stop_deployment(**params)
    status = str(answer.get("status", "Unknown"))
    message = answer.get("statusMessage")
    output.line(f"{status}: {message}" if message else status)
    return 0
