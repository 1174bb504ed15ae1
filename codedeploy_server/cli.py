"""The `codedeploy-server` command line: `run`, `keygen`, `sign-job`, `broker-user`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from codedeploy_agent.log import configure_logging, get_logger
from codedeploy_agent.protocol.errors import ProtocolError
from codedeploy_agent.protocol.signing import generate_keypair, load_private_key
from codedeploy_server import __version__
from codedeploy_server.broker import load_users
from codedeploy_server.config import ServerConfig, load_server_config
from codedeploy_server.errors import ServerError
from codedeploy_server.jobs.sign_job import DEFAULT_EXPIRES_IN, SignJobError, sign_job_document


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
    sign = commands.add_parser(
        "sign-job",
        help="sign a job document for AWS IoT Core Jobs (aws iot create-job --document file://OUT)",
        description="Set IssuedAt and ExpiresAt unless present, check the document as the "
        "agent does, sign it and write it as compact JSON (at most 32 KB).",
    )
    sign.add_argument(
        "--key", type=Path, required=True, metavar="FILE", help="the private key (keygen --private)"
    )
    sign.add_argument(
        "--key-id",
        required=True,
        metavar="ID",
        help="the id the agents trust the public key under (security.trusted_keys)",
    )
    sign.add_argument(
        "--expires-in",
        type=_seconds,
        default=DEFAULT_EXPIRES_IN,
        metavar="SECONDS",
        help=f"ExpiresAt is this long after now when the document has none "
        f"(default {DEFAULT_EXPIRES_IN})",
    )
    sign.add_argument(
        "-o", "--output", type=Path, metavar="OUT", help="write here (default: standard output)"
    )
    sign.add_argument(
        "document", type=Path, metavar="JOB.json", help="the unsigned job document ('-': stdin)"
    )
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
        if args.command == "sign-job":
            return _sign_job(args.document, args.key, args.key_id, args.expires_in, args.output)
        config = load_server_config(args.config)
        if args.command == "broker-user":
            return _broker_user(config, args.name)
        return _run(config)
    except (ServerError, ProtocolError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _seconds(text: str) -> int:
    """argparse type of --expires-in: a whole number of seconds, at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of seconds >= 1, not {text!r}")
    return int(text)


def _sign_job(
    document: Path, key_file: Path, key_id: str, expires_in: int, output: Path | None
) -> int:
    key = load_private_key(key_file)
    where = "standard input" if str(document) == "-" else str(document)
    try:
        data = sys.stdin.buffer.read() if str(document) == "-" else document.read_bytes()
    except OSError as exc:
        raise SignJobError(f"Cannot read the job document {where}: {exc.strerror}") from None
    try:
        signed = sign_job_document(data, key, key_id, now=datetime.now(UTC), expires_in=expires_in)
    except SignJobError as exc:
        raise SignJobError(f"{where}: {exc}") from None
    if output is None:
        sys.stdout.buffer.write(signed)
        sys.stdout.flush()
        return 0
    try:
        output.write_bytes(signed)
    except OSError as exc:
        raise SignJobError(f"Cannot write {output}: {exc.strerror}") from None
    print(f"signed job document: {output} ({len(signed)} bytes, key id {key_id})")
    return 0


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
