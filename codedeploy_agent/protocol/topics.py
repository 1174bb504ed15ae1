"""MQTT topic names of the AWS IoT Jobs data plane (PROTOCOL.md "Topics"), built and parsed.

`{root}` is `{topic_root}/{thingName}/jobs`. The agent subscribes only to the replies and
notifications it uses (`JobsTopics.agent_filters`), never to `{root}/#`: a broker that echoes a
client's own publishes (AWS IoT does) would otherwise send every request back to the agent.
Every incoming topic is parsed with `JobsTopics.parse_topic`, which refuses topics of another
thing (AWS IoT Jobs asks devices to check the thing name of every reply). The control plane,
which serves every thing, uses `server_filters` and `parse_any_thing`.

Our own topics (presence, live logs; not part of IoT Jobs) live under the **events root**:
`{events_root}/{thingName}/presence` and `{events_root}/{thingName}/logs/{deploymentId}`. It
defaults to the topic root itself, so with the default `codedeploy/things` every topic is where
PROTOCOL.md puts it; an events root beginning with `$` is refused (`validate_events_root`).

Topics under AWS IoT Core
-------------------------
This deviates from PROTOCOL.md ("Presence and events"), which puts presence and logs under
`{topic_root}`. With `topic_root: $aws/things` (what operators set against AWS IoT Core) those
would be `$aws/things/{thing}/presence` and `.../logs/{deploymentId}`: reserved topics that IoT
Core does not support, and AWS documents that "Unsupported publish or subscribe operations to
reserved topics can result in a terminated connection" (IoT Core developer guide, "Reserved
topics"). The agent, whose last will is its presence topic, would be disconnected in a loop. So
when the topic root begins with `$` the events root defaults to `codedeploy/things`
(`default_events_root`): the Jobs topics stay `$aws/things/{thing}/jobs/...` and presence and
logs go to `codedeploy/things/{thing}/presence` and `.../logs/{deploymentId}`, ordinary topics
on which IoT Core supports retained messages and last wills (an IoT policy must allow them).
Config key `mqtt.events_topic_root` (agent and server) sets another events root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from codedeploy_agent.protocol.errors import ProtocolError

DEFAULT_TOPIC_ROOT: Final = "codedeploy/things"
AWS_TOPIC_ROOT: Final = "$aws/things"
#: The job id DescribeJobExecution accepts for "the next pending execution".
NEXT_JOB: Final = "$next"

_THING_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A deployment id is one topic level (and one directory name on the host).
_DEPLOYMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


class TopicKind(StrEnum):
    """What a topic carries; the value is the topic's suffix pattern after `{thingName}/`."""

    NOTIFY = "jobs/notify"
    NOTIFY_NEXT = "jobs/notify-next"
    START_NEXT = "jobs/start-next"
    START_NEXT_ACCEPTED = "jobs/start-next/accepted"
    START_NEXT_REJECTED = "jobs/start-next/rejected"
    GET_PENDING = "jobs/get"
    GET_PENDING_ACCEPTED = "jobs/get/accepted"
    GET_PENDING_REJECTED = "jobs/get/rejected"
    DESCRIBE = "jobs/{jobId}/get"
    DESCRIBE_ACCEPTED = "jobs/{jobId}/get/accepted"
    DESCRIBE_REJECTED = "jobs/{jobId}/get/rejected"
    UPDATE = "jobs/{jobId}/update"
    UPDATE_ACCEPTED = "jobs/{jobId}/update/accepted"
    UPDATE_REJECTED = "jobs/{jobId}/update/rejected"
    PRESENCE = "presence"
    LOGS = "logs/{deploymentId}"


# The levels after `{topic_root}/{thingName}/` of thing-level Jobs topics.
_THING_LEVEL: Final[dict[tuple[str, ...], TopicKind]] = {
    ("jobs", "notify"): TopicKind.NOTIFY,
    ("jobs", "notify-next"): TopicKind.NOTIFY_NEXT,
    ("jobs", "start-next"): TopicKind.START_NEXT,
    ("jobs", "start-next", "accepted"): TopicKind.START_NEXT_ACCEPTED,
    ("jobs", "start-next", "rejected"): TopicKind.START_NEXT_REJECTED,
    ("jobs", "get"): TopicKind.GET_PENDING,
    ("jobs", "get", "accepted"): TopicKind.GET_PENDING_ACCEPTED,
    ("jobs", "get", "rejected"): TopicKind.GET_PENDING_REJECTED,
}
# `jobs/{jobId}/<op>[/<reply>]`: unambiguous with the table above because no job operation is
# called `accepted` or `rejected`, and thing-level topics never have an operation in level 3.
_JOB_LEVEL: Final[dict[tuple[str, ...], TopicKind]] = {
    ("get",): TopicKind.DESCRIBE,
    ("get", "accepted"): TopicKind.DESCRIBE_ACCEPTED,
    ("get", "rejected"): TopicKind.DESCRIBE_REJECTED,
    ("update",): TopicKind.UPDATE,
    ("update", "accepted"): TopicKind.UPDATE_ACCEPTED,
    ("update", "rejected"): TopicKind.UPDATE_REJECTED,
}
_DESCRIBE_KINDS: Final = frozenset(
    {TopicKind.DESCRIBE, TopicKind.DESCRIBE_ACCEPTED, TopicKind.DESCRIBE_REJECTED}
)


def validate_thing_name(name: str) -> str:
    """Return `name` if it is a valid thing name (`[A-Za-z0-9_.:-]{1,128}`), else raise."""
    if not isinstance(name, str) or not _THING_NAME.fullmatch(name):
        raise ProtocolError(
            f"Invalid thing name {name!r}: it must be 1 to 128 characters of letters, digits, "
            "'_', '.', ':' and '-' (set the agent's instance name accordingly)"
        )
    return name


def validate_job_id(job_id: str, *, allow_next: bool = False) -> str:
    """Return `job_id` if IoT Jobs allows it (`[a-zA-Z0-9_-]{1,64}`, or `$next` if allowed)."""
    if allow_next and job_id == NEXT_JOB:
        return job_id
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise ProtocolError(
            f"Invalid job id {job_id!r}: it must be 1 to 64 characters of letters, digits, "
            "'_' and '-'"
        )
    return job_id


def validate_deployment_id(deployment_id: str) -> str:
    """Return `deployment_id` if it is usable as one topic level and one directory name."""
    if not isinstance(deployment_id, str) or not _DEPLOYMENT_ID.fullmatch(deployment_id):
        raise ProtocolError(
            f"Invalid deployment id {deployment_id!r}: it must be 1 to 128 characters of "
            "letters, digits, '_', '.', ':' and '-', starting with a letter or digit"
        )
    return deployment_id


def validate_topic_root(topic_root: str) -> str:
    """Return `topic_root` if it is a plain topic prefix (no wildcards, no empty levels)."""
    levels = topic_root.split("/") if isinstance(topic_root, str) else [""]
    if any(not level or "+" in level or "#" in level or "\0" in level for level in levels):
        raise ProtocolError(
            f"Invalid topic root {topic_root!r}: it must be non-empty topic levels separated "
            f"by '/', without '+', '#' or empty levels (default {DEFAULT_TOPIC_ROOT!r}, "
            f"{AWS_TOPIC_ROOT!r} for AWS IoT Core)"
        )
    return topic_root


def default_events_root(topic_root: str) -> str:
    """The events root used when none is configured: `topic_root`, unless it begins with `$`
    (reserved topics: `$aws/things` on AWS IoT Core), then `DEFAULT_TOPIC_ROOT`."""
    return DEFAULT_TOPIC_ROOT if topic_root.startswith("$") else topic_root


def validate_events_root(events_root: str) -> str:
    """Return `events_root` if it is a valid topic root that does not begin with `$`, else raise."""
    validate_topic_root(events_root)
    if events_root.startswith("$"):
        raise ProtocolError(
            f"Invalid events topic root {events_root!r}: it must not begin with '$'. Topics "
            "beginning with '$' are reserved: AWS IoT Core disconnects a client that publishes "
            "to a reserved topic it does not support, and many brokers refuse such publishes, "
            "while the agent publishes its presence (also as its last will) and live logs "
            f"there. Use a plain root such as {DEFAULT_TOPIC_ROOT!r}"
        )
    return events_root


def resolve_events_root(topic_root: str, events_root: str | None = None) -> str:
    """The events root to use: `events_root` (validated), or `default_events_root(topic_root)`."""
    return validate_events_root(
        default_events_root(topic_root) if events_root is None else events_root
    )


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """An incoming topic, decoded: whose it is, what it carries, and for which job."""

    thing_name: str
    kind: TopicKind
    #: The job id of per-job topics (may be `$next` for DESCRIBE*), else None.
    job_id: str | None = None
    #: The deployment id of a LOGS topic, else None.
    deployment_id: str | None = None


class JobsTopics:
    """Every topic of one thing, and the parser that refuses other things' topics.

    Jobs topics are under `topic_root`; presence and logs under `events_root` (None: the
    default of `default_events_root`, so existing callers keep their topics).
    """

    def __init__(self, topic_root: str, thing_name: str, *, events_root: str | None = None) -> None:
        self.topic_root = validate_topic_root(topic_root)
        self.thing_name = validate_thing_name(thing_name)
        self.events_root = resolve_events_root(self.topic_root, events_root)
        self.root = f"{self.topic_root}/{self.thing_name}/jobs"

    def __repr__(self) -> str:
        return (
            f"JobsTopics({self.topic_root!r}, {self.thing_name!r}, "
            f"events_root={self.events_root!r})"
        )

    # Thing-level Jobs topics.
    @property
    def notify(self) -> str:
        """JobExecutionsChanged (service -> agent)."""
        return f"{self.root}/notify"

    @property
    def notify_next(self) -> str:
        """NextJobExecutionChanged (service -> agent)."""
        return f"{self.root}/notify-next"

    @property
    def start_next(self) -> str:
        """StartNextPendingJobExecution request (agent -> service)."""
        return f"{self.root}/start-next"

    @property
    def start_next_accepted(self) -> str:
        """StartNextPendingJobExecution reply."""
        return f"{self.root}/start-next/accepted"

    @property
    def start_next_rejected(self) -> str:
        """StartNextPendingJobExecution error reply."""
        return f"{self.root}/start-next/rejected"

    @property
    def get_pending(self) -> str:
        """GetPendingJobExecutions request (agent -> service)."""
        return f"{self.root}/get"

    @property
    def get_pending_accepted(self) -> str:
        """GetPendingJobExecutions reply."""
        return f"{self.root}/get/accepted"

    @property
    def get_pending_rejected(self) -> str:
        """GetPendingJobExecutions error reply."""
        return f"{self.root}/get/rejected"

    # Per-job Jobs topics.
    def get(self, job_id: str) -> str:
        """DescribeJobExecution request for `job_id` (or `$next`)."""
        return f"{self.root}/{validate_job_id(job_id, allow_next=True)}/get"

    def get_accepted(self, job_id: str) -> str:
        """DescribeJobExecution reply."""
        return f"{self.get(job_id)}/accepted"

    def get_rejected(self, job_id: str) -> str:
        """DescribeJobExecution error reply."""
        return f"{self.get(job_id)}/rejected"

    def update(self, job_id: str) -> str:
        """UpdateJobExecution request for `job_id`."""
        return f"{self.root}/{validate_job_id(job_id)}/update"

    def update_accepted(self, job_id: str) -> str:
        """UpdateJobExecution reply (sent only to the device that published the update)."""
        return f"{self.update(job_id)}/accepted"

    def update_rejected(self, job_id: str) -> str:
        """UpdateJobExecution error reply."""
        return f"{self.update(job_id)}/rejected"

    # Our own topics (not IoT Jobs), under the events root.
    @property
    def presence(self) -> str:
        """Retained online/offline state of the agent (also its last will)."""
        return f"{self.events_root}/{self.thing_name}/presence"

    def logs(self, deployment_id: str) -> str:
        """Live `scripts.log` lines of one deployment (QoS 0, best effort)."""
        return f"{self.events_root}/{self.thing_name}/logs/{validate_deployment_id(deployment_id)}"

    @property
    def agent_filters(self) -> tuple[str, ...]:
        """The subscriptions the agent needs: notifications and the replies to its requests.

        GetPendingJobExecutions is not among them: the agent learns everything it needs from
        notify/notify-next, start-next and DescribeJobExecution.
        """
        return (
            self.notify,
            self.notify_next,
            self.start_next_accepted,
            self.start_next_rejected,
            f"{self.root}/+/update/accepted",
            f"{self.root}/+/update/rejected",
            f"{self.root}/+/get/accepted",
            f"{self.root}/+/get/rejected",
        )

    def parse_topic(self, topic: str) -> ParsedTopic:
        """Decode an incoming topic of this thing; raise ProtocolError for any other topic."""
        parsed = parse_any_thing(self.topic_root, topic, events_root=self.events_root)
        if parsed.thing_name != self.thing_name:
            raise ProtocolError(
                f"Topic {topic!r} is for thing {parsed.thing_name!r}, not for this agent "
                f"({self.thing_name!r}); ignoring it"
            )
        return parsed


def server_filters(topic_root: str, *, events_root: str | None = None) -> tuple[str, ...]:
    """The control plane's subscriptions: every thing's requests (under `topic_root`), presence
    and logs (under the events root; None: `default_events_root(topic_root)`).

    Explicit `+` levels, never `#` alone: a `#` filter does not match topics under `$aws`.
    """
    root = validate_topic_root(topic_root)
    events = resolve_events_root(root, events_root)
    return (
        f"{root}/+/jobs/start-next",
        f"{root}/+/jobs/get",
        f"{root}/+/jobs/+/get",
        f"{root}/+/jobs/+/update",
        f"{events}/+/presence",
        f"{events}/+/logs/+",
    )


def parse_any_thing(topic_root: str, topic: str, *, events_root: str | None = None) -> ParsedTopic:
    """Decode a topic for whichever thing it names: a Jobs topic under `topic_root`, or a
    presence or logs topic under the events root (None: `default_events_root(topic_root)`);
    raise ProtocolError for anything else.

    When one root lies inside the other and a topic reads both ways, the Jobs reading wins.
    """
    events = default_events_root(topic_root) if events_root is None else events_root
    under_a_root = False
    invalid_thing: str | None = None
    for root, parse in ((topic_root, _parse_jobs), (events, _parse_events)):
        prefix = f"{root}/"
        if not topic.startswith(prefix):
            continue
        under_a_root = True
        thing_name, _, rest = topic[len(prefix) :].partition("/")
        if not _THING_NAME.fullmatch(thing_name):
            invalid_thing = thing_name if invalid_thing is None else invalid_thing
            continue
        parsed = parse(thing_name, tuple(rest.split("/")))
        if parsed is not None:
            return parsed
    if not under_a_root:
        where = f"the topic root {topic_root!r}"
        if events != topic_root:
            where += f" or the events root {events!r}"
        raise ProtocolError(f"Topic {topic!r} is not under {where}")
    if invalid_thing is not None:
        raise ProtocolError(f"Topic {topic!r} does not name a valid thing ({invalid_thing!r})")
    raise ProtocolError(f"Topic {topic!r} is not a topic of the jobs protocol")


def _parse_jobs(thing_name: str, levels: tuple[str, ...]) -> ParsedTopic | None:
    """A Jobs topic from the levels after `{topic_root}/{thingName}/`, or None."""
    if (kind := _THING_LEVEL.get(levels)) is not None:
        return ParsedTopic(thing_name, kind)
    if len(levels) >= 3 and levels[0] == "jobs":
        kind = _JOB_LEVEL.get(levels[2:])
        job_id = levels[1]
        if kind is not None and (
            _JOB_ID.fullmatch(job_id) or (job_id == NEXT_JOB and kind in _DESCRIBE_KINDS)
        ):
            return ParsedTopic(thing_name, kind, job_id=job_id)
    return None


def _parse_events(thing_name: str, levels: tuple[str, ...]) -> ParsedTopic | None:
    """A presence or logs topic from the levels after `{events_root}/{thingName}/`, or None."""
    if levels == ("presence",):
        return ParsedTopic(thing_name, TopicKind.PRESENCE)
    if len(levels) == 2 and levels[0] == "logs" and _DEPLOYMENT_ID.fullmatch(levels[1]):
        return ParsedTopic(thing_name, TopicKind.LOGS, deployment_id=levels[1])
    return None
