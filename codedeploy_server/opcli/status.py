"""`codedeploy status DEPLOYMENT_ID`: a deployment, its targets, and why anything failed.

GetDeployment, then ListDeploymentTargets + BatchGetDeploymentTargets: the deployment's fields,
one row per target, and for every failed lifecycle event its diagnostics (error code, script,
message) and the tail of the script log the agent sent.
"""

from __future__ import annotations

from rich.text import Text

from codedeploy_server.opcli.client import CodeDeployApi
from codedeploy_server.opcli.queries import fetch_snapshot
from codedeploy_server.opcli.render import (
    Output,
    deployment_fields,
    failure_lines,
    fields_grid,
    status_text,
    targets_table,
)


def run_status(api: CodeDeployApi, deployment_id: str, output: Output) -> int:
    """Show the deployment; always 0 (a read: use `deploy --wait` to gate on the outcome)."""
    snapshot = fetch_snapshot(api, deployment_id)
    view = snapshot.deployment
    output.show(Text.assemble(f"Deployment {view.deployment_id}  ", status_text(view.status)))
    output.show(fields_grid(deployment_fields(view)))
    if snapshot.targets:
        output.line()
        output.show(targets_table(snapshot.targets, tty=output.tty))
    failures = failure_lines(snapshot.targets)
    if failures:
        output.line()
        output.line("Failed lifecycle events:")
        output.lines(f"  {line}" for line in failures)
    return 0
