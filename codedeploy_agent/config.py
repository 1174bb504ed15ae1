"""The agent configuration: the real agent's keys (reference §7.1) plus our own sections.

`load_config` reads `/etc/codedeploy-agent/conf/codedeployagent.yml` (or the file given with
`-c`); keys may be written Ruby-symbol style (`:root_dir:`) or plainly (`root_dir:`). Every key
the real agent knows is accepted (the ones this agent has no use for are validated and ignored);
unknown keys give a warning, invalid values a `ConfigError` naming the key, the value and what is
allowed. `load_onprem_config` reads the on-premises identity file (reference §7.2).

The loader is table-driven: `_TOP_KEYS` and `_SECTIONS` describe each key once (how to decode
it, which dataclass field receives it); defaults live on the dataclasses below.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import yaml

from codedeploy_agent.errors import ConfigError

DEFAULT_CONFIG_PATHS: Final = (
    Path("/etc/codedeploy-agent/conf/codedeployagent.yml"),
    Path("/opt/codedeploy-agent/conf/codedeployagent.yml"),
)

#: Regions where the real agent allows `use_fips_mode: true` (its FIPS_ENABLED_REGIONS).
FIPS_REGIONS: Final = frozenset(
    {"us-east-1", "us-east-2", "us-west-1", "us-west-2", "us-gov-west-1", "us-gov-east-1"}
)


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Limits that stop hostile or runaway bundles during extraction."""

    #: Total uncompressed size of one bundle; the file may say `20G` or `500M` (powers of 1024).
    max_total_bytes: int = 20 * 1024**3
    #: Number of entries (files, directories, links) in one bundle.
    max_members: int = 1_000_000
    #: Uncompressed / compressed size; zip bombs reach 1000:1 and more, real bundles rarely 50:1.
    max_compression_ratio: float = 200.0


@dataclass(frozen=True, slots=True)
class HookSettings:
    """How lifecycle scripts are stopped."""

    #: After SIGTERM on timeout or cancel, how long the process group gets before SIGKILL.
    kill_grace_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """The `mqtt:` section (daemon only)."""

    #: Broker URL: `mqtt://host[:port]` (plain, default port 1883) or `mqtts://` (TLS, 8883).
    endpoint: str = "mqtt://127.0.0.1:1883"
    #: This host's thing name (client id and topic segment), `[A-Za-z0-9_.:-]{1,128}`.
    thing_name: str | None = None  # default: the host name
    #: Jobs topics live under `<topic_root>/<thing_name>/jobs/...` (PROTOCOL.md).
    topic_root: str = "codedeploy/things"
    #: Presence and live logs go to `<events_root>/<thing_name>/presence` and `.../logs/<id>`.
    #: None: `topic_root`, or `codedeploy/things` when `topic_root` begins with `$`
    #: (`$aws/things` on AWS IoT Core, which disconnects clients publishing to reserved topics).
    events_topic_root: str | None = None
    #: MQTT protocol version, `5` or `3.1.1`.
    protocol: Literal["5", "3.1.1"] = "5"
    #: CA bundle that signs the broker's certificate (default: the system's trust store).
    ca_file: Path | None = None
    #: Client certificate for mutual TLS; needs `key_file`.
    cert_file: Path | None = None
    #: Private key of `cert_file`.
    key_file: Path | None = None
    username: str | None = None
    #: File whose content (trailing newline stripped) is the MQTT password; needs `username`.
    password_file: Path | None = None
    keepalive_seconds: int = 30
    #: How long the broker keeps this agent's session (and queued commands) while it is offline.
    session_expiry_seconds: int = 7 * 24 * 3600

    @property
    def events_root(self) -> str:
        """The events root in effect: `events_topic_root`, or its default for `topic_root`."""
        if self.events_topic_root is not None:
            return self.events_topic_root
        # The rule of protocol.topics.default_events_root, which this layer cannot import; a
        # test keeps the two equal.
        return "codedeploy/things" if self.topic_root.startswith("$") else self.topic_root


@dataclass(frozen=True, slots=True)
class ClockSettings:
    """The `clock:` section: NTP skew checks (daemon only)."""

    #: Servers asked in order until one answers; an empty list turns the check off.
    ntp_servers: tuple[str, ...] = ("169.254.169.123", "pool.ntp.org")
    check_interval_seconds: int = 3600
    #: Skew above which the agent logs a warning and reports it in its presence message.
    warn_seconds: float = 30.0
    #: Skew above which AWS-signed (SigV4) calls are refused; AWS allows about 5 minutes.
    max_skew_seconds: float = 300.0
    #: How long one NTP query may take.
    timeout_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """The `security:` section: keys trusted to sign job documents (key id -> public key file)."""

    #: Written as a mapping `key-id: /path/to/key.pem` or a list of `{id: ..., file: ...}`.
    trusted_keys: tuple[tuple[str, Path], ...] = ()


@dataclass(frozen=True, slots=True)
class DownloadSettings:
    """The `download:` section: how revisions are fetched over HTTP(S) and from S3."""

    #: The largest bundle accepted (bytes; `10G` style sizes allowed).
    max_bytes: int = 10 * 1024**3
    #: Seconds to wait for a connection.
    connect_timeout_seconds: float = 30.0
    #: Attempts per request (and per part) before the download fails.
    retries: int = 3
    #: Objects larger than this are fetched in parallel ranged requests (bytes).
    part_size: int = 64 * 1024**2
    #: How many ranged requests run at once.
    parallel_parts: int = 4
    #: Hosts (or `.domain` suffixes) reached without the proxy, on top of `NO_PROXY`.
    no_proxy: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GitHubSettings:
    """The `github:` section (GitHub.com or GitHub Enterprise)."""

    #: The REST API root; `https://github.example.com/api/v3` for GitHub Enterprise Server.
    api_url: str = "https://api.github.com"
    #: A file holding a token for private repositories (never put in job documents).
    token_file: Path | None = None


@dataclass(frozen=True, slots=True)
class BitbucketSettings:
    """The `bitbucket:` section (Bitbucket Cloud, or Server / Data Center)."""

    #: The API root: `https://api.bitbucket.org/2.0` (Cloud) or `https://host[/context]` (Server).
    api_url: str = "https://api.bitbucket.org/2.0"
    #: `cloud` or `server` (Server and Data Center serve archives from another URL form).
    flavor: Literal["cloud", "server"] = "cloud"
    #: User name for an app password (Cloud) or HTTP access token owner (Server).
    username: str | None = None
    #: A file holding the app password or access token.
    password_file: Path | None = None
    #: A file holding a bearer token (repository/workspace access token) instead of a password.
    token_file: Path | None = None


@dataclass(frozen=True, slots=True)
class GitSettings:
    """The `git:` section: cloning CodeCommit and other git remotes."""

    #: The `git` program.
    executable: str = "git"
    #: Git credentials for CodeCommit (HTTPS Git credentials of an IAM user) instead of the
    #: SigV4-derived ones computed from the host's AWS credentials.
    codecommit_username: str | None = None
    codecommit_password_file: Path | None = None
    #: For other HTTPS remotes: a user name and a file holding its password or token.
    username: str | None = None
    password_file: Path | None = None
    #: For ssh remotes: the private key to use (`GIT_SSH_COMMAND=ssh -i ...`).
    ssh_key_file: Path | None = None
    #: For ssh remotes: a known_hosts file with the servers' host keys (default: ssh's own,
    #: `~/.ssh/known_hosts` of the agent's user). Unknown hosts are refused, never trusted.
    ssh_known_hosts_file: Path | None = None
    #: Seconds a clone may take.
    timeout_seconds: float = 600.0
    #: The CodeCommit clone URL; `{region}` and `{repository}` are filled in from the revision.
    #: Override it for VPC endpoints (`https://vpce-...-git-codecommit.{region}.vpce...`).
    codecommit_url_template: str = (
        "https://git-codecommit.{region}.amazonaws.com/v1/repos/{repository}"
    )


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Every setting of the agent, with the real agent's defaults."""

    #: The deployment root (reference §2.1).
    root_dir: Path = Path("/opt/codedeploy-agent/deployment-root")
    #: Where `<program_name>.log` is written.
    log_dir: Path = Path("/var/log/aws/codedeploy-agent")
    #: Where `<program_name>.pid` and its `.lock` live.
    pid_dir: Path = Path("/opt/codedeploy-agent/state/.pid")
    #: Agent state that is not part of the deployment root (seen jobs, outbox).
    state_dir: Path = Path("/opt/codedeploy-agent/state")
    #: Prefix of the log, pid and deployments-log file names.
    program_name: str = "codedeploy-agent"
    #: Log at debug level.
    verbose: bool = False
    #: `text` (the real agent's line format) or `json` (one object per line).
    log_format: Literal["text", "json"] = "text"
    #: HTTP proxy for bundle downloads (`http://host:port`).
    proxy_uri: str | None = None
    #: Deployment directories kept per deployment group, the new one included (reference §2.3).
    max_revisions: int = 5
    #: Copy every script output line to `deployment-logs/<program_name>-deployments.log`.
    enable_deployments_log: bool = True
    #: Directory name, under `root_dir`, of the in-progress markers (reference §2.2).
    ongoing_deployment_tracking: str = "ongoing-deployment"
    #: On stop, how long a running deployment may take to finish before it is cut off.
    kill_agent_max_wait_time_seconds: int = 7200
    #: The on-premises identity file (reference §7.2).
    on_premises_config_file: Path = Path("/etc/codedeploy-agent/conf/codedeploy.onpremises.yml")
    #: S3 endpoint URL used instead of the region's (S3-compatible stores, VPC endpoints).
    s3_endpoint_override: str | None = None
    #: The real agent's CodeDeploy command endpoint override; kept for compatibility.
    deploy_control_endpoint: str | None = None
    #: Use FIPS endpoints; allowed only in US regions when the region is known.
    use_fips_mode: bool = False
    #: Never fall back to IMDSv1 when IMDSv2 fails.
    disable_imds_v1: bool = False
    #: Read timeout, in seconds, of HTTP calls to AWS.
    http_read_timeout: int = 80
    #: The real agent's pause between command polls; here, the pause before retrying intake.
    wait_between_runs: int = 30
    #: How often the daemon refreshes its presence message.
    heartbeat_seconds: int = 60
    archive: ArchiveLimits = field(default_factory=ArchiveLimits)
    hooks: HookSettings = field(default_factory=HookSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    clock: ClockSettings = field(default_factory=ClockSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    download: DownloadSettings = field(default_factory=DownloadSettings)
    github: GitHubSettings = field(default_factory=GitHubSettings)
    bitbucket: BitbucketSettings = field(default_factory=BitbucketSettings)
    git: GitSettings = field(default_factory=GitSettings)
    #: Where the file came from (None: built-in defaults).
    source: Path | None = None


@dataclass(frozen=True, slots=True)
class OnPremConfig:
    """The on-premises identity file: a region and either IAM user keys or an IAM session."""

    region: str | None = None
    #: Identity of an instance registered with IAM user credentials.
    iam_user_arn: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = field(default=None, repr=False)
    #: Identity of an instance registered with an IAM session (temporary credentials).
    iam_session_arn: str | None = None
    #: Shared-credentials (INI) file with the session's keys; re-read as they rotate.
    aws_credentials_file: Path | None = None
    source: Path | None = None

    @property
    def host_identifier(self) -> str | None:
        """The ARN the real agent sends as its host identifier, if the file names one."""
        return self.iam_user_arn or self.iam_session_arn


# ---------------------------------------------------------------------------------------------
# Value decoders. Each takes the YAML value and the context and returns the decoded value, or
# raises _RuleError with the rule the value broke ("must be ..."), from which the loader builds
# the message naming the key, the value and the file.


class _RuleError(Exception):
    def __init__(self, requirement: str) -> None:
        super().__init__(requirement)
        self.requirement = requirement


@dataclass(frozen=True, slots=True)
class _Context:
    #: Relative paths in the file are resolved against this directory.
    base_dir: Path


_Decoder = Callable[[object, _Context], object]


def _boolean(value: object, _ctx: _Context) -> bool:
    if isinstance(value, bool):
        return value
    raise _RuleError("must be true or false")


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    # The Ruby agent runs Integer() on some values, which accepts "5"; so do we.
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,18}\s*", value):
        return int(value)
    return None


def _integer(minimum: int | None = None, maximum: int | None = None) -> _Decoder:
    if minimum is not None and maximum is not None:
        rule = f"must be an integer between {minimum} and {maximum}"
    elif minimum is not None:
        rule = f"must be an integer >= {minimum}"
    else:
        rule = "must be an integer"

    def decode(value: object, _ctx: _Context) -> int:
        number = _as_int(value)
        if (
            number is None
            or (minimum is not None and number < minimum)
            or (maximum is not None and number > maximum)
        ):
            raise _RuleError(rule)
        return number

    return decode


_DECIMAL = re.compile(r"\s*[+-]?\d{1,18}(\.\d{1,18})?\s*")


def _number(minimum: float, *, above: bool = False) -> _Decoder:
    rule = f"must be a number {'>' if above else '>='} {minimum:g}"

    def decode(value: object, _ctx: _Context) -> float:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        if isinstance(value, str) and _DECIMAL.fullmatch(value):
            number = float(value)
        if number is None or not math.isfinite(number):
            raise _RuleError(rule)
        if number < minimum or (above and number == minimum):
            raise _RuleError(rule)
        return number

    return decode


def _text(pattern: str | None = None, rule: str = "must be a non-empty string") -> _Decoder:
    compiled = re.compile(pattern) if pattern else None

    def decode(value: object, _ctx: _Context) -> str:
        # Numbers are refused rather than converted: YAML reads `0012` as 10, so the string the
        # operator meant is lost; quoting it is the fix.
        if not isinstance(value, str) or not value or "\0" in value:
            raise _RuleError(rule if compiled else f"{rule} (quote it if it looks like a number)")
        if compiled is not None and not compiled.fullmatch(value):
            raise _RuleError(rule)
        return value

    return decode


def _optional(decoder: _Decoder) -> _Decoder:
    """An empty string means "not set", like the shipped `:proxy_uri:` with no value."""

    def decode(value: object, ctx: _Context) -> object:
        if value == "":
            return None
        return decoder(value, ctx)

    return decode


def _choice(*options: str) -> _Decoder:
    rule = f"must be one of: {', '.join(options)}"

    def decode(value: object, _ctx: _Context) -> str:
        if not isinstance(value, str) or value not in options:
            raise _RuleError(rule)
        return value

    return decode


def _path(value: object, ctx: _Context) -> Path:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise _RuleError("must be a file system path")
    try:
        path = Path(value.strip()).expanduser()
    except RuntimeError as exc:  # `~nosuchuser/...`
        raise _RuleError("must be a file system path whose `~user` names a known user") from exc
    # Relative paths are taken relative to the config file, not to the working directory: under
    # systemd the agent runs in `/`, from a shell wherever the operator stands, and the Ruby
    # agent's SysV script `cd`s to /opt/codedeploy-agent first; the same file must mean the same
    # place however the agent was started.
    if not path.is_absolute():
        path = ctx.base_dir / path
    return Path(os.path.normpath(path))


def _url(*schemes: str) -> _Decoder:
    rule = (
        f"must be a URL starting with {' or '.join(f'{s}://' for s in schemes)} and naming a host"
    )

    def decode(value: object, _ctx: _Context) -> str:
        if not isinstance(value, str):
            raise _RuleError(rule)
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises ValueError for a port that is not a number in range
        except ValueError as exc:
            raise _RuleError(rule) from exc
        if parts.scheme.lower() not in schemes or not parts.hostname:
            raise _RuleError(rule)
        return value

    return decode


_SIZE = re.compile(r"\s*(\d{1,15}(?:\.\d{1,6})?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)


def _size(value: object, _ctx: _Context) -> int:
    rule = "must be a size >= 1: a number of bytes or a number with K, M, G or T (such as 20G)"
    number = _as_int(value)
    if number is None and isinstance(value, str) and (match := _SIZE.fullmatch(value)):
        scale = 1024 ** " KMGT".index(match.group(2).upper() or " ")
        number = int(float(match.group(1)) * scale)
    if number is None or number < 1:
        raise _RuleError(rule)
    return number


def _text_list(value: object, ctx: _Context) -> tuple[str, ...]:
    rule = "must be a list of non-empty strings"
    if isinstance(value, str):  # one server written without the list brackets
        value = [value]
    if not isinstance(value, list):
        raise _RuleError(rule)
    decode = _text(rule=rule)
    return tuple(str(decode(item, ctx)) for item in value)


def _mqtt_protocol(value: object, _ctx: _Context) -> str:
    # YAML reads `5` as an integer and `3.1.1` as a string; `"5"` quoted is fine too.
    if value in (5, "5") and not isinstance(value, bool):
        return "5"
    if value == "3.1.1":
        return "3.1.1"
    raise _RuleError('must be 5 or "3.1.1"')


# No empty levels either (`a//b`): protocol.topics.validate_topic_root refuses them, and the
# daemon would only find out at start.
_TOPIC_ROOT = _text(
    r"[^/+#\0]+(?:/[^/+#\0]+)*",
    "must be a topic without wildcards (+, #), empty levels or leading/trailing '/'",
)


def _events_topic_root(value: object, ctx: _Context) -> str:
    root = str(_TOPIC_ROOT(value, ctx))
    if root.startswith("$"):
        raise _RuleError(
            "must not begin with '$': topics beginning with '$' are reserved (AWS IoT Core "
            "disconnects a client that publishes to a reserved topic it does not support), and "
            "the agent publishes its presence, its last will and live logs there; use a plain "
            "root such as codedeploy/things"
        )
    return root


def _trusted_keys(value: object, ctx: _Context) -> tuple[tuple[str, Path], ...]:
    rule = "must map key ids to public key files, or be a list of {id: ..., file: ...} entries"
    entries: list[tuple[object, object]] = []
    if isinstance(value, dict):
        entries = list(value.items())
    elif isinstance(value, list):
        for item in value:
            if not isinstance(item, dict):
                raise _RuleError(rule)
            plain = {_plain_key(k): v for k, v in item.items()}
            if set(plain) != {"id", "file"}:
                raise _RuleError(rule)
            entries.append((plain["id"], plain["file"]))
    else:
        raise _RuleError(rule)
    keys: dict[str, Path] = {}
    for key_id, file in entries:
        if not isinstance(key_id, str) or not key_id.strip():
            raise _RuleError(f"{rule}; every key id must be a non-empty string")
        if key_id in keys:
            raise _RuleError(f"must name each key id once; {key_id!r} appears twice")
        try:
            keys[key_id] = _path(file, ctx)
        except _RuleError as exc:
            raise _RuleError(f"must give a public key file for key id {key_id!r}") from exc
    return tuple(keys.items())


# ---------------------------------------------------------------------------------------------
# The key tables.


@dataclass(frozen=True, slots=True)
class _Key:
    """How one key is decoded and where its value goes."""

    decode: _Decoder
    #: The dataclass field that receives the value; None: accepted for compatibility, unused.
    target: str | None = None
    #: The real agent's default, for keys this agent does not use (documentation only).
    default: object = None
    #: Replaces the generic invalid-value message; fields {raw}, {value}, {file}, {requirement}.
    message: str | None = None
    #: Warning given when an unused key is set, for settings whose loss would surprise.
    unused_warning: str | None = None


def _used(decode: _Decoder, target: str, message: str | None = None) -> _Key:
    return _Key(decode, target=target, message=message)


_DROP_PRIVILEGES = (
    "'{key}' is not used: the Ruby agent dropped privileges to it, this agent runs as the user "
    "its systemd unit names (User=/Group=), and lifecycle hooks choose theirs with `runas`"
)

#: Top-level keys. The real agent's keys come first (reference §7.1), then ours.
_TOP_KEYS: Final[Mapping[str, _Key]] = {
    "log_dir": _used(_path, "log_dir"),
    "pid_dir": _used(_path, "pid_dir"),
    "program_name": _used(
        _text(r"[^/\s]+", "must be a non-empty name without '/' or spaces"), "program_name"
    ),
    "root_dir": _used(_path, "root_dir"),
    "verbose": _used(_boolean, "verbose"),
    "wait_between_runs": _used(_integer(0), "wait_between_runs"),
    "proxy_uri": _used(_optional(_url("http", "https")), "proxy_uri"),
    "max_revisions": _used(
        _integer(1),
        "max_revisions",
        # The real agent's text first, so that searches for it still find the fix.
        "Invalid configuration :max_revision={raw} in {file}: :max_revisions: {requirement} "
        "(the number of deployment directories kept per deployment group)",
    ),
    "disable_imds_v1": _used(_boolean, "disable_imds_v1"),
    "on_premises_config_file": _used(_path, "on_premises_config_file"),
    "enable_deployments_log": _used(_boolean, "enable_deployments_log"),
    "ongoing_deployment_tracking": _used(
        _text(r"(?!\.\.?$)[^/\0]+", "must be a directory name (no '/')"),
        "ongoing_deployment_tracking",
    ),
    "kill_agent_max_wait_time_seconds": _used(_integer(0), "kill_agent_max_wait_time_seconds"),
    "http_read_timeout": _used(_integer(1), "http_read_timeout"),
    "use_fips_mode": _used(_boolean, "use_fips_mode"),
    "deploy_control_endpoint": _used(_optional(_url("http", "https")), "deploy_control_endpoint"),
    "s3_endpoint_override": _used(_optional(_url("http", "https")), "s3_endpoint_override"),
    # The real agent's keys this agent has no use for: validated, then ignored.
    "log_aws_wire": _Key(_boolean, default=False),
    "enable_auth_policy": _Key(_boolean, default=False),
    "children": _Key(
        _integer(1, 1),
        default=1,
        message="children can only be set to 1 (found :children: {value} in {file}); remove the "
        "key: the agent runs one deployment at a time",
    ),
    "user": _Key(_optional(_text()), unused_warning=_DROP_PRIVILEGES),
    "group": _Key(_optional(_text()), unused_warning=_DROP_PRIVILEGES),
    "codedeploy_test_profile": _Key(_text(), default="prod"),
    "plugins": _Key(_text_list, default=("codedeploy",)),
    "use_mock_command_service": _Key(_boolean, default=False),
    "wait_after_error": _Key(_integer(0), default=30),
    "instance_service_region": _Key(_optional(_text())),
    "instance_service_endpoint": _Key(_optional(_text())),
    "instance_service_port": _Key(_integer(1, 65535)),
    "shared_dir": _Key(_optional(_path)),
    "max_runs_per_worker": _Key(_integer(0), default=0),
    "wait_after_throttle_error": _Key(_integer(0), default=60),
    "wait_after_connection_problem": _Key(_integer(0), default=5),
    "wait_between_spawning_children": _Key(_integer(0), default=1),
    # Older agents (1.0.x) had it; accepting it lets their config files load unchanged.
    "time_zone": _Key(
        _choice("local", "utc"),
        default="local",
        message="time_zone can only be set to [local|utc] (found :time_zone: {value} in {file})",
    ),
    # Ours.
    "state_dir": _used(_path, "state_dir"),
    "log_format": _used(_choice("text", "json"), "log_format"),
    "heartbeat_seconds": _used(_integer(1), "heartbeat_seconds"),
}


@dataclass(frozen=True, slots=True)
class _Section:
    """A nested mapping decoded into one settings dataclass."""

    settings: type[Any]
    keys: Mapping[str, _Key]


def _same_named(keys: Mapping[str, _Decoder]) -> dict[str, _Key]:
    return {name: _used(decode, name) for name, decode in keys.items()}


_SECTIONS: Final[Mapping[str, _Section]] = {
    "archive": _Section(
        ArchiveLimits,
        _same_named(
            {
                "max_total_bytes": _size,
                "max_members": _integer(1),
                "max_compression_ratio": _number(1.0),
            }
        ),
    ),
    "hooks": _Section(HookSettings, _same_named({"kill_grace_seconds": _number(0.0)})),
    "mqtt": _Section(
        MqttSettings,
        _same_named(
            {
                "endpoint": _url("mqtt", "mqtts"),
                "thing_name": _text(
                    r"[A-Za-z0-9_.:-]{1,128}",
                    "must be 1 to 128 letters, digits or any of _ . : - (quote it if it looks "
                    "like a number)",
                ),
                "topic_root": _TOPIC_ROOT,
                "events_topic_root": _events_topic_root,
                "protocol": _mqtt_protocol,
                "ca_file": _path,
                "cert_file": _path,
                "key_file": _path,
                "username": _text(),
                "password_file": _path,
                "keepalive_seconds": _integer(1, 65535),
                "session_expiry_seconds": _integer(0, 2**32 - 1),
            }
        ),
    ),
    "clock": _Section(
        ClockSettings,
        _same_named(
            {
                "ntp_servers": _text_list,
                "check_interval_seconds": _integer(1),
                "warn_seconds": _number(0.0),
                "max_skew_seconds": _number(0.0, above=True),
                "timeout_seconds": _number(0.0, above=True),
            }
        ),
    ),
    "security": _Section(SecuritySettings, _same_named({"trusted_keys": _trusted_keys})),
    "download": _Section(
        DownloadSettings,
        _same_named(
            {
                "max_bytes": _size,
                "connect_timeout_seconds": _number(0.0, above=True),
                "retries": _integer(1, 20),
                "part_size": _size,
                "parallel_parts": _integer(1, 64),
                "no_proxy": _text_list,
            }
        ),
    ),
    "github": _Section(
        GitHubSettings,
        _same_named({"api_url": _url("http", "https"), "token_file": _path}),
    ),
    "bitbucket": _Section(
        BitbucketSettings,
        _same_named(
            {
                "api_url": _url("http", "https"),
                "flavor": _choice("cloud", "server"),
                "username": _text(),
                "password_file": _path,
                "token_file": _path,
            }
        ),
    ),
    "git": _Section(
        GitSettings,
        _same_named(
            {
                "executable": _text(),
                "codecommit_username": _text(),
                "codecommit_password_file": _path,
                "username": _text(),
                "password_file": _path,
                "ssh_key_file": _path,
                "ssh_known_hosts_file": _path,
                "timeout_seconds": _number(0.0, above=True),
                "codecommit_url_template": _text(
                    r"(?=.*\{repository\})https?://[^\s{}]*"
                    r"(?:\{(?:region|repository)\}[^\s{}]*)*",
                    "must be an http:// or https:// URL containing {repository} (and, if "
                    "needed, {region}), such as "
                    "https://git-codecommit.{region}.amazonaws.com/v1/repos/{repository}",
                ),
            }
        ),
    ),
}


# ---------------------------------------------------------------------------------------------
# Loading.

_REPR = reprlib.Repr()
_REPR.maxstring = 80
_REPR.maxother = 80
_REPR.maxlevel = 3


def _show(value: object) -> str:
    """The value as the message shows it; bounded, so a YAML alias bomb cannot blow up."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = _REPR.repr(value)
    return text if len(text) <= 100 else f"{text[:97]}..."


def _plain_key(key: object) -> object:
    """`:root_dir` (a Ruby symbol in the real agent's files) and `root_dir` are the same key."""
    if isinstance(key, str) and key.startswith(":"):
        return key[1:]
    return key


def _load_error(source: Path, message: str) -> ConfigError:
    return ConfigError(
        f"An error occurred loading the CodeDeploy agent config file at {source}. "
        f"Error message: {message}"
    )


def load_config(
    path: Path | None = None,
    *,
    search: Sequence[Path] | None = None,
    region: str | None = None,
) -> tuple[AgentConfig, list[str]]:
    """Read and validate the agent config file; return it and the warnings to log.

    `path` is the `-c` file; without it the first existing file of `search` (default
    `DEFAULT_CONFIG_PATHS`) is read, and when none exists the built-in defaults are used with a
    warning. `region` (default `$AWS_REGION`) enables the real agent's rule that FIPS mode is
    US-only; with no known region `use_fips_mode` is just a boolean.
    Raises ConfigError for a missing or unreadable `-c` file, invalid YAML or an invalid value.
    """
    if path is None:
        candidates = tuple(DEFAULT_CONFIG_PATHS if search is None else search)
        path = next((candidate for candidate in candidates if _exists(candidate)), None)
        if path is None:
            where = " or ".join(str(candidate) for candidate in candidates)
            return AgentConfig(), [f"No config file found at {where}; using the built-in defaults"]
    source = path.expanduser().absolute()
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"The config file {source} does not exist or is not readable ({exc.strerror}). "
            "Create it or pass an existing file with -c."
        ) from exc
    document, warnings = _parse_yaml(data, source)
    if region is None:
        region = os.environ.get("AWS_REGION") or None
    config = _decode(document, source, warnings)
    _check(config, source, region, warnings)
    return config, warnings


def _exists(path: Path) -> bool:
    """True when the file is there, even if it cannot be read (the read then says so)."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


def _key_text(key: object) -> str:
    return key[:80] if isinstance(key, str) else _show(key)


def _parse_yaml(data: bytes, source: Path) -> tuple[object, list[str]]:
    try:
        loader = yaml.SafeLoader(data)  # reads the first bytes already: inside the try
        try:
            node = loader.get_single_node()
            if node is None:  # an empty file: every default
                return {}, []
            warnings = _duplicate_key_warnings(node, source)
            return loader.construct_document(node), warnings
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise _load_error(source, _describe_yaml_error(exc)) from exc
    # ValueError: YAML timestamps such as 2024-13-45; RecursionError: absurdly deep nesting.
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise _load_error(source, " ".join(str(exc).split()) or type(exc).__name__) from exc


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    parts = []
    for text, mark in ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark)):
        if text:
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            parts.append(f"{text}{where}")
    return ": ".join(parts) or "invalid YAML"


def _duplicate_key_warnings(node: yaml.Node, source: Path) -> list[str]:
    """Keys written twice: PyYAML, like the Ruby agent, keeps the last value; say so."""
    warnings: list[str] = []

    def check(mapping: yaml.Node, prefix: str) -> None:
        if not isinstance(mapping, yaml.MappingNode):
            return
        lines: dict[object, list[int]] = {}
        for key_node, value_node in mapping.value:
            if isinstance(key_node, yaml.ScalarNode):
                lines.setdefault(key_node.value, []).append(key_node.start_mark.line + 1)
                if not prefix and _plain_key(key_node.value) in _SECTIONS:
                    check(value_node, f"{_plain_key(key_node.value)}.")
        for key, where in lines.items():
            if len(where) > 1:
                warnings.append(
                    f"Key '{prefix}{_key_text(_plain_key(key))}' appears {len(where)} times "
                    f"in {source} (lines {', '.join(map(str, where))}); the last value is used"
                )

    check(node, "")
    return warnings


def _normalise(
    mapping: dict[Any, Any], source: Path, prefix: str, known: Sequence[str], warnings: list[str]
) -> dict[str, object]:
    """Map Ruby-style and plain keys to one name; warn about unknown keys."""
    entries: dict[str, object] = {}
    spelled: dict[str, object] = {}
    for key, value in mapping.items():
        name = _plain_key(key)
        if not isinstance(name, str) or name not in known:
            shown = _key_text(name)
            close = difflib.get_close_matches(shown, known, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            warnings.append(f"Unknown key '{prefix}{shown}' in {source} is ignored{hint}")
            continue
        if name in entries:
            raise ConfigError(
                f"Key '{prefix}{name}' is written twice in {source}, as "
                f"'{_key_text(spelled[name])}' and '{_key_text(key)}'; the two spellings are the "
                "same setting. Keep one of them."
            )
        entries[name] = value
        spelled[name] = key
    return entries


def _decode_value(spec: _Key, value: object, ctx: _Context, shown_key: str, source: Path) -> object:
    try:
        return spec.decode(value, ctx)
    except _RuleError as exc:
        raw = value if isinstance(value, str) and len(value) <= 80 else _show(value)
        if spec.message is not None:
            text = spec.message.format(
                raw=raw, value=_show(value), file=source, requirement=exc.requirement
            )
        else:
            text = f"Invalid configuration {shown_key}: {_show(value)} in {source}: "
            text += exc.requirement
        raise ConfigError(text) from None


def _decode(document: object, source: Path, warnings: list[str]) -> AgentConfig:
    if not isinstance(document, dict):
        raise _load_error(
            source,
            f"the file must be a YAML mapping of keys to values, such as "
            f"':root_dir: /opt/codedeploy-agent/deployment-root', not {_show(document)}",
        )
    ctx = _Context(base_dir=source.parent)
    known = [*_TOP_KEYS, *_SECTIONS]
    values: dict[str, Any] = {}
    for name, raw in _normalise(document, source, "", known, warnings).items():
        if name in _SECTIONS:
            values[name] = _decode_section(name, raw, ctx, source, warnings)
            continue
        spec = _TOP_KEYS[name]
        if raw is None:  # `:proxy_uri:` with nothing after it: the default
            continue
        value = _decode_value(spec, raw, ctx, f":{name}", source)
        if spec.target is not None:
            values[spec.target] = value
        elif spec.unused_warning is not None and value is not None:
            warnings.append(spec.unused_warning.format(key=name))
    return AgentConfig(**values, source=source)


def _decode_section(
    name: str, raw: object, ctx: _Context, source: Path, warnings: list[str]
) -> object:
    section = _SECTIONS[name]
    if raw is None:  # `mqtt:` with nothing under it
        return section.settings()
    if not isinstance(raw, dict):
        raise ConfigError(
            f"Invalid configuration {name}: {_show(raw)} in {source}: must be a mapping of "
            f"keys to values (indent them under '{name}:')"
        )
    values: dict[str, Any] = {}
    for key, value in _normalise(raw, source, f"{name}.", list(section.keys), warnings).items():
        if value is None:
            continue
        spec = section.keys[key]
        decoded = _decode_value(spec, value, ctx, f"{name}.{key}", source)
        if spec.target is not None:
            values[spec.target] = decoded
    return section.settings(**values)


def _check(config: AgentConfig, source: Path, region: str | None, warnings: list[str]) -> None:
    """Rules that involve more than one key."""
    if config.use_fips_mode and region is not None and region not in FIPS_REGIONS:
        raise ConfigError(
            "use_fips_mode can be set to true only in regions located in the USA "
            f"(region {region}; :use_fips_mode: true in {source}). Set :use_fips_mode: false, "
            f"or run in one of {', '.join(sorted(FIPS_REGIONS))}."
        )
    mqtt = config.mqtt
    if (mqtt.cert_file is None) != (mqtt.key_file is None):
        given, missing = (
            ("cert_file", "key_file") if mqtt.key_file is None else ("key_file", "cert_file")
        )
        raise ConfigError(
            f"Invalid configuration in {source}: mqtt.{given} is set but mqtt.{missing} is not; "
            "a client certificate and its private key go together. Set both or neither."
        )
    if mqtt.password_file is not None and mqtt.username is None:
        raise ConfigError(
            f"Invalid configuration in {source}: mqtt.password_file is set but mqtt.username is "
            "not; MQTT sends a password only with a user name. Set mqtt.username."
        )
    tls_files = [n for n in ("ca_file", "cert_file", "key_file") if getattr(mqtt, n) is not None]
    if tls_files and not mqtt.endpoint.lower().startswith("mqtts://"):
        warnings.append(
            f"mqtt.{', mqtt.'.join(tls_files)} in {source} are ignored because mqtt.endpoint "
            f"{mqtt.endpoint} is not TLS; use an mqtts:// endpoint"
        )
    if config.clock.warn_seconds > config.clock.max_skew_seconds:
        raise ConfigError(
            f"Invalid configuration in {source}: clock.warn_seconds "
            f"({config.clock.warn_seconds:g}) must not exceed clock.max_skew_seconds "
            f"({config.clock.max_skew_seconds:g})."
        )


# ---------------------------------------------------------------------------------------------
# The on-premises identity file.

_ONPREM_FIELDS: Final = (
    "region",
    "iam_user_arn",
    "aws_access_key_id",
    "aws_secret_access_key",
    "iam_session_arn",
    "aws_credentials_file",
)


def load_onprem_config(path: Path) -> OnPremConfig | None:
    """Read the on-premises identity file; None when it does not exist or is not readable.

    Like the real agent, a readable file marks the host as on-premises. Raises ConfigError with
    the real agent's messages for invalid YAML, both ARNs, or a key the chosen ARN requires.
    """
    source = path.expanduser().absolute()
    try:
        data = source.read_bytes()
    except OSError:
        return None
    invalid = (
        "The deployment failed because the format of the following on-premises configuration "
        f"file is invalid: {source}"
    )
    try:
        loader = yaml.SafeLoader(data)
        try:
            document = loader.get_single_data()
        finally:
            loader.dispose()
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise ConfigError(invalid) from exc
    # The Ruby agent calls symbolize_keys on the result, which fails for anything but a mapping
    # (an empty file included) and lands in the same message.
    if not isinstance(document, dict):
        raise ConfigError(f"{invalid} (it must be a YAML mapping of keys to values)")
    entries = {_plain_key(key): value for key, value in document.items()}
    values: dict[str, str] = {}
    for name in _ONPREM_FIELDS:
        value = entries.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ConfigError(f"{invalid} ('{name}' must be a string, not {_show(value)})")
        values[name] = value
    if "iam_user_arn" in values and "iam_session_arn" in values:
        raise ConfigError(
            "On Premises config cannot contain both 'iam_user_arn' and 'iam_session_arn' keys."
        )
    for arn, required in (
        ("iam_user_arn", ("region", "aws_access_key_id", "aws_secret_access_key")),
        ("iam_session_arn", ("region", "aws_credentials_file")),
    ):
        if arn in values:
            for name in required:
                if name not in values:
                    raise ConfigError(
                        f"'{name}' key is required when '{arn}' is provided. Add it to {source}."
                    )
    credentials_file = values.pop("aws_credentials_file", None)
    credentials_path = None
    if credentials_file is not None:
        try:
            credentials_path = _path(credentials_file, _Context(base_dir=source.parent))
        except _RuleError as exc:
            raise ConfigError(f"{invalid} ('aws_credentials_file' {exc.requirement})") from None
    return OnPremConfig(**values, aws_credentials_file=credentials_path, source=source)
