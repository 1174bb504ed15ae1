"""The agent configuration: the real agent's keys (reference §7.1) plus our own sections.

`load_config` reads `/etc/codedeploy-agent/conf/codedeployagent.yml` (or the file given with
`-c`); keys may be written Ruby-symbol style (`:root_dir:`) or plainly (`root_dir:`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

DEFAULT_CONFIG_PATHS: Final = (
    Path("/etc/codedeploy-agent/conf/codedeployagent.yml"),
    Path("/opt/codedeploy-agent/conf/codedeployagent.yml"),
)


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Limits that stop hostile or runaway bundles during extraction."""

    max_total_bytes: int = 20 * 1024**3
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

    endpoint: str = "mqtt://127.0.0.1:1883"
    thing_name: str | None = None  # default: the host name
    topic_root: str = "codedeploy/things"
    protocol: Literal["5", "3.1.1"] = "5"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    keepalive_seconds: int = 30
    session_expiry_seconds: int = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class ClockSettings:
    """The `clock:` section: NTP skew checks (daemon only)."""

    ntp_servers: tuple[str, ...] = ("169.254.169.123", "pool.ntp.org")
    check_interval_seconds: int = 3600
    warn_seconds: float = 30.0
    max_skew_seconds: float = 300.0
    timeout_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """The `security:` section: keys trusted to sign job documents (key id -> public key file)."""

    trusted_keys: tuple[tuple[str, Path], ...] = ()


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Every setting of the agent, with the real agent's defaults."""

    root_dir: Path = Path("/opt/codedeploy-agent/deployment-root")
    log_dir: Path = Path("/var/log/aws/codedeploy-agent")
    pid_dir: Path = Path("/opt/codedeploy-agent/state/.pid")
    state_dir: Path = Path("/opt/codedeploy-agent/state")
    program_name: str = "codedeploy-agent"
    verbose: bool = False
    log_format: Literal["text", "json"] = "text"
    proxy_uri: str | None = None
    max_revisions: int = 5
    enable_deployments_log: bool = True
    ongoing_deployment_tracking: str = "ongoing-deployment"
    kill_agent_max_wait_time_seconds: int = 7200
    on_premises_config_file: Path = Path("/etc/codedeploy-agent/conf/codedeploy.onpremises.yml")
    s3_endpoint_override: str | None = None
    deploy_control_endpoint: str | None = None
    use_fips_mode: bool = False
    disable_imds_v1: bool = False
    http_read_timeout: int = 80
    wait_between_runs: int = 30
    heartbeat_seconds: int = 60
    archive: ArchiveLimits = field(default_factory=ArchiveLimits)
    hooks: HookSettings = field(default_factory=HookSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    clock: ClockSettings = field(default_factory=ClockSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    #: Where the file came from (None: built-in defaults).
    source: Path | None = None
