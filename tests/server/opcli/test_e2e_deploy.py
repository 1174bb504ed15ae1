"""`deploy`, `deploy --wait`, `status`, `list` and `stop` against the real API app."""

from __future__ import annotations

from tests.server.opcli.api_server import ApiServer
from tests.server.opcli.conftest import CliRunner
from tests.server.opcli.e2e import (
    ROLLBACK_ID,
    T,
    client,
    deploy_args,
    step_host1_done,
    step_host2_failed,
    step_started,
    step_succeeded,
    without_times,
)
from tests.server.opcli.recorded import EVENTS


def test_deploy_creates_the_deployment_with_the_options(fleet: ApiServer, cli: CliRunner) -> None:
    """deploy sends the options given; the API creates the deployment and tells the engine."""
    result = cli(
        *deploy_args(
            fleet,
            "--deployment-config-name",
            "CodeDeployDefault.AllAtOnce",
            "--description",
            "hotfix",
            "--file-exists-behavior",
            "OVERWRITE",
            "--ignore-application-stop-failures",
        )
    )
    assert result.status == 0, result.err
    deployment_id = result.out.strip()
    assert fleet.rollout.calls == [("deployment_created", deployment_id)]
    info = client(fleet).get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    assert (
        info["deploymentConfigName"],
        info["description"],
        info["fileExistsBehavior"],
        info["ignoreApplicationStopFailures"],
    ) == ("CodeDeployDefault.AllAtOnce", "hotfix", "OVERWRITE", True)


def test_second_deploy_is_refused_the_way_codedeploy_refuses_it(
    fleet: ApiServer, cli: CliRunner
) -> None:
    """The API's DeploymentLimitExceededException, printed like the AWS CLI, status 255."""
    first = cli(*deploy_args(fleet)).out.strip()
    second = cli(*deploy_args(fleet))
    assert second.status == 255
    assert second.err == (
        "An error occurred (DeploymentLimitExceededException) when calling the CreateDeployment "
        f"operation: The Deployment Group 'prod' already has an active Deployment '{first}'\n"
    )


def test_deploy_wait_follows_progress_failure_and_rollback(
    fleet: ApiServer, cli: CliRunner
) -> None:
    """--wait prints each change, the failure with its log tail, follows the rollback; exit 1."""
    fleet.rollout.steps = [step_started, step_host1_done, step_host2_failed]
    result = cli(*deploy_args(fleet, "--wait", "--poll-interval", "0.05"))
    deployment_id = fleet.rollout.created[0]
    d = deployment_id
    assert result.status == 1
    assert result.err == ""
    assert result.out.splitlines() == [
        f"Created deployment {d}",
        f"{d} InProgress",
        f"{d} host-1 InProgress",
        f"{d} host-1 ApplicationStop Succeeded",
        f"{d} host-1 DownloadBundle InProgress",
        f"{d} host-2 Pending",
        f"{d} host-1 DownloadBundle Succeeded",
        *[f"{d} host-1 {event} Succeeded" for event in EVENTS[2:]],
        f"{d} host-1 Succeeded",
        f"{d} host-2 InProgress",
        f"{d} host-2 ApplicationStop InProgress",
        f"{d} host-2 ApplicationStop Succeeded",
        *[f"{d} host-2 {event} Succeeded" for event in EVENTS[1:6]],
        (
            f"{d} host-2 ValidateService Failed (ScriptFailed: Script at specified location: "
            "scripts/validate.sh run as user root failed with exit code 3)"
        ),
        f"{d} host-2 Failed",
        f"{d} Failed",
        f"Deployment {d} Failed",
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
        "      [stdout]checking",
        "      [stderr]no answer",
        f"  Rolled back by: {ROLLBACK_ID} (Automatic rollback: deployment {ROLLBACK_ID} started)",
        f"Following rollback deployment {ROLLBACK_ID}",
        *[f"{ROLLBACK_ID} host-1 {event} Succeeded" for event in EVENTS],
        f"{ROLLBACK_ID} host-1 Succeeded",
        *[f"{ROLLBACK_ID} host-2 {event} Succeeded" for event in EVENTS],
        f"{ROLLBACK_ID} host-2 Succeeded",
        f"{ROLLBACK_ID} Succeeded",
        f"Deployment {ROLLBACK_ID} Succeeded",
        "  Instances: 2 Succeeded, 0 Failed, 0 Skipped, 0 InProgress, 0 Pending",
        f"  Rollback of: {deployment_id}",
    ]


def test_deploy_wait_exits_0_on_success(fleet: ApiServer, cli: CliRunner) -> None:
    """A deployment that succeeds ends --wait with status 0 and its summary."""
    fleet.rollout.steps = [step_succeeded]
    result = cli(*deploy_args(fleet, "--wait", "--poll-interval", "0.05"))
    d = fleet.rollout.created[0]
    assert result.status == 0, result.err
    assert result.out.splitlines()[-3:] == [
        f"{d} Succeeded",
        f"Deployment {d} Succeeded",
        "  Instances: 2 Succeeded, 0 Failed, 0 Skipped, 0 InProgress, 0 Pending",
    ]


def test_status_shows_fields_targets_and_the_failure(fleet: ApiServer, cli: CliRunner) -> None:
    """status: the deployment's fields, a row per instance, the failed event's diagnostics."""
    fleet.rollout.steps = [step_started, step_host1_done, step_host2_failed]
    cli(*deploy_args(fleet, "--wait", "--poll-interval", "0.05", "--description", "v2"))
    d = fleet.rollout.created[0]
    result = cli("status", d, "--endpoint-url", fleet.url)
    assert result.status == 0, result.err
    assert without_times(result.out) == (
        f"Deployment {d}  Failed\n"
        "Application       web\n"
        "Deployment group  prod\n"
        f"Revision          s3://codedeploy-server-bundles/{'ab' * 32} (zip)\n"
        "Config            CodeDeployDefault.OneAtATime\n"
        "Creator           user\n"
        f"Created           {T}\n"
        "Started           -\n"
        f"Completed         {T}\n"
        "Description       v2\n"
        "Error             HEALTH_CONSTRAINTS: The overall deployment failed because too many "
        "individual instances failed deployment\n"
        f"Rolled back by    {ROLLBACK_ID} (Automatic rollback: deployment {ROLLBACK_ID} started)\n"
        "Instances         1 Succeeded, 1 Failed, 0 Skipped, 0 InProgress, 0 Pending\n"
        "\n"
        "Instance  Status     Events  Current event                          Updated\n"
        f"host-1    Succeeded  7/7                                            {T}\n"
        f"host-2    Failed     7/7     ValidateService Failed (ScriptFailed)  {T}\n"
        "\n"
        "Failed lifecycle events:\n"
        "  host-2 ValidateService Failed (ScriptFailed)\n"
        "    Script: scripts/validate.sh\n"
        "    Message: Script at specified location: scripts/validate.sh run as user root "
        "failed with exit code 3\n"
        "    Log tail:\n"
        "      [stdout]checking\n"
        "      [stderr]no answer\n"
    )


def test_list_shows_the_group_deployments_newest_first(fleet: ApiServer, cli: CliRunner) -> None:
    """list: one row per deployment, newest first, with --status filtering."""
    fleet.rollout.steps = [step_succeeded]
    cli(*deploy_args(fleet, "--wait", "--poll-interval", "0.05", "--description", "one"))
    second = cli(*deploy_args(fleet, "--description", "two")).out.strip()
    first = fleet.rollout.created[0]
    result = cli("list", "--endpoint-url", fleet.url)
    assert result.status == 0, result.err
    assert without_times(result.out).splitlines() == [
        "Deployment   Status     Application  Group  Created              Completed            Creator  Instances    Description",
        f"{second}  Created    web          prod   {T}  -                    user     2 Pending    two",
        f"{first}  Succeeded  web          prod   {T}  {T}  user     2 Succeeded  one",
    ]
    only = cli(
        "list",
        "--endpoint-url",
        fleet.url,
        "--application-name",
        "web",
        "--deployment-group-name",
        "prod",
        "--status",
        "Succeeded",
    )
    assert [line.split()[0] for line in only.out.splitlines()[1:]] == [first]


def test_stop_passes_the_rollback_choice(fleet: ApiServer, cli: CliRunner) -> None:
    """stop sends autoRollbackEnabled only when a flag is given, and prints the answer."""
    d = cli(*deploy_args(fleet)).out.strip()
    plain = cli("stop", d, "--endpoint-url", fleet.url)
    rollback = cli("stop", d, "--endpoint-url", fleet.url, "--auto-rollback-enabled")
    no_rollback = cli("stop", d, "--endpoint-url", fleet.url, "--no-auto-rollback-enabled")
    assert plain.out == (
        "Pending: No more commands will be scheduled for execution in the deployment instances\n"
    )
    assert (rollback.status, no_rollback.status) == (0, 0)
    assert fleet.rollout.calls[1:] == [
        ("stop_deployment", d, None),
        ("stop_deployment", d, True),
        ("stop_deployment", d, False),
    ]


def test_stop_of_an_unknown_deployment(fleet: ApiServer, cli: CliRunner) -> None:
    """The API's DeploymentDoesNotExistException reaches the operator as one line."""
    result = cli("stop", "d-NOSUCHONE", "--endpoint-url", fleet.url)
    assert result.status == 255
    assert result.err.startswith(
        "An error occurred (DeploymentDoesNotExistException) when calling the StopDeployment "
        "operation: "
    )
