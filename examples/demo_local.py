"""`make demo` (agent only, for now): deploy examples/hello-app on this host with
`codedeploy-agent local`, exactly as CodeDeploy would, three times:

1. version 1: a first deployment (no ApplicationStop: nothing to stop yet);
2. version 2: ApplicationStop runs from version 1's revision, then version 2 starts;
3. version 3 with a failing ValidateService: the deployment fails with the hook's output, and,
   as a CodeDeploy rollback does, version 2 is deployed again as a new deployment.

Everything stays under `.demo/` in the checkout; the app listens on 127.0.0.1 only and is
stopped at the end (also on Ctrl-C).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo" / "local"
APP = ROOT / "examples" / "hello-app"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 70 - len(text)), flush=True)


def revision(version: int, *, broken: bool = False) -> Path:
    """A copy of hello-app with VERSION set (and, if broken, a server that exits at once)."""
    target = DEMO / "revisions" / f"v{version}"
    shutil.copytree(APP, target)
    (target / "app" / "VERSION").write_text(f"{version}\n")
    if broken:
        (target / "app" / "server.py").write_text(
            "raise SystemExit('hello-app v3 crashes on start')\n"
        )
    return target


def deploy(bundle: Path, config: Path, env: dict[str, str]) -> int:
    command = [
        sys.executable,
        "-m",
        "codedeploy_agent",
        "local",
        "-l",
        str(bundle),
        "-t",
        "directory",
        "-g",
        "hello-app-group",
        "-d",
        "demo-fleet",
        "-a",
        "hello-app",
        "-c",
        str(config),
    ]
    print("$ codedeploy-agent local " + " ".join(command[4:]), flush=True)
    return subprocess.run(command, env=env, check=False).returncode


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
        return str(response.read().decode().strip())


def stop_app(home: Path) -> None:
    pid_file = home / "hello-app.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        pid_file.unlink(missing_ok=True)


def main() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir(parents=True)
    home, port = DEMO / "hello-app", free_port()
    config = DEMO / "codedeployagent.yml"
    config.write_text(
        f":root_dir: '{DEMO / 'deployment-root'}'\n:log_dir: '{DEMO / 'logs'}'\n:max_revisions: 3\n"
    )
    env = {**os.environ, "HELLO_HOME": str(home), "HELLO_PORT": str(port)}
    try:
        banner("1. first deployment of hello-app v1")
        if deploy(revision(1), config, env) != 0:
            return 1
        print(f"GET http://127.0.0.1:{port}/ -> {fetch(port)}")

        banner("2. v2: ApplicationStop runs from v1's revision, then v2 starts")
        if deploy(revision(2), config, env) != 0:
            return 1
        print(f"GET http://127.0.0.1:{port}/ -> {fetch(port)}")

        banner("3. v3 fails ValidateService")
        status = deploy(revision(3, broken=True), config, env)
        print(f"(exit status {status})")

        banner("4. rollback: a new deployment of the last good revision (v2)")
        if deploy(DEMO / "revisions" / "v2", config, env) != 0:
            return 1
        print(f"GET http://127.0.0.1:{port}/ -> {fetch(port)}")

        banner("where things are")
        root = DEMO / "deployment-root"
        print(f"deployment root:   {root}")
        print(f"instructions:      {root / 'deployment-instructions'}")
        print(f"deployments log:   {root / 'deployment-logs' / 'codedeploy-agent-deployments.log'}")
        print(f"agent log:         {DEMO / 'logs' / 'codedeploy-local.log'}")
        print(f"app log:           {home / 'hello-app.log'}")
        kept = sorted(p.name for p in (root / "hello-app-group").iterdir())
        print(f"revisions kept (max_revisions 3): {', '.join(kept)}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        stop_app(home)


if __name__ == "__main__":
    raise SystemExit(main())
