"""Lifecycle events: their names, CodeDeploy's default order, and which revision each runs from."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class LifecycleEvent(StrEnum):
    """The lifecycle events a host agent runs (reference §1.3). Custom events are plain strings."""

    BEFORE_BLOCK_TRAFFIC = "BeforeBlockTraffic"
    AFTER_BLOCK_TRAFFIC = "AfterBlockTraffic"
    APPLICATION_STOP = "ApplicationStop"
    DOWNLOAD_BUNDLE = "DownloadBundle"
    BEFORE_INSTALL = "BeforeInstall"
    INSTALL = "Install"
    AFTER_INSTALL = "AfterInstall"
    APPLICATION_START = "ApplicationStart"
    VALIDATE_SERVICE = "ValidateService"
    BEFORE_ALLOW_TRAFFIC = "BeforeAllowTraffic"
    AFTER_ALLOW_TRAFFIC = "AfterAllowTraffic"


#: `Deployer::DEFAULT_ORDERED_LIFECYCLE_EVENTS` of the real agent.
DEFAULT_ORDER: Final[tuple[str, ...]] = tuple(e.value for e in LifecycleEvent)

#: Events the agent itself performs; they have no scripts.
AGENT_EVENTS: Final[frozenset[str]] = frozenset(
    {LifecycleEvent.DOWNLOAD_BUNDLE, LifecycleEvent.INSTALL}
)

#: Events whose scripts come from the appspec's `hooks` section, in the default order.
HOOK_EVENTS: Final[tuple[str, ...]] = tuple(e for e in DEFAULT_ORDER if e not in AGENT_EVENTS)

#: Events that may come before DownloadBundle / Install (codedeploy-local's order check).
BEFORE_DOWNLOAD_BUNDLE: Final[tuple[str, ...]] = (
    LifecycleEvent.BEFORE_BLOCK_TRAFFIC,
    LifecycleEvent.AFTER_BLOCK_TRAFFIC,
    LifecycleEvent.APPLICATION_STOP,
)
BEFORE_INSTALL_EVENTS: Final[tuple[str, ...]] = (
    *BEFORE_DOWNLOAD_BUNDLE,
    LifecycleEvent.DOWNLOAD_BUNDLE,
    LifecycleEvent.BEFORE_INSTALL,
)


class RevisionChoice(StrEnum):
    """Which revision's archive a hook's scripts come from (reference §1.4)."""

    NEW = "New"
    LAST_SUCCESSFUL_OR_IGNORE = "LastSuccessfulOrIgnore"
    MOST_RECENT_OR_IGNORE = "MostRecentOrIgnore"


_NORMAL: Final[dict[str, RevisionChoice]] = {
    LifecycleEvent.BEFORE_BLOCK_TRAFFIC: RevisionChoice.LAST_SUCCESSFUL_OR_IGNORE,
    LifecycleEvent.AFTER_BLOCK_TRAFFIC: RevisionChoice.LAST_SUCCESSFUL_OR_IGNORE,
    LifecycleEvent.APPLICATION_STOP: RevisionChoice.LAST_SUCCESSFUL_OR_IGNORE,
}
_BLUE_GREEN_ROLLBACK: Final[dict[str, RevisionChoice]] = {
    LifecycleEvent.BEFORE_BLOCK_TRAFFIC: RevisionChoice.MOST_RECENT_OR_IGNORE,
    LifecycleEvent.AFTER_BLOCK_TRAFFIC: RevisionChoice.MOST_RECENT_OR_IGNORE,
    LifecycleEvent.APPLICATION_STOP: RevisionChoice.LAST_SUCCESSFUL_OR_IGNORE,
    LifecycleEvent.BEFORE_ALLOW_TRAFFIC: RevisionChoice.LAST_SUCCESSFUL_OR_IGNORE,
    LifecycleEvent.AFTER_ALLOW_TRAFFIC: RevisionChoice.LAST_SUCCESSFUL_OR_IGNORE,
}

ROLLBACK_CREATOR: Final = "codeDeployRollback"


def revision_choice(event: str, *, creator: str, deployment_type: str) -> RevisionChoice:
    """Return where `event`'s scripts come from (`MAPPING_BETWEEN_HOOKS_AND_DEPLOYMENTS`)."""
    if creator == ROLLBACK_CREATOR and deployment_type == "BLUE_GREEN":
        return _BLUE_GREEN_ROLLBACK.get(event, RevisionChoice.NEW)
    return _NORMAL.get(event, RevisionChoice.NEW)
