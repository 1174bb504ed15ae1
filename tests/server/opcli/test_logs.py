"""`codedeploy logs`: the reported log tails, and `--follow` from a real Mosquitto."""

from __future__ import annotations

import asyncio
import io
import threading
from typing import Any, cast

import aiomqtt
import pytest

from codedeploy_server.opcli.client import CodeDeployApi
from codedeploy_server.opcli.errors import ApiError, CliError, UsageError
from codedeploy_server.opcli.logs import MqttSettings, follow_logs, run_logs
from codedeploy_server.opcli.render import Output
from tests.fakes.broker_fixtures import MosquittoFactory
from tests.fakes.brokers import MosquittoBroker, free_port
from tests.server.opcli.recorded import RecordedApi, all_events, deployment, event, target

DEPLOYMENT = "d-ABCDEFGH1"


def started(tail: str) -> dict[str, Any]:
    """A succeeded ApplicationStart whose script printed `tail`."""
    return event(
        "ApplicationStart",
        "Succeeded",
        code="Success",
        script="scripts/start.sh",
        message="Succeeded",
        tail=tail,
    )


def targets() -> list[dict[str, Any]]:
    """host-1 with a start log, host-2 failed in ValidateService with its log."""
    return [
        target("host-1", "Succeeded", all_events("Succeeded"), failed=started("[stdout]up\n")),
        target(
            "host-2",
            "Failed",
            all_events("Succeeded", "ApplicationStart"),
            failed=event(
                "ValidateService",
                "Failed",
                code="ScriptFailed",
                script="scripts/validate.sh",
                message="exit code 3",
                tail="[stderr]no answer\n[stderr]giving up",
            ),
        ),
    ]


class LiveApi(RecordedApi):
    """InProgress until `finish()` is called (from the test), then Succeeded."""

    def __init__(self) -> None:
        running = [target("host-1", "InProgress"), target("host-2", "InProgress")]
        super().__init__(
            {DEPLOYMENT: [(deployment("InProgress"), running), (deployment("Succeeded"), running)]}
        )
        self._done = threading.Event()

    def finish(self) -> None:
        """Let the next GetDeployment report Succeeded."""
        self._done.set()

    def get_deployment(self, **kwargs: Any) -> dict[str, Any]:
        """State 0 until finished, then state 1."""
        self.calls.append(("GetDeployment", kwargs))
        self.position[DEPLOYMENT] = 1 if self._done.is_set() else 0
        return {"deploymentInfo": self._state(DEPLOYMENT)[0]}


def test_logs_prints_every_tail_in_target_and_event_order() -> None:
    """Each event with a log tail gets a `==> instance event (status) <==` block."""
    api = RecordedApi({DEPLOYMENT: [(deployment("Failed"), targets())]})
    out = io.StringIO()
    assert run_logs(cast(CodeDeployApi, api), DEPLOYMENT, Output(out, io.StringIO())) == 0
    assert out.getvalue() == (
        "==> host-1 ApplicationStart (Succeeded) <==\n"
        "[stdout]up\n"
        "\n"
        "==> host-2 ValidateService (Failed) <==\n"
        "[stderr]no answer\n"
        "[stderr]giving up\n"
    )


def test_logs_of_one_instance() -> None:
    """--instance keeps only that instance's blocks."""
    api = RecordedApi({DEPLOYMENT: [(deployment("Failed"), targets())]})
    out = io.StringIO()
    run_logs(cast(CodeDeployApi, api), DEPLOYMENT, Output(out, io.StringIO()), instance="host-1")
    assert out.getvalue() == "==> host-1 ApplicationStart (Succeeded) <==\n[stdout]up\n"


def test_logs_of_an_unknown_instance_names_the_targets() -> None:
    """An --instance that is not a target is an error listing the deployment's targets."""
    api = RecordedApi({DEPLOYMENT: [(deployment("Failed"), targets())]})
    with pytest.raises(CliError) as caught:
        run_logs(
            cast(CodeDeployApi, api),
            DEPLOYMENT,
            Output(io.StringIO(), io.StringIO()),
            instance="host-9",
        )
    assert str(caught.value) == (
        "host-9 is not a target of deployment d-ABCDEFGH1; its targets: host-1, host-2."
    )


def test_logs_with_nothing_reported_says_so() -> None:
    """No tails yet: a note on stderr, nothing on stdout."""
    api = RecordedApi({DEPLOYMENT: [(deployment("InProgress"), [target("host-1", "Pending")])]})
    out, err = io.StringIO(), io.StringIO()
    run_logs(cast(CodeDeployApi, api), DEPLOYMENT, Output(out, err))
    assert (out.getvalue(), err.getvalue()) == (
        "",
        "No script output reported for d-ABCDEFGH1 yet.\n",
    )


async def _wait_for(predicate: Any, limit: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _follow_while_publishing(
    broker: MosquittoBroker,
    settings: MqttSettings,
    lines: list[tuple[str, bytes]],
    last: str,
    *,
    instance: str | None = None,
) -> tuple[str, str]:
    """Run `logs --follow` against a deployment that ends once `last` has been printed, with
    `lines` published (topic, payload) by a client standing in for the agents; (stdout, stderr)."""
    api = LiveApi()
    out, err = io.StringIO(), io.StringIO()
    follow = asyncio.create_task(
        follow_logs(
            cast(CodeDeployApi, api),
            DEPLOYMENT,
            Output(out, err),
            settings,
            instance=instance,
            poll_interval=0.05,
            drain=0.3,
        )
    )
    await _wait_for(lambda: "Following" in err.getvalue() or follow.done())
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="agent-test") as agent:
        for topic, payload in lines:
            await agent.publish(topic, payload, qos=0)
        await _wait_for(lambda: last in out.getvalue())
    api.finish()
    assert await asyncio.wait_for(follow, 10) == 0
    return out.getvalue(), err.getvalue()


@pytest.mark.broker
@pytest.mark.asyncio
async def test_follow_prints_live_lines_until_the_deployment_ends(
    mosquitto: MosquittoBroker,
) -> None:
    """Lines published on the deployment's log topic print as `<instance> <line>`; others not."""
    root = "codedeploy/things"
    out, err = await _follow_while_publishing(
        mosquitto,
        MqttSettings(mosquitto.endpoint),
        [
            (f"{root}/host-1/logs/{DEPLOYMENT}", b"[stdout]one\n[stdout]two"),
            (f"{root}/host-1/logs/d-OTHER0001", b"[stdout]elsewhere"),
            (f"{root}/host-2/logs/{DEPLOYMENT}", b"[stderr]three"),
        ],
        "three",
    )
    assert out == "host-1 [stdout]one\nhost-1 [stdout]two\nhost-2 [stderr]three\n"
    assert err == (
        "Following live script output of d-ABCDEFGH1 (Ctrl-C to stop)\n"
        "Deployment d-ABCDEFGH1 Succeeded\n"
    )


@pytest.mark.broker
@pytest.mark.asyncio
async def test_follow_with_an_aws_iot_topic_root_reads_the_events_root(
    mosquitto: MosquittoBroker,
) -> None:
    """With `--topic-root $aws/things` the lines come from `codedeploy/things/...`, where agents
    publish them under AWS IoT Core (never under the reserved `$aws`)."""
    out, _ = await _follow_while_publishing(
        mosquitto,
        MqttSettings(mosquitto.endpoint, topic_root="$aws/things"),
        [
            (f"$aws/things/host-1/logs/{DEPLOYMENT}", b"[stdout]reserved"),
            (f"codedeploy/things/host-1/logs/{DEPLOYMENT}", b"[stdout]ok"),
        ],
        "ok",
    )
    assert out == "host-1 [stdout]ok\n"


@pytest.mark.broker
@pytest.mark.asyncio
async def test_follow_of_one_instance_subscribes_to_its_topic_only(
    mosquitto: MosquittoBroker,
) -> None:
    """With --instance, lines of other instances are not printed."""
    out, _ = await _follow_while_publishing(
        mosquitto,
        MqttSettings(mosquitto.endpoint),
        [
            (f"codedeploy/things/host-1/logs/{DEPLOYMENT}", b"[stdout]no"),
            (f"codedeploy/things/host-2/logs/{DEPLOYMENT}", b"[stdout]yes"),
        ],
        "yes",
        instance="host-2",
    )
    assert out == "host-2 [stdout]yes\n"


@pytest.mark.broker
@pytest.mark.asyncio
async def test_follow_needs_a_login_the_broker_accepts(
    mosquitto_factory: MosquittoFactory,
) -> None:
    """A broker that refuses the login: an error naming the broker and the options to check."""
    broker = mosquitto_factory(users={"operator": "right"})
    settings = MqttSettings(broker.endpoint, username="operator", password="wrong")  # noqa: S106
    with pytest.raises(ApiError) as caught:
        await follow_logs(
            cast(CodeDeployApi, LiveApi()),
            DEPLOYMENT,
            Output(io.StringIO(), io.StringIO()),
            settings,
        )
    assert str(caught.value).startswith(
        f"Cannot follow the live logs through the MQTT broker at {broker.endpoint}: "
    )
    assert str(caught.value).endswith(
        "--follow needs access to the broker the agents use: check --mqtt-endpoint (or "
        "CODEDEPLOY_MQTT_ENDPOINT), --mqtt-username/--mqtt-password and the TLS options."
    )


@pytest.mark.asyncio
async def test_follow_with_no_broker_listening() -> None:
    """Nothing listening at the MQTT endpoint: the same clear error, no traceback."""
    endpoint = f"mqtt://127.0.0.1:{free_port()}"
    with pytest.raises(ApiError) as caught:
        await follow_logs(
            cast(CodeDeployApi, LiveApi()),
            DEPLOYMENT,
            Output(io.StringIO(), io.StringIO()),
            MqttSettings(endpoint),
        )
    assert str(caught.value).startswith(
        f"Cannot follow the live logs through the MQTT broker at {endpoint}: "
    )


def test_mqtt_endpoint_must_be_an_mqtt_url() -> None:
    """An endpoint that is not mqtt:// or mqtts:// is refused with the expected form."""
    with pytest.raises(UsageError) as caught:
        MqttSettings("http://127.0.0.1:1883").address()
    assert str(caught.value) == (
        "Invalid MQTT endpoint 'http://127.0.0.1:1883': it must look like mqtt://HOST[:PORT] or "
        "mqtts://HOST[:PORT] (--mqtt-endpoint or CODEDEPLOY_MQTT_ENDPOINT)"
    )
    assert MqttSettings("mqtts://broker.example").address() == ("broker.example", 8883, True)
