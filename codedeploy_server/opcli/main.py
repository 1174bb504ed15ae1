"""`codedeploy`: argument parsing and composition only; each command lives in its own module.

Global options (`--endpoint-url`, `--region`, `--profile`, `--no-verify-ssl`) are accepted before
or after the command, as with the AWS CLI. Exit statuses: 0 success; 1 the command's own failure
(an invalid appspec, a deployment that did not succeed); 2 a usage mistake; 130 interrupted;
255 an error from the API or on the way to it, printed like the AWS CLI prints it:
`An error occurred (<Code>) when calling the <Op> operation: <message>`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from codedeploy_agent.protocol.topics import DEFAULT_TOPIC_ROOT
from codedeploy_server import __version__
from codedeploy_server.opcli.client import Clients, ClientSettings, api_errors
from codedeploy_server.opcli.deploy import DeployOptions, run_deploy
from codedeploy_server.opcli.errors import AbortedError, CliError, UsageError
from codedeploy_server.opcli.instances import REGISTRATION_STATUSES, run_instances
from codedeploy_server.opcli.listing import DEPLOYMENT_STATUSES, run_list
from codedeploy_server.opcli.locations import deploy_revision
from codedeploy_server.opcli.logs import (
    MQTT_ENDPOINT_ENV,
    POLL_INTERVAL,
    MqttSettings,
    run_logs,
    run_logs_follow,
)
from codedeploy_server.opcli.push import PushOptions, run_push
from codedeploy_server.opcli.render import Output
from codedeploy_server.opcli.status import run_status
from codedeploy_server.opcli.stop import run_stop
from codedeploy_server.opcli.watch import DEFAULT_INTERVAL

PROG: Final = "codedeploy"
FILE_EXISTS_BEHAVIORS: Final = ("DISALLOW", "OVERWRITE", "RETAIN")
_EPILOG: Final = (
    "The endpoint is --endpoint-url or CODEDEPLOY_ENDPOINT_URL (else AWS CodeDeploy's own); "
    "credentials and region come from the standard AWS chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, "
    "AWS_DEFAULT_REGION, ~/.aws)."
)

_LOGS_EPILOG: Final = (
    "Without --follow, the log tails come from the API: the last 1,024 characters of the "
    "script output of each failed lifecycle event, as the agents report them (as in CodeDeploy, "
    "succeeded events report none; each host keeps everything in its deployment's "
    "logs/scripts.log). --follow also subscribes to "
    "the live log topic the agents publish on ({events_topic_root}/{instance}/logs/{deployment "
    "id}): it needs network access to the MQTT broker the agents use, and a login the broker "
    "accepts (--mqtt-username/--mqtt-password, or a client certificate for mqtts://). Live "
    "lines are best effort (QoS 0)."
)

Command = Callable[[argparse.Namespace, Clients, Output], int]


def _global_options(*, suppress: bool) -> argparse.ArgumentParser:
    """The options every command takes; `suppress` keeps a subcommand from resetting them."""
    default = argparse.SUPPRESS if suppress else None
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection options")
    group.add_argument(
        "--endpoint-url",
        default=default,
        help="the API's URL, e.g. http://127.0.0.1:8443 (default: $CODEDEPLOY_ENDPOINT_URL)",
    )
    group.add_argument("--region", default=default, help="signing region (AWS_DEFAULT_REGION)")
    group.add_argument("--profile", default=default, help="AWS profile for credentials")
    group.add_argument(
        "--no-verify-ssl",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="do not verify the server's TLS certificate",
    )
    return parent


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The `codedeploy` argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Operate CodeDeploy deployments (codedeploy-server or AWS CodeDeploy).",
        epilog=_EPILOG,
        parents=[_global_options(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = [_global_options(suppress=True)]

    def command(
        name: str, help_text: str, run: Command, epilog: str | None = None
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=help_text, description=help_text, epilog=epilog, parents=common
        )
        sub.set_defaults(run=run)
        return sub

    _push_arguments(
        command(
            "push",
            "Bundle a folder, check its appspec, upload it and register the revision.",
            _push,
        )
    )
    _deploy_arguments(
        command("deploy", "Create a deployment; --wait follows it to the end.", _deploy)
    )
    status = command("status", "Show a deployment, its instances and failures.", _status)
    status.add_argument("deployment_id", metavar="DEPLOYMENT_ID")
    listing = command("list", "List deployments, newest first.", _list)
    listing.add_argument("--application-name")
    listing.add_argument("--deployment-group-name")
    listing.add_argument(
        "--status", action="append", choices=DEPLOYMENT_STATUSES, default=[], dest="statuses"
    )
    listing.add_argument("--max-items", type=_count, metavar="N")
    stop = command("stop", "Stop a deployment.", _stop)
    stop.add_argument("deployment_id", metavar="DEPLOYMENT_ID")
    rollback = stop.add_mutually_exclusive_group()
    rollback.add_argument(
        "--auto-rollback-enabled", dest="auto_rollback", action="store_true", default=None
    )
    rollback.add_argument("--no-auto-rollback-enabled", dest="auto_rollback", action="store_false")
    instances = command("instances", "List on-premises instances and their tags.", _instances)
    instances.add_argument(
        "--tag",
        action="append",
        default=[],
        dest="tags",
        metavar="KEY=VALUE",
        help="only instances with this tag (KEY alone: any value; repeat for any of several)",
    )
    instances.add_argument("--registration-status", choices=REGISTRATION_STATUSES)
    _logs_arguments(
        command(
            "logs",
            "Show the script logs of a deployment; --follow streams them.",
            _logs,
            _LOGS_EPILOG,
        )
    )
    return parser


def _push_arguments(push: argparse.ArgumentParser) -> None:
    push.add_argument("--application-name", required=True)
    push.add_argument(
        "--source", default=".", help="the folder with appspec.yml at its root (default: .)"
    )
    push.add_argument(
        "--s3-location",
        metavar="s3://BUCKET/KEY",
        help="upload to S3 here (default: the server's bundle store)",
    )
    push.add_argument("--description")
    hidden = push.add_mutually_exclusive_group()
    hidden.add_argument(
        "--ignore-hidden-files",
        action="store_true",
        help="leave out files and folders whose names start with '.'",
    )
    hidden.add_argument("--no-ignore-hidden-files", action="store_true", help="(the default)")


def _deploy_arguments(deploy: argparse.ArgumentParser) -> None:
    deploy.add_argument("--application-name", required=True)
    deploy.add_argument("--deployment-group-name", required=True)
    where = deploy.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--s3-location", metavar="bucket=B,key=K,bundleType=zip[,eTag=E][,version=V]"
    )
    where.add_argument("--github-location", metavar="repository=OWNER/REPO,commitId=SHA")
    # codedeploy-server's other revision types (opcli/locations.py, README "Revision types").
    where.add_argument("--github-repository", metavar="OWNER/REPO", help="with --commit-id")
    where.add_argument("--bitbucket-repository", metavar="WORKSPACE/REPO", help="with --commit-id")
    where.add_argument(
        "--codecommit-repository",
        metavar="[REGION/]REPO",
        help="with --commit-id (region: the server's unless given)",
    )
    where.add_argument(
        "--git-url",
        metavar="URL",
        help="any git remote (https://, ssh://, file:/// on each instance), with --commit-id",
    )
    where.add_argument(
        "--bundle-url", metavar="URL", help="an https:// tar, tgz or zip bundle, with --sha256"
    )
    deploy.add_argument("--commit-id", metavar="SHA", help="the commit to deploy")
    deploy.add_argument("--sha256", metavar="HEX", help="the SHA-256 of --bundle-url's bundle")
    deploy.add_argument("--deployment-config-name")
    deploy.add_argument("--description")
    deploy.add_argument("--file-exists-behavior", choices=FILE_EXISTS_BEHAVIORS)
    deploy.add_argument("--ignore-application-stop-failures", action="store_true")
    deploy.add_argument(
        "--wait",
        action="store_true",
        help="follow the deployment (and its automatic rollback); exit 0 only if it succeeded",
    )
    deploy.add_argument(
        "--poll-interval",
        type=_positive,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help=f"how often --wait polls (default: {DEFAULT_INTERVAL:g})",
    )


def _logs_arguments(logs: argparse.ArgumentParser) -> None:
    logs.add_argument("deployment_id", metavar="DEPLOYMENT_ID")
    logs.add_argument("--instance", help="only this instance")
    logs.add_argument(
        "--follow",
        action="store_true",
        help="stream live lines until the deployment ends (needs access to the MQTT broker)",
    )
    logs.add_argument(
        "--mqtt-endpoint", help=f"mqtt://HOST[:PORT] or mqtts://... (${MQTT_ENDPOINT_ENV})"
    )
    logs.add_argument(
        "--topic-root",
        default=DEFAULT_TOPIC_ROOT,
        help=f"the agents' MQTT topic root (default: {DEFAULT_TOPIC_ROOT})",
    )
    logs.add_argument(
        "--events-topic-root",
        help="the agents' mqtt.events_topic_root, where they publish log lines (default: the "
        "topic root, or codedeploy/things when it is an AWS IoT $aws/... root)",
    )
    logs.add_argument(
        "--poll-interval",
        type=_positive,
        default=POLL_INTERVAL,
        metavar="SECONDS",
        help=f"how often --follow checks whether the deployment ended (default: {POLL_INTERVAL:g})",
    )
    logs.add_argument("--mqtt-username", help="the broker's user name ($CODEDEPLOY_MQTT_USERNAME)")
    logs.add_argument("--mqtt-password", help="its password ($CODEDEPLOY_MQTT_PASSWORD)")
    logs.add_argument("--mqtt-ca-file", help="CA bundle for an mqtts:// broker")
    logs.add_argument("--mqtt-cert-file", help="client certificate (mutual TLS)")
    logs.add_argument("--mqtt-key-file", help="its private key")


def _push(args: argparse.Namespace, clients: Clients, output: Output) -> int:
    options = PushOptions(
        application_name=args.application_name,
        source=Path(args.source),
        s3_location=args.s3_location,
        description=args.description,
        ignore_hidden_files=args.ignore_hidden_files,
    )
    return run_push(clients, options, output)


def _deploy(args: argparse.Namespace, clients: Clients, output: Output) -> int:
    revision = deploy_revision(vars(args))
    options = DeployOptions(
        application_name=args.application_name,
        deployment_group_name=args.deployment_group_name,
        revision=revision,
        deployment_config_name=args.deployment_config_name,
        description=args.description,
        file_exists_behavior=args.file_exists_behavior,
        ignore_application_stop_failures=args.ignore_application_stop_failures,
        wait=args.wait,
        interval=args.poll_interval,
    )
    return run_deploy(clients.codedeploy, options, output)


def _status(args: argparse.Namespace, clients: Clients, output: Output) -> int:
    return run_status(clients.codedeploy, args.deployment_id, output)


def _list(args: argparse.Namespace, clients: Clients, output: Output) -> int:
    return run_list(
        clients.codedeploy,
        output,
        application_name=args.application_name,
        deployment_group_name=args.deployment_group_name,
        statuses=args.statuses,
        max_items=args.max_items,
    )


def _stop(args: argparse.Namespace, clients: Clients, output: Output) -> int:
    return run_stop(
        clients.codedeploy, args.deployment_id, output, auto_rollback=args.auto_rollback
    )


def _instances(args: argparse.Namespace, clients: Clients, output: Output) -> int:
    return run_instances(
        clients.codedeploy, output, tags=args.tags, registration_status=args.registration_status
    )


def _logs(args: argparse.Namespace, clients: Clients, output: Output) -> int:
    if not args.follow:
        return run_logs(clients.codedeploy, args.deployment_id, output, instance=args.instance)
    endpoint = args.mqtt_endpoint or os.environ.get(MQTT_ENDPOINT_ENV)
    if not endpoint:
        raise UsageError(
            "--follow reads the live log topic on the MQTT broker the agents use: give "
            f"--mqtt-endpoint mqtt://HOST[:PORT] (or set {MQTT_ENDPOINT_ENV})."
        )
    mqtt = MqttSettings(
        endpoint=endpoint,
        topic_root=args.topic_root,
        events_topic_root=args.events_topic_root,
        username=args.mqtt_username or os.environ.get("CODEDEPLOY_MQTT_USERNAME"),
        password=args.mqtt_password or os.environ.get("CODEDEPLOY_MQTT_PASSWORD"),
        ca_file=args.mqtt_ca_file,
        cert_file=args.mqtt_cert_file,
        key_file=args.mqtt_key_file,
    )
    return run_logs_follow(
        clients.codedeploy,
        args.deployment_id,
        output,
        mqtt,
        instance=args.instance,
        poll_interval=args.poll_interval,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run `codedeploy` with `argv` (default: the process's arguments); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    output = Output()
    try:
        settings = ClientSettings.resolve(
            endpoint_url=args.endpoint_url,
            region=args.region,
            profile=args.profile,
            verify_ssl=not args.no_verify_ssl,
        )
        run: Command = args.run
        with api_errors():
            return run(args, Clients(settings), output)
    except UsageError as err:
        output.note(f"{PROG}: error: {err}")
        return err.exit_status
    except CliError as err:
        output.note(str(err))
        return err.exit_status
    except KeyboardInterrupt:
        output.note("Interrupted.")
        return AbortedError.exit_status
    except BrokenPipeError:
        # `codedeploy list | head`: the reader left; say nothing more (the pipe is gone).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
