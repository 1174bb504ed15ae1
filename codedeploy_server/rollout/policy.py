"""CodeDeploy's in-place scheduling and success rules, as pure functions (service reference §1).

Every predefined and custom deployment config reduces to one number, the minimum healthy
hosts **M** for the deployment's N instances, computed once when the deployment starts:

| config | M |
|---|---|
| `CodeDeployDefault.OneAtATime` (`MOST_CONCURRENCY`) | N - 1 |
| `CodeDeployDefault.HalfAtATime` (`FLEET_PERCENT` 50) | ceil(N / 2) |
| `CodeDeployDefault.AllAtOnce` (`HOST_COUNT` 0) | 0 |
| custom `HOST_COUNT` v | v |
| custom `FLEET_PERCENT` v | ceil(N x v / 100) |

The scheduler is the one the reference derives from AWS's examples (§1.3 [derived]): in-flight
instances count as unhealthy; at any moment at most `(N - failed) - M` instances may be in
flight. When that allowance is <= 0 while instances are still waiting, the deployment fails
(`HEALTH_CONSTRAINTS`); when nothing is left, it succeeds iff `succeeded >= max(M, 1)`. A minimum
that cannot be met before anything starts (`M >= N`) fails at once (`HEALTH_CONSTRAINTS_INVALID`).

This reproduces every documented example: OneAtATime tolerates a failure on the last instance
only, and a single instance must succeed; HalfAtATime runs floor(N/2) at once and needs
ceil(N/2) successes; AllAtOnce runs everything and needs one success; with N = 9, HOST_COUNT 6
runs 3 at once and FLEET_PERCENT 40 runs 5; with N = 10, 95 % fails at once, 90 % and 85 % run
one at a time, 80 % runs two at a time and fails at the second failure unless it is the last
instance.

Because an instance is only started while the allowance covers it, at the moment a failure
exhausts the allowance nothing else is in flight: a `HEALTH_CONSTRAINTS` failure never strands a
running instance (the property tests check this invariant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class HostsType(StrEnum):
    """`MinimumHealthyHosts.type`; MOST_CONCURRENCY is OneAtATime's and cannot be set by users."""

    HOST_COUNT = "HOST_COUNT"
    FLEET_PERCENT = "FLEET_PERCENT"
    MOST_CONCURRENCY = "MOST_CONCURRENCY"


@dataclass(frozen=True, slots=True)
class MinimumHealthyHosts:
    """A deployment config's `minimumHealthyHosts` block."""

    type: HostsType
    value: int

    @classmethod
    def from_doc(cls, doc: object) -> MinimumHealthyHosts:
        """Decode `{"type": ..., "value": ...}` (ValueError/TypeError naming what is wrong)."""
        if not isinstance(doc, dict):
            raise TypeError(f"minimumHealthyHosts must be an object, got {doc!r}")
        kind = HostsType(str(doc.get("type")))
        value = doc.get("value", 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"minimumHealthyHosts.value must be an integer >= 0, got {value!r}")
        if kind is HostsType.FLEET_PERCENT and value > 99:
            raise ValueError(f"a FLEET_PERCENT minimum must be 0 to 99, got {value}")
        return cls(kind, value)

    def to_doc(self) -> dict[str, object]:
        """The botocore `MinimumHealthyHosts` shape."""
        return {"type": self.type.value, "value": self.value}

    def minimum(self, instances: int) -> int:
        """M for a deployment to `instances` instances (computed once, at its start)."""
        if self.type is HostsType.MOST_CONCURRENCY:
            # OneAtATime: "all instances but one are kept healthy" (M = N - 1, and 0 for N = 1:
            # the single instance must still succeed through the max(M, 1) rule).
            return max(instances - 1, 0)
        if self.type is HostsType.FLEET_PERCENT:
            # Fractions round up (§1.2): 95 % of 10 is 10, 40 % of 9 is 4.
            return math.ceil(instances * self.value / 100)
        return self.value


#: The predefined in-place configs (`computePlatform` Server), as GetDeploymentConfig shows them.
BUILTIN_CONFIGS: Final[dict[str, MinimumHealthyHosts]] = {
    "CodeDeployDefault.OneAtATime": MinimumHealthyHosts(HostsType.MOST_CONCURRENCY, 1),
    "CodeDeployDefault.HalfAtATime": MinimumHealthyHosts(HostsType.FLEET_PERCENT, 50),
    "CodeDeployDefault.AllAtOnce": MinimumHealthyHosts(HostsType.HOST_COUNT, 0),
}
#: What a deployment runs with when neither it nor its group names a config.
DEFAULT_CONFIG: Final = "CodeDeployDefault.OneAtATime"


@dataclass(frozen=True, slots=True)
class Counts:
    """Where a deployment's N targets are; `pending` have not been started."""

    succeeded: int = 0
    failed: int = 0
    in_flight: int = 0
    pending: int = 0

    @property
    def total(self) -> int:
        """N."""
        return self.succeeded + self.failed + self.in_flight + self.pending


class Verdict(StrEnum):
    """What the deployment should do next."""

    CONTINUE = "Continue"  # start `start` more instances (possibly 0) and wait
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"  # HEALTH_CONSTRAINTS
    INVALID = "Invalid"  # HEALTH_CONSTRAINTS_INVALID: the minimum cannot be met at the start


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict and, for CONTINUE, how many pending instances to start now."""

    verdict: Verdict
    start: int = 0


def allowance(counts: Counts, minimum: int) -> int:
    """How many instances may be in flight at once now: `(N - failed) - M`."""
    return counts.total - counts.failed - minimum


def decide(counts: Counts, minimum: int) -> Decision:
    """The next step for a deployment with minimum healthy hosts `minimum` (M)."""
    total = counts.total
    if total == 0:
        # Nothing can succeed ("at least one instance must succeed"); the engine reports the
        # more precise NO_INSTANCES for this case.
        return Decision(Verdict.INVALID)
    if counts.succeeded == counts.failed == counts.in_flight == 0 and minimum >= total:
        return Decision(Verdict.INVALID)
    room = allowance(counts, minimum)
    if counts.pending > 0:
        if room <= 0:
            return Decision(Verdict.FAILED)
        return Decision(Verdict.CONTINUE, max(0, min(counts.pending, room - counts.in_flight)))
    if counts.in_flight > 0:
        return Decision(Verdict.CONTINUE)
    if counts.succeeded >= max(minimum, 1):
        return Decision(Verdict.SUCCEEDED)
    return Decision(Verdict.FAILED)


__all__ = [
    "BUILTIN_CONFIGS",
    "DEFAULT_CONFIG",
    "Counts",
    "Decision",
    "HostsType",
    "MinimumHealthyHosts",
    "Verdict",
    "allowance",
    "decide",
]
