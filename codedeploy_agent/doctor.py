"""`codedeploy-agent doctor`: check this host's agent set-up and say how to fix what is wrong.

`run_doctor(config_path, out)` prints one line per finding, `[ OK ]`, `[INFO]`, `[WARN]`,
`[FAIL]` or `[SKIP]`, then a `fix:` line for anything that did not pass, and returns the exit
status: 1 when any check failed, else 0 (warnings do not fail). The checks, in order: the config
parses (and its warnings), the directories, free disk in the deployment root, the trusted signing
keys, the broker (TCP), TLS (certificate files, expiry, handshake, the broker's answer to the
client certificate), an MQTT login, the thing name, the clock (NTP), the tools appspecs may need,
the running agent (pid lock, status snapshot, systemd unit) and where the logs are.

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
import contextlib
import dataclasses
import os
import pwd
import shutil
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Final, TextIO

from codedeploy_agent import __version__
from codedeploy_agent.appspec.loader import load_appspec
from codedeploy_agent.clock import TIME_SYNC_HINT, measure_skew
from codedeploy_agent.config import AgentConfig, load_config
from codedeploy_agent.errors import AgentError
from codedeploy_agent.host.layout import DeploymentRoot
from codedeploy_agent.host.pidfile import lock_file_path, read_running_pid
from codedeploy_agent.host.status import AgentStatus, status_path, try_read_status
from codedeploy_agent.protocol.signing import load_trusted_keys
from codedeploy_agent.protocol.topics import validate_thing_name
from codedeploy_agent.transport import Endpoint, Message, MqttSession, TransportError

#: Free space in the deployment root below which a warning (each revision is kept twice: the
#: bundle and its unpacked copy) or a failure (the next bundle will not fit) is reported.
DISK_WARN_BYTES: Final = 1024**3
DISK_WARN_RATIO: Final = 0.05
DISK_FAIL_BYTES: Final = 256 * 1024**2
#: Certificates expiring sooner than this are reported.
CERT_WARN_DAYS: Final = 30
NETWORK_TIMEOUT: Final = 5.0
NTP_TIMEOUT: Final = 3.0
#: Where the service finds tools: systemd's default PATH, not the operator's shell's.
SERVICE_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNIT: Final = "codedeploy-agent.service"
_JOURNAL: Final = f"journalctl -u {UNIT} -n 50"


class Status(StrEnum):
    """How a finding is shown; only FAIL makes the exit status non-zero."""

    OK = "ok"
    INFO = "info"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


_LABELS: Final = {
    Status.OK: "[ OK ]",
    Status.INFO: "[INFO]",
    Status.WARN: "[WARN]",
    Status.FAIL: "[FAIL]",
    Status.SKIP: "[SKIP]",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: which check, its outcome, what it found and how to fix it."""

    check: str
    status: Status
    message: str
    fix: str | None = None

    def format(self) -> str:
        """`[FAIL] broker: ...` and, when there is one, an indented `fix:` line."""
        line = f"{_LABELS[self.status]} {self.check}: {self.message}"
        return f"{line}\n       fix: {self.fix}" if self.fix else line


@dataclass(slots=True)
class _Lines:
    """The findings of one check, collected in order."""

    check: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, status: Status, message: str, fix: str | None = None) -> list[Finding]:
        self.findings.append(Finding(self.check, status, message, fix))
        return self.findings

    def ok(self, message: str) -> list[Finding]:
        return self.add(Status.OK, message)

    def info(self, message: str) -> list[Finding]:
        return self.add(Status.INFO, message)

    def warn(self, message: str, fix: str | None = None) -> list[Finding]:
        return self.add(Status.WARN, message, fix)

    def fail(self, message: str, fix: str | None = None) -> list[Finding]:
        return self.add(Status.FAIL, message, fix)


# --- config and files ---------------------------------------------------------------------------


def check_config(path: Path | None) -> tuple[AgentConfig | None, list[Finding]]:
    """Load the config as the agent does; its warnings become WARN lines."""
    lines = _Lines("config")
    try:
        config, warnings = load_config(path)
    except AgentError as exc:
        return None, lines.fail(str(exc), "correct the file, then run doctor again")
    lines.ok(f"{config.source or 'built-in defaults (no config file)'} parses")
    for warning in warnings:
        lines.warn(warning)
    return config, lines.findings


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_directories(config: AgentConfig, *, uid: int | None = None) -> list[Finding]:
    """Each directory the agent writes exists (or can be created), is writable and is safe.

    `uid` is the agent's user (default: ours; run doctor as the agent's user, root).
    """
    uid = os.geteuid() if uid is None else uid
    user = _user(uid)
    lines = _Lines("directories")
    for name, path in (
        ("root_dir", config.root_dir),
        ("log_dir", config.log_dir),
        ("state_dir", config.state_dir),
        ("pid_dir", config.pid_dir),
    ):
        try:
            info = path.stat()
        except FileNotFoundError:
            parent = _existing_ancestor(path)
            if os.access(parent, os.W_OK | os.X_OK):
                lines.warn(
                    f"{name} {path} does not exist yet; the agent creates it when it needs it",
                    f"install -d -m 0755 {path} (the package creates the default directories)",
                )
            else:
                lines.fail(
                    f"{name} {path} does not exist and {parent} is not writable by {user}",
                    f"install -d -m 0755 -o {user} {path}",
                )
            continue
        except OSError as exc:
            lines.fail(f"{name} {path}: {exc.strerror}", f"make {path} reachable by {user}")
            continue
        mode = stat.S_IMODE(info.st_mode)
        shown = f"{name} {path} ({_user(info.st_uid)}, {mode:04o})"
        if not stat.S_ISDIR(info.st_mode):
            lines.fail(f"{name} {path} is not a directory", f"set :{name}: to a directory")
        elif info.st_uid not in (0, uid):
            lines.fail(
                f"{shown} belongs to {_user(info.st_uid)}, who could change what the agent "
                f"runs or records as {user}",
                f"chown {user}: {path}",
            )
        elif mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            lines.fail(f"{shown} is writable by every user", f"chmod o-w {path}")
        elif not os.access(path, os.W_OK | os.X_OK):
            lines.fail(f"{shown} is not writable by {user}", f"chown {user} {path}")
        elif name == "root_dir" and not mode & stat.S_IXOTH:
            # Hooks with `runas` start in <root_dir>/<group>/<deployment>/deployment-archive.
            lines.warn(
                f"{shown} cannot be entered by other users: hooks with runas would fail",
                f"chmod 0755 {path}",
            )
        else:
            lines.ok(shown)
    return lines.findings


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def check_disk(
    config: AgentConfig,
    *,
    warn_bytes: int = DISK_WARN_BYTES,
    warn_ratio: float = DISK_WARN_RATIO,
    fail_bytes: int = DISK_FAIL_BYTES,
) -> list[Finding]:
    """Free space (and inodes) on the file system of the deployment root."""
    lines = _Lines("disk")
    path = _existing_ancestor(config.root_dir)
    try:
        fs = os.statvfs(path)
    except OSError as exc:
        return lines.fail(f"cannot read the free space of {path}: {exc.strerror}")
    free, total = fs.f_bavail * fs.f_frsize, fs.f_blocks * fs.f_frsize
    ratio = free / total if total else 1.0
    text = f"{_size(free)} free of {_size(total)} ({ratio:.0%}) in {path}"
    fix = (
        "free space there: each revision is kept as its bundle and an unpacked copy "
        f"(:max_revisions: {config.max_revisions} per deployment group); lower :max_revisions: "
        "or move :root_dir: to a larger file system"
    )
    if free < fail_bytes:
        return lines.fail(f"{text}: the next bundle may not fit", fix)
    if free < warn_bytes or ratio < warn_ratio:
        return lines.warn(f"{text}: running low", fix)
    if fs.f_files > 0 and fs.f_favail / fs.f_files < warn_ratio:
        return lines.warn(f"{text}, but only {fs.f_favail} inodes are free", fix)
    return lines.ok(text)


def check_signing(config: AgentConfig) -> list[Finding]:
    """The public keys job documents must be signed with."""
    lines = _Lines("signing")
    entries = config.security.trusted_keys
    if not entries:
        return lines.warn(
            "security.trusted_keys is empty: the agent runs unsigned job documents, so whoever "
            "can publish to this host's job topics can run commands on it as root",
            "add the control plane's public key: security: {trusted_keys: {ID: /path/key.pem}}",
        )
    try:
        load_trusted_keys(entries)
    except AgentError as exc:
        return lines.fail(str(exc), "point security.trusted_keys at Ed25519 public key files")
    return lines.ok(f"{len(entries)} trusted key(s): {', '.join(k for k, _ in entries)}")


# --- broker, TLS, login, thing name ---------------------------------------------------------------


def _decode_certificate(path: Path) -> Mapping[str, object] | None:
    """Subject and validity of a PEM certificate file, or None when they cannot be read.

    The standard library has no public certificate parser (and `cryptography` is not a
    dependency of the agent); `_ssl._test_decode_cert` is CPython's own, there since 2.7.
    """
    decode = getattr(ssl._ssl, "_test_decode_cert", None)  # type: ignore[attr-defined]
    if decode is None:
        return None
    try:
        result = decode(str(path))
    except (OSError, ssl.SSLError, ValueError):
        return None
    return result if isinstance(result, dict) else None


def _common_name(cert: Mapping[str, object]) -> str | None:
    subject = cert.get("subject", ())
    for rdn in subject if isinstance(subject, tuple) else ():
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _check_validity(lines: _Lines, what: str, cert: Mapping[str, object]) -> None:
    text = cert.get("notAfter")
    if not isinstance(text, str):
        return
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(text), UTC)
    days = (expires - datetime.now(UTC)).total_seconds() / 86400
    if days < 0:
        lines.fail(f"{what} expired on {expires:%Y-%m-%d}", "issue a new certificate")
    elif days < CERT_WARN_DAYS:
        lines.warn(f"{what} expires on {expires:%Y-%m-%d}", "issue a new certificate before then")


def check_broker(config: AgentConfig, *, timeout: float = NETWORK_TIMEOUT) -> list[Finding]:
    """A TCP connection to `mqtt.endpoint`."""
    lines = _Lines("broker")
    try:
        endpoint = Endpoint.parse(config.mqtt.endpoint)
    except TransportError as exc:
        return lines.fail(str(exc), "correct mqtt.endpoint")
    where = f"{endpoint.host}:{endpoint.port}"
    start = time.monotonic()
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
            pass
    except socket.gaierror as exc:
        return lines.fail(
            f"cannot resolve {endpoint.host}: {exc.strerror}",
            "check the host name in mqtt.endpoint and this host's DNS",
        )
    except TimeoutError:
        return lines.fail(
            f"no answer from {where} within {timeout:g} s",
            f"check that no firewall drops TCP port {endpoint.port} on the way to the broker",
        )
    except OSError as exc:
        return lines.fail(
            f"cannot connect to {where}: {exc.strerror or exc}",
            "check that the broker runs and listens there, and that mqtt.endpoint is right",
        )
    return lines.ok(
        f"{endpoint} accepts TCP connections ({(time.monotonic() - start) * 1000:.0f} ms)"
    )


def check_tls(config: AgentConfig, *, timeout: float = NETWORK_TIMEOUT) -> list[Finding]:
    """Certificate files load and are not about to expire; the handshake works both ways."""
    lines = _Lines("tls")
    mqtt = config.mqtt
    endpoint = Endpoint.parse(mqtt.endpoint)
    if not endpoint.tls:
        if endpoint.is_loopback:
            return lines.info(f"plain MQTT to a broker on this host ({endpoint})")
        return lines.warn(
            f"{endpoint} is plain MQTT: job documents and credentials cross the network in "
            "clear text, and the broker cannot tell this host by its certificate",
            "use mqtts:// with mqtt.ca_file, cert_file and key_file (see the sample Mosquitto "
            "configuration in /usr/share/doc/codedeploy-agent/examples/mosquitto)",
        )
    try:
        context = ssl.create_default_context(cafile=str(mqtt.ca_file) if mqtt.ca_file else None)
        if mqtt.cert_file is not None and mqtt.key_file is not None:
            context.load_cert_chain(str(mqtt.cert_file), str(mqtt.key_file))
    except (OSError, ssl.SSLError) as exc:
        return lines.fail(
            f"cannot load mqtt.ca_file {mqtt.ca_file}, cert_file {mqtt.cert_file} or key_file "
            f"{mqtt.key_file}: {exc}",
            "each must be a readable PEM file: the broker's CA, this host's certificate and its "
            "unencrypted key",
        )
    peer = _handshake(lines, context, endpoint, timeout)
    if peer:
        _check_validity(lines, f"the certificate of {endpoint}", peer)
    if mqtt.cert_file is None:
        lines.info(
            "no client certificate (mqtt.cert_file): the broker must know this host another way"
        )
    elif (cert := _decode_certificate(mqtt.cert_file)) is not None:
        _check_validity(lines, f"client certificate {mqtt.cert_file}", cert)
    return lines.findings


def _handshake(
    lines: _Lines, context: ssl.SSLContext, endpoint: Endpoint, timeout: float
) -> Mapping[str, object] | None:
    """Connect, shake hands and see whether the broker keeps the connection; add one line.

    Returns the broker's certificate when the handshake worked.
    """
    start = time.monotonic()
    try:
        with (
            socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=endpoint.host) as tls,
        ):
            took, version, peer = (
                (time.monotonic() - start) * 1000,
                tls.version(),
                tls.getpeercert(),
            )
            # TLS 1.3 completes the client's side before the broker has checked our certificate;
            # a broker that refuses it sends an alert or hangs up right after.
            tls.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                if tls.recv(1) == b"":
                    lines.fail(
                        f"{endpoint} hung up right after the TLS handshake",
                        "it probably wants a client certificate it trusts (mqtt.cert_file)",
                    )
                    return None
    except ssl.SSLCertVerificationError as exc:
        lines.fail(
            f"the certificate of {endpoint} was not accepted: {exc.verify_message}",
            f"mqtt.ca_file must hold the CA that signed it, and it must name {endpoint.host}",
        )
        return None
    except ssl.SSLError as exc:
        lines.fail(
            f"TLS with {endpoint} failed: {exc.reason or exc}",
            "check that the broker speaks TLS there and trusts the CA of mqtt.cert_file",
        )
        return None
    except OSError as exc:
        lines.fail(f"TLS with {endpoint} failed: {exc.strerror or exc}")
        return None
    lines.ok(f"handshake with {endpoint} ({version}, {took:.0f} ms)")
    return peer


def thing_name(config: AgentConfig) -> str:
    """The thing name the agent uses: mqtt.thing_name, or this host's name."""
    return config.mqtt.thing_name or socket.gethostname()


async def check_login(config: AgentConfig, *, deadline: float = NETWORK_TIMEOUT) -> list[Finding]:
    """An MQTT CONNECT with the agent's credentials, as client id `<thing>-doctor`."""
    lines = _Lines("login")
    client_id = f"{thing_name(config)}-doctor"
    settings = dataclasses.replace(config.mqtt, session_expiry_seconds=0)

    async def ignore(_message: Message) -> None:
        return None

    error: TransportError | None = None
    try:
        session = MqttSession(
            settings, client_id=client_id, subscriptions=(), connect_timeout=deadline
        )
        task = asyncio.create_task(session.run(ignore))
    except TransportError as exc:
        return lines.fail(str(exc), "correct the mqtt: section")
    try:
        give_up = time.monotonic() + deadline + 1.0
        while not session.connected:
            if task.done():
                task.result()  # an unreadable password or certificate file raises here
            error = session.last_error
            if error is None and time.monotonic() > give_up:
                error = TransportError(f"no answer to the MQTT CONNECT within {deadline:g} s")
            if error is not None:
                break
            await asyncio.sleep(0.02)
    except TransportError as exc:
        error = exc
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TransportError):
            await task
    if error is not None:
        return lines.fail(
            str(error),
            "fix the credentials (mqtt.username/password_file or the client certificate). doctor "
            f"logs in as {client_id}: a broker that allows only the thing name as client id "
            "refuses it, and then the thing line below is what counts",
        )
    user = f" as {settings.username}" if settings.username else ""
    return lines.ok(f"MQTT {settings.protocol} login{user} accepted (client id {client_id})")


def check_thing(config: AgentConfig, running: AgentStatus | None) -> list[Finding]:
    """The thing name is valid, matches the certificate, and the broker took the agent's login.

    `running` is the running agent's status snapshot (None: no agent runs).
    """
    lines = _Lines("thing")
    name = thing_name(config)
    source = "mqtt.thing_name" if config.mqtt.thing_name else "the host name"
    try:
        validate_thing_name(name)
    except AgentError as exc:
        return lines.fail(
            f"{exc} (from {source})",
            "set mqtt.thing_name to letters, digits and _ . : - (at most 128 characters)",
        )
    if running is None:
        lines.info(
            f"{name} (from {source}) is valid; whether the broker takes it shows once the agent "
            "runs (doctor never logs in as the agent: that would take over its session)"
        )
    elif running.thing_name != name:
        lines.warn(
            f"the running agent uses {running.thing_name}, the config now says {name}",
            f"restart it: systemctl restart {UNIT}",
        )
    elif running.broker_connected:
        lines.ok(
            f"{name} (from {source}): the agent is connected with it to {running.broker_endpoint}"
        )
    else:
        lines.fail(
            f"the running agent is not connected to {running.broker_endpoint} as {name}",
            f"its log says why each attempt failed: {config.log_dir / config.program_name}.log "
            f"or {_JOURNAL}",
        )
    tls = config.mqtt.endpoint.lower().startswith("mqtts:")
    cert = _decode_certificate(config.mqtt.cert_file) if tls and config.mqtt.cert_file else None
    common_name = _common_name(cert) if cert is not None else None
    if common_name is not None and common_name != name:
        lines.warn(
            f"the client certificate's CN is {common_name!r}, not the thing name {name!r}: a "
            "per-host broker ACL on the certificate's identity (%u) will not match its topics",
            "issue the certificate for CN=<thing name>, or set mqtt.thing_name to the CN",
        )
    return lines.findings


# --- clock, tools -------------------------------------------------------------------------------


async def check_clock(config: AgentConfig) -> list[Finding]:
    """The skew against the configured NTP servers, and what it means for AWS-signed calls."""
    lines = _Lines("clock")
    settings = config.clock
    if not settings.ntp_servers:
        return lines.add(Status.SKIP, "clock.ntp_servers is empty: no NTP check")
    per_server = min(settings.timeout_seconds, NTP_TIMEOUT)
    reading = await measure_skew(dataclasses.replace(settings, timeout_seconds=per_server))
    if reading is None:
        return lines.warn(
            f"no NTP server answered ({', '.join(settings.ntp_servers)}; {per_server:g} s each): "
            "the skew is unknown, and a clock off by more than 5 minutes makes AWS-signed "
            "requests fail with InvalidSignatureException (Signature expired)",
            "allow UDP port 123 to one of clock.ntp_servers or list reachable ones; "
            "`chronyc tracking` or `timedatectl timesync-status` shows this host's view",
        )
    skew = reading.offset_seconds
    side = "behind" if skew > 0 else "ahead of"
    text = f"the local clock is {abs(skew):.3f} s {side} {reading.server}"
    limit = settings.max_skew_seconds
    if abs(skew) > limit:
        return lines.fail(
            f"{text}: more than the {limit:g} s AWS accepts. AWS-signed requests (S3 downloads, "
            "AWS APIs) fail with InvalidSignatureException (Signature expired); the agent "
            "refuses to send them",
            TIME_SYNC_HINT,
        )
    if abs(skew) > settings.warn_seconds:
        return lines.warn(
            f"{text} (warning at {settings.warn_seconds:g} s; past {limit:g} s AWS-signed "
            "requests fail with InvalidSignatureException)",
            TIME_SYNC_HINT,
        )
    return lines.ok(f"{text} (AWS accepts up to {limit:g} s)")


def _deployed_needs(root: DeploymentRoot) -> tuple[list[str], list[str]]:
    """The deployed revisions (`group/deployment`) whose appspec sets acls / an SELinux context."""
    acls: list[str] = []
    contexts: list[str] = []
    for pointer in sorted(root.instructions.glob("*_last_successful_install")):
        group = pointer.name.removesuffix("_last_successful_install")
        with contextlib.suppress(AgentError, OSError):
            deployed = root.last_successful(group)
            if deployed is None:
                continue
            permissions = load_appspec(deployed.archive).permissions
            where = f"{group}/{deployed.path.name}"
            if any(p.acls for p in permissions):
                acls.append(where)
            if any(p.context is not None for p in permissions):
                contexts.append(where)
    return acls, contexts


def check_tools(
    config: AgentConfig, *, which: Callable[[str], str | None] | None = None
) -> list[Finding]:
    """git, setfacl, semanage and restorecon: found, missing but needed, or missing and unused."""
    lines = _Lines("tools")
    find = which or (lambda name: shutil.which(name, path=SERVICE_PATH))
    acls, contexts = _deployed_needs(DeploymentRoot(config.root_dir))
    git = config.git
    git_set = git.executable != "git" or any(
        (git.username, git.password_file, git.ssh_key_file, git.codecommit_username,
         git.codecommit_password_file)
    )  # fmt: skip
    selinux = f"deployed revision(s) {', '.join(contexts)} set an SELinux context"
    tools = (
        (git.executable, "git revisions (CodeCommit, any git remote)", "git",
         "the config's git: section is set" if git_set else None),
        ("setfacl", "appspec permissions with acls", "acl",
         f"deployed revision(s) {', '.join(acls)} set acls" if acls else None),
        ("semanage", "appspec permissions with an SELinux context",
         "policycoreutils-python-utils", selinux if contexts else None),
        ("restorecon", "appspec permissions with an SELinux context", "policycoreutils",
         selinux if contexts else None),
    )  # fmt: skip
    for name, used_for, package, needed_because in tools:
        found = find(name)
        if found is not None:
            lines.ok(f"{Path(name).name} {found} (used for {used_for})")
        elif needed_because is not None:
            lines.fail(f"{name} is not installed, but {needed_because}", f"install {package}")
        else:
            lines.info(f"{name} is not installed; only {used_for} need it (package {package})")
    return lines.findings


# --- the running agent, logs ----------------------------------------------------------------------


def running_agent(config: AgentConfig) -> tuple[int | None, AgentStatus | None]:
    """The running agent's pid and its current status snapshot (None when there is none)."""
    pid = read_running_pid(config.pid_dir, config.program_name)
    if pid is None:
        return None, None
    snapshot, _problem = try_read_status(status_path(config.state_dir, config.program_name))
    return pid, snapshot if snapshot is not None and snapshot.pid == pid else None


def _check_unit(lines: _Lines) -> None:
    """The unit's state, when systemd runs this host."""
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        return
    try:
        shown = subprocess.run(
            ["systemctl", "show", UNIT, "-p", "LoadState,ActiveState,SubState,UnitFileState"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        lines.warn(f"cannot ask systemd about {UNIT}: {exc}")
        return
    props = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    state = f"{props.get('ActiveState')} ({props.get('SubState')})"
    if props.get("LoadState") != "loaded":
        lines.warn(f"systemd does not know {UNIT}", "install the codedeploy-agent package")
    elif props.get("ActiveState") == "failed":
        lines.fail(f"{UNIT} is {state}", f"see why: {_JOURNAL}")
    elif props.get("UnitFileState") != "enabled":
        lines.warn(
            f"{UNIT} is {state} but {props.get('UnitFileState')}: it will not start at boot",
            f"systemctl enable {UNIT}",
        )
    else:
        lines.ok(f"{UNIT} is {state} and enabled")


def check_agent(
    config: AgentConfig, pid: int | None, snapshot: AgentStatus | None
) -> list[Finding]:
    """Whether the agent runs, what it does, its last result, and its systemd unit."""
    lines = _Lines("agent")
    if pid is None:
        lock = lock_file_path(config.pid_dir, config.program_name)
        lines.fail(
            f"not running (nobody holds {lock}): no deployment can reach this host",
            f"systemctl enable --now {UNIT}; if it does not stay up: {_JOURNAL}",
        )
    elif snapshot is None:
        lines.warn(f"running as PID {pid}, but its status snapshot is missing", "restart it")
    else:
        doing = str(snapshot.state)
        if snapshot.current_deployment_id:
            doing += f" {snapshot.current_deployment_id} ({snapshot.current_event or '-'})"
        link = "connected to" if snapshot.broker_connected else "not connected to"
        lines.ok(
            f"running as PID {pid}, version {snapshot.agent_version}: {doing}, {link} "
            f"{snapshot.broker_endpoint}"
        )
        last = snapshot.last_result
        if last is not None and last.status != "SUCCEEDED":
            lines.info(
                f"last deployment {last.deployment_id} (job {last.job_id}) ended {last.status} "
                f"at {last.finished_at:%Y-%m-%d %H:%M:%S}Z: {last.message or '-'}"
            )
    _check_unit(lines)
    return lines.findings


def check_logs(config: AgentConfig) -> list[Finding]:
    """Where to look: the agent log, the deployments log, each deployment's scripts.log."""
    root = DeploymentRoot(config.root_dir, program_name=config.program_name)
    agent_log = config.log_dir / f"{config.program_name}.log"
    try:
        size = _size(agent_log.stat().st_size)
    except OSError:
        size = "not written yet"
    return _Lines("logs").info(
        f"agent {agent_log} ({size}); every script's output {root.deployments_log}; one "
        f"deployment's {root.path}/<group>/<deployment>/logs/scripts.log; systemd's "
        f"`journalctl -u {UNIT}`"
    )


# --- the report -----------------------------------------------------------------------------------


async def collect(config_path: Path | None) -> list[Finding]:
    """Every finding, in report order; blocking checks run in a thread."""
    config, findings = await asyncio.to_thread(check_config, config_path)
    if config is None:
        return findings
    for check in (check_directories, check_disk, check_signing, check_broker):
        findings += await asyncio.to_thread(check, config)
    if findings[-1].status is not Status.OK:
        findings += _Lines("login").add(Status.SKIP, "not tried: the broker cannot be reached")
    else:
        tls = await asyncio.to_thread(check_tls, config)
        findings += tls
        if any(f.status is Status.FAIL for f in tls):
            findings += _Lines("login").add(Status.SKIP, "not tried: TLS fails")
        else:
            findings += await check_login(config)
    pid, snapshot = await asyncio.to_thread(running_agent, config)
    findings += await asyncio.to_thread(check_thing, config, snapshot if pid else None)
    findings += await check_clock(config)
    findings += await asyncio.to_thread(check_tools, config)
    findings += await asyncio.to_thread(check_agent, config, pid, snapshot)
    findings += await asyncio.to_thread(check_logs, config)
    return findings


def summary(findings: Iterable[Finding]) -> str:
    """The closing line: `problems found: 1 failed, 2 warnings, 9 ok`."""
    counts = dict.fromkeys(Status, 0)
    for finding in findings:
        counts[finding.status] += 1
    failed, warned = counts[Status.FAIL], counts[Status.WARN]
    verdict = "problems found" if failed else "no problems found"
    plural = "" if warned == 1 else "s"
    return f"{verdict}: {failed} failed, {warned} warning{plural}, {counts[Status.OK]} ok"


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
