"""Acceptance: the .deb on a booted Debian 12 (systemd-nspawn), driven over the host's Mosquitto.

One test walks a host's whole life with the package, in order: apt installs it (python3.11
comes as a dependency), the unit verifies clean, the operator configures it, systemd starts it
(`active` through sd_notify), `codedeploy-agent doctor` passes, a job deploys an application whose
hook starts a background process, a restart and a log rotation leave that process alone, an
upgrade during a deployment waits for it and then restarts the agent, an upgrade while idle
restarts it at once (config and state kept), and purge removes the package's files and
directories but not /opt, not the operator's own files and not the deployed application.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from codedeploy_agent.protocol.messages import JobStatus
from tests.fakes.brokers import MosquittoBroker
from tests.fakes.bundles import make_keys, signed_job_document, write_bundle
from tests.fakes.jobs_service import FakeJobsService
from tests.fakes.ntp import FakeNtpServer
from tests.packaging.conftest import VERSION, Packages
from tests.packaging.nspawn import Container, missing_tools, prepare_rootfs

pytestmark = [
    pytest.mark.systemd,
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.broker,
    pytest.mark.asyncio,
    pytest.mark.timeout(900),
]

THING = "web-1"
KEY_ID = "test-key"
CONFIG = "/etc/codedeploy-agent/conf/codedeployagent.yml"
STATUS = "/opt/codedeploy-agent/state/codedeploy-agent.status.json"
TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.REJECTED, JobStatus.CANCELED}
#: The application: started by ApplicationStart, detached from the hook, records its pid.
START_APP = (
    "#!/bin/sh\n"
    "setsid -f sh -c 'echo $$ > /var/tmp/hello-app.pid; exec sleep 100000' "
    "</dev/null >/dev/null 2>&1\n"
)


@pytest.fixture
def box(tmp_path: Path, packages: Packages) -> Iterator[Container]:
    """A fresh copy of the cached bookworm root, booted; powered off and deleted afterwards."""
    if missing := missing_tools():
        pytest.fail(f"missing {', '.join(missing)}: apt-get install debootstrap systemd-container")
    # The package's Depends and Recommends (with theirs) go into the cached root's apt archive.
    fields = subprocess.run(
        ["dpkg-deb", "--field", str(packages.deb), "Depends", "Recommends"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    prefetch = [
        alternative.split("|")[0].split("(")[0].strip()
        for line in fields.splitlines()
        for alternative in line.partition(":")[2].split(",")
    ]
    work = Path(tempfile.mkdtemp(prefix="codedeploy-agent-test-", dir="/var/tmp"))
    try:
        start = time.monotonic()
        root = prepare_rootfs(work / "root", prefetch=prefetch)
        print(f"root file system ready in {time.monotonic() - start:.1f} s")
        start = time.monotonic()
        with Container(root, tmp_path / "nspawn.log") as container:
            print(f"booted in {time.monotonic() - start:.1f} s")
            yield container
    finally:
        shutil.rmtree(work, ignore_errors=True)


def configure(text: str, broker: MosquittoBroker, ntp: FakeNtpServer) -> str:
    """The operator's edits of the shipped config: broker, thing name, signing key, NTP."""
    edits = {
        "  endpoint: mqtt://127.0.0.1:1883\n": f"  endpoint: {broker.endpoint}\n",
        "  # thing_name: web-1\n": f"  thing_name: {THING}\n",
        "  trusted_keys: {}\n": f"  trusted_keys:\n    {KEY_ID}: /etc/codedeploy-agent/keys/signing.pub.pem\n",
        "  ntp_servers: [169.254.169.123, pool.ntp.org]\n": f"  ntp_servers: ['{ntp.address}']\n",
    }
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


async def test_install_run_upgrade_purge(
    box: Container,
    packages: Packages,
    upgrade_deb: Path,
    mosquitto_factory: Callable[..., MosquittoBroker],
    tmp_path: Path,
) -> None:
    """apt install, start through sd_notify, doctor, deploy, restart, logrotate, upgrade, purge."""
    started = time.monotonic()

    async def sh(script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(box.run, script, check=check)

    async def main_pid() -> int:
        return int((await sh("systemctl show -p MainPID --value codedeploy-agent")).stdout)

    async def alive(pid: int) -> bool:
        result = await sh(f"cat /proc/{pid}/comm", check=False)
        return result.returncode == 0 and result.stdout.strip() == "sleep"

    async def holds(value: bool) -> bool:
        return value

    async def eventually(
        what: str,
        predicate: Callable[[], Awaitable[bool]],
        timeout: float = 30,  # noqa: ASYNC109 - seconds, with the journal in the failure message
    ) -> None:
        deadline = time.monotonic() + timeout
        while not await predicate():
            if time.monotonic() > deadline:
                journal = await sh(
                    "journalctl -u codedeploy-agent --no-pager | tail -40", check=False
                )
                raise AssertionError(f"{what} within {timeout} s\n{journal.stdout}")
            await asyncio.sleep(0.2)

    def status() -> dict[str, object]:
        try:
            data: dict[str, object] = json.loads(box.path(STATUS).read_text())
        except (OSError, ValueError):
            return {}
        return data

    broker = mosquitto_factory()
    private_key, public_key = make_keys(tmp_path / "keys")
    cdtest = box.path("/var/tmp/cdtest")
    cdtest.mkdir(parents=True)
    shutil.copy(packages.deb, cdtest / packages.deb.name)
    shutil.copy(upgrade_deb, cdtest / upgrade_deb.name)
    deb1, deb2 = f"/var/tmp/cdtest/{packages.deb.name}", f"/var/tmp/cdtest/{upgrade_deb.name}"

    # --- install: python3.11 comes from apt as a dependency; nothing is enabled yet ------------
    install = await sh(f"apt-get install -y {deb1}")
    assert "Setting up python3.11 " in install.stdout
    assert (
        "codedeploy-agent: configure /etc/codedeploy-agent/conf/codedeployagent.yml"
        in install.stdout
    )
    layout = await sh(
        "stat -c '%U:%G %a %n' /opt /opt/codedeploy-agent/state /opt/codedeploy-agent/state/.pid "
        "/opt/codedeploy-agent/deployment-root /var/log/aws/codedeploy-agent; "
        "readlink -f /usr/bin/codedeploy-agent; systemctl is-enabled codedeploy-agent || true"
    )
    assert layout.stdout.splitlines() == [
        "root:root 755 /opt",
        "root:root 755 /opt/codedeploy-agent/state",
        "root:root 755 /opt/codedeploy-agent/state/.pid",
        "root:root 755 /opt/codedeploy-agent/deployment-root",
        "root:root 755 /var/log/aws/codedeploy-agent",
        "/opt/codedeploy-agent/venv/bin/codedeploy-agent",
        "disabled",
    ]
    verify = await sh(
        "SYSTEMD_LOG_LEVEL=warning systemd-analyze verify codedeploy-agent.service 2>&1"
    )
    assert verify.stdout == ""
    assert (await sh("codedeploy-agent --version")).stdout == f"codedeploy-agent {VERSION}\n"

    # --- configure and start ----------------------------------------------------------------
    with FakeNtpServer(offset_seconds=0.0) as ntp:
        config = box.path(CONFIG)
        configured = configure(config.read_text(), broker, ntp)
        config.write_text(configured)
        box.path("/etc/codedeploy-agent/keys").mkdir()
        shutil.copy(public_key, box.path("/etc/codedeploy-agent/keys/signing.pub.pem"))
        await sh("systemctl enable --now codedeploy-agent")
        shown = await sh(
            "systemctl show codedeploy-agent -p ActiveState -p SubState -p Type -p NotifyAccess "
            "-p KillMode -p WatchdogUSec -p TimeoutStopUSec -p OOMPolicy"
        )
        assert sorted(shown.stdout.splitlines()) == [
            "ActiveState=active",
            "KillMode=process",
            "NotifyAccess=main",
            "OOMPolicy=continue",
            "SubState=running",
            "TimeoutStopUSec=2h 1min",
            "Type=notify",
            "WatchdogUSec=1min",
        ]
        await eventually(
            "connected to the broker", lambda: holds(status().get("broker_connected") is True)
        )
        status_text = await sh("systemctl show -p StatusText --value codedeploy-agent")
        assert status_text.stdout.strip() == f"idle; connected to {broker.endpoint}"

        doctor = await sh("codedeploy-agent doctor", check=False)
        print(doctor.stdout)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "[FAIL]" not in doctor.stdout
        assert (
            f"[ OK ] thing: {THING} (from mqtt.thing_name): the agent is connected" in doctor.stdout
        )
        assert (
            "[ OK ] agent: codedeploy-agent.service is active (running) and enabled"
            in doctor.stdout
        )
        assert re.search(
            r"\[ OK \] clock: the local clock is 0\.\d{3} s (behind|ahead of) 127\.0\.0\.1:",
            doctor.stdout,
        )

        # --- a deployment whose hook starts a background application ------------------------
        write_bundle(
            cdtest / "v1",
            {"ApplicationStart": "sh /srv/hello-app/start.sh"},
            files={"app/start.sh": START_APP, "app/VERSION": "v1\n"},
            install={"app": "/srv/hello-app"},
        )
        write_bundle(
            cdtest / "v2",
            {"AfterInstall": "while [ ! -e /var/tmp/cdtest/go ]; do sleep 0.2; done"},
            files={"app/start.sh": START_APP, "app/VERSION": "v2\n"},
            install={"app": "/srv/hello-app"},
            timeouts={"AfterInstall": 300},
        )

        def job(bundle: str, deployment_id: str) -> dict[str, object]:
            return signed_job_document(
                private_key, KEY_ID, deployment_id=deployment_id, group_id="dg-web",
                location=f"/var/tmp/cdtest/{bundle}", bundle_type="directory",
            )  # fmt: skip

        async with FakeJobsService("127.0.0.1", broker.port, things={THING}) as service:
            service.queue_job(THING, "job-1", job("v1", "d-HELLO0001"))
            done = await service.wait_for_status(THING, "job-1", TERMINAL, timeout=120)
            assert done.status is JobStatus.SUCCEEDED, done.status_details
            app = int(box.path("/var/tmp/hello-app.pid").read_text())
            assert await alive(app)
            cgroup = (await sh(f"cat /proc/{app}/cgroup")).stdout
            assert "/system.slice/codedeploy-agent.service" in cgroup  # the agent's own cgroup

            # --- restart: the application started by the hook survives (KillMode=process) ---
            before = await main_pid()
            await sh("systemctl restart codedeploy-agent")
            after = await main_pid()
            assert after not in (before, 0)
            assert (await sh("systemctl is-active codedeploy-agent")).stdout == "active\n"
            assert await alive(app)

            # --- logrotate: rotated, the agent reopens its log, the application is not HUP'd -
            await sh("logrotate --force /etc/logrotate.d/codedeploy-agent")
            logs = box.path("/var/log/aws/codedeploy-agent")

            async def reopened() -> bool:
                fds = await sh(f"readlink /proc/{after}/fd/*", check=False)
                return "/var/log/aws/codedeploy-agent/codedeploy-agent.log\n" in fds.stdout

            await eventually("the agent reopened its log", reopened, timeout=10)
            rotated = [p.name for p in logs.iterdir() if p.name.startswith("codedeploy-agent.log-")]
            assert len(rotated) == 1, sorted(p.name for p in logs.iterdir())
            assert await main_pid() == after
            assert await alive(app)

            # --- upgrade during a deployment: the restart waits for the deployment -----------
            service.queue_job(THING, "job-2", job("v2", "d-HELLO0002"))
            await eventually(
                "job-2 reached AfterInstall",
                lambda: holds(
                    status().get("current_deployment_id") == "d-HELLO0002"
                    and status().get("current_event") == "AfterInstall"
                ),
                timeout=60,
            )
            upgrade = await sh(f"apt-get install -y {deb2}")
            assert "a deployment is running; the agent restarts when it has ended" in upgrade.stdout
            assert "Configuration file" not in upgrade.stdout  # no conffile prompt
            assert await main_pid() == after
            assert config.read_text() == configured
            version = await sh("dpkg-query -W -f '${Version}' codedeploy-agent")
            assert version.stdout == f"{VERSION}-2"
            box.path("/var/tmp/cdtest/go").touch()
            done = await service.wait_for_status(THING, "job-2", TERMINAL, timeout=120)
            assert done.status is JobStatus.SUCCEEDED, done.status_details

            async def restarted() -> bool:
                pid = await main_pid()
                return pid not in (after, 0)

            await eventually("the agent restarted after the deployment", restarted, timeout=60)
            waiting = time.monotonic()
            upgraded = await main_pid()
            await eventually(
                "the upgraded agent is active",
                lambda: holds(
                    status().get("broker_connected") is True and status().get("pid") == upgraded
                ),
            )
            print(f"restart after the deployment: {time.monotonic() - waiting:.1f} s")

            # --- upgrade while idle: restarted at once; config, state, deployment root kept --
            await sh(f"apt-get install -y --reinstall {deb2}")
            assert await main_pid() not in (upgraded, 0)
            assert config.read_text() == configured
            root = box.path("/opt/codedeploy-agent/deployment-root")
            assert (root / "dg-web" / "d-HELLO0001" / "logs" / "scripts.log").is_file()
            assert (
                root / "dg-web" / "d-HELLO0002" / "deployment-archive" / "appspec.yml"
            ).is_file()
            assert (
                "job-1" in box.path("/opt/codedeploy-agent/state").joinpath("jobs.json").read_text()
            )
            assert await alive(app)

            # --- purge ------------------------------------------------------------------------
            listed = (await sh("dpkg -L codedeploy-agent")).stdout.split()
            await sh("apt-get purge -y codedeploy-agent")

    assert (await sh("dpkg -s codedeploy-agent", check=False)).returncode != 0
    assert await alive(app)  # purge stopped the agent, not the application
    assert box.path("/srv/hello-app/VERSION").read_text() == "v2\n"
    assert box.path("/opt").is_dir()
    assert not box.path("/opt/codedeploy-agent").exists()
    assert not box.path("/var/log/aws").exists()
    etc = box.path("/etc/codedeploy-agent")
    assert sorted(str(p.relative_to(etc)) for p in etc.rglob("*")) == [
        "keys",
        "keys/signing.pub.pem",
    ]
    # Still there: /etc/codedeploy-agent (it holds the operator's key) and directories that
    # other packages list too (/etc, /usr/share/doc...); nothing else of the package's list.
    leftovers = [
        p
        for p in listed
        if (box.path(p).exists() or box.path(p).is_symlink()) and p != "/etc/codedeploy-agent"
    ]
    assert all(box.path(p).is_dir() for p in leftovers), leftovers
    owners = await sh(f"dpkg -S {' '.join(leftovers)}", check=False)
    for path in leftovers:  # only directories other packages own as well (/etc, /usr/share/doc)
        assert re.search(rf": {re.escape(path)}$", owners.stdout, re.MULTILINE), path
    print(f"booted-host acceptance test: {time.monotonic() - started:.1f} s")
