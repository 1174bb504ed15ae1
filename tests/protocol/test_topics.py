"""Topic names of PROTOCOL.md: building, subscription filters and parsing; the events root of
presence and logs (topics.py, "Topics under AWS IoT Core")."""

from __future__ import annotations

import pytest

from codedeploy_agent.protocol.errors import ProtocolError
from codedeploy_agent.protocol.topics import (
    JobsTopics,
    ParsedTopic,
    TopicKind,
    default_events_root,
    parse_any_thing,
    resolve_events_root,
    server_filters,
    validate_deployment_id,
    validate_events_root,
    validate_job_id,
    validate_thing_name,
    validate_topic_root,
)

ROOT = "codedeploy/things"


@pytest.fixture
def topics() -> JobsTopics:
    """Topics of the thing `web-1` under the default root."""
    return JobsTopics(ROOT, "web-1")


def test_every_topic_is_built_as_protocol_md_says(topics: JobsTopics) -> None:
    """Each Jobs topic is `{topic_root}/{thing}/jobs/...` exactly as in the PROTOCOL.md table."""
    base = "codedeploy/things/web-1/jobs"
    assert topics.notify_next == f"{base}/notify-next"
    assert topics.notify == f"{base}/notify"
    assert topics.start_next == f"{base}/start-next"
    assert topics.start_next_accepted == f"{base}/start-next/accepted"
    assert topics.start_next_rejected == f"{base}/start-next/rejected"
    assert topics.update("job-1") == f"{base}/job-1/update"
    assert topics.update_accepted("job-1") == f"{base}/job-1/update/accepted"
    assert topics.update_rejected("job-1") == f"{base}/job-1/update/rejected"
    assert topics.get("job-1") == f"{base}/job-1/get"
    assert topics.get_accepted("job-1") == f"{base}/job-1/get/accepted"
    assert topics.get_rejected("job-1") == f"{base}/job-1/get/rejected"
    assert topics.get("$next") == f"{base}/$next/get"
    assert topics.get_pending == f"{base}/get"
    assert topics.get_pending_accepted == f"{base}/get/accepted"
    assert topics.get_pending_rejected == f"{base}/get/rejected"


def test_presence_and_logs_topics_are_outside_jobs(topics: JobsTopics) -> None:
    """Presence and logs live at `{topic_root}/{thing}/presence` and `/logs/{deploymentId}`."""
    assert topics.presence == "codedeploy/things/web-1/presence"
    assert topics.logs("d-ABCDEFGHI") == "codedeploy/things/web-1/logs/d-ABCDEFGHI"


def test_aws_topic_root_is_accepted() -> None:
    """`$aws/things` builds the reserved AWS IoT topics."""
    topics = JobsTopics("$aws/things", "MyThing")
    assert topics.start_next == "$aws/things/MyThing/jobs/start-next"


def test_agent_filters_are_the_minimal_set(topics: JobsTopics) -> None:
    """The agent subscribes to notifications and replies only, with `+` for job ids."""
    base = "codedeploy/things/web-1/jobs"
    assert topics.agent_filters == (
        f"{base}/notify",
        f"{base}/notify-next",
        f"{base}/start-next/accepted",
        f"{base}/start-next/rejected",
        f"{base}/+/update/accepted",
        f"{base}/+/update/rejected",
        f"{base}/+/get/accepted",
        f"{base}/+/get/rejected",
    )


def test_server_filters_cover_every_thing() -> None:
    """The control plane subscribes to every thing's requests, presence and logs."""
    assert server_filters(ROOT) == (
        "codedeploy/things/+/jobs/start-next",
        "codedeploy/things/+/jobs/get",
        "codedeploy/things/+/jobs/+/get",
        "codedeploy/things/+/jobs/+/update",
        "codedeploy/things/+/presence",
        "codedeploy/things/+/logs/+",
    )


def test_server_filters_put_presence_and_logs_under_the_events_root() -> None:
    """Under `$aws/things` the requests stay reserved topics; presence and logs default to
    `codedeploy/things`, or go under an explicit events root."""
    jobs = (
        "$aws/things/+/jobs/start-next",
        "$aws/things/+/jobs/get",
        "$aws/things/+/jobs/+/get",
        "$aws/things/+/jobs/+/update",
    )
    assert server_filters("$aws/things") == (
        *jobs,
        "codedeploy/things/+/presence",
        "codedeploy/things/+/logs/+",
    )
    assert server_filters("$aws/things", events_root="fleet/events") == (
        *jobs,
        "fleet/events/+/presence",
        "fleet/events/+/logs/+",
    )


def test_server_filters_refuse_a_reserved_events_root() -> None:
    """An explicit events root beginning with `$` is refused, not subscribed to."""
    with pytest.raises(ProtocolError, match=r"^Invalid events topic root '\$aws/events'"):
        server_filters("$aws/things", events_root="$aws/events")


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [
        ("jobs/notify", ParsedTopic("web-1", TopicKind.NOTIFY)),
        ("jobs/notify-next", ParsedTopic("web-1", TopicKind.NOTIFY_NEXT)),
        ("jobs/start-next", ParsedTopic("web-1", TopicKind.START_NEXT)),
        ("jobs/start-next/accepted", ParsedTopic("web-1", TopicKind.START_NEXT_ACCEPTED)),
        ("jobs/start-next/rejected", ParsedTopic("web-1", TopicKind.START_NEXT_REJECTED)),
        ("jobs/get", ParsedTopic("web-1", TopicKind.GET_PENDING)),
        ("jobs/get/accepted", ParsedTopic("web-1", TopicKind.GET_PENDING_ACCEPTED)),
        ("jobs/get/rejected", ParsedTopic("web-1", TopicKind.GET_PENDING_REJECTED)),
        ("jobs/j1/get", ParsedTopic("web-1", TopicKind.DESCRIBE, "j1")),
        ("jobs/j1/get/accepted", ParsedTopic("web-1", TopicKind.DESCRIBE_ACCEPTED, "j1")),
        ("jobs/$next/get/rejected", ParsedTopic("web-1", TopicKind.DESCRIBE_REJECTED, "$next")),
        ("jobs/j1/update", ParsedTopic("web-1", TopicKind.UPDATE, "j1")),
        ("jobs/j1/update/accepted", ParsedTopic("web-1", TopicKind.UPDATE_ACCEPTED, "j1")),
        ("jobs/j1/update/rejected", ParsedTopic("web-1", TopicKind.UPDATE_REJECTED, "j1")),
        # A job may be called like a thing-level operation; the level count disambiguates.
        ("jobs/get/get", ParsedTopic("web-1", TopicKind.DESCRIBE, "get")),
        ("jobs/notify/update/accepted", ParsedTopic("web-1", TopicKind.UPDATE_ACCEPTED, "notify")),
        ("presence", ParsedTopic("web-1", TopicKind.PRESENCE)),
        ("logs/d-ABC", ParsedTopic("web-1", TopicKind.LOGS, deployment_id="d-ABC")),
    ],
)
def test_parse_topic_decodes_every_kind(
    topics: JobsTopics, suffix: str, expected: ParsedTopic
) -> None:
    """Every topic of the protocol parses into its thing, kind and job id."""
    assert topics.parse_topic(f"{ROOT}/web-1/{suffix}") == expected


def test_parse_topic_round_trips_built_topics(topics: JobsTopics) -> None:
    """A topic built by JobsTopics parses back to the same kind and job id."""
    assert topics.parse_topic(topics.update_accepted("abc_9")) == ParsedTopic(
        "web-1", TopicKind.UPDATE_ACCEPTED, "abc_9"
    )
    assert topics.parse_topic(topics.notify_next).kind is TopicKind.NOTIFY_NEXT


def test_parse_topic_refuses_another_things_topic(topics: JobsTopics) -> None:
    """A reply addressed to another thing is refused with both names in the message."""
    with pytest.raises(ProtocolError) as info:
        topics.parse_topic(f"{ROOT}/web-2/jobs/notify-next")
    assert str(info.value) == (
        "Topic 'codedeploy/things/web-2/jobs/notify-next' is for thing 'web-2', not for this "
        "agent ('web-1'); ignoring it"
    )


def test_parse_topic_refuses_a_thing_name_prefix(topics: JobsTopics) -> None:
    """`web-10` is not `web-1`: names are compared whole, not by prefix."""
    with pytest.raises(ProtocolError, match="is for thing 'web-10'"):
        topics.parse_topic(f"{ROOT}/web-10/jobs/notify")


@pytest.mark.parametrize(
    "topic",
    [
        "other/things/web-1/jobs/notify",
        "codedeploy/thingsX/web-1/jobs/notify",
        "codedeploy/things",
    ],
)
def test_parse_topic_refuses_topics_outside_the_root(topics: JobsTopics, topic: str) -> None:
    """Topics not under the configured root are refused."""
    with pytest.raises(ProtocolError, match="is not under the topic root 'codedeploy/things'"):
        topics.parse_topic(topic)


@pytest.mark.parametrize(
    "suffix",
    [
        "jobs",
        "jobs/notify/extra",
        "jobs/j1/delete",
        "jobs/j1/update/maybe",
        "jobs/$next/update",
        "jobs/bad!id/get",
        "jobs/" + "a" * 65 + "/get",
        "logs",
        "logs/../x",
        "presence/x",
        "",
    ],
)
def test_parse_topic_refuses_unknown_shapes(topics: JobsTopics, suffix: str) -> None:
    """Unknown operations, bad job ids and `$next` outside DescribeJobExecution are refused."""
    with pytest.raises(ProtocolError, match="is not a topic of the jobs protocol"):
        topics.parse_topic(f"{ROOT}/web-1/{suffix}")


def test_parse_any_thing_accepts_every_thing() -> None:
    """The server-side parser returns whichever thing the topic names."""
    parsed = parse_any_thing("$aws/things", "$aws/things/host.example.com/jobs/j-7/update")
    assert parsed == ParsedTopic("host.example.com", TopicKind.UPDATE, "j-7")


def test_parse_any_thing_refuses_invalid_thing_names() -> None:
    """A thing level with characters outside `[A-Za-z0-9_.:-]` is refused."""
    with pytest.raises(ProtocolError, match="does not name a valid thing"):
        parse_any_thing(ROOT, f"{ROOT}/bad thing/jobs/notify")


@pytest.mark.parametrize("name", ["web-1", "a", "A.b:c_d-e", "x" * 128])
def test_validate_thing_name_accepts_valid_names(name: str) -> None:
    """Names of 1-128 letters, digits, `_.:-` are valid."""
    assert validate_thing_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 129, "a/b", "a+b", "a#", "$aws", "ä"])
def test_validate_thing_name_rejects_invalid_names(name: str) -> None:
    """Other names raise ProtocolError explaining the rule."""
    with pytest.raises(ProtocolError) as info:
        validate_thing_name(name)
    assert str(info.value) == (
        f"Invalid thing name {name!r}: it must be 1 to 128 characters of letters, digits, "
        "'_', '.', ':' and '-' (set the agent's instance name accordingly)"
    )


def test_building_topics_for_an_invalid_thing_fails() -> None:
    """JobsTopics validates its thing name at construction."""
    with pytest.raises(ProtocolError, match="Invalid thing name 'a/b'"):
        JobsTopics(ROOT, "a/b")


@pytest.mark.parametrize("job_id", ["a", "A-b_9", "x" * 64])
def test_validate_job_id_accepts_iot_job_ids(job_id: str) -> None:
    """Job ids of 1-64 letters, digits, `_` and `-` are valid."""
    assert validate_job_id(job_id) == job_id


@pytest.mark.parametrize("job_id", ["", "x" * 65, "a.b", "a/b", "+", "$next"])
def test_validate_job_id_rejects_others(job_id: str) -> None:
    """Other job ids (and `$next` where not allowed) raise ProtocolError."""
    with pytest.raises(ProtocolError) as info:
        validate_job_id(job_id)
    assert str(info.value) == (
        f"Invalid job id {job_id!r}: it must be 1 to 64 characters of letters, digits, '_' and '-'"
    )


def test_update_topic_refuses_next(topics: JobsTopics) -> None:
    """`$next` is only valid for DescribeJobExecution, not UpdateJobExecution."""
    with pytest.raises(ProtocolError, match="Invalid job id"):
        topics.update("$next")


def test_logs_topic_refuses_a_deployment_id_with_levels(topics: JobsTopics) -> None:
    """A deployment id that would add topic levels or wildcards is refused."""
    for bad in ("a/b", "+", "#", "", "../x"):
        with pytest.raises(ProtocolError, match="Invalid deployment id"):
            topics.logs(bad)
    assert validate_deployment_id("d-1") == "d-1"


@pytest.mark.parametrize("root", ["", "/things", "things/", "a//b", "a/+/b", "a/#"])
def test_invalid_topic_roots_are_refused(root: str) -> None:
    """Topic roots with wildcards or empty levels raise ProtocolError."""
    with pytest.raises(ProtocolError, match="Invalid topic root"):
        validate_topic_root(root)


# --- the events root ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_root", "expected"),
    [
        ("codedeploy/things", "codedeploy/things"),
        ("fleet/things", "fleet/things"),
        ("$aws/things", "codedeploy/things"),
        ("$share/x", "codedeploy/things"),
        ("a$b", "a$b"),
    ],
)
def test_events_root_default_rule(topic_root: str, expected: str) -> None:
    """The events root is the topic root, unless that begins with `$`: then codedeploy/things."""
    assert default_events_root(topic_root) == expected
    assert resolve_events_root(topic_root) == expected
    assert JobsTopics(topic_root, "web-1").events_root == expected


def test_explicit_events_root_wins_over_the_default() -> None:
    """A configured events root is used as given, whatever the topic root."""
    assert resolve_events_root("$aws/things", "fleet/events") == "fleet/events"
    assert resolve_events_root("codedeploy/things", "fleet/events") == "fleet/events"


@pytest.mark.parametrize("root", ["$aws/things", "$SYS", "$share/g/x"])
def test_events_root_beginning_with_dollar_is_refused(root: str) -> None:
    """`$...` events roots are refused, with the reason and the plain root to use instead."""
    with pytest.raises(ProtocolError) as info:
        validate_events_root(root)
    assert str(info.value) == (
        f"Invalid events topic root {root!r}: it must not begin with '$'. Topics beginning "
        "with '$' are reserved: AWS IoT Core disconnects a client that publishes to a reserved "
        "topic it does not support, and many brokers refuse such publishes, while the agent "
        "publishes its presence (also as its last will) and live logs there. Use a plain root "
        "such as 'codedeploy/things'"
    )
    with pytest.raises(ProtocolError, match="must not begin with"):
        JobsTopics("$aws/things", "web-1", events_root=root)


@pytest.mark.parametrize("root", ["", "/x", "x/", "a//b", "a/+", "a/#"])
def test_events_root_follows_the_topic_root_rules(root: str) -> None:
    """An events root with wildcards or empty levels is refused like a topic root."""
    with pytest.raises(ProtocolError, match="Invalid topic root"):
        validate_events_root(root)


def test_aws_topic_root_keeps_presence_and_logs_out_of_reserved_topics() -> None:
    """With `$aws/things`, Jobs topics are reserved ones and presence/logs are not."""
    topics = JobsTopics("$aws/things", "web-1")
    assert topics.start_next == "$aws/things/web-1/jobs/start-next"
    assert topics.update("j1") == "$aws/things/web-1/jobs/j1/update"
    assert topics.presence == "codedeploy/things/web-1/presence"
    assert topics.logs("d-ABC") == "codedeploy/things/web-1/logs/d-ABC"
    assert all(f.startswith("$aws/things/web-1/jobs/") for f in topics.agent_filters)
    assert repr(topics) == ("JobsTopics('$aws/things', 'web-1', events_root='codedeploy/things')")


def test_explicit_events_root_builds_presence_and_logs() -> None:
    """A configured events root is where presence and logs go; Jobs topics do not move."""
    topics = JobsTopics("codedeploy/things", "web-1", events_root="fleet/events")
    assert topics.presence == "fleet/events/web-1/presence"
    assert topics.logs("d-1") == "fleet/events/web-1/logs/d-1"
    assert topics.notify == "codedeploy/things/web-1/jobs/notify"


@pytest.fixture
def aws_topics() -> JobsTopics:
    """Topics of `web-1` against AWS IoT Core (events root by default)."""
    return JobsTopics("$aws/things", "web-1")


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("codedeploy/things/web-1/presence", ParsedTopic("web-1", TopicKind.PRESENCE)),
        (
            "codedeploy/things/web-1/logs/d-1",
            ParsedTopic("web-1", TopicKind.LOGS, deployment_id="d-1"),
        ),
        ("$aws/things/web-1/jobs/notify-next", ParsedTopic("web-1", TopicKind.NOTIFY_NEXT)),
        (
            "$aws/things/web-1/jobs/j1/update/accepted",
            ParsedTopic("web-1", TopicKind.UPDATE_ACCEPTED, "j1"),
        ),
        (
            "$aws/things/web-1/jobs/$next/get/accepted",
            ParsedTopic("web-1", TopicKind.DESCRIBE_ACCEPTED, "$next"),
        ),
    ],
)
def test_parse_topic_under_two_roots(
    aws_topics: JobsTopics, topic: str, expected: ParsedTopic
) -> None:
    """Presence and logs parse under the events root, Jobs topics under `$aws/things`."""
    assert aws_topics.parse_topic(topic) == expected
    assert parse_any_thing("$aws/things", topic) == expected


@pytest.mark.parametrize(
    "topic",
    [
        "$aws/things/web-1/presence",
        "$aws/things/web-1/logs/d-1",
        "codedeploy/things/web-1/jobs/notify",
        "codedeploy/things/web-1/jobs/j1/update/accepted",
    ],
)
def test_each_root_carries_only_its_own_topics(aws_topics: JobsTopics, topic: str) -> None:
    """Presence under the Jobs root, or Jobs topics under the events root, are refused."""
    with pytest.raises(ProtocolError) as info:
        aws_topics.parse_topic(topic)
    assert str(info.value) == f"Topic {topic!r} is not a topic of the jobs protocol"


def test_parse_topic_under_two_roots_refuses_another_thing(aws_topics: JobsTopics) -> None:
    """The agent still refuses another thing's presence topic under the events root."""
    with pytest.raises(ProtocolError) as info:
        aws_topics.parse_topic("codedeploy/things/web-2/presence")
    assert str(info.value) == (
        "Topic 'codedeploy/things/web-2/presence' is for thing 'web-2', not for this agent "
        "('web-1'); ignoring it"
    )


def test_parse_under_two_roots_refuses_an_invalid_thing() -> None:
    """A thing level that is not a valid thing name is refused under the events root too."""
    with pytest.raises(ProtocolError) as info:
        parse_any_thing("$aws/things", "codedeploy/things/bad thing/presence")
    assert str(info.value) == (
        "Topic 'codedeploy/things/bad thing/presence' does not name a valid thing ('bad thing')"
    )


def test_parse_outside_both_roots_names_both() -> None:
    """A topic under neither root is refused with both roots in the message."""
    with pytest.raises(ProtocolError) as info:
        parse_any_thing("$aws/things", "other/web-1/presence")
    assert str(info.value) == (
        "Topic 'other/web-1/presence' is not under the topic root '$aws/things' or the events "
        "root 'codedeploy/things'"
    )


def test_parse_any_thing_with_an_explicit_events_root() -> None:
    """The server-side parser reads presence under the configured events root, not the default."""
    parsed = parse_any_thing("$aws/things", "fleet/events/h1/presence", events_root="fleet/events")
    assert parsed == ParsedTopic("h1", TopicKind.PRESENCE)
    with pytest.raises(ProtocolError, match="is not under the topic root"):
        parse_any_thing("$aws/things", "codedeploy/things/h1/presence", events_root="fleet/events")


def test_nested_events_root_parses_both_kinds() -> None:
    """An events root inside the topic root still parses each topic to the right kind."""
    topics = JobsTopics("fleet", "web-1", events_root="fleet/events")
    assert topics.parse_topic("fleet/events/web-1/presence") == ParsedTopic(
        "web-1", TopicKind.PRESENCE
    )
    assert topics.parse_topic("fleet/web-1/jobs/notify") == ParsedTopic("web-1", TopicKind.NOTIFY)
    with pytest.raises(ProtocolError, match="is not a topic of the jobs protocol"):
        topics.parse_topic("fleet/web-1/presence")
