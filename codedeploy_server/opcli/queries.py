"""Reads the commands share: deployments, their targets and on-premises instances, decoded.

Every function makes plain, blocking boto3 calls (call them from a thread in async code) and
lets botocore's exceptions through: the command runner maps them (`client.api_errors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from codedeploy_server.opcli.client import CodeDeployApi, chunks, paginate
from codedeploy_server.opcli.model import (
    DeploymentView,
    InstanceView,
    Snapshot,
    TargetView,
    decode_deployment,
    decode_instance,
    decode_target,
)


def fetch_deployment(api: CodeDeployApi, deployment_id: str) -> DeploymentView:
    """GetDeployment, decoded."""
    return decode_deployment(api.get_deployment(deploymentId=deployment_id)["deploymentInfo"])


def fetch_deployments(api: CodeDeployApi, deployment_ids: Sequence[str]) -> list[DeploymentView]:
    """BatchGetDeployments over any number of ids (in batches), in the order of `deployment_ids`."""
    found: dict[str, DeploymentView] = {}
    for batch in chunks(deployment_ids):
        for info in api.batch_get_deployments(deploymentIds=list(batch)).get("deploymentsInfo", []):
            view = decode_deployment(info)
            found[view.deployment_id] = view
    return [found[i] for i in deployment_ids if i in found]


def list_target_ids(api: CodeDeployApi, deployment_id: str) -> list[str]:
    """ListDeploymentTargets, every page."""
    ids: list[str] = paginate(api.list_deployment_targets, "targetIds", deploymentId=deployment_id)
    return ids


def fetch_targets(
    api: CodeDeployApi, deployment_id: str, target_ids: Sequence[str]
) -> list[TargetView]:
    """BatchGetDeploymentTargets (in batches), in the order of `target_ids`."""
    found: dict[str, TargetView] = {}
    for batch in chunks(target_ids):
        answer = api.batch_get_deployment_targets(deploymentId=deployment_id, targetIds=list(batch))
        for target in answer.get("deploymentTargets", []):
            view = decode_target(target)
            found[view.target_id] = view
    return [found[i] for i in target_ids if i in found]


def fetch_snapshot(api: CodeDeployApi, deployment_id: str) -> Snapshot:
    """The deployment and all of its targets."""
    deployment = fetch_deployment(api, deployment_id)
    targets = fetch_targets(api, deployment_id, list_target_ids(api, deployment_id))
    return Snapshot(deployment, tuple(targets))


def poll(api: CodeDeployApi, deployment_id: str, previous: Snapshot | None) -> Snapshot:
    """The next snapshot, asking only for what can still change.

    The target list is fixed once the deployment has some (the API writes them with the
    deployment), and a target in a terminal status never changes again: only the others are
    fetched, which keeps a 1-second poll of a large fleet cheap.
    """
    deployment = fetch_deployment(api, deployment_id)
    if previous is None or not previous.targets:
        ids = list_target_ids(api, deployment_id)
        return Snapshot(deployment, tuple(fetch_targets(api, deployment_id, ids)))
    pending = [t.target_id for t in previous.targets if not t.terminal]
    fresh = {t.target_id: t for t in fetch_targets(api, deployment_id, pending)} if pending else {}
    return Snapshot(deployment, tuple(fresh.get(t.target_id, t) for t in previous.targets))


def list_instances(
    api: CodeDeployApi,
    *,
    tag_filters: Sequence[dict[str, str]] = (),
    registration_status: str | None = None,
) -> list[InstanceView]:
    """ListOnPremisesInstances with the filters, then BatchGetOnPremisesInstances, by name."""
    params: dict[str, Any] = {}
    if tag_filters:
        params["tagFilters"] = list(tag_filters)
    if registration_status:
        params["registrationStatus"] = registration_status
    names: list[str] = paginate(api.list_on_premises_instances, "instanceNames", **params)
    found: list[InstanceView] = []
    for batch in chunks(names):
        answer = api.batch_get_on_premises_instances(instanceNames=list(batch))
        found.extend(decode_instance(info) for info in answer.get("instanceInfos", []))
    return sorted(found, key=lambda instance: instance.name)
