"""What every operation handler gets: the store, the rollout engine, the clock, and the
server's identity (region and account, which appear in ARNs)."""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from codedeploy_server.api.rollout import RolloutControl
from codedeploy_server.store import Store

Params = dict[str, Any]
Result = dict[str, Any]

_ID_ALPHABET: Final = string.ascii_uppercase + string.digits


@dataclass(frozen=True, slots=True)
class ApiContext:
    """Shared by every request of one API application."""

    store: Store
    rollout: RolloutControl
    clock: Callable[[], float]
    region: str
    account_id: str

    def now(self) -> float:
        """The current time, epoch seconds to the millisecond (AWS's precision: a time a client
        read back and sends again, as in ListDeployments `createTimeRange`, then compares equal
        to the stored one instead of missing it by a rounded microsecond)."""
        return round(self.clock(), 3)

    def application_arn(self, application: str) -> str:
        """`arn:aws:codedeploy:<region>:<account>:application:<name>`."""
        return f"arn:aws:codedeploy:{self.region}:{self.account_id}:application:{application}"

    def group_arn(self, application: str, group: str) -> str:
        """`arn:aws:codedeploy:<region>:<account>:deploymentgroup:<app>/<group>`."""
        return (
            f"arn:aws:codedeploy:{self.region}:{self.account_id}:deploymentgroup:"
            f"{application}/{group}"
        )

    def instance_arn(self, instance: str, suffix: str) -> str:
        """An on-premises instance's ARN (AWS appends `_` and a random suffix to the name)."""
        return f"arn:aws:codedeploy:{self.region}:{self.account_id}:instance/{instance}_{suffix}"


Handler = Callable[[ApiContext, Params], Awaitable[Result]]


def new_uuid() -> str:
    """A random id in the form CodeDeploy uses for application/group/config ids."""
    return str(uuid.uuid4())


def new_deployment_id() -> str:
    """`d-` and 9 random upper-case letters and digits (CodeDeploy's form)."""
    return "d-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(9))


def random_suffix(length: int = 10) -> str:
    """Random letters and digits, for instance ARNs."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))
