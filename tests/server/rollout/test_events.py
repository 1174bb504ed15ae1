"""Lifecycle events of a target document from its execution's updates (events.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from codedeploy_agent.protocol.messages import (
    EventStatus,
    FailureCode,
    JobStatus,
    details_for_event,
    details_for_failure,
)
from codedeploy_server.rollout.document import LIFECYCLE_EVENTS
from codedeploy_server.rollout.events import (
    apply_change,
    fail_target,
    mark_queued,
    pending_events,
    skip_target,
)


def _target() -> dict[str, Any]:
    target: dict[str, Any] = {
        "deploymentId": "d-AAAAAAAAA",
        "targetId": "host-1",
        "status": "Pending",
        "lifecycleEvents": pending_events(LIFECYCLE_EVENTS),
    }
    mark_queued(target, 100.0)
    return target


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _states(target: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["lifecycleEventName"], e["status"]) for e in target["lifecycleEvents"]]


def _event(target: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in target["lifecycleEvents"] if e["lifecycleEventName"] == name)


def test_progress_then_success() -> None:
    """Each IN_PROGRESS update records its event and shows the next as running; SUCCEEDED
    ends the target. An event the agent reports Skipped (it could not run a previous revision's
    scripts, deleted by hand) keeps only its endTime."""
    target = _target()
    assert target["status"] == "InProgress"
    assert apply_change(target, JobStatus.IN_PROGRESS, {}, 2, 101.0)
    assert _event(target, "ApplicationStop") == {
        "lifecycleEventName": "ApplicationStop",
        "status": "InProgress",
        "startTime": 101.0,
    }
    details = details_for_event("ApplicationStop", EventStatus.SKIPPED, _at(101), _at(101.5))
    assert apply_change(target, JobStatus.IN_PROGRESS, details, 3, 101.6)
    assert _event(target, "ApplicationStop") == {
        "lifecycleEventName": "ApplicationStop",
        "status": "Skipped",
        "endTime": 101.5,
    }
    assert _event(target, "DownloadBundle")["status"] == "InProgress"
    assert _event(target, "DownloadBundle")["startTime"] == 101.5
    for version, name in enumerate(LIFECYCLE_EVENTS[1:-1], start=4):
        details = details_for_event(name, EventStatus.SUCCEEDED, _at(102), _at(103))
        assert apply_change(target, JobStatus.IN_PROGRESS, details, version, 103.0)
    last = details_for_event("ValidateService", EventStatus.SUCCEEDED, _at(104), _at(105.25))
    assert apply_change(target, JobStatus.SUCCEEDED, last, 20, 105.3)
    assert target["status"] == "Succeeded"
    assert _states(target) == [("ApplicationStop", "Skipped")] + [
        (name, "Succeeded") for name in LIFECYCLE_EVENTS[1:]
    ]
    assert _event(target, "ValidateService")["endTime"] == 105.25
    assert not apply_change(target, JobStatus.FAILED, {}, 21, 106.0), "a terminal target stays"


def test_failure_carries_diagnostics_and_skips_the_rest() -> None:
    """A FAILED update fails its event with the agent's diagnostics (newlines restored) and
    skips every later event."""
    target = _target()
    apply_change(target, JobStatus.IN_PROGRESS, {}, 2, 101.0)
    for version, name in enumerate(LIFECYCLE_EVENTS[:5], start=3):
        details = details_for_event(name, EventStatus.SUCCEEDED, _at(102), _at(103))
        apply_change(target, JobStatus.IN_PROGRESS, details, version, 103.0)
    failure = details_for_failure(
        "ApplicationStart",
        FailureCode.SCRIPT_FAILED,
        "scripts/start.sh",
        "Script at specified location: scripts/start.sh run as user root failed with exit code 3",
        "[stdout]line 1\n[stderr]line 2\n",
    )
    assert apply_change(target, JobStatus.FAILED, failure, 9, 110.0)
    assert target["status"] == "Failed"
    start = _event(target, "ApplicationStart")
    assert start == {
        "lifecycleEventName": "ApplicationStart",
        "status": "Failed",
        "startTime": 103.0,
        "endTime": 110.0,
        "diagnostics": {
            "errorCode": "ScriptFailed",
            "scriptName": "scripts/start.sh",
            "message": "Script at specified location: scripts/start.sh run as user root "
            "failed with exit code 3",
            "logTail": "[stdout]line 1\n[stderr]line 2\n",
        },
    }
    assert _event(target, "ValidateService") == {
        "lifecycleEventName": "ValidateService",
        "status": "Skipped",
        "endTime": 110.0,
    }


def test_rejected_job_fails_the_first_event_with_the_agent_code_in_the_message() -> None:
    """A REJECTED job (no event ran) fails ApplicationStop with UnknownError; the agent's own
    code (not in botocore's enum) leads the message."""
    target = _target()
    details = details_for_failure(
        None, FailureCode.SIGNATURE_INVALID, "", "The job document's signature is invalid", ""
    )
    assert apply_change(target, JobStatus.REJECTED, details, 2, 101.0)
    stop = _event(target, "ApplicationStop")
    assert stop["status"] == "Failed"
    assert stop["diagnostics"] == {
        "errorCode": "UnknownError",
        "scriptName": "",
        "message": "SignatureInvalid: The job document's signature is invalid",
        "logTail": "",
    }
    assert [s for _, s in _states(target)[1:]] == ["Skipped"] * 6


def test_old_versions_are_ignored_and_missed_events_are_unknown() -> None:
    """A change not newer than the last applied changes nothing; events the stream jumped
    over (missed while the server was down) become Unknown."""
    target = _target()
    late = details_for_event("AfterInstall", EventStatus.SUCCEEDED, _at(102), _at(103))
    assert apply_change(target, JobStatus.IN_PROGRESS, late, 7, 103.0)
    assert _states(target)[:5] == [
        ("ApplicationStop", "Unknown"),
        ("DownloadBundle", "Unknown"),
        ("BeforeInstall", "Unknown"),
        ("Install", "Unknown"),
        ("AfterInstall", "Succeeded"),
    ]
    assert _event(target, "ApplicationStart")["status"] == "InProgress"
    stale = details_for_event("BeforeInstall", EventStatus.SUCCEEDED, _at(102), _at(103))
    assert not apply_change(target, JobStatus.IN_PROGRESS, stale, 5, 104.0)
    assert _event(target, "BeforeInstall")["status"] == "Unknown"


def test_timed_out_and_service_decisions() -> None:
    """TIMED_OUT fails the running event with a message naming the cause; a target the
    service fails or skips records that."""
    target = _target()
    apply_change(target, JobStatus.IN_PROGRESS, {}, 2, 101.0)
    assert apply_change(target, JobStatus.TIMED_OUT, {}, 3, 200.0)
    stop = _event(target, "ApplicationStop")
    assert stop["status"] == "Failed"
    assert stop["startTime"] == 101.0
    assert stop["diagnostics"]["message"].startswith(
        "The agent stopped reporting progress: the job execution timed out (TIMED_OUT)"
    )
    offline = _target()
    fail_target(offline, 400.0, "The agent on host-1 never reported its presence")
    assert offline["status"] == "Failed"
    assert _event(offline, "ApplicationStop")["diagnostics"]["message"] == (
        "The agent on host-1 never reported its presence"
    )
    never = _target()
    skip_target(never, 300.0)
    assert never["status"] == "Skipped"
    assert {e["status"] for e in never["lifecycleEvents"]} == {"Skipped"}
    assert all(e["endTime"] == 300.0 for e in never["lifecycleEvents"])


def test_ignored_application_stop_failure_is_shown_failed() -> None:
    """An ApplicationStop failure the deployment ignores is Failed with the agent's message,
    and the next event runs."""
    target = _target()
    details = details_for_event("ApplicationStop", EventStatus.FAILED, _at(101), _at(102))
    details["message"] = "ignored: Script at specified location: stop.sh failed"
    assert apply_change(target, JobStatus.IN_PROGRESS, details, 2, 102.0)
    stop = _event(target, "ApplicationStop")
    assert stop["status"] == "Failed"
    assert stop["diagnostics"]["message"] == "ignored: Script at specified location: stop.sh failed"
    assert _event(target, "DownloadBundle")["status"] == "InProgress"
    assert target["status"] == "InProgress"


def test_warnings_of_a_succeeded_event_follow_succeeded() -> None:
    """The agent's warnings on a Succeeded event reach the diagnostics' message; the event
    stays Succeeded with errorCode Success."""
    target = _target()
    details = details_for_event("Install", EventStatus.SUCCEEDED, _at(101), _at(102))
    details["message"] = "warning: Could not remove /srv/app/locked.txt\u2028warning: another"
    assert apply_change(target, JobStatus.IN_PROGRESS, details, 2, 102.0)
    install = _event(target, "Install")
    assert install["status"] == "Succeeded"
    assert install["diagnostics"]["errorCode"] == "Success"
    assert install["diagnostics"]["message"] == (
        "Succeeded\nwarning: Could not remove /srv/app/locked.txt\nwarning: another"
    )
    plain = details_for_event("AfterInstall", EventStatus.SUCCEEDED, _at(102), _at(103))
    assert apply_change(target, JobStatus.IN_PROGRESS, plain, 3, 103.0)
    assert _event(target, "AfterInstall")["diagnostics"]["message"] == "Succeeded"
