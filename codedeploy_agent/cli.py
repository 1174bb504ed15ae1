"""The `codedeploy-agent` command line: parses arguments and composes the pieces, nothing more."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from codedeploy_agent import __version__
from codedeploy_agent.config import AgentConfig, load_config
from codedeploy_agent.errors import AgentError, ConfigError
from codedeploy_agent.local import DEFAULT_GROUP_ID, DEFAULT_GROUP_NAME, LocalOptions, run_local
from codedeploy_agent.log import configure_logging, get_logger

_CONFIG_HELP = "agent config (default: /etc/codedeploy-agent/conf/codedeployagent.yml)"


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="codedeploy-agent",
        description="A self-hosted, CodeDeploy-compatible deployment agent.",
    )
    parser.add_argument("--version", action="version", version=f"codedeploy-agent {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    local = commands.add_parser(
        "local",
        help="run a deployment on this host without a control plane (like codedeploy-local)",
        description=(
            "Run a whole CodeDeploy deployment of a bundle on this host, exactly as the agent "
            "would for a deployment from the service (the equivalent of codedeploy-local)."
        ),
    )
    local.add_argument(
        "-l",
        "--bundle-location",
        default=None,
        metavar="LOCATION",
        help="bundle path, s3://bucket/key[?versionId=..&etag=..] or a GitHub URL "
        "(default: the current directory)",
    )
    local.add_argument(
        "-t",
        "--type",
        default="directory",
        metavar="TYPE",
        help="bundle type: tgz, tar, zip or directory (default: directory)",
    )
    local.add_argument(
        "-b",
        "--file-exists-behavior",
        default="DISALLOW",
        metavar="BEHAVIOR",
        help="DISALLOW, OVERWRITE or RETAIN when a destination file exists; the appspec's "
        "file_exists_behavior wins (default: DISALLOW)",
    )
    local.add_argument(
        "-g",
        "--deployment-group",
        default=DEFAULT_GROUP_ID,
        metavar="GROUP_ID",
        help=f"deployment group id: the folder under root_dir (default: {DEFAULT_GROUP_ID})",
    )
    local.add_argument(
        "-d",
        "--deployment-group-name",
        default=DEFAULT_GROUP_NAME,
        metavar="NAME",
        help=f"$DEPLOYMENT_GROUP_NAME for hooks (default: {DEFAULT_GROUP_NAME})",
    )
    local.add_argument(
        "-a",
        "--application-name",
        default=None,
        metavar="NAME",
        help="$APPLICATION_NAME for hooks (default: the bundle location)",
    )
    local.add_argument(
        "-e",
        "--events",
        default=None,
        metavar="EVENTS",
        help="comma-separated lifecycle events to run, custom ones included; DownloadBundle "
        "and Install are added in front when missing",
    )
    local.add_argument(
        "-c",
        "--agent-configuration-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="agent config (default: /etc/codedeploy-agent/conf/codedeployagent.yml)",
    )
    local.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=ssm:/PATH",
        help="pass a Parameter Store value (SecureString too) to the hooks as $NAME; "
        "repeatable; the value never appears in any log",
    )
    local.add_argument(
        "-A",
        "--appspec-filename",
        default=None,
        metavar="NAME",
        help="appspec file name in the bundle (default: appspec.yml, then appspec.yaml)",
    )

    run = commands.add_parser(
        "run",
        help="run the agent daemon in the foreground (systemd runs it so)",
        description=(
            "Run the agent: connect to the MQTT broker, take deployment jobs (AWS IoT Jobs "
            "protocol) one at a time and report every lifecycle event."
        ),
    )
    run.add_argument("-c", "--config", type=Path, default=None, metavar="FILE", help=_CONFIG_HELP)

    status = commands.add_parser(
        "status", help="show whether the agent runs, its broker link, deployment and clock"
    )
    status.add_argument(
        "-c", "--config", type=Path, default=None, metavar="FILE", help=_CONFIG_HELP
    )

    doctor = commands.add_parser(
        "doctor",
        help="check this host's agent setup: config, directories, broker, TLS, clock, disk, tools",
    )
    doctor.add_argument(
        "-c", "--config", type=Path, default=None, metavar="FILE", help=_CONFIG_HELP
    )

    validate = commands.add_parser(
        "validate",
        help="check an appspec file or a bundle and print every problem found",
    )
    validate.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=Path(),
        help="appspec file, bundle directory or archive (default: the current directory)",
    )
    validate.add_argument("-A", "--appspec-filename", default=None, metavar="NAME")
    validate.add_argument(
        "-t",
        "--type",
        default=None,
        metavar="TYPE",
        help="archive type when it cannot be told from the file name (tar, tgz, zip)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `codedeploy-agent` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    # Until a command reads its config: warnings and errors to stderr, never to stdout.
    configure_logging(log_file=None, fmt="text", verbose=False, stderr=True)
    try:
        if args.command == "local":
            return _local(args)
        if args.command == "validate":
            return _validate(args)
        if args.command == "run":
            return _run(args)
        if args.command == "status":
            return _status(args)
        if args.command == "doctor":
            return _doctor(args)
    except AgentError as exc:
        print(f"ERROR: {exc}", file=sys.stderr if args.command != "local" else sys.stdout)
        return 1
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command}")  # argparse makes this unreachable


def _local(args: argparse.Namespace) -> int:
    config_path: Path | None = args.agent_configuration_file
    if config_path is not None and not config_path.is_file():
        raise ConfigError(f"configuration file {config_path} does not exist or is not readable")
    config, warnings = load_config(config_path)
    _setup_logging(config, "codedeploy-local.log")
    for warning in warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    options = LocalOptions(
        bundle_location=args.bundle_location or str(Path.cwd()),
        bundle_type=args.type,
        file_exists_behavior=args.file_exists_behavior,
        deployment_group_id=args.deployment_group,
        deployment_group_name=args.deployment_group_name,
        application_name=args.application_name,
        events=args.events,
        appspec_filename=args.appspec_filename,
        parameters=tuple(args.parameter),
    )
    return asyncio.run(run_local(options, config))


def _run(args: argparse.Namespace) -> int:
    from codedeploy_agent.daemon.service import Daemon  # noqa: PLC0415 - keeps `local` light
    from codedeploy_agent.host.pidfile import PidFile  # noqa: PLC0415

    config, warnings = load_config(args.config)
    # The daemon logs to its file and to stderr (journald keeps what systemd captures).
    _setup_logging(config, f"{config.program_name}.log", stderr=True)
    log = get_logger("codedeploy_agent.cli")
    for warning in warnings:
        log.warning("configuration", detail=warning)
    with PidFile(config.pid_dir, config.program_name, config_path=args.config):
        daemon = Daemon(config)
        return asyncio.run(daemon.serve())


def _status(args: argparse.Namespace) -> int:
    from codedeploy_agent.host.pidfile import read_running_pid  # noqa: PLC0415
    from codedeploy_agent.host.status import (  # noqa: PLC0415
        format_status,
        status_path,
        try_read_status,
    )

    config, _warnings = load_config(args.config)
    pid = read_running_pid(config.pid_dir, config.program_name)
    snapshot, problem = try_read_status(status_path(config.state_dir, config.program_name))
    print(format_status(snapshot, running_pid=pid, problem=problem))
    return 0 if pid is not None else 1


def _doctor(args: argparse.Namespace) -> int:
    from codedeploy_agent.doctor import run_doctor  # noqa: PLC0415 - only this command needs it

    # The checks print their own lines; the transport's log lines would only repeat them.
    configure_logging(log_file=None, fmt="text", verbose=False, stderr=False)
    return run_doctor(args.config, sys.stdout)


def _validate(args: argparse.Namespace) -> int:
    from codedeploy_agent.validate import validate_path  # noqa: PLC0415 - only this command needs it

    report = validate_path(args.path, appspec_filename=args.appspec_filename, bundle_type=args.type)
    print(report.format())
    return 0 if report.ok else 1


def _setup_logging(config: AgentConfig, file_name: str, *, stderr: bool = False) -> None:
    log_file: Path | None = config.log_dir / file_name
    try:
        config.log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(
            f"WARNING: cannot create the log directory {config.log_dir} ({exc.strerror}); "
            "logging to stderr only. Set log_dir in the agent config to a writable directory.",
            file=sys.stderr,
        )
        log_file = None
    configure_logging(
        log_file=log_file,
        fmt=config.log_format,
        verbose=config.verbose,
        program_name=config.program_name,
        stderr=stderr,
    )
