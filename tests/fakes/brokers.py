"""Real MQTT brokers on 127.0.0.1 for tests: Mosquitto and the embedded amqtt broker.

    with MosquittoBroker(tmp_path / "mosquitto") as broker:
        ...  # broker.port, broker.endpoint ("mqtt://127.0.0.1:PORT"), broker.log_text()
        broker.restart()  # same port, same persistence: sessions and queued messages survive

`MosquittoBroker` runs `/usr/sbin/mosquitto -c <generated conf>` (never the system broker on
port 1883) with persistence in a folder it owns, its log (`log_type all`) in `mosquitto.log`,
and optionally a password file, a TLS listener (see `make_test_pki`) or `max_queued_messages`.
`EmbeddedBroker` runs amqtt 0.12.1 (MQTT 3.1.1 only) in a subprocess of this file: a broker in
the test's own event loop would share it with the client under test, hide blocking calls and
turn amqtt's own deprecation warnings into test errors (`filterwarnings = error`). Anonymous
login is off (with it on, amqtt does not queue QoS 1 messages for offline clients), so clients
must send a user name (any name is accepted). amqtt keeps sessions in memory only: a restarted
embedded broker has forgotten every session.

Import-only: the pytest fixtures live in `tests/fakes/broker_fixtures.py`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

MOSQUITTO = Path("/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = Path("/usr/bin/mosquitto_passwd")

#: How long a broker may take to accept connections (Mosquitto needs well under a second).
START_TIMEOUT = 10.0
#: How long `stop()` waits after SIGTERM before it sends SIGKILL.
STOP_TIMEOUT = 5.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Return once 127.0.0.1:`port` accepts connections; raise if `process` dies first."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"broker exited with status {process.returncode} before listening on "
                f"127.0.0.1:{port}; its log:\n{_read(log)}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(
                    f"broker did not listen on 127.0.0.1:{port} within {START_TIMEOUT:g} s; "
                    f"its log:\n{_read(log)}"
                ) from None
            time.sleep(0.02)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _stop_process(process: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------------------------------------
# Certificates


@dataclass(frozen=True, slots=True)
class Pki:
    """PEM files of a test CA, a server certificate for 127.0.0.1/localhost, and a client one."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_test_pki(
    directory: Path,
    *,
    client_name: str = "test-client",
    server_dns: tuple[str, ...] = ("localhost",),
) -> Pki:
    """Write a fresh CA, a server certificate and a client certificate into `directory`.

    The server certificate names `127.0.0.1` (CN and SAN) and `server_dns` (SANs); the client
    certificate's CN is `client_name`. Keys are unencrypted EC P-256 (fast to generate). Two
    calls give two unrelated CAs: a client given the other one's `ca_file` must refuse the server.
    """
    # Imported here: only TLS tests pay for it.
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "codedeploy-agent tests"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"Test CA {directory.name}")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(
        common_name: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName] | None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common_name))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server_cert, server_key = issue(
        "127.0.0.1",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            *(x509.DNSName(dns) for dns in server_dns),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ],
    )
    client_cert, client_key = issue(client_name, ExtendedKeyUsageOID.CLIENT_AUTH, None)

    pki = Pki(
        ca_file=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    pki.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    pki.client_cert.write_bytes(client_cert.public_bytes(serialization.Encoding.PEM))
    write_key(server_key, pki.server_key)
    write_key(client_key, pki.client_key)
    return pki


# ---------------------------------------------------------------------------------------------
# Mosquitto


class MosquittoBroker:
    """A private Mosquitto 2.0 on 127.0.0.1:`port`, with persistence under `directory`.

    `users` ({name: password}) writes a password file and turns anonymous login off. `tls`
    serves MQTT over TLS with that PKI's server certificate; `require_certificate` then also
    demands a client certificate signed by its CA (mutual TLS). `max_queued_messages` caps
    each offline session's queue (Mosquitto's default is 1000). `persistence=False` keeps
    sessions in memory only, so `restart()` forgets them.
    """

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        persistence: bool = True,
        users: dict[str, str] | None = None,
        tls: Pki | None = None,
        require_certificate: bool = False,
        max_queued_messages: int | None = None,
    ) -> None:
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.persistence = persistence
        self.users = dict(users or {})
        self.tls = tls
        self.require_certificate = require_certificate
        self.max_queued_messages = max_queued_messages
        self.conf_file = directory / "mosquitto.conf"
        self.log_file = directory / "mosquitto.log"
        self.data_dir = directory / "data"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The URL an agent is configured with: `mqtts://` when the listener speaks TLS."""
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The broker's process id (only while it runs)."""
        if self._process is None:
            raise RuntimeError("the broker is not running")
        return self._process.pid

    def log_text(self) -> str:
        """Everything the broker logged so far (all its runs)."""
        return _read(self.log_file)

    def start(self) -> None:
        """Write the configuration and start the broker; return once it accepts connections."""
        if self.running:
            raise RuntimeError("the broker is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self.conf_file.write_text(self._config())
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [str(MOSQUITTO), "-c", str(self.conf_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        wait_for_port(self.port, self._process, self.log_file)

    def stop(self) -> None:
        """SIGTERM (Mosquitto then saves its persistence file), SIGKILL after 5 s."""
        _stop_process(self._process, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the broker dies without saving (sessions since the last save are lost)."""
        _stop_process(self._process, signal.SIGKILL)

    def restart(self) -> None:
        """Stop and start again on the same port with the same persistence folder."""
        self.stop()
        self.start()

    def _config(self) -> str:
        lines = [
            # As root Mosquitto drops to user `mosquitto`, which cannot enter pytest's 0700
            # tmp folders; `user root` keeps it as root (it then logs a warning, harmless here).
            *(["user root"] if os.geteuid() == 0 else []),
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if self.users else 'true'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.data_dir}/",
            "log_dest stderr",
            "log_type all",
            "log_timestamp_format %H:%M:%S",
            "connection_messages true",
            # Nagle on the broker side would delay small PUBACK/PUBLISH packets as well.
            "set_tcp_nodelay true",
        ]
        if self.max_queued_messages is not None:
            lines.append(f"max_queued_messages {self.max_queued_messages}")
        if self.users:
            password_file = self.directory / "passwords"
            password_file.write_text("")
            for user, password in self.users.items():
                subprocess.run(
                    [str(MOSQUITTO_PASSWD), "-b", str(password_file), user, password],
                    check=True,
                    capture_output=True,
                )
            lines.append(f"password_file {password_file}")
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                f"require_certificate {'true' if self.require_certificate else 'false'}",
            ]
        return "\n".join(lines) + "\n"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# The embedded broker (amqtt)


class EmbeddedBroker:
    """amqtt 0.12.1 on 127.0.0.1:`port` in a subprocess; MQTT 3.1.1 only, a user name needed.

    Publishes to topics that begin with `$` are refused by amqtt (use `codedeploy/things`).
    Sessions live in the subprocess's memory: `restart()` keeps the port but not the sessions.
    """

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.log_file = directory / "amqtt.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The URL an agent is configured with."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        """Everything the broker logged so far."""
        return _read(self.log_file)

    def start(self) -> None:
        """Start the broker subprocess; return once it accepts connections."""
        if self.running:
            raise RuntimeError("the broker is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False},
            },
        }
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "amqtt", json.dumps(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        wait_for_port(self.port, self._process, self.log_file)

    def stop(self) -> None:
        """SIGTERM (amqtt shuts down cleanly), SIGKILL after 5 s."""
        _stop_process(self._process, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the broker."""
        _stop_process(self._process, signal.SIGKILL)

    def restart(self) -> None:
        """Stop and start again on the same port (every session is forgotten)."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _serve_amqtt(config_json: str) -> None:
    """The embedded broker's subprocess: run amqtt with `config_json` until SIGTERM."""
    import asyncio  # noqa: PLC0415
    import logging  # noqa: PLC0415

    from amqtt.broker import Broker  # type: ignore[import-untyped]  # noqa: PLC0415

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def serve() -> None:
        broker = Broker(json.loads(config_json))
        await broker.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await broker.shutdown()

    asyncio.run(serve())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "amqtt":
        _serve_amqtt(sys.argv[2])
    else:
        sys.exit(f"usage: {sys.argv[0]} amqtt CONFIG_JSON")
