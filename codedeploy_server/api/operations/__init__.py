"""Every CodeDeploy operation the API answers, by name (one module per area)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from codedeploy_server.api.context import Handler
from codedeploy_server.api.operations import (
    applications,
    configs,
    deployments,
    groups,
    instances,
    revisions,
    tags,
    targets,
    unsupported,
)

OPERATIONS: Final[Mapping[str, Handler]] = {
    **applications.OPERATIONS,
    **groups.OPERATIONS,
    **configs.OPERATIONS,
    **instances.OPERATIONS,
    **revisions.OPERATIONS,
    **deployments.OPERATIONS,
    **targets.OPERATIONS,
    **tags.OPERATIONS,
    **unsupported.OPERATIONS,
}

__all__ = ["OPERATIONS"]
