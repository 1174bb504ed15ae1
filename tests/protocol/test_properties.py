"""Property tests: decoders never raise anything but our errors, and encodings are stable."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codedeploy_agent.protocol.errors import JobRejected, ProtocolError, RejectReason
from codedeploy_agent.protocol.jobdoc import (
    check_expiry,
    decode_job_document,
    parse_job_document,
    parse_time,
)
from codedeploy_agent.protocol.messages import (
    DescribeAccepted,
    ErrorResponse,
    FailureCode,
    GetPendingAccepted,
    Message,
    Notify,
    NotifyNext,
    Presence,
    StartNextAccepted,
    StartNextRequest,
    UpdateAccepted,
    UpdateRequest,
    check_status_details,
    decode,
    details_for_failure,
    format_time,
)
from codedeploy_agent.protocol.signing import canonical_json
from codedeploy_agent.protocol.topics import JobsTopics


def assert_decodes_or_invalid(parse: Callable[[Any], object], value: Any) -> None:
    """`parse(value)` succeeds or raises JobRejected(InvalidJobDocument), nothing else."""
    try:
        parse(value)
    except JobRejected as err:
        reason = err.reason_code
    else:
        reason = RejectReason.INVALID_JOB_DOCUMENT
    assert reason is RejectReason.INVALID_JOB_DOCUMENT


MESSAGE_TYPES: list[type[Message]] = [
    StartNextRequest,
    StartNextAccepted,
    UpdateRequest,
    UpdateAccepted,
    DescribeAccepted,
    GetPendingAccepted,
    NotifyNext,
    Notify,
    ErrorResponse,
    Presence,
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=30,
)
# Values under the keys the decoders look at, so the fuzzing reaches past the first check.
DOC_KEYS = [
    "Schema",
    "DeploymentId",
    "DeploymentGroupId",
    "DeploymentGroupName",
    "ApplicationName",
    "DeploymentCreator",
    "DeploymentType",
    "AppSpecFilename",
    "Revision",
    "AgentActionOverrides",
    "AllPossibleLifecycleEvents",
    "LifecycleEvents",
    "IgnoreApplicationStopFailures",
    "Environment",
    "IssuedAt",
    "ExpiresAt",
    "Signature",
]
REVISION_KEYS = [
    "RevisionType",
    "S3Revision",
    "GitHubRevision",
    "BitbucketRevision",
    "CodeCommitRevision",
    "GitRevision",
    "UrlRevision",
    "LocalRevision",
    "Download",
]


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_decode_of_arbitrary_bytes_raises_only_protocol_error(data: bytes) -> None:
    """Any bytes either decode or raise ProtocolError, for every message type."""
    for type_ in MESSAGE_TYPES:
        with contextlib.suppress(ProtocolError):
            decode(data, type_)


@given(json_values)
@settings(max_examples=200)
def test_decode_of_arbitrary_json_raises_only_protocol_error(value: Any) -> None:
    """Any JSON value either decodes or raises ProtocolError, for every message type."""
    data = json.dumps(value).encode()
    for type_ in MESSAGE_TYPES:
        with contextlib.suppress(ProtocolError):
            decode(data, type_)


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_job_document_of_arbitrary_bytes_raises_only_job_rejected(data: bytes) -> None:
    """Any bytes either decode as a job document or raise InvalidJobDocument."""
    assert_decodes_or_invalid(decode_job_document, data)


@given(st.data())
@settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_job_documents_raise_only_job_rejected(
    example_document: dict[str, Any], data: st.DataObject
) -> None:
    """Replacing keys of a valid document with arbitrary JSON never crashes the decoder."""
    document = copy.deepcopy(example_document)
    for _ in range(data.draw(st.integers(1, 4))):
        if data.draw(st.booleans()):
            document[data.draw(st.sampled_from(DOC_KEYS))] = data.draw(json_values)
        else:
            revision = document.setdefault("Revision", {})
            if isinstance(revision, dict):
                revision[data.draw(st.sampled_from(REVISION_KEYS))] = data.draw(json_values)
    assert_decodes_or_invalid(parse_job_document, document)


@given(json_values)
def test_job_document_of_arbitrary_json_raises_only_job_rejected(value: Any) -> None:
    """Any JSON value is either a job document or InvalidJobDocument."""
    assert_decodes_or_invalid(parse_job_document, value)


@given(json_values)
def test_canonical_json_is_stable_and_parses_back(value: Any) -> None:
    """Canonical JSON is deterministic, valid JSON, and unchanged by a decode/encode cycle."""
    document = {"v": value}
    try:
        first = canonical_json(document)
    except ProtocolError:
        return
    assert first == canonical_json(json.loads(first))
    assert msgspec.json.decode(first) == document


@given(st.text(), st.text(), st.text(), st.text(max_size=3000))
def test_failure_details_always_satisfy_aws_limits(
    event: str, script: str, message: str, log: str
) -> None:
    """Whatever the inputs, failure details are valid statusDetails."""
    details = details_for_failure(event, FailureCode.SCRIPT_FAILED, script, message, log)
    check_status_details(details)
    assert len(details.get("logTail", "")) <= 1024


@given(st.text(max_size=200))
@pytest.mark.parametrize("thing", ["web-1"])
def test_parse_topic_raises_only_protocol_error(thing: str, topic: str) -> None:
    """Any topic string either parses as this thing's topic or raises ProtocolError."""
    topics = JobsTopics("codedeploy/things", thing)
    for candidate in (topic, f"codedeploy/things/{thing}/{topic}"):
        try:
            parsed = topics.parse_topic(candidate)
        except ProtocolError:
            continue
        assert parsed.thing_name == thing


@st.composite
def rfc3339_texts(draw: st.DrawFn) -> str:
    """Well-formed RFC 3339 strings over the whole calendar, with any offset (edges favoured)."""
    # Naive on purpose: the offset is appended as text below.
    edges = st.sampled_from([datetime.min, datetime.max])  # noqa: DTZ901
    moment = draw(edges | st.datetimes()).isoformat(timespec="seconds")
    minutes = draw(st.integers(-(24 * 60 - 1), 24 * 60 - 1))
    sign = "-" if minutes < 0 else "+"
    offset = draw(st.sampled_from(["Z", f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"]))
    return moment + offset


RFC3339_LIKE = rfc3339_texts()


@given(RFC3339_LIKE | st.text(max_size=40))
def test_parse_time_raises_only_value_error(text: str) -> None:
    """Any string, including out-of-range dates and offsets, parses or raises ValueError."""
    with contextlib.suppress(ValueError):
        parsed = parse_time(text)
        assert parsed.tzinfo is UTC


@given(st.datetimes(timezones=st.just(UTC)))
def test_format_time_round_trips_through_parse_time(moment: datetime) -> None:
    """format_time output is RFC 3339 that parse_time reads back (to the millisecond)."""
    parsed = parse_time(format_time(moment))
    assert parsed == moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@given(st.data())
def test_documents_with_odd_times_raise_only_job_rejected(
    example_document: dict[str, Any], data: st.DataObject
) -> None:
    """IssuedAt/ExpiresAt at the edges of the calendar never crash decoding or expiry."""
    document = copy.deepcopy(example_document)
    document["IssuedAt"] = data.draw(RFC3339_LIKE)
    document["ExpiresAt"] = data.draw(RFC3339_LIKE)
    try:
        doc = parse_job_document(document)
    except JobRejected as err:
        reason = err.reason_code
    else:
        reason = RejectReason.INVALID_JOB_DOCUMENT
        # The agent's clock: any realistic time (not year 1, where `now - leeway` underflows).
        # hypothesis takes naive bounds and attaches `timezones` itself.
        low, high = datetime(1970, 1, 1), datetime(2200, 1, 1)  # noqa: DTZ001
        now = data.draw(st.datetimes(low, high, timezones=st.just(UTC)))
        with contextlib.suppress(JobRejected):
            check_expiry(doc, now, leeway=timedelta(minutes=5))
    assert reason is RejectReason.INVALID_JOB_DOCUMENT
