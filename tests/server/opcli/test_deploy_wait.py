"""`deploy --wait` over recorded answers: the poll loop, the rollback it follows, the status."""

from __future__ import annotations

import io
import re
from typing import Any, cast

import pytest

from codedeploy_server.opcli.client import CodeDeployApi
from codedeploy_server.opcli.deploy import DeployOptions, follow, run_deploy
from codedeploy_server.opcli.errors import AbortedError
from codedeploy_server.opcli.render import Output
from tests.server.opcli.recorded import RecordedApi, all_events, deployment, target
from tests.server.opcli.test_watch import FAILED_VALIDATE

REVISION = {
    "revisionType": "S3",
    "s3Location": {"bucket": "codedeploy-server-bundles", "key": "ab" * 32, "bundleType": "zip"},
}
AUTO_ROLLBACK = {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]}


def no_sleep(seconds: float) -> None:
    """The loop's pause, skipped: the recorded answers move on at every poll."""
    del seconds


def failing_script() -> dict[str, list[tuple[dict[str, Any], list[dict[str, Any]]]]]:
    """A deployment that fails on host-2, then its rollback that succeeds on both hosts."""
    rid = "d-ROLLBACK01"
    return {
        "d-ABCDEFGH1": [
            (
                deployment("InProgress"),
                [target("host-1", "InProgress"), target("host-2", "Pending")],
            ),
            (
                deployment("InProgress"),
                [
                    target("host-1", "Succeeded", all_events("Succeeded")),
                    target("host-2", "InProgress"),
                ],
            ),
            (
                deployment(
                    "Failed",
                    overview={"Succeeded": 1, "Failed": 1},
                    errorInformation={"code": "HEALTH_CONSTRAINTS", "message": "too many failed"},
                    autoRollbackConfiguration=AUTO_ROLLBACK,
                ),
                [
                    target("host-1", "Succeeded", all_events("Succeeded")),
                    target(
                        "host-2",
                        "Failed",
                        all_events("Succeeded", "ApplicationStart"),
                        failed=FAILED_VALIDATE,
                    ),
                ],
            ),
            # The engine names the rollback a moment after the status changed.
            (
                deployment(
                    "Failed",
                    overview={"Succeeded": 1, "Failed": 1},
                    errorInformation={"code": "HEALTH_CONSTRAINTS", "message": "too many failed"},
                    autoRollbackConfiguration=AUTO_ROLLBACK,
                    rollbackInfo={"rollbackDeploymentId": rid, "rollbackMessage": "rolling back"},
                ),
                [],
            ),
        ],
        rid: [
            (
                deployment(
                    "Succeeded",
                    deployment_id=rid,
                    overview={"Succeeded": 2},
                    creator="codeDeployRollback",
                    rollbackInfo={"rollbackTriggeringDeploymentId": "d-ABCDEFGH1"},
                ),
                [
                    target("host-1", "Succeeded", all_events("Succeeded"), deployment_id=rid),
                    target("host-2", "Succeeded", all_events("Succeeded"), deployment_id=rid),
                ],
            )
        ],
    }


def test_wait_follows_the_rollback_and_exits_1() -> None:
    """A failed deployment prints its progress, summary, then its rollback's; status 1."""
    api = RecordedApi(failing_script())
    out = io.StringIO()
    options = DeployOptions("web", "prod", REVISION, wait=True)
    status = run_deploy(
        cast(CodeDeployApi, api), options, Output(out, io.StringIO()), sleep=no_sleep
    )
    assert status == 1
    assert out.getvalue().splitlines() == [
        "Created deployment d-ABCDEFGH1",
        "d-ABCDEFGH1 InProgress",
        "d-ABCDEFGH1 host-1 InProgress",
        "d-ABCDEFGH1 host-2 Pending",
        "d-ABCDEFGH1 host-1 ApplicationStop Succeeded",
        "d-ABCDEFGH1 host-1 DownloadBundle Succeeded",
        "d-ABCDEFGH1 host-1 BeforeInstall Succeeded",
        "d-ABCDEFGH1 host-1 Install Succeeded",
        "d-ABCDEFGH1 host-1 AfterInstall Succeeded",
        "d-ABCDEFGH1 host-1 ApplicationStart Succeeded",
        "d-ABCDEFGH1 host-1 ValidateService Succeeded",
        "d-ABCDEFGH1 host-1 Succeeded",
        "d-ABCDEFGH1 host-2 InProgress",
        "d-ABCDEFGH1 host-2 ApplicationStop Succeeded",
        "d-ABCDEFGH1 host-2 DownloadBundle Succeeded",
        "d-ABCDEFGH1 host-2 BeforeInstall Succeeded",
        "d-ABCDEFGH1 host-2 Install Succeeded",
        "d-ABCDEFGH1 host-2 AfterInstall Succeeded",
        "d-ABCDEFGH1 host-2 ApplicationStart Succeeded",
        (
            "d-ABCDEFGH1 host-2 ValidateService Failed (ScriptFailed: Script at specified location: "
            "scripts/validate.sh run as user root failed with exit code 3)"
        ),
        "d-ABCDEFGH1 host-2 Failed",
        "d-ABCDEFGH1 Failed",
        "Deployment d-ABCDEFGH1 Failed",
        "  Error: HEALTH_CONSTRAINTS: too many failed",
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
        "  Rolled back by: d-ROLLBACK01 (rolling back)",
        "Following rollback deployment d-ROLLBACK01",
        "d-ROLLBACK01 host-1 ApplicationStop Succeeded",
        "d-ROLLBACK01 host-1 DownloadBundle Succeeded",
        "d-ROLLBACK01 host-1 BeforeInstall Succeeded",
        "d-ROLLBACK01 host-1 Install Succeeded",
        "d-ROLLBACK01 host-1 AfterInstall Succeeded",
        "d-ROLLBACK01 host-1 ApplicationStart Succeeded",
        "d-ROLLBACK01 host-1 ValidateService Succeeded",
        "d-ROLLBACK01 host-1 Succeeded",
        "d-ROLLBACK01 host-2 ApplicationStop Succeeded",
        "d-ROLLBACK01 host-2 DownloadBundle Succeeded",
        "d-ROLLBACK01 host-2 BeforeInstall Succeeded",
        "d-ROLLBACK01 host-2 Install Succeeded",
        "d-ROLLBACK01 host-2 AfterInstall Succeeded",
        "d-ROLLBACK01 host-2 ApplicationStart Succeeded",
        "d-ROLLBACK01 host-2 ValidateService Succeeded",
        "d-ROLLBACK01 host-2 Succeeded",
        "d-ROLLBACK01 Succeeded",
        "Deployment d-ROLLBACK01 Succeeded",
        "  Instances: 2 Succeeded, 0 Failed, 0 Skipped, 0 InProgress, 0 Pending",
        "  Rollback of: d-ABCDEFGH1",
    ]
    assert api.calls[0] == (
        "CreateDeployment",
        {"applicationName": "web", "deploymentGroupName": "prod", "revision": REVISION},
    )


def test_finished_targets_are_not_asked_for_again() -> None:
    """Once a target is Succeeded, later polls fetch only the targets still running."""
    api = RecordedApi(failing_script())
    follow(
        cast(CodeDeployApi, api),
        "d-ABCDEFGH1",
        Output(io.StringIO(), io.StringIO()),
        sleep=no_sleep,
    )
    batches = [
        params["targetIds"]
        for op, params in api.calls
        if op == "BatchGetDeploymentTargets" and params["deploymentId"] == "d-ABCDEFGH1"
    ]
    assert batches == [["host-1", "host-2"], ["host-1", "host-2"], ["host-2"]]
    lists = [p for op, p in api.calls if op == "ListDeploymentTargets"]
    assert lists == [{"deploymentId": "d-ABCDEFGH1"}, {"deploymentId": "d-ROLLBACK01"}]


def test_success_exits_0_without_waiting_for_a_rollback() -> None:
    """A Succeeded deployment ends the wait at once with status 0."""
    api = RecordedApi(
        {
            "d-ABCDEFGH1": [
                (
                    deployment(
                        "Succeeded",
                        overview={"Succeeded": 1},
                        autoRollbackConfiguration=AUTO_ROLLBACK,
                    ),
                    [target("host-1", "Succeeded", all_events("Succeeded"))],
                )
            ]
        }
    )
    out = io.StringIO()
    status = follow(
        cast(CodeDeployApi, api), "d-ABCDEFGH1", Output(out, io.StringIO()), sleep=no_sleep
    )
    assert status == 0
    assert out.getvalue().splitlines()[-2:] == [
        "Deployment d-ABCDEFGH1 Succeeded",
        "  Instances: 1 Succeeded, 0 Failed, 0 Skipped, 0 InProgress, 0 Pending",
    ]
    assert [op for op, _ in api.calls].count("GetDeployment") == 1


def test_a_failure_without_rollback_configured_ends_at_once() -> None:
    """A failed deployment whose group has no automatic rollback is not re-read; status 1."""
    api = RecordedApi(
        {
            "d-ABCDEFGH1": [
                (
                    deployment("Failed", overview={"Failed": 1}),
                    [target("host-1", "Failed", failed=FAILED_VALIDATE)],
                )
            ]
        }
    )
    status = follow(
        cast(CodeDeployApi, api),
        "d-ABCDEFGH1",
        Output(io.StringIO(), io.StringIO()),
        sleep=no_sleep,
    )
    assert status == 1
    assert [op for op, _ in api.calls].count("GetDeployment") == 1


class Terminal(io.StringIO):
    """A text stream that says it is a terminal, so the CLI draws its live table."""

    def isatty(self) -> bool:
        """Yes."""
        return True


def test_on_a_terminal_the_live_table_is_drawn() -> None:
    """On a terminal, --wait draws the rich table (one glyph per event), then the summary."""
    api = RecordedApi(failing_script())
    out = Terminal()
    status = follow(
        cast(CodeDeployApi, api), "d-ABCDEFGH1", Output(out, io.StringIO()), sleep=no_sleep
    )
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # colours and cursor moves
    assert status == 1
    assert "Deployment d-ABCDEFGH1" in text
    assert "✓✓✓✓✓✓✓" in text
    assert "✓✓✓✓✓✓✗" in text
    assert text.endswith(
        "Deployment d-ROLLBACK01 Succeeded\n  Instances: 2 Succeeded, 0 Failed, 0 Skipped, 0 InProgress, 0 Pending\n  Rollback of: d-ABCDEFGH1\n"
    )


def test_ctrl_c_stops_watching_and_says_how_to_look_again() -> None:
    """Ctrl-C while waiting: status 130 and the command that shows the deployment later."""

    def interrupted(seconds: float) -> None:
        del seconds
        raise KeyboardInterrupt

    api = RecordedApi(failing_script())
    with pytest.raises(AbortedError) as caught:
        follow(
            cast(CodeDeployApi, api),
            "d-ABCDEFGH1",
            Output(io.StringIO(), io.StringIO()),
            sleep=interrupted,
        )
    assert caught.value.exit_status == 130
    assert str(caught.value) == (
        "Stopped watching d-ABCDEFGH1; the deployment goes on. See it with: "
        "codedeploy status d-ABCDEFGH1"
    )
