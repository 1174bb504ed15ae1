"""The agent config loader: keys in both spellings, defaults, warnings and invalid values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

import pytest

from codedeploy_agent.config import (
    AgentConfig,
    ArchiveLimits,
    BitbucketSettings,
    ClockSettings,
    DownloadSettings,
    GitHubSettings,
    GitSettings,
    HookSettings,
    MqttSettings,
    SecuritySettings,
    load_config,
)
from codedeploy_agent.errors import ConfigError

WriteConfig = Callable[[str], Path]  # the `write_config` fixture of conftest.py

SHIPPED = (
    "---\n:log_aws_wire: false\n:log_dir: '/var/log/aws/codedeploy-agent/'\n"
    ":pid_dir: '/opt/codedeploy-agent/state/.pid/'\n:program_name: codedeploy-agent\n"
    ":root_dir: '/opt/codedeploy-agent/deployment-root'\n:verbose: false\n"
    ":wait_between_runs: 1\n:proxy_uri:\n:max_revisions: 5\n"
)

SECTIONS = {
    "archive": ArchiveLimits,
    "hooks": HookSettings,
    "mqtt": MqttSettings,
    "clock": ClockSettings,
    "security": SecuritySettings,
    "download": DownloadSettings,
    "github": GitHubSettings,
    "bitbucket": BitbucketSettings,
    "git": GitSettings,
}

# (key, YAML value, expected value, other keys of the same section the value needs)
USED_KEYS: list[tuple[str, str, object, dict[str, str]]] = [
    ("log_dir", "/srv/log/", Path("/srv/log"), {}),
    ("pid_dir", "/srv/pid", Path("/srv/pid"), {}),
    ("program_name", "my-agent", "my-agent", {}),
    ("root_dir", "/srv/root", Path("/srv/root"), {}),
    ("verbose", "true", True, {}),
    ("wait_between_runs", "7", 7, {}),
    ("proxy_uri", "http://proxy.example:3128", "http://proxy.example:3128", {}),
    ("max_revisions", "3", 3, {}),
    ("disable_imds_v1", "true", True, {}),
    ("on_premises_config_file", "/srv/onprem.yml", Path("/srv/onprem.yml"), {}),
    ("enable_deployments_log", "false", False, {}),
    ("ongoing_deployment_tracking", "in-flight", "in-flight", {}),
    ("kill_agent_max_wait_time_seconds", "60", 60, {}),
    ("http_read_timeout", "20", 20, {}),
    ("use_fips_mode", "true", True, {}),
    ("deploy_control_endpoint", "https://cd.example", "https://cd.example", {}),
    ("s3_endpoint_override", "http://127.0.0.1:9000", "http://127.0.0.1:9000", {}),
    ("state_dir", "/srv/state", Path("/srv/state"), {}),
    ("log_format", "json", "json", {}),
    ("heartbeat_seconds", "15", 15, {}),
    ("archive.max_total_bytes", "500M", 500 * 1024**2, {}),
    ("archive.max_members", "10", 10, {}),
    ("archive.max_compression_ratio", "50.5", 50.5, {}),
    ("hooks.kill_grace_seconds", "2.5", 2.5, {}),
    ("mqtt.endpoint", "mqtts://broker.example:8883", "mqtts://broker.example:8883", {}),
    ("mqtt.thing_name", "web-1.prod:a_b", "web-1.prod:a_b", {}),
    ("mqtt.topic_root", "fleet/things", "fleet/things", {}),
    ("mqtt.events_topic_root", "fleet/events", "fleet/events", {}),
    ("mqtt.protocol", "3.1.1", "3.1.1", {}),
    ("mqtt.ca_file", "/etc/ca.pem", Path("/etc/ca.pem"), {"endpoint": "mqtts://b"}),
    (
        "mqtt.cert_file",
        "/etc/c.pem",
        Path("/etc/c.pem"),
        {"key_file": "/etc/k.pem", "endpoint": "mqtts://b"},
    ),
    (
        "mqtt.key_file",
        "/etc/k.pem",
        Path("/etc/k.pem"),
        {"cert_file": "/etc/c.pem", "endpoint": "mqtts://b"},
    ),
    ("mqtt.username", "agent", "agent", {}),
    ("mqtt.password_file", "/etc/pw", Path("/etc/pw"), {"username": "agent"}),
    ("mqtt.keepalive_seconds", "60", 60, {}),
    ("mqtt.session_expiry_seconds", "0", 0, {}),
    ("clock.ntp_servers", "[127.0.0.1, ntp.example]", ("127.0.0.1", "ntp.example"), {}),
    ("clock.check_interval_seconds", "60", 60, {}),
    ("clock.warn_seconds", "1.5", 1.5, {}),
    ("clock.max_skew_seconds", "120", 120.0, {}),
    ("clock.timeout_seconds", "0.5", 0.5, {}),
    ("security.trusted_keys", "{k1: /etc/k1.pem}", (("k1", Path("/etc/k1.pem")),), {}),
    ("download.max_bytes", "2G", 2 * 1024**3, {}),
    ("download.connect_timeout_seconds", "5", 5.0, {}),
    ("download.retries", "5", 5, {}),
    ("download.part_size", "8M", 8 * 1024**2, {}),
    ("download.parallel_parts", "8", 8, {}),
    ("download.no_proxy", "[s3.internal, .corp]", ("s3.internal", ".corp"), {}),
    (
        "github.api_url",
        "https://github.example.com/api/v3",
        "https://github.example.com/api/v3",
        {},
    ),
    ("github.token_file", "/etc/gh-token", Path("/etc/gh-token"), {}),
    ("bitbucket.api_url", "https://bb.example.com", "https://bb.example.com", {}),
    ("bitbucket.flavor", "server", "server", {}),
    ("bitbucket.username", "deployer", "deployer", {}),
    ("bitbucket.password_file", "/etc/bb-pass", Path("/etc/bb-pass"), {}),
    ("bitbucket.token_file", "/etc/bb-token", Path("/etc/bb-token"), {}),
    ("git.executable", "/usr/local/bin/git", "/usr/local/bin/git", {}),
    ("git.codecommit_username", "ops-at-1234", "ops-at-1234", {}),
    ("git.codecommit_password_file", "/etc/cc-pass", Path("/etc/cc-pass"), {}),
    ("git.username", "deployer", "deployer", {}),
    ("git.password_file", "/etc/git-pass", Path("/etc/git-pass"), {}),
    ("git.ssh_key_file", "/etc/deploy-key", Path("/etc/deploy-key"), {}),
    ("git.ssh_known_hosts_file", "/etc/known", Path("/etc/known"), {}),
    ("git.timeout_seconds", "30", 30.0, {}),
    (
        "git.codecommit_url_template",
        "https://vpce-1.git-codecommit.{region}.vpce.amazonaws.com/v1/repos/{repository}",
        "https://vpce-1.git-codecommit.{region}.vpce.amazonaws.com/v1/repos/{repository}",
        {},
    ),
]

# The real agent's keys this agent does not use, with a valid value each.
UNUSED_KEYS = [
    ("log_aws_wire", "true"),
    ("enable_auth_policy", "true"),
    ("children", "1"),
    ("codedeploy_test_profile", "beta"),
    ("plugins", "[codedeploy]"),
    ("use_mock_command_service", "false"),
    ("wait_after_error", "1"),
    ("instance_service_region", "us-east-1"),
    ("instance_service_endpoint", "api.example.com"),
    ("instance_service_port", "443"),
    ("shared_dir", "/tmp/shared"),
    ("max_runs_per_worker", "0"),
    ("wait_after_throttle_error", "60"),
    ("wait_after_connection_problem", "5"),
    ("wait_between_spawning_children", "1"),
    ("time_zone", "utc"),
]


def _yaml(key: str, value: str, extra: dict[str, str], colon: str) -> str:
    if "." not in key:
        return f"{colon}{key}: {value}\n"
    section, name = key.split(".")
    lines = [f"{colon}{section}:", f"  {colon}{name}: {value}"]
    lines += [f"  {colon}{other}: {other_value}" for other, other_value in extra.items()]
    return "\n".join(lines) + "\n"


def _get(config: AgentConfig, key: str) -> object:
    value: object = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def test_shipped_ruby_style_config_loads_without_warnings(write_config: WriteConfig) -> None:
    """The config file the real agent ships loads silently, with its values applied."""
    path = write_config(SHIPPED)
    config, warnings = load_config(path)
    assert warnings == []
    assert config == replace(AgentConfig(), wait_between_runs=1, source=path)


def test_defaults_match_the_reference_table() -> None:
    """Built-in defaults are the real agent's (reference §7.1), paths as its shipped file."""
    config = AgentConfig()
    assert config.root_dir == Path("/opt/codedeploy-agent/deployment-root")
    assert config.log_dir == Path("/var/log/aws/codedeploy-agent")
    assert config.pid_dir == Path("/opt/codedeploy-agent/state/.pid")
    assert config.program_name == "codedeploy-agent"
    assert config.verbose is False
    assert config.wait_between_runs == 30
    assert config.proxy_uri is None
    assert config.max_revisions == 5
    assert config.disable_imds_v1 is False
    assert config.on_premises_config_file == Path(
        "/etc/codedeploy-agent/conf/codedeploy.onpremises.yml"
    )
    assert config.enable_deployments_log is True
    assert config.ongoing_deployment_tracking == "ongoing-deployment"
    assert config.kill_agent_max_wait_time_seconds == 7200
    assert config.http_read_timeout == 80
    assert config.use_fips_mode is False
    assert config.deploy_control_endpoint is None
    assert config.s3_endpoint_override is None


def test_table_covers_every_setting() -> None:
    """USED_KEYS names every field of every config dataclass, so each is tested both ways."""
    expected = {f.name for f in fields(AgentConfig)} - {"source", *SECTIONS}
    for section, settings in SECTIONS.items():
        expected |= {f"{section}.{f.name}" for f in fields(settings)}
    assert {key for key, *_ in USED_KEYS} == expected


@pytest.mark.parametrize("colon", [":", ""], ids=["ruby-style", "plain"])
@pytest.mark.parametrize(("key", "value", "expected", "extra"), USED_KEYS, ids=str)
def test_every_key_in_both_spellings(  # noqa: PLR0917 (pytest passes parameters by name)
    write_config: WriteConfig,
    colon: str,
    key: str,
    value: str,
    expected: object,
    extra: dict[str, str],
) -> None:
    """Each key is read whether written `:key:` or `key:`, and lands in its field."""
    config, warnings = load_config(write_config(_yaml(key, value, extra, colon)))
    assert warnings == []
    assert _get(config, key) == expected


@pytest.mark.parametrize("colon", [":", ""], ids=["ruby-style", "plain"])
@pytest.mark.parametrize(("key", "value"), UNUSED_KEYS, ids=str)
def test_unused_real_agent_keys_are_accepted_silently(
    write_config: WriteConfig, colon: str, key: str, value: str
) -> None:
    """The real agent's keys this agent ignores load with no warning and change nothing."""
    path = write_config(f"{colon}{key}: {value}\n")
    config, warnings = load_config(path)
    assert warnings == []
    assert config == AgentConfig(source=path)


def test_user_key_warns_that_it_is_not_used(write_config: WriteConfig) -> None:
    """`:user:` (privilege drop in the Ruby agent) is accepted but says what to do instead."""
    _, warnings = load_config(write_config(":user: deploy\n"))
    assert warnings == [
        (
            "'user' is not used: the Ruby agent dropped privileges to it, this agent runs as "
            "the user its systemd unit names (User=/Group=), and lifecycle hooks choose theirs "
            "with `runas`"
        )
    ]


def test_both_spellings_of_one_key_are_an_error(write_config: WriteConfig) -> None:
    """`:root_dir:` and `root_dir:` in one file is refused, naming both spellings."""
    path = write_config(":root_dir: /a\nroot_dir: /b\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"Key 'root_dir' is written twice in {path}, as ':root_dir' and 'root_dir'; the two "
        "spellings are the same setting. Keep one of them."
    )


def test_both_spellings_inside_a_section_are_an_error(write_config: WriteConfig) -> None:
    """The same rule holds for keys of a section, named `section.key`."""
    path = write_config("mqtt:\n  :username: a\n  username: b\n")
    with pytest.raises(ConfigError, match=r"^Key 'mqtt\.username' is written twice in "):
        load_config(path)


def test_unknown_key_warns_with_the_closest_known_key(write_config: WriteConfig) -> None:
    """A misspelt key is ignored with a warning that suggests the key that was meant."""
    path = write_config(":root_dirr: /srv\n:zzz: 1\n")
    config, warnings = load_config(path)
    assert config.root_dir == AgentConfig().root_dir
    assert warnings == [
        f"Unknown key 'root_dirr' in {path} is ignored (did you mean 'root_dir'?)",
        f"Unknown key 'zzz' in {path} is ignored",
    ]


def test_unknown_section_key_warns_with_section_name(write_config: WriteConfig) -> None:
    """Unknown keys inside a section are named `section.key`."""
    path = write_config("mqtt:\n  :endpont: mqtt://b\n")
    _, warnings = load_config(path)
    assert warnings == [
        f"Unknown key 'mqtt.endpont' in {path} is ignored (did you mean 'mqtt.endpoint'?)"
    ]


def test_duplicate_key_warns_and_the_last_value_wins(write_config: WriteConfig) -> None:
    """A key written twice keeps the last value, like the real agent, and says so."""
    path = write_config(":max_revisions: 2\n:verbose: true\n:max_revisions: 3\n")
    config, warnings = load_config(path)
    assert config.max_revisions == 3
    assert warnings == [
        f"Key 'max_revisions' appears 2 times in {path} (lines 1, 3); the last value is used"
    ]


def test_null_value_keeps_the_default(write_config: WriteConfig) -> None:
    """A key with no value (`:proxy_uri:`) keeps its default, as in the shipped file."""
    path = write_config(":max_revisions:\nmqtt:\n")
    config, warnings = load_config(path)
    assert (config, warnings) == (AgentConfig(source=path), [])


def test_empty_file_gives_the_defaults(write_config: WriteConfig) -> None:
    """An empty config file is every default, with no warning."""
    path = write_config("")
    assert load_config(path) == (AgentConfig(source=path), [])


def test_relative_paths_resolve_against_the_config_file(write_config: WriteConfig) -> None:
    """`root_dir: deployment-root` means the folder beside the config file, not in the cwd."""
    path = write_config(
        "root_dir: ../deployment-root\nsecurity:\n  trusted_keys:\n"
        "    - {id: k1, file: keys/k1.pem}\n"
    )
    config, _ = load_config(path)
    assert config.root_dir == path.parent.parent / "deployment-root"
    assert config.security.trusted_keys == (("k1", path.parent / "keys" / "k1.pem"),)


def test_home_directory_is_expanded(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`~/` in a path is the agent user's home directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config, _ = load_config(write_config("state_dir: ~/state\n"))
    assert config.state_dir == tmp_path / "home" / "state"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1024", 1024),
        ("20G", 20 * 1024**3),
        ("500M", 500 * 1024**2),
        ("1.5K", 1536),
        ("2GiB", 2 * 1024**3),
        ("'7'", 7),
    ],
)
def test_sizes_accept_units(write_config: WriteConfig, text: str, expected: int) -> None:
    """archive.max_total_bytes takes bytes or K/M/G/T (powers of 1024)."""
    config, _ = load_config(write_config(f"archive:\n  max_total_bytes: {text}\n"))
    assert config.archive.max_total_bytes == expected


@pytest.mark.parametrize(("text", "expected"), [("5", "5"), ("'5'", "5"), ("'3.1.1'", "3.1.1")])
def test_mqtt_protocol_as_number_or_string(
    write_config: WriteConfig, text: str, expected: str
) -> None:
    """mqtt.protocol accepts YAML's integer 5 and the strings "5" and "3.1.1"."""
    config, _ = load_config(write_config(f"mqtt:\n  protocol: {text}\n"))
    assert config.mqtt.protocol == expected


def test_trusted_keys_as_a_list(write_config: WriteConfig) -> None:
    """security.trusted_keys also takes a list of {id, file} entries, in order."""
    config, _ = load_config(
        write_config(
            "security:\n  trusted_keys:\n    - {id: b, file: /k/b}\n"
            "    - {':id': a, ':file': /k/a}\n"
        )
    )
    assert config.security.trusted_keys == (("b", Path("/k/b")), ("a", Path("/k/a")))


TEXT_HINT = " (quote it if it looks like a number)"
# id: (config text, key as shown, value as shown, rule)
INVALID_VALUES = {
    "boolean": (":verbose: 'yes'\n", ":verbose", "'yes'", "must be true or false"),
    "integer-minimum": (
        ":http_read_timeout: 0\n",
        ":http_read_timeout",
        "0",
        "must be an integer >= 1",
    ),
    "integer-type": (
        ":heartbeat_seconds: 1.5\n",
        ":heartbeat_seconds",
        "1.5",
        "must be an integer >= 1",
    ),
    "integer-range": (
        "mqtt:\n  keepalive_seconds: 70000\n",
        "mqtt.keepalive_seconds",
        "70000",
        "must be an integer between 1 and 65535",
    ),
    "number-minimum": (
        "hooks:\n  kill_grace_seconds: -1\n",
        "hooks.kill_grace_seconds",
        "-1",
        "must be a number >= 0",
    ),
    "number-finite": (
        "clock:\n  timeout_seconds: .nan\n",
        "clock.timeout_seconds",
        "nan",
        "must be a number > 0",
    ),
    "choice": (":log_format: xml\n", ":log_format", "'xml'", "must be one of: text, json"),
    "path": (":root_dir: 5\n", ":root_dir", "5", "must be a file system path"),
    "url": (
        ":proxy_uri: 'ftp://proxy'\n",
        ":proxy_uri",
        "'ftp://proxy'",
        "must be a URL starting with http:// or https:// and naming a host",
    ),
    "mqtt-url": (
        "mqtt:\n  endpoint: tcp://broker\n",
        "mqtt.endpoint",
        "'tcp://broker'",
        "must be a URL starting with mqtt:// or mqtts:// and naming a host",
    ),
    "size": (
        "archive:\n  max_total_bytes: 20X\n",
        "archive.max_total_bytes",
        "'20X'",
        "must be a size >= 1: a number of bytes or a number with K, M, G or T (such as 20G)",
    ),
    "pattern": (
        "mqtt:\n  thing_name: 0012\n",  # YAML 1.1 reads 0012 as octal: 10
        "mqtt.thing_name",
        "10",
        "must be 1 to 128 letters, digits or any of _ . : -" + TEXT_HINT,
    ),
    "directory-name": (
        ":ongoing_deployment_tracking: a/b\n",
        ":ongoing_deployment_tracking",
        "'a/b'",
        "must be a directory name (no '/')",
    ),
    "string": (
        "mqtt:\n  username: [a]\n",
        "mqtt.username",
        "['a']",
        "must be a non-empty string" + TEXT_HINT,
    ),
    "string-list": (
        "clock:\n  ntp_servers: [1, 2]\n",
        "clock.ntp_servers",
        "[1, 2]",
        "must be a list of non-empty strings" + TEXT_HINT,
    ),
    "protocol": ("mqtt:\n  protocol: 4\n", "mqtt.protocol", "4", 'must be 5 or "3.1.1"'),
    "trusted-keys": (
        "security:\n  trusted_keys: [k1]\n",
        "security.trusted_keys",
        "['k1']",
        "must map key ids to public key files, or be a list of {id: ..., file: ...} entries",
    ),
    "trusted-key-file": (
        "security:\n  trusted_keys: {k1: 7}\n",
        "security.trusted_keys",
        "{'k1': 7}",
        "must give a public key file for key id 'k1'",
    ),
    "section": (
        "mqtt: broker\n",
        "mqtt",
        "'broker'",
        "must be a mapping of keys to values (indent them under 'mqtt:')",
    ),
}


@pytest.mark.parametrize(
    ("text", "key", "value", "rule"), INVALID_VALUES.values(), ids=INVALID_VALUES.keys()
)
def test_invalid_value_names_key_value_and_rule(
    write_config: WriteConfig, text: str, key: str, value: str, rule: str
) -> None:
    """An invalid value is a ConfigError naming the key, the value and what is allowed."""
    path = write_config(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"Invalid configuration {key}: {value} in {path}: {rule}"


REVISIONS_RULE = (
    ":max_revisions: must be an integer >= 1 (the number of deployment directories kept per "
    "deployment group)"
)
# id: (config text, the exact message; {file} is the config file)
REAL_AGENT_MESSAGES = {
    "max-revisions": (
        ":max_revisions: 0\n",
        "Invalid configuration :max_revision=0 in {file}: " + REVISIONS_RULE,
    ),
    "max-revisions-text": (
        ":max_revisions: five\n",
        "Invalid configuration :max_revision=five in {file}: " + REVISIONS_RULE,
    ),
    "children": (
        ":children: 4\n",
        (
            "children can only be set to 1 (found :children: 4 in {file}); remove the key: "
            "the agent runs one deployment at a time"
        ),
    ),
    "time-zone": (
        ":time_zone: gmt\n",
        "time_zone can only be set to [local|utc] (found :time_zone: 'gmt' in {file})",
    ),
}


@pytest.mark.parametrize(
    ("text", "message"), REAL_AGENT_MESSAGES.values(), ids=REAL_AGENT_MESSAGES.keys()
)
def test_invalid_value_with_the_real_agents_message(
    write_config: WriteConfig, text: str, message: str
) -> None:
    """Where the real agent has a message for an invalid value, ours starts with its text."""
    path = write_config(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == message.format(file=path)


def test_missing_config_file_given_with_c(tmp_path: Path) -> None:
    """A `-c` file that does not exist gives the real agent's message, then a hint."""
    path = tmp_path / "nope.yml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"The config file {path} does not exist or is not readable (No such file or directory)."
        " Create it or pass an existing file with -c."
    )


def test_unreadable_config_file(tmp_path: Path) -> None:
    """A path that cannot be read as a file gives the same message."""
    with pytest.raises(ConfigError, match=r"^The config file .* is not readable \(Is a direc"):
        load_config(tmp_path)


def test_no_default_file_uses_defaults_with_a_warning(tmp_path: Path) -> None:
    """Without -c and without a file in the default places, the defaults apply, with a warning."""
    search = (tmp_path / "etc.yml", tmp_path / "opt.yml")
    assert load_config(search=search) == (
        AgentConfig(),
        [f"No config file found at {search[0]} or {search[1]}; using the built-in defaults"],
    )


def test_first_existing_default_file_is_used(tmp_path: Path) -> None:
    """The default search takes the first file that exists (/etc before /opt)."""
    second = tmp_path / "opt.yml"
    second.write_text(":max_revisions: 2\n", encoding="utf-8")
    config, _ = load_config(search=(tmp_path / "etc.yml", second))
    assert (config.max_revisions, config.source) == (2, second)


def test_yaml_syntax_error_names_line_and_column(write_config: WriteConfig) -> None:
    """Broken YAML gives the real agent's load-error text with the position of the problem."""
    path = write_config(":root_dir: /x\n  :log_dir: /y\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"An error occurred loading the CodeDeploy agent config file at {path}. Error message: "
        "mapping values are not allowed here at line 2, column 11"
    )


def test_document_that_is_not_a_mapping(write_config: WriteConfig) -> None:
    """A file that is one string (the real agent's own test case) is a load error."""
    path = write_config("this is not valid\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"An error occurred loading the CodeDeploy agent config file at {path}. Error message: "
        "the file must be a YAML mapping of keys to values, such as "
        "':root_dir: /opt/codedeploy-agent/deployment-root', not 'this is not valid'"
    )


def test_cert_without_key_is_an_error(write_config: WriteConfig) -> None:
    """mqtt.cert_file without mqtt.key_file is refused."""
    path = write_config("mqtt:\n  endpoint: mqtts://b\n  cert_file: /c.pem\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"Invalid configuration in {path}: mqtt.cert_file is set but mqtt.key_file is not; a "
        "client certificate and its private key go together. Set both or neither."
    )


def test_password_without_username_is_an_error(write_config: WriteConfig) -> None:
    """mqtt.password_file needs mqtt.username."""
    path = write_config("mqtt:\n  password_file: /pw\n")
    with pytest.raises(ConfigError, match=r"mqtt\.password_file is set but mqtt\.username"):
        load_config(path)


def test_tls_files_with_plain_endpoint_warn(write_config: WriteConfig) -> None:
    """TLS files with an mqtt:// endpoint are ignored, with a warning."""
    path = write_config("mqtt:\n  ca_file: /ca.pem\n")
    _, warnings = load_config(path)
    assert warnings == [
        (
            f"mqtt.ca_file in {path} are ignored because mqtt.endpoint mqtt://127.0.0.1:1883 "
            "is not TLS; use an mqtts:// endpoint"
        )
    ]


def test_clock_warning_above_maximum_is_an_error(write_config: WriteConfig) -> None:
    """clock.warn_seconds may not exceed clock.max_skew_seconds."""
    path = write_config("clock:\n  warn_seconds: 400\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"Invalid configuration in {path}: clock.warn_seconds (400) must not exceed "
        "clock.max_skew_seconds (300)."
    )


def test_fips_outside_the_usa_is_an_error(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With AWS_REGION outside the USA, use_fips_mode: true gives the real agent's error."""
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    path = write_config(":use_fips_mode: true\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(
        "use_fips_mode can be set to true only in regions located in the USA (region eu-west-1;"
    )


@pytest.mark.parametrize("region", ["us-east-1", "us-gov-west-1", None])
def test_fips_allowed_in_us_or_unknown_region(
    write_config: WriteConfig, region: str | None
) -> None:
    """FIPS mode loads in US regions, and when no region is known it is just a boolean."""
    config, _ = load_config(write_config(":use_fips_mode: true\n"), region=region)
    assert config.use_fips_mode is True
