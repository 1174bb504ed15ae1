"""`deploy --wait` progress from recorded API answers: change lines, summaries, the live table."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from codedeploy_server.opcli.model import Snapshot, decode_deployment, decode_target
from codedeploy_server.opcli.render import Output, progress_view, targets_table
from codedeploy_server.opcli.watch import LineView, change_lines, summary_lines
from tests.server.opcli.recorded import all_events, deployment, event, target

FAILED_VALIDATE = event(
    "ValidateService",
    "Failed",
    code="ScriptFailed",
    script="scripts/validate.sh",
    message="Script at specified location: scripts/validate.sh run as user root failed with "
    "exit code 3",
    tail="[stdout]checking http://127.0.0.1/\n[stderr]curl: (7) Failed to connect",
)


def snap(info: dict[str, Any], *targets: dict[str, Any]) -> Snapshot:
    """A snapshot decoded from botocore-shaped answers."""
    return Snapshot(decode_deployment(info), tuple(decode_target(t) for t in targets))


def polls() -> list[Snapshot]:
    """The successive polls of a two-host deployment whose second host fails ValidateService."""
    return [
        snap(deployment("Created"), target("host-1", "Pending"), target("host-2", "Pending")),
        snap(
            deployment("InProgress", overview={"Pending": 1, "InProgress": 1}),
            target(
                "host-1",
                "InProgress",
                {"ApplicationStop": "Succeeded", "DownloadBundle": "InProgress"},
            ),
            target("host-2", "Pending"),
        ),
        snap(
            deployment("InProgress", overview={"Succeeded": 1, "InProgress": 1}),
            target("host-1", "Succeeded", all_events("Succeeded")),
            target(
                "host-2",
                "InProgress",
                {"ApplicationStop": "Skipped", "DownloadBundle": "Succeeded"},
            ),
        ),
        snap(
            deployment(
                "Failed",
                overview={"Succeeded": 1, "Failed": 1},
                errorInformation={
                    "code": "HEALTH_CONSTRAINTS",
                    "message": "The overall deployment failed because too many individual "
                    "instances failed deployment",
                },
                rollbackInfo={
                    "rollbackDeploymentId": "d-ROLLBACK01",
                    "rollbackMessage": "Automatic rollback started",
                },
            ),
            target("host-1", "Succeeded", all_events("Succeeded")),
            target(
                "host-2",
                "Failed",
                {**all_events("Succeeded", "ApplicationStart"), "ApplicationStop": "Skipped"},
                failed=FAILED_VALIDATE,
            ),
        ),
    ]


def test_change_lines_print_one_line_per_change_in_order() -> None:
    """Each poll prints only what changed; final statuses come after the changes under them."""
    snapshots = polls()
    printed: list[list[str]] = []
    previous = None
    for current in snapshots:
        printed.append(change_lines(previous, current))
        previous = current
    assert printed == [
        ["d-ABCDEFGH1 Created", "d-ABCDEFGH1 host-1 Pending", "d-ABCDEFGH1 host-2 Pending"],
        [
            "d-ABCDEFGH1 InProgress",
            "d-ABCDEFGH1 host-1 InProgress",
            "d-ABCDEFGH1 host-1 ApplicationStop Succeeded",
            "d-ABCDEFGH1 host-1 DownloadBundle InProgress",
        ],
        [
            "d-ABCDEFGH1 host-1 DownloadBundle Succeeded",
            "d-ABCDEFGH1 host-1 BeforeInstall Succeeded",
            "d-ABCDEFGH1 host-1 Install Succeeded",
            "d-ABCDEFGH1 host-1 AfterInstall Succeeded",
            "d-ABCDEFGH1 host-1 ApplicationStart Succeeded",
            "d-ABCDEFGH1 host-1 ValidateService Succeeded",
            "d-ABCDEFGH1 host-1 Succeeded",
            "d-ABCDEFGH1 host-2 InProgress",
            "d-ABCDEFGH1 host-2 DownloadBundle Succeeded",
        ],
        [
            "d-ABCDEFGH1 host-2 BeforeInstall Succeeded",
            "d-ABCDEFGH1 host-2 Install Succeeded",
            "d-ABCDEFGH1 host-2 AfterInstall Succeeded",
            "d-ABCDEFGH1 host-2 ApplicationStart Succeeded",
            (
                "d-ABCDEFGH1 host-2 ValidateService Failed (ScriptFailed: Script at specified "
                "location: scripts/validate.sh run as user root failed with exit code 3)"
            ),
            "d-ABCDEFGH1 host-2 Failed",
            "d-ABCDEFGH1 Failed",
        ],
    ]


def test_an_event_seen_running_prints_its_skipped_end_but_never_started_ones_do_not() -> None:
    """An event printed InProgress that ends Skipped prints its final status; events skipped
    after a failure, which never started, print nothing."""
    failed = event(
        "BeforeInstall", "Failed", code="ScriptFailed", message="failed with exit code 1"
    )
    snapshots = [
        snap(
            deployment("InProgress"),
            target("host-1", "InProgress", {"ApplicationStop": "InProgress"}),
        ),
        snap(
            deployment("InProgress"),
            target(
                "host-1",
                "InProgress",
                {"ApplicationStop": "Skipped", "DownloadBundle": "InProgress"},
            ),
        ),
        snap(
            deployment("InProgress"),
            target(
                "host-1",
                "Failed",
                {
                    "ApplicationStop": "Skipped",
                    "DownloadBundle": "Succeeded",
                    **dict.fromkeys(
                        ("Install", "AfterInstall", "ApplicationStart", "ValidateService"),
                        "Skipped",
                    ),
                },
                failed=failed,
            ),
        ),
    ]
    printed = [
        change_lines(previous, current)
        for previous, current in zip([None, *snapshots], snapshots, strict=False)
    ]
    assert printed == [
        [
            "d-ABCDEFGH1 InProgress",
            "d-ABCDEFGH1 host-1 InProgress",
            "d-ABCDEFGH1 host-1 ApplicationStop InProgress",
        ],
        [
            "d-ABCDEFGH1 host-1 ApplicationStop Skipped",
            "d-ABCDEFGH1 host-1 DownloadBundle InProgress",
        ],
        [
            "d-ABCDEFGH1 host-1 DownloadBundle Succeeded",
            "d-ABCDEFGH1 host-1 BeforeInstall Failed (ScriptFailed: failed with exit code 1)",
            "d-ABCDEFGH1 host-1 Failed",
        ],
    ]


def test_an_unchanged_poll_prints_nothing() -> None:
    """Polling the same state twice prints no line."""
    first = polls()[1]
    assert change_lines(first, first) == []


def test_line_view_writes_the_changes_to_the_output() -> None:
    """The non-terminal view prints the change lines of every snapshot it is given."""
    out = io.StringIO()
    view = LineView(Output(out, io.StringIO()))
    for snapshot in polls()[:2]:
        view.update(snapshot)
    view.close()
    assert out.getvalue() == (
        "d-ABCDEFGH1 Created\n"
        "d-ABCDEFGH1 host-1 Pending\n"
        "d-ABCDEFGH1 host-2 Pending\n"
        "d-ABCDEFGH1 InProgress\n"
        "d-ABCDEFGH1 host-1 InProgress\n"
        "d-ABCDEFGH1 host-1 ApplicationStop Succeeded\n"
        "d-ABCDEFGH1 host-1 DownloadBundle InProgress\n"
    )


def test_summary_names_the_error_the_failure_its_log_tail_and_the_rollback() -> None:
    """The end summary has the error, counts, the failed event's diagnostics and the rollback."""
    assert summary_lines(polls()[-1]) == [
        "Deployment d-ABCDEFGH1 Failed",
        (
            "  Error: HEALTH_CONSTRAINTS: The overall deployment failed because too many individual "
            "instances failed deployment"
        ),
        "  Instances: 1 Succeeded, 1 Failed, 0 Skipped, 0 InProgress, 0 Pending",
        "  host-2 ValidateService Failed (ScriptFailed)",
        "    Script: scripts/validate.sh",
        (
            "    Message: Script at specified location: scripts/validate.sh run as user root failed "
            "with exit code 3"
        ),
        "    Log tail:",
        "      [stdout]checking http://127.0.0.1/",
        "      [stderr]curl: (7) Failed to connect",
        "  Rolled back by: d-ROLLBACK01 (Automatic rollback started)",
    ]


def test_summary_of_a_success_is_short() -> None:
    """A succeeded deployment's summary is its status and counts."""
    done = snap(
        deployment("Succeeded", overview={"Succeeded": 2}),
        target("host-1", "Succeeded", all_events("Succeeded")),
        target("host-2", "Succeeded", all_events("Succeeded")),
    )
    assert summary_lines(done) == [
        "Deployment d-ABCDEFGH1 Succeeded",
        "  Instances: 2 Succeeded, 0 Failed, 0 Skipped, 0 InProgress, 0 Pending",
    ]


def test_rollback_expected_follows_the_auto_rollback_configuration() -> None:
    """A failed deployment expects a rollback only when its config lists DEPLOYMENT_FAILURE."""
    configured = {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]}
    assert decode_deployment(
        deployment("Failed", autoRollbackConfiguration=configured)
    ).rollback_expected()
    assert not decode_deployment(
        deployment("Stopped", autoRollbackConfiguration=configured)
    ).rollback_expected()
    assert not decode_deployment(
        deployment(
            "Failed",
            autoRollbackConfiguration=configured,
            rollbackInfo={"rollbackTriggeringDeploymentId": "d-ORIGINAL1"},
        )
    ).rollback_expected()
    assert not decode_deployment(deployment("Failed")).rollback_expected()


def test_targets_table_in_a_pipe_is_plain_aligned_text() -> None:
    """Outside a terminal the targets table has no box characters and no colour."""
    out = io.StringIO()
    output = Output(out, io.StringIO())
    output.show(targets_table(polls()[-1].targets, tty=False))
    assert [line.rstrip() for line in out.getvalue().splitlines()] == [
        "Instance  Status     Events  Current event                          Updated",
        "host-1    Succeeded  7/7                                            2024-05-01 12:00:05",
        "host-2    Failed     7/7     ValidateService Failed (ScriptFailed)  2024-05-01 12:00:05",
    ]


def test_live_view_draws_one_glyph_per_event() -> None:
    """The terminal view shows the headline, a glyph per lifecycle event and the counts."""
    console = Console(record=True, width=120, force_terminal=True, file=io.StringIO())
    console.print(progress_view(polls()[2]))
    text = console.export_text()
    lines = [line.rstrip() for line in text.splitlines()]
    assert lines[0] == ("Deployment d-ABCDEFGH1 InProgress  web/prod  CodeDeployDefault.OneAtATime")
    assert lines[1:5] == [
        "Instance   Status       Events    Current event   Updated",
        "─" * 69,
        "host-1     Succeeded    ✓✓✓✓✓✓✓                   2024-05-01 12:00:05",
        "host-2     InProgress   -✓·····                   2024-05-01 12:00:05",
    ]
    assert lines[-1] == "1 Succeeded, 0 Failed, 0 Skipped, 1 InProgress, 0 Pending"
