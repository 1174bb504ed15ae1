"""The embedded MQTT broker: amqtt 0.12.1 in a subprocess, for a server with no broker configured.

    users = await asyncio.to_thread(load_users, state_dir / "mqtt-users.json", ["server", "agent"])
    async with EmbeddedBroker(host="127.0.0.1", port=1883, users=users) as broker:
        ...  # broker.endpoint == "mqtt://127.0.0.1:1883"; clients log in as one of `users`

amqtt speaks MQTT 3.1.1 only (agents and the server set `protocol: "3.1.1"`), has no shared
subscriptions (one server), keeps sessions in memory (a restarted broker has forgotten them:
the agents ask for their next job on every connection anyway), and refuses client publishes to
topics that begin with `$` (hence the topic root `codedeploy/things`).

Why a subprocess: amqtt's blocking calls and deprecation warnings would otherwise run in the
server's event loop, and a broker crash must not take the control plane with it. The child gets
its configuration (passwords included: never on the command line, where `ps` shows it) as one
JSON line on stdin and keeps reading stdin: when the server dies, the pipe closes and the broker
stops too. It answers with one JSON line on stdout once it listens (`{"port": N}`: port 0 picks
a free one).

Authentication: anonymous login is off (with it on, amqtt does not queue QoS 1 messages for
offline clients: the platform notes), and every client must log in with a user name and password
from `users`. `load_users` generates and keeps those passwords in a file of the server's, so
agents configured with one keep working across server restarts. The bind address is loopback
by default; agents on other hosts need a reachable `host` (and then TLS in front of it, or a
real broker: the embedded one has no TLS listener).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import secrets
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Final, Self

from codedeploy_server.errors import ServerConfigError, ServerError

#: How long the broker may take to listen (importing amqtt dominates: about a second).
START_TIMEOUT: Final = 20.0
#: How long `stop()` waits after SIGTERM before SIGKILL.
STOP_TIMEOUT: Final = 5.0
_PLUGIN: Final = "codedeploy_server.broker.PasswordAuthPlugin"


class BrokerError(ServerError):
    """Raised when the embedded broker cannot start (port taken, amqtt missing, ...)."""


def generate_password() -> str:
    """A random password for a broker user (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


def load_users(path: Path, names: Sequence[str]) -> dict[str, str]:
    """The users of `path` (JSON `{name: password}`), with a generated password for every name
    in `names` that has none yet (written back, mode 0600). Blocking: call it in a thread."""
    users: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = "{}"
    except OSError as exc:
        raise ServerConfigError(
            f"Cannot read the broker users file {path}: {exc.strerror}"
        ) from exc
    try:
        loaded = json.loads(text)
    except ValueError:
        loaded = None
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in loaded.items()
    ):
        raise ServerConfigError(
            f"The broker users file {path} must be a JSON object of user name -> password; "
            "fix it or delete it (new passwords are then generated for the server and agents)"
        )
    users.update(loaded)
    missing = [name for name in names if name not in users]
    if missing:
        users.update({name: generate_password() for name in missing})
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(users, out, indent=2, sort_keys=True)
        temporary.replace(path)
    return users


@dataclass
class EmbeddedBroker:
    """amqtt on `host:port` in a subprocess (module docstring); an async context manager."""

    users: Mapping[str, str]
    host: str = "127.0.0.1"
    port: int = 1883
    #: Where the broker's log goes (None: the server's stderr). `log_level` is a logging level.
    log_file: Path | None = None
    log_level: str = "WARNING"
    start_timeout: float = START_TIMEOUT
    _process: asyncio.subprocess.Process | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        """The URL clients connect to (`mqtt://host:port`; the actual port once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._process.pid if self.running and self._process is not None else None

    async def start(self) -> None:
        """Start the subprocess; return once it listens. BrokerError saying why it did not."""
        if self.running:
            raise RuntimeError("the embedded broker is already running")
        if not self.users:
            raise ServerConfigError("The embedded broker needs at least one user (name, password)")
        config = {"host": self.host, "port": self.port, "users": dict(self.users)}
        log = await asyncio.to_thread(self._open_log)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "codedeploy_server.broker",
                self.log_level,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        finally:
            if log is not None:
                log.close()
        self._process = process
        assert process.stdin is not None  # noqa: S101 - PIPE
        assert process.stdout is not None  # noqa: S101 - PIPE
        try:
            process.stdin.write(json.dumps(config).encode() + b"\n")
            await process.stdin.drain()
            async with asyncio.timeout(self.start_timeout):
                line = await process.stdout.readline()
            self.port = int(json.loads(line)["port"])
        except (TimeoutError, ValueError, KeyError, TypeError, OSError) as exc:
            await self.stop()
            reason = "it did not start in time" if isinstance(exc, TimeoutError) else "it exited"
            hint = await asyncio.to_thread(self._log_hint)
            raise BrokerError(
                f"The embedded MQTT broker could not listen on {self.host}:{config['port']}: "
                f"{reason}{hint}. Is the port free (mqtt.listen)?"
            ) from None

    def _open_log(self) -> BinaryIO | None:
        if self.log_file is None:
            return None
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        return self.log_file.open("ab")

    def _log_hint(self) -> str:
        if self.log_file is None:
            return " (its log is on the server's stderr)"
        with contextlib.suppress(OSError):
            tail = self.log_file.read_text(errors="replace").strip().splitlines()[-3:]
            if tail:
                return "; its log ends with: " + " | ".join(tail)
        return ""

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:  # noqa: ASYNC109
        """SIGTERM (amqtt disconnects its clients), SIGKILL after `timeout` seconds."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process.stdin is not None:
            process.stdin.close()
            with contextlib.suppress(OSError):
                await process.stdin.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


# --- the subprocess --------------------------------------------------------------------------


@cache
def _password_plugin() -> type[Any]:
    """amqtt's auth plugin for `users` (built on first use: only the child imports amqtt)."""
    from amqtt.plugins.base import BaseAuthPlugin  # type: ignore[import-untyped]  # noqa: PLC0415

    class PasswordAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
        """Accept a client whose user name is known and whose password matches."""

        @dataclass
        class Config:
            users: dict[str, str] = field(default_factory=dict)

        async def authenticate(self, *, session: Any) -> bool:
            expected = self.config.users.get(session.username or "")
            given = (session.password or "").encode()
            return expected is not None and hmac.compare_digest(expected.encode(), given)

    return PasswordAuthPlugin


def __getattr__(name: str) -> Any:
    # amqtt loads plugins by dotted path; this resolves ours without importing amqtt here.
    if name == "PasswordAuthPlugin":
        return _password_plugin()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _UntilEof(asyncio.Protocol):
    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop

    def eof_received(self) -> None:
        self._stop.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop.set()


def _serve(level: str) -> None:
    """The child: read the config line, run amqtt until SIGTERM or stdin closes."""
    import logging  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    warnings.simplefilter("ignore")  # amqtt's own deprecation warnings are not ours to fix
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.WARNING),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = json.loads(sys.stdin.buffer.readline())
    from amqtt.broker import Broker  # type: ignore[import-untyped]  # noqa: PLC0415

    async def serve() -> None:
        host = config["host"]
        bind = f"[{host}]:{config['port']}" if ":" in host else f"{host}:{config['port']}"
        broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": bind}},
                "plugins": {_PLUGIN: {"users": config["users"]}},
            }
        )
        await broker.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)

        # stdin reaches EOF when the server is gone (even killed): stop with it.
        await loop.connect_read_pipe(lambda: _UntilEof(stop), sys.stdin)
        server = broker._servers["default"].instance  # the only way to the port
        port = server.sockets[0].getsockname()[1]
        sys.stdout.write(json.dumps({"port": port}) + "\n")
        sys.stdout.flush()
        await stop.wait()
        await broker.shutdown()

    asyncio.run(serve())


if __name__ == "__main__":
    _serve(sys.argv[1] if len(sys.argv) > 1 else "WARNING")
