"""`codedeploy logs DEPLOYMENT_ID [--instance I] [--follow]`: the hook scripts' output.

Without `--follow`: the tails of the script logs the agents reported with each lifecycle event
(`diagnostics.logTail`, up to the last 1,024 characters per event), one block per instance and
event:

    ==> host-1 ValidateService (Failed) <==
    [stderr]no answer on port 8080

The agents (codedeploy-agent, and AWS's own) send a tail only with an event that failed, so a
deployment that succeeded has none: the whole output stays in each host's scripts.log.

With `--follow`, those tails first, then the live lines the agents publish on MQTT
(`{events_topic_root}/{thing}/logs/{deploymentId}`, QoS 0; PROTOCOL.md), printed as `<instance>
<line>` until the deployment ends (GetDeployment every 2 seconds). This needs access to the MQTT
broker the agents use (`--mqtt-endpoint` or `CODEDEPLOY_MQTT_ENDPOINT`, with the broker's user
name and password or client certificate), not just to the API. Live lines are best effort: QoS
0, and a line published between the tails being read and the subscription may show twice or not
at all.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import aiomqtt

from codedeploy_agent.protocol.errors import ProtocolError
from codedeploy_agent.protocol.topics import (
    DEFAULT_TOPIC_ROOT,
    TopicKind,
    parse_any_thing,
    resolve_events_root,
    validate_deployment_id,
    validate_thing_name,
    validate_topic_root,
)
from codedeploy_server.opcli.client import CodeDeployApi
from codedeploy_server.opcli.errors import ApiError, CliError, UsageError
from codedeploy_server.opcli.model import TargetView
from codedeploy_server.opcli.queries import fetch_deployment, fetch_snapshot
from codedeploy_server.opcli.render import Output

MQTT_ENDPOINT_ENV: Final = "CODEDEPLOY_MQTT_ENDPOINT"
_DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}
#: How often `--follow` asks whether the deployment has ended.
POLL_INTERVAL: Final = 2.0
#: How long `--follow` keeps printing after the deployment ended (lines still in flight).
DRAIN_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """How `logs --follow` reaches the broker."""

    endpoint: str
    topic_root: str = DEFAULT_TOPIC_ROOT
    #: Where the agents publish their log lines; None: derived from `topic_root` the way the
    #: agents derive it (`codedeploy/things` when the topic root is an AWS IoT `$aws/...` one).
    events_topic_root: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def address(self) -> tuple[str, int, bool]:
        """Host, port and whether TLS is on, from `mqtt://HOST[:PORT]` or `mqtts://...`."""
        problem = (
            f"Invalid MQTT endpoint {self.endpoint!r}: it must look like mqtt://HOST[:PORT] or "
            "mqtts://HOST[:PORT] (--mqtt-endpoint or CODEDEPLOY_MQTT_ENDPOINT)"
        )
        try:
            parts = urlsplit(self.endpoint)
            port = parts.port
        except ValueError:
            raise UsageError(problem) from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
            raise UsageError(problem)
        return parts.hostname, port or _DEFAULT_PORTS[scheme], scheme == "mqtts"

    def tls_context(self) -> ssl.SSLContext:
        """A client TLS context trusting `ca_file` (else the system CAs), with the cert if any."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def tail_lines(targets: Sequence[TargetView]) -> list[str]:
    """One `==> instance event (status) <==` block per event with a log tail, blank-separated."""
    lines: list[str] = []
    for target in targets:
        for event in target.events:
            if not event.log_tail:
                continue
            if lines:
                lines.append("")
            lines.append(f"==> {target.target_id} {event.name} ({event.status}) <==")
            lines.extend(event.log_tail.splitlines())
    return lines


def _select(
    targets: Sequence[TargetView], instance: str | None, deployment_id: str
) -> list[TargetView]:
    if instance is None:
        return list(targets)
    chosen = [t for t in targets if t.target_id == instance]
    if not chosen:
        names = ", ".join(t.target_id for t in targets) or "none"
        raise CliError(
            f"{instance} is not a target of deployment {deployment_id}; its targets: {names}."
        )
    return chosen


def run_logs(
    api: CodeDeployApi, deployment_id: str, output: Output, *, instance: str | None = None
) -> int:
    """Print the script log tails of the deployment (of one instance with `instance`)."""
    snapshot = fetch_snapshot(api, deployment_id)
    lines = tail_lines(_select(snapshot.targets, instance, deployment_id))
    if not lines and not snapshot.deployment.terminal:
        output.note(f"No script output reported for {deployment_id} yet.")
    elif not lines:
        # Not "yet": nothing more will come, and an operator should not wait for it.
        output.note(
            f"No script output reported for {deployment_id}: agents report a script's output "
            "only when its lifecycle event fails. Each host keeps all of it in "
            f"<deployment root>/<deployment group id>/{deployment_id}/logs/scripts.log."
        )
    output.lines(lines)
    return 0


def run_logs_follow(
    api: CodeDeployApi,
    deployment_id: str,
    output: Output,
    mqtt: MqttSettings,
    *,
    instance: str | None = None,
    poll_interval: float = POLL_INTERVAL,
    drain: float = DRAIN_SECONDS,
) -> int:
    """Print the tails, then live lines until the deployment ends."""
    return asyncio.run(
        follow_logs(
            api,
            deployment_id,
            output,
            mqtt,
            instance=instance,
            poll_interval=poll_interval,
            drain=drain,
        )
    )


async def follow_logs(
    api: CodeDeployApi,
    deployment_id: str,
    output: Output,
    mqtt: MqttSettings,
    *,
    instance: str | None = None,
    poll_interval: float = POLL_INTERVAL,
    drain: float = DRAIN_SECONDS,
) -> int:
    """The body of `logs --follow` (subscribe first, so no line falls between tails and live)."""
    host, port, tls = mqtt.address()
    jobs_root = _checked(validate_topic_root, mqtt.topic_root, "--topic-root")
    root = _checked(
        lambda value: resolve_events_root(jobs_root, value or None),
        mqtt.events_topic_root or "",
        "--events-topic-root",
    )
    _checked(validate_deployment_id, deployment_id, "DEPLOYMENT_ID")
    thing = _checked(validate_thing_name, instance, "--instance") if instance else "+"
    client = aiomqtt.Client(
        host,
        port,
        identifier=f"codedeploy-cli-{uuid.uuid4().hex[:12]}",
        username=mqtt.username,
        password=mqtt.password,
        tls_context=mqtt.tls_context() if tls else None,
    )
    try:
        async with client:
            await client.subscribe(f"{root}/{thing}/logs/{deployment_id}", qos=0)
            snapshot = await asyncio.to_thread(fetch_snapshot, api, deployment_id)
            output.lines(tail_lines(_select(snapshot.targets, instance, deployment_id)))
            if snapshot.deployment.terminal:
                output.note(f"Deployment {deployment_id} {snapshot.deployment.status}")
                return 0
            output.note(f"Following live script output of {deployment_id} (Ctrl-C to stop)")
            printer = asyncio.create_task(
                _print_lines(client, jobs_root, root, deployment_id, output)
            )
            try:
                status = await _wait_for_end(api, deployment_id, poll_interval)
                await asyncio.sleep(drain)
            finally:
                printer.cancel()
                await asyncio.gather(printer, return_exceptions=True)
            output.note(f"Deployment {deployment_id} {status}")
            return 0
    except aiomqtt.MqttError as err:
        raise ApiError(
            f"Cannot follow the live logs through the MQTT broker at {mqtt.endpoint}: {err}. "
            "--follow needs access to the broker the agents use: check --mqtt-endpoint (or "
            "CODEDEPLOY_MQTT_ENDPOINT), --mqtt-username/--mqtt-password and the TLS options."
        ) from None


def _checked(check: Callable[[str], str], value: str, option: str) -> str:
    try:
        return check(value)
    except ProtocolError as err:
        raise UsageError(f"{option}: {err}") from None


async def _print_lines(
    client: aiomqtt.Client, jobs_root: str, events_root: str, deployment_id: str, output: Output
) -> None:
    async for message in client.messages:
        try:
            parsed = parse_any_thing(jobs_root, message.topic.value, events_root=events_root)
        except ProtocolError:
            continue
        if parsed.kind is not TopicKind.LOGS or parsed.deployment_id != deployment_id:
            continue
        payload = message.payload
        text = (
            payload.decode("utf-8", "replace")
            if isinstance(payload, bytes | bytearray)
            else str(payload or "")
        )
        output.lines(f"{parsed.thing_name} {line}" for line in text.splitlines())


async def _wait_for_end(api: CodeDeployApi, deployment_id: str, interval: float) -> str:
    while True:
        await asyncio.sleep(interval)
        view = await asyncio.to_thread(fetch_deployment, api, deployment_id)
        if view.terminal:
            return view.status
