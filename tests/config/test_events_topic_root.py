"""`mqtt.events_topic_root` in the agent and the server config: its default, and `$` refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from codedeploy_agent.config import MqttSettings, load_config
from codedeploy_agent.errors import ConfigError
from codedeploy_agent.protocol.topics import default_events_root
from codedeploy_server.config import MqttConfig, load_server_config
from codedeploy_server.errors import ServerConfigError

WriteConfig = Callable[[str], Path]  # the `write_config` fixture of conftest.py

ROOTS = ["codedeploy/things", "fleet/things", "$aws/things", "$share/g/x", "a$b"]


@pytest.mark.parametrize("topic_root", ROOTS)
def test_config_defaults_follow_the_protocol_rule(topic_root: str) -> None:
    """Both configs' `events_root` equals topics.default_events_root (the agent's is a copy)."""
    assert MqttSettings(topic_root=topic_root).events_root == default_events_root(topic_root)
    assert MqttConfig(topic_root=topic_root).events_root == default_events_root(topic_root)


@pytest.mark.parametrize(
    ("text", "events_topic_root", "events_root"),
    [
        ("", None, "codedeploy/things"),
        ("  topic_root: fleet/things\n", None, "fleet/things"),
        ("  topic_root: $aws/things\n", None, "codedeploy/things"),
        ("  topic_root: $aws/things\n  events_topic_root: fleet/events\n", "fleet/events", None),
        ("  events_topic_root: fleet/events\n", "fleet/events", None),
    ],
)
def test_agent_events_root_default(
    write_config: WriteConfig, text: str, events_topic_root: str | None, events_root: str | None
) -> None:
    """The agent's events root is the topic root, or codedeploy/things under `$aws/things`."""
    config, warnings = load_config(write_config(f"mqtt:\n  thing_name: web-1\n{text}"))
    assert warnings == []
    assert config.mqtt.events_topic_root == events_topic_root
    assert config.mqtt.events_root == (events_root or events_topic_root)


@pytest.mark.parametrize("value", ["$aws/things", "'$aws/events'", "$SYS"])
def test_agent_refuses_an_events_root_beginning_with_dollar(
    write_config: WriteConfig, value: str
) -> None:
    """`mqtt.events_topic_root: $...` is refused, saying why and what to use."""
    path = write_config(f"mqtt:\n  events_topic_root: {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    shown = value.strip("'")
    assert str(caught.value) == (
        f"Invalid configuration mqtt.events_topic_root: '{shown}' in {path}: must not begin "
        "with '$': topics beginning with '$' are reserved (AWS IoT Core disconnects a client "
        "that publishes to a reserved topic it does not support), and the agent publishes its "
        "presence, its last will and live logs there; use a plain root such as "
        "codedeploy/things"
    )


@pytest.mark.parametrize("key", ["topic_root", "events_topic_root"])
@pytest.mark.parametrize("value", ["a//b", "/a", "a/", "a/+/b", "'a/#'", "''", "5"])
def test_agent_topic_roots_refuse_wildcards_and_empty_levels(
    write_config: WriteConfig, key: str, value: str
) -> None:
    """Both roots are refused with wildcards, empty levels or a leading/trailing '/'."""
    path = write_config(f"mqtt:\n  {key}: {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"Invalid configuration mqtt.{key}: ")
    assert "must be a topic without wildcards (+, #), empty levels or leading/trailing '/'" in (
        str(caught.value)
    )


@pytest.fixture
def write_server_config(tmp_path: Path) -> WriteConfig:
    """Write `text` as the server config `<tmp>/server.yml` and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "server.yml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.mark.parametrize(
    ("mqtt", "topic_root", "events_root"),
    [
        ("{}", "codedeploy/things", "codedeploy/things"),
        ("{topic_root: fleet/things}", "fleet/things", "fleet/things"),
        ("{topic_root: $aws/things}", "$aws/things", "codedeploy/things"),
        ("{topic_root: $aws/things, events_topic_root: fleet/ev}", "$aws/things", "fleet/ev"),
    ],
)
def test_server_events_root_default(
    write_server_config: WriteConfig, mqtt: str, topic_root: str, events_root: str
) -> None:
    """The server reads mqtt.events_topic_root with the agent's default rule."""
    config = load_server_config(write_server_config(f"mqtt: {mqtt}\n"))
    assert (config.mqtt.topic_root, config.mqtt.events_root) == (topic_root, events_root)


def test_server_refuses_an_events_root_beginning_with_dollar(
    write_server_config: WriteConfig,
) -> None:
    """`mqtt.events_topic_root: $...` stops the server config with the reason."""
    path = write_server_config("mqtt: {events_topic_root: $aws/events}\n")
    with pytest.raises(ServerConfigError) as caught:
        load_server_config(path)
    assert str(caught.value) == (
        f"{path}: mqtt.events_topic_root: Invalid events topic root '$aws/events': it must not "
        "begin with '$'. Topics beginning with '$' are reserved: AWS IoT Core disconnects a "
        "client that publishes to a reserved topic it does not support, and many brokers "
        "refuse such publishes, while the agent publishes its presence (also as its last will) "
        "and live logs there. Use a plain root such as 'codedeploy/things'"
    )


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        (
            "{topic_root: a//b}",
            "mqtt.topic_root: Invalid topic root 'a//b': it must be non-empty topic levels",
        ),
        (
            "{events_topic_root: 'x/#'}",
            "mqtt.events_topic_root: Invalid topic root 'x/#': it must be non-empty topic levels",
        ),
        ("{events_topic_root: 7}", "mqtt.events_topic_root must be a topic such as"),
    ],
)
def test_server_refuses_invalid_topic_roots(
    write_server_config: WriteConfig, mqtt: str, message: str
) -> None:
    """Invalid topic or events roots stop the server config, naming the key."""
    path = write_server_config(f"mqtt: {mqtt}\n")
    with pytest.raises(ServerConfigError) as caught:
        load_server_config(path)
    assert str(caught.value).startswith(f"{path}: {message}")
