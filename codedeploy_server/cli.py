"""The `codedeploy-server` command line: `run`, `keygen`, `broker-user`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from codedeploy_agent.log import configure_logging, get_logger
from codedeploy_agent.protocol.errors import ProtocolError
from codedeploy_agent.protocol.signing import generate_keypair
from codedeploy_server import __version__
from codedeploy_server.broker import load_users
from codedeploy_server.config import ServerConfig, load_server_config
from codedeploy_server.errors import ServerError


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="codedeploy-server",
        description="A self-hosted control plane speaking the AWS CodeDeploy API.",
    )
    parser.add_argument("--version", action="version", version=f"codedeploy-server {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser("run", help="run the server in the foreground")
    run.add_argument("-c", "--config", type=Path, required=True, metavar="FILE")
    keygen = commands.add_parser(
        "keygen", help="create the Ed25519 key pair that signs job documents"
    )
    keygen.add_argument("--private", type=Path, required=True, metavar="FILE")
    keygen.add_argument("--public", type=Path, required=True, metavar="FILE")
    user = commands.add_parser(
        "broker-user",
        help="print the embedded broker password of a user (created when new): give it to an "
        "agent as mqtt.username / mqtt.password_file",
    )
    user.add_argument("-c", "--config", type=Path, required=True, metavar="FILE")
    user.add_argument("name", help="the user name (for an agent: its thing name)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `codedeploy-server` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "keygen":
            generate_keypair(args.private, args.public)
            print(f"private key: {args.private} (keep it secret, mode 0600)")
            print(f"public key:  {args.public} (agents: security.trusted_keys)")
            return 0
        config = load_server_config(args.config)
        if args.command == "broker-user":
            return _broker_user(config, args.name)
        return _run(config)
    except (ServerError, ProtocolError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _broker_user(config: ServerConfig, name: str) -> int:
    from codedeploy_server.app import _state_dir  # noqa: PLC0415 - one helper, no start-up

    users_file = config.mqtt.users_file or _state_dir(config) / "mqtt-users.json"
    print(load_users(users_file, [name])[name])
    return 0


def _run(config: ServerConfig) -> int:
    configure_logging(
        log_file=config.log_file,
        fmt="text",
        verbose=config.verbose,
        program_name="codedeploy-server",
        stderr=True,
    )
    return asyncio.run(_serve(config))


async def _serve(config: ServerConfig) -> int:
    from codedeploy_server.app import ControlPlane  # noqa: PLC0415 - heavy imports, run only

    log = get_logger("codedeploy_server.cli")
    plane = ControlPlane(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await plane.start()
    print(
        f"codedeploy-server listening on {plane.api_url} (MQTT {plane.mqtt_endpoint})", flush=True
    )
    await stop.wait()
    log.info("stopping")
    await plane.stop()
    return 0
