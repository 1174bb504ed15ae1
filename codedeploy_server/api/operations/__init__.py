"""Every CodeDeploy operation the API answers, by name (one module per area).

Operations that only read (Get*, BatchGet*, List*, and the refusals that only check a
deployment exists) run in `store.snapshot()`: a read-only transaction that sees the last
committed state and never queues behind the rollout engine's or the Jobs service's writes.
Every operation that writes (or asks the rollout engine to) uses `store.transaction()`.
"""

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
