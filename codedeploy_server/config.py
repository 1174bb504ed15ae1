"""The server's configuration file (YAML), decoded once into frozen settings.

```yaml
listen: 127.0.0.1:8443            # HTTP API; tls_cert/tls_key for HTTPS
database: /var/lib/codedeploy-server/state.db   # a path: SQLite; postgresql://... for HA
mqtt: {endpoint: mqtt://127.0.0.1:1883, topic_root: codedeploy/things}   # or `embedded: true`
# mqtt.events_topic_root: where agents publish presence and live logs (default: topic_root, or
# codedeploy/things when topic_root begins with `$`, as `$aws/things` for AWS IoT Core)
credentials:                       # SigV4 access keys accepted by the API
  - {access_key_id: AKIA..., secret_access_key_file: /etc/codedeploy-server/secret}
signing_key_file: /etc/codedeploy-server/jobs.ed25519   # signs job documents
bundle_store: {path: /var/lib/codedeploy-server/bundles, public_url: http://127.0.0.1:8443}
```
Relative paths are resolved against the config file's directory.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import yaml

from codedeploy_agent.protocol.errors import ProtocolError
from codedeploy_agent.protocol.revisions import is_loopback_host
from codedeploy_agent.protocol.topics import (
    DEFAULT_TOPIC_ROOT,
    default_events_root,
    validate_events_root,
    validate_topic_root,
)
from codedeploy_server.errors import ServerConfigError

_ACCESS_KEY = re.compile(r"[A-Z0-9]{16,128}")
_TOP_KEYS: Final = frozenset(
    {
        "listen",
        "tls_cert",
        "tls_key",
        "database",
        "mqtt",
        "credentials",
        "signing_key_file",
        "signing_key_id",
        "bundle_store",
        "s3_endpoint",
        "region",
        "account_id",
        "rollout",
        "server_id",
        "log_file",
        "verbose",
    }
)
_MQTT_KEYS: Final = frozenset(
    {
        "endpoint",
        "topic_root",
        "events_topic_root",
        "protocol",
        "username",
        "password_file",
        "ca_file",
        "cert_file",
        "key_file",
        "embedded",
        "shared_subscriptions",
        "listen",
        "users_file",
    }
)


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """How the server reaches the agents."""

    #: None: start the embedded broker (amqtt, MQTT 3.1.1) on `embedded_listen`.
    endpoint: str | None = None
    embedded_listen: str = "127.0.0.1:1883"
    #: Jobs topics: `{topic_root}/{thing}/jobs/...`.
    topic_root: str = DEFAULT_TOPIC_ROOT
    #: Presence and live logs: `{events_root}/{thing}/presence`, `.../logs/{deploymentId}`.
    #: None: `topic_root`, or `codedeploy/things` when it begins with `$` (see `events_root`).
    events_topic_root: str | None = None
    protocol: Literal[5, "3.1.1"] = 5
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: MQTT 5 shared subscriptions, for several servers on one database (Mosquitto, EMQX).
    shared_subscriptions: bool = False
    #: The embedded broker's users (JSON {name: password}, 0600; generated passwords are kept).
    users_file: Path | None = None

    @property
    def embedded(self) -> bool:
        """True when the server runs its own broker."""
        return self.endpoint is None

    @property
    def events_root(self) -> str:
        """The events root in effect: `events_topic_root`, or its default for `topic_root`."""
        if self.events_topic_root is None:
            return default_events_root(self.topic_root)
        return self.events_topic_root


@dataclass(frozen=True, slots=True)
class BundleStoreConfig:
    """The server's own bundle store."""

    path: Path = Path("/var/lib/codedeploy-server/bundles")
    #: The URL agents use to reach this server (download links are built on it).
    public_url: str | None = None
    #: A file holding the HMAC secret of download links (created when missing).
    secret_file: Path | None = None
    #: How long a download link stays valid.
    url_ttl_seconds: int = 8 * 3600


@dataclass(frozen=True, slots=True)
class RolloutConfig:
    """Deadlines of the rollout engine."""

    #: An agent that has not started its job after this long fails its instance (offline).
    pickup_deadline_seconds: float = 300.0
    #: How long a job document stays valid.
    job_ttl_seconds: int = 8 * 3600


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Every setting of the server."""

    listen: str = "127.0.0.1:8443"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    database: str = "/var/lib/codedeploy-server/state.db"
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    #: Access key id -> secret access key.
    credentials: Mapping[str, str] = field(default_factory=dict)
    signing_key_file: Path = Path("/etc/codedeploy-server/jobs.ed25519")
    signing_key_id: str = "codedeploy-server"
    bundle_store: BundleStoreConfig = field(default_factory=BundleStoreConfig)
    #: Endpoint for S3-compatible stores (presigned URLs); None: AWS's own.
    s3_endpoint: str | None = None
    region: str = "us-east-1"
    account_id: str = "000000000000"
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    #: This server's name in deployment leases (default: host name and pid).
    server_id: str | None = None
    log_file: Path | None = None
    verbose: bool = False
    source: Path | None = None

    @property
    def listen_host_port(self) -> tuple[str, int]:
        """`listen` split into host and port."""
        return split_host_port(self.listen, "listen")


def split_host_port(value: str, key: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServerConfigError(f"{key}: {value!r} must be host:port, e.g. 127.0.0.1:8443")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an explicit empty host


def load_server_config(path: Path) -> ServerConfig:
    """Read and check the server config; ServerConfigError naming the key and the fix."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ServerConfigError(f"Cannot read the server config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ServerConfigError(f"The server config {path} is not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ServerConfigError(f"The server config {path} must be a mapping of keys to values")
    return _decode(raw, path)


def _decode(raw: dict[str, Any], path: Path) -> ServerConfig:
    base = path.parent
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ServerConfigError(f"Unknown key(s) in {path}: {', '.join(unknown)}")
    defaults = ServerConfig()
    listen = _text(raw, "listen", defaults.listen)
    split_host_port(listen, "listen")
    tls_cert, tls_key = _path(raw, "tls_cert", base), _path(raw, "tls_key", base)
    if (tls_cert is None) != (tls_key is None):
        raise ServerConfigError(f"{path}: tls_cert and tls_key go together (HTTPS needs both)")
    database = _text(raw, "database", defaults.database)
    if not database.startswith(("postgresql://", "postgres://")):
        database = str(_resolve(Path(database), base))
    s3_endpoint = raw.get("s3_endpoint")
    if s3_endpoint is not None:
        _url(str(s3_endpoint), "s3_endpoint", ("http", "https"))
        _agents_accept(str(s3_endpoint), "s3_endpoint", path)
    return ServerConfig(
        listen=listen,
        tls_cert=tls_cert,
        tls_key=tls_key,
        database=database,
        mqtt=_mqtt(raw.get("mqtt"), base, path),
        credentials=_credentials(raw.get("credentials"), base, path),
        signing_key_file=_path(raw, "signing_key_file", base) or defaults.signing_key_file,
        signing_key_id=_text(raw, "signing_key_id", defaults.signing_key_id),
        bundle_store=_bundle_store(raw.get("bundle_store"), base, path),
        s3_endpoint=None if s3_endpoint is None else str(s3_endpoint),
        region=_text(raw, "region", defaults.region),
        account_id=_text(raw, "account_id", defaults.account_id),
        rollout=_rollout(raw.get("rollout"), path),
        server_id=raw.get("server_id"),
        log_file=_path(raw, "log_file", base),
        verbose=bool(raw.get("verbose", False)),
        source=path,
    )


def _mqtt(raw: object, base: Path, path: Path) -> MqttConfig:
    if raw is None:
        return MqttConfig()
    if not isinstance(raw, dict):
        raise ServerConfigError(f"{path}: mqtt must be a mapping (endpoint, topic_root, ...)")
    unknown = sorted(set(raw) - _MQTT_KEYS)
    if unknown:
        raise ServerConfigError(f"Unknown key(s) under mqtt in {path}: {', '.join(unknown)}")
    endpoint = raw.get("endpoint")
    if raw.get("embedded") and endpoint:
        raise ServerConfigError(f"{path}: mqtt.embedded and mqtt.endpoint exclude each other")
    if "embedded" in raw and not raw["embedded"] and not endpoint:
        # Without this, `embedded: false` alone would start the embedded broker all the same.
        raise ServerConfigError(
            f"{path}: mqtt.embedded is false but mqtt.endpoint is not set: set mqtt.endpoint "
            "(mqtt://HOST:1883 or mqtts://HOST:8883) to use your broker, or embedded: true"
        )
    if endpoint is not None:
        _url(str(endpoint), "mqtt.endpoint", ("mqtt", "mqtts"))
    protocol = raw.get("protocol", 5)
    if str(protocol) not in ("5", "3.1.1"):
        raise ServerConfigError(f"{path}: mqtt.protocol must be 5 or '3.1.1', not {protocol!r}")
    listen = str(raw.get("listen", "127.0.0.1:1883"))
    split_host_port(listen, "mqtt.listen")
    topic_root = _topic_root(raw, "topic_root", validate_topic_root, path)
    events_root = _topic_root(raw, "events_topic_root", validate_events_root, path)
    return MqttConfig(
        endpoint=None if endpoint is None else str(endpoint),
        embedded_listen=listen,
        topic_root=topic_root or DEFAULT_TOPIC_ROOT,
        events_topic_root=events_root,
        protocol=5 if str(protocol) == "5" else "3.1.1",
        username=raw.get("username"),
        password_file=_path(raw, "password_file", base),
        ca_file=_path(raw, "ca_file", base),
        cert_file=_path(raw, "cert_file", base),
        key_file=_path(raw, "key_file", base),
        shared_subscriptions=bool(raw.get("shared_subscriptions", False)),
        users_file=_path(raw, "users_file", base),
    )


def _topic_root(
    raw: Mapping[str, Any], key: str, validate: Callable[[str], str], path: Path
) -> str | None:
    """mqtt.`key` checked by `validate` (a topics.py validator), or None when not set."""
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ServerConfigError(
            f"{path}: mqtt.{key} must be a topic such as {DEFAULT_TOPIC_ROOT!r}, not {value!r}"
        )
    try:
        return validate(value)
    except ProtocolError as exc:
        raise ServerConfigError(f"{path}: mqtt.{key}: {exc}") from None


def _credentials(raw: object, base: Path, path: Path) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise ServerConfigError(
            f"{path}: credentials must be a list of {{access_key_id, secret_access_key_file}}"
        )
    keys: dict[str, str] = {}
    for index, entry in enumerate(raw):
        where = f"credentials[{index}]"
        if not isinstance(entry, dict) or "access_key_id" not in entry:
            raise ServerConfigError(f"{path}: {where} needs access_key_id")
        key_id = str(entry["access_key_id"])
        if not _ACCESS_KEY.fullmatch(key_id):
            raise ServerConfigError(
                f"{path}: {where}.access_key_id must be 16 to 128 upper-case letters and digits"
            )
        if "secret_access_key_file" in entry:
            secret_path = _resolve(Path(str(entry["secret_access_key_file"])), base)
            try:
                secret = secret_path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ServerConfigError(
                    f"{path}: {where}.secret_access_key_file {secret_path}: {exc.strerror}"
                ) from exc
        elif "secret_access_key" in entry:
            secret = str(entry["secret_access_key"])
        else:
            raise ServerConfigError(f"{path}: {where} needs secret_access_key_file")
        if not secret:
            raise ServerConfigError(f"{path}: {where}: the secret access key is empty")
        keys[key_id] = secret
    return keys


def _bundle_store(raw: object, base: Path, path: Path) -> BundleStoreConfig:
    if raw is None:
        return BundleStoreConfig()
    if not isinstance(raw, dict):
        raise ServerConfigError(f"{path}: bundle_store must be a mapping (path, public_url)")
    public_url = raw.get("public_url")
    if public_url is not None:
        _url(str(public_url), "bundle_store.public_url", ("http", "https"))
        _agents_accept(str(public_url), "bundle_store.public_url", path)
    return BundleStoreConfig(
        path=_path(raw, "path", base) or BundleStoreConfig().path,
        public_url=None if public_url is None else str(public_url).rstrip("/"),
        secret_file=_path(raw, "secret_file", base),
        url_ttl_seconds=int(
            _number(
                raw, "url_ttl_seconds", BundleStoreConfig().url_ttl_seconds, "bundle_store", path
            )
        ),
    )


def _rollout(raw: object, path: Path) -> RolloutConfig:
    if raw is None:
        return RolloutConfig()
    if not isinstance(raw, dict):
        raise ServerConfigError(f"{path}: rollout must be a mapping")
    defaults = RolloutConfig()
    return RolloutConfig(
        pickup_deadline_seconds=_number(
            raw, "pickup_deadline_seconds", defaults.pickup_deadline_seconds, "rollout", path
        ),
        job_ttl_seconds=int(
            _number(raw, "job_ttl_seconds", defaults.job_ttl_seconds, "rollout", path)
        ),
    )


def _number(raw: Mapping[str, Any], key: str, default: float, section: str, path: Path) -> float:
    """`section.key`: a positive number of seconds (YAML int or float), else a clear error."""
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ServerConfigError(
            f"{path}: {section}.{key} must be a positive number of seconds, not {value!r}"
        )
    return float(value)


def _text(raw: Mapping[str, Any], key: str, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str | int) or not str(value):
        raise ServerConfigError(f"{key} must be a non-empty string, not {value!r}")
    return str(value)


def _path(raw: Mapping[str, Any], key: str, base: Path) -> Path | None:
    value = raw.get(key)
    return None if value is None else _resolve(Path(str(value)), base)


def _resolve(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def _agents_accept(url: str, key: str, path: Path) -> None:
    """Agents fetch download links over https, or plain http to loopback only (the job document
    decoder refuses the rest): a link the server would hand out is checked at start instead of
    failing every job."""
    parts = urlsplit(url)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        raise ServerConfigError(
            f"{path}: {key} {url!r}: agents refuse download links over plain http to another "
            "host (anyone on the network path could read the bundle or replay the link). Use "
            "an https:// URL (tls_cert/tls_key on this server, or a TLS reverse proxy)."
        )


def _url(value: str, key: str, schemes: tuple[str, ...]) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        allowed = " or ".join(f"{scheme}://" for scheme in schemes)
        raise ServerConfigError(f"{key}: {value!r} must be a URL starting with {allowed}")
