"""`codedeploy-agent doctor`: check this host's agent set-up and say how to fix what is wrong.

`run_doctor(config_path, out)` prints one line per finding, `[ OK ]`, `[INFO]`, `[WARN]`,
`[FAIL]` or `[SKIP]`, then a `fix:` line for anything that did not pass, and returns the exit
status: 1 when any check failed, else 0 (warnings do not fail). The checks, in order: the config
parses (and its warnings), the directories, free disk in the deployment root, the trusted signing
keys, the broker (TCP), TLS (certificate files, expiry, handshake, the broker's answer to the
client certificate), an MQTT login, the thing name, the clock (NTP), the tools appspecs may need,
the running agent (pid lock, status snapshot, systemd unit) and where the logs are. The checks
live in `host_checks` (this host alone) and `network_checks` (broker, thing name, NTP); each
returns its findings, so tests call them one by one; `findings` holds the report's vocabulary.

Decisions:
- The MQTT login uses the client id `<thing name>-doctor`, never the agent's own: connecting as
  the agent would take its session over (the broker disconnects the running agent, and QoS 1
  commands queued for an offline agent would be delivered to the doctor, acknowledged and lost).
  The login asks for no persistent session (MQTT 5: session expiry 0) and subscribes to nothing.
  A broker whose ACL or IoT policy pins client ids to thing names refuses it; the fix says so.
- Whether the broker accepts the thing name is therefore read from the running agent's status
  snapshot (connected, and as which thing); with no agent running it is only validated locally.
- The clock check asks `clock.ntp_servers` with at most 3 s each; an empty list skips it.
- A missing `git`, `setfacl` or `semanage`/`restorecon` fails only when something needs it: the
  config's `git:` section, or the appspec of a deployed (last successful) revision that sets
  `acls` or an SELinux `context`; otherwise it is reported as information.
- A directory owned by another user than the agent's (or root) fails: that user could change
  what the agent runs as root. So does a world-writable one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TextIO

from codedeploy_agent import __version__
from codedeploy_agent.doctor.findings import Finding, Lines, Status, summary
from codedeploy_agent.doctor.host_checks import (
    check_agent,
    check_config,
    check_directories,
    check_disk,
    check_logs,
    check_signing,
    check_tools,
    running_agent,
)
from codedeploy_agent.doctor.network_checks import (
    check_broker,
    check_clock,
    check_login,
    check_thing,
    check_tls,
    thing_name,
)

__all__ = [
    "Finding",
    "Status",
    "check_agent",
    "check_broker",
    "check_clock",
    "check_config",
    "check_directories",
    "check_disk",
    "check_login",
    "check_logs",
    "check_signing",
    "check_thing",
    "check_tls",
    "check_tools",
    "collect",
    "run_doctor",
    "running_agent",
    "summary",
    "thing_name",
]


async def collect(config_path: Path | None) -> list[Finding]:
    """Every finding, in report order; blocking checks run in a thread."""
    config, findings = await asyncio.to_thread(check_config, config_path)
    if config is None:
        return findings
    for check in (check_directories, check_disk, check_signing):
        findings += await asyncio.to_thread(check, config)
    broker = await asyncio.to_thread(check_broker, config)
    findings += broker
    if broker[-1].status is not Status.OK:
        findings += Lines("login").add(Status.SKIP, "not tried: the broker cannot be reached")
    else:
        tls = await asyncio.to_thread(check_tls, config)
        findings += tls
        if any(f.status is Status.FAIL for f in tls):
            findings += Lines("login").add(Status.SKIP, "not tried: TLS fails")
        else:
            findings += await check_login(config)
    pid, snapshot = await asyncio.to_thread(running_agent, config)
    findings += await asyncio.to_thread(check_thing, config, snapshot if pid else None)
    findings += await check_clock(config)
    findings += await asyncio.to_thread(check_tools, config)
    findings += await asyncio.to_thread(check_agent, config, pid, snapshot)
    findings += await asyncio.to_thread(check_logs, config)
    return findings


def run_doctor(config_path: Path | None, out: TextIO) -> int:
    """Run every check and print the report to `out`; return 1 when any check failed, else 0.

    `config_path` is `-c FILE` (None: the agent's default search). Runs its own event loop:
    call it from synchronous code (the CLI), like `asyncio.run`.
    """
    print(f"codedeploy-agent doctor {__version__}", file=out)
    findings = asyncio.run(collect(config_path))
    for finding in findings:
        print(finding.format(), file=out)
    print(summary(findings), file=out)
    return 1 if any(f.status is Status.FAIL for f in findings) else 0
