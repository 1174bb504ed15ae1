"""Lifecycle hooks: running appspec scripts as CodeDeploy does (reference §4).

`HookRunner.run_event` runs one event's scripts; `DeploymentLogs` writes a deployment's
scripts.log and the agent-wide deployments log.
"""

from __future__ import annotations

from codedeploy_agent.hooks.process import enable_subreaper
from codedeploy_agent.hooks.runner import HookRunner
from codedeploy_agent.hooks.scriptlog import DeploymentLogs

__all__ = ["DeploymentLogs", "HookRunner", "enable_subreaper"]
