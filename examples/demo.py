"""`make demo`: the whole system on this machine, with nothing installed and nothing written
outside `.demo/` in the checkout.

1. starts `codedeploy-server` with its embedded MQTT broker and a SQLite file;
2. starts three agents (web-1, web-2, web-3) as real processes, each with its own deployment
   root, log directory and thing name, and registers and tags them;
3. `codedeploy push` examples/hello-app (version 1) and `codedeploy deploy --wait` it with
   CodeDeployDefault.HalfAtATime: each host stops the old app, installs, starts its app on its
   own port and ValidateService checks its health endpoint;
4. version 2 has a broken ValidateService: the deployment fails and the automatic rollback puts
   version 1 back;
5. prints where each log is and a summary; stops everything it started (also on Ctrl-C).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo" / "fleet"
APP = ROOT / "examples" / "hello-app"
HOSTS = ("web-1", "web-2", "web-3")
APPLICATION, GROUP = "hello-app", "web"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def step(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 72 - len(text)), flush=True)


class Demo:
    """Everything the demo starts, so that everything can be stopped."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.api_port, self.mqtt_port = free_port(), free_port()
        self.app_ports = {host: free_port() for host in HOSTS}
        alphabet = string.ascii_uppercase + string.digits
        self.access_key = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
        self.secret_key = secrets.token_urlsafe(30)
        self.endpoint = f"http://127.0.0.1:{self.api_port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(DEMO / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(DEMO / "no-aws-credentials"),
            "CODEDEPLOY_ENDPOINT_URL": self.endpoint,
        }

    # --- processes --------------------------------------------------------------------------

    def spawn(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env or self.env,
                start_new_session=True,
            )
        self.processes.append(process)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        for host in HOSTS:  # the apps the hooks started outlive the agents, on purpose
            pid_file = DEMO / "hosts" / host / "app" / "hello-app.pid"
            with suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGTERM)

    # --- setup ------------------------------------------------------------------------------

    def start_server(self) -> None:
        server = DEMO / "server"
        server.mkdir(parents=True)
        self.cli_server(
            "keygen",
            "--private",
            str(server / "jobs.pem"),
            "--public",
            str(server / "jobs.pub.pem"),
        )
        (server / "secret").write_text(self.secret_key + "\n")
        (server / "secret").chmod(0o600)
        config = {
            "listen": f"127.0.0.1:{self.api_port}",
            "database": "state.db",
            "mqtt": {"embedded": True, "listen": f"127.0.0.1:{self.mqtt_port}"},
            "credentials": [{"access_key_id": self.access_key, "secret_access_key_file": "secret"}],
            "signing_key_file": "jobs.pem",
            "signing_key_id": "demo",
            "bundle_store": {"path": "bundles"},
            "rollout": {"pickup_deadline_seconds": 60},
            "log_file": "server.log",
        }
        (server / "server.yml").write_text(yaml.safe_dump(config))
        # The embedded broker reads its users when it starts: create the agents' logins first.
        for host in HOSTS:
            password = self.cli_server("broker-user", "-c", str(server / "server.yml"), host)
            (DEMO / "hosts" / host).mkdir(parents=True)
            (DEMO / "hosts" / host / "mqtt-password").write_text(password)
            (DEMO / "hosts" / host / "mqtt-password").chmod(0o600)
        self.spawn(
            [sys.executable, "-m", "codedeploy_server", "run", "-c", str(server / "server.yml")],
            server / "server.out",
        )
        wait_for(
            lambda: "listening on" in (server / "server.out").read_text(errors="replace"),
            30,
            "the server",
        )
        print(
            f"codedeploy-server: API {self.endpoint}, embedded MQTT broker mqtt://127.0.0.1:{self.mqtt_port}"
        )

    def start_agents(self) -> None:
        server = DEMO / "server"
        for host in HOSTS:
            base = DEMO / "hosts" / host
            base.mkdir(parents=True, exist_ok=True)
            password = self.cli_server(
                "broker-user", "-c", str(server / "server.yml"), host
            ).strip()
            (base / "mqtt-password").write_text(password + "\n")
            (base / "mqtt-password").chmod(0o600)
            config = {
                ":root_dir": str(base / "deployment-root"),
                ":log_dir": str(base / "logs"),
                ":pid_dir": str(base / "state" / ".pid"),
                "state_dir": str(base / "state"),
                "heartbeat_seconds": 5,
                "mqtt": {
                    "endpoint": f"mqtt://127.0.0.1:{self.mqtt_port}",
                    "thing_name": host,
                    "protocol": "3.1.1",
                    "username": host,
                    "password_file": str(base / "mqtt-password"),
                },
                "clock": {"ntp_servers": []},  # the demo stays on this machine
                "security": {"trusted_keys": {"demo": str(server / "jobs.pub.pem")}},
            }
            (base / "codedeployagent.yml").write_text(yaml.safe_dump(config))
            env = {
                **self.env,
                "HELLO_HOME": str(base / "app"),
                "HELLO_PORT": str(self.app_ports[host]),
            }
            self.spawn(
                [
                    sys.executable,
                    "-m",
                    "codedeploy_agent",
                    "run",
                    "-c",
                    str(base / "codedeployagent.yml"),
                ],
                base / "agent.out",
                env,
            )
        print(f"agents: {', '.join(f'{h} (app port {self.app_ports[h]})' for h in HOSTS)}")

    def register(self) -> Any:
        client = boto3.client(
            "codedeploy",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )
        client.create_application(applicationName=APPLICATION)
        for host in HOSTS:
            client.register_on_premises_instance(
                instanceName=host, iamUserArn=f"arn:aws:iam::000000000000:user/{host}"
            )
        client.add_tags_to_on_premises_instances(
            tags=[{"Key": "role", "Value": "web"}], instanceNames=list(HOSTS)
        )
        client.create_deployment_group(
            applicationName=APPLICATION,
            deploymentGroupName=GROUP,
            deploymentConfigName="CodeDeployDefault.HalfAtATime",
            onPremisesInstanceTagFilters=[{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
            autoRollbackConfiguration={"enabled": True, "events": ["DEPLOYMENT_FAILURE"]},
            serviceRoleArn="arn:aws:iam::000000000000:role/codedeploy",
        )
        print("application hello-app; web-1..3 registered and tagged role=web;")
        print("group 'web': CodeDeployDefault.HalfAtATime, automatic rollback on failure")
        return client

    # --- commands ---------------------------------------------------------------------------

    def cli_server(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "codedeploy_server", *args],
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"codedeploy-server {args[0]} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def codedeploy(self, *args: str, check: bool = True) -> str:
        print("$ codedeploy " + " ".join(args), flush=True)
        result = subprocess.run(
            [sys.executable, "-m", "codedeploy_server.opcli.main", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            check=False,
        )
        print(result.stdout, end="", flush=True)
        if check and result.returncode != 0:
            raise SystemExit(f"codedeploy {args[0]} failed (exit {result.returncode})")
        return result.stdout


def wait_for(ready: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(OSError):
            if ready():
                return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start within {timeout:.0f} s; see {DEMO}")


def revision(version: int, *, broken: bool = False) -> Path:
    target = DEMO / "revisions" / f"v{version}"
    shutil.copytree(APP, target)
    (target / "app" / "VERSION").write_text(f"{version}\n")
    if broken:
        (target / "app" / "server.py").write_text(
            "raise SystemExit('hello-app v2 does not start')\n"
        )
    return target


def greet(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return str(response.read().decode().strip())
    except OSError as exc:
        return f"(no answer: {exc})"


def deployed_location(pushed: str) -> str:
    match = re.search(r"--s3-location (\S+)", pushed)
    if match is None:
        raise SystemExit("codedeploy push printed no --s3-location")
    return match.group(1)


def push_and_deploy(demo: Demo, source: Path, description: str, *, check: bool = True) -> None:
    """`codedeploy push` the folder, then `codedeploy deploy --wait` what it registered."""
    pushed = demo.codedeploy(
        "push",
        "--application-name",
        APPLICATION,
        "--source",
        str(source),
        "--description",
        description,
    )
    demo.codedeploy(
        "deploy",
        "--application-name",
        APPLICATION,
        "--deployment-group-name",
        GROUP,
        "--s3-location",
        deployed_location(pushed),
        "--description",
        description,
        "--wait",
        check=check,
    )


def show_apps(demo: Demo) -> None:
    for host in HOSTS:
        port = demo.app_ports[host]
        print(f"GET http://127.0.0.1:{port}/  ({host}) -> {greet(port)}")


def summary(demo: Demo, client: Any, started: float) -> bool:
    """One line per deployment, then whether every host serves v1 again."""
    ids = client.list_deployments(applicationName=APPLICATION, deploymentGroupName=GROUP)
    infos = client.batch_get_deployments(deploymentIds=ids["deployments"])["deploymentsInfo"]
    for info in sorted(infos, key=lambda i: i["createTime"]):
        counts = info["deploymentOverview"]
        what = info.get("description") or "rollback of " + info.get("rollbackInfo", {}).get(
            "rollbackTriggeringDeploymentId", "?"
        )
        print(
            f"{info['deploymentId']}  {info['status']:<9}  {what:<24}  "
            f"succeeded={counts['Succeeded']} failed={counts['Failed']} skipped={counts['Skipped']}"
        )
    ok = all("v1" in greet(demo.app_ports[h]) for h in HOSTS)
    took = time.monotonic() - started
    print(f"every host serves hello-app v1 again: {'yes' if ok else 'NO'}  ({took:.0f} s)")
    return ok


@contextmanager
def interrupts_stop(demo: Demo) -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM stop the demo; everything started is stopped either way.

    SIGINT gets Python's handler explicitly: a program started in the background by a shell
    without job control (CI scripts, `cmd &`) inherits SIGINT ignored, and Python then leaves it
    ignored, so Ctrl-C-by-signal would do nothing."""
    previous = {
        sig: signal.signal(sig, signal.default_int_handler)
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        demo.stop_all()


def main() -> int:
    started = time.monotonic()
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir(parents=True)
    demo = Demo()
    try:
        with interrupts_stop(demo):
            step("1. control plane and three agents")
            demo.start_server()
            demo.start_agents()
            client = demo.register()

            step("2. push hello-app v1 and deploy it HalfAtATime")
            push_and_deploy(demo, revision(1), "hello-app v1")
            show_apps(demo)

            step("3. v2 fails ValidateService; the automatic rollback restores v1")
            push_and_deploy(demo, revision(2, broken=True), "hello-app v2 (broken)", check=False)
            show_apps(demo)

            step("4. where things are")
            print(f"server log:          {DEMO / 'server' / 'server.log'}")
            for host in HOSTS:
                base = DEMO / "hosts" / host
                print(f"{host} agent log:     {base / 'logs' / 'codedeploy-agent.log'}")
                scripts = base / "deployment-root" / "<group>" / "<d-id>" / "logs" / "scripts.log"
                print(f"{host} scripts logs:  {scripts}")
            step("summary")
            ok = summary(demo, client, started)
            return 0 if ok else 1
    except KeyboardInterrupt:
        print("\ninterrupted: everything the demo started has been stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
