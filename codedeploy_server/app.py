"""The control plane assembled: store, broker, Jobs service, rollout engine, API and bundle store.

    plane = ControlPlane(config)
    await plane.start()     # returns once the API listens and the Jobs service is connecting
    ...
    await plane.stop()      # the reverse order; bounded

Start-up order matters: the store first (migrations), then the broker (embedded or remote), the
Jobs service (it re-arms timers from the store), the rollout engine (it resumes deployments left
in progress, which needs the Jobs service), and the API last, so that no request arrives before
something can serve it. Stopping is the reverse.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from pathlib import Path
from typing import Final

from aiohttp import web

from codedeploy_agent.log import get_logger
from codedeploy_agent.protocol.errors import SigningKeyError
from codedeploy_agent.protocol.keys import Ed25519PrivateKey
from codedeploy_agent.protocol.signing import load_private_key
from codedeploy_server.api import SIGV4_VERIFIER, create_api
from codedeploy_server.broker import EmbeddedBroker, load_users
from codedeploy_server.bundles import BundleStore, load_secret, mount
from codedeploy_server.config import ServerConfig, split_host_port
from codedeploy_server.errors import ServerConfigError
from codedeploy_server.jobs.service import JobsService
from codedeploy_server.mqtt import ServerMqtt
from codedeploy_server.revisions import RevisionResolver
from codedeploy_server.rollout.engine import RolloutEngine
from codedeploy_server.store import Store, open_store

_log = get_logger("codedeploy_server.app")

#: The server's own user on the embedded broker.
SERVER_USER: Final = "codedeploy-server"
#: A server in a shared group keeps a short session: a dead one must not hold its share of
#: agent requests queued for long (Mosquitto queues them until the session expires).
_SHARED_SESSION_SECONDS: Final = 30
_STOP_GRACE: Final = 10.0


class ControlPlane:
    """One running server (module docstring)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.server_id = config.server_id or f"{socket.gethostname()}:{os.getpid()}"
        self.store: Store | None = None
        self.broker: EmbeddedBroker | None = None
        self.jobs: JobsService | None = None
        self.engine: RolloutEngine | None = None
        self._runner: web.AppRunner | None = None
        self.api_url = ""
        self.mqtt_endpoint = ""

    async def start(self) -> None:
        """Start every part; on failure, stop what already started and raise."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        config = self.config
        signing_key = await asyncio.to_thread(_signing_key, config.signing_key_file)
        self.store = store = await open_store(config.database)
        endpoint, username, password = await self._broker()
        self.mqtt_endpoint = endpoint
        mqtt_settings = config.mqtt
        shared = mqtt_settings.shared_subscriptions
        mqtt = ServerMqtt(
            endpoint=endpoint,
            client_id=f"codedeploy-server-{self.server_id}".replace(":", "-")[:64],
            protocol=mqtt_settings.protocol if mqtt_settings.endpoint else "3.1.1",
            username=username,
            password=password,
            ca_file=mqtt_settings.ca_file,
            cert_file=mqtt_settings.cert_file,
            key_file=mqtt_settings.key_file,
            shared_group="codedeploy-server" if shared else None,
            session_expiry_seconds=_SHARED_SESSION_SECONDS if shared else 3600,
        )
        self.jobs = jobs = JobsService(
            store,
            mqtt,
            topic_root=mqtt_settings.topic_root,
            events_root=mqtt_settings.events_root,
        )
        host, port = config.listen_host_port
        public_url = config.bundle_store.public_url or _public_url(host, port, config)
        secret_file = config.bundle_store.secret_file or config.bundle_store.path / ".secret"
        secret = await asyncio.to_thread(load_secret, secret_file)
        bundles = BundleStore(config.bundle_store.path, secret, public_url)
        resolver = RevisionResolver(
            bundles=bundles, s3_endpoint=config.s3_endpoint, region=config.region
        )
        self.engine = engine = RolloutEngine(
            store,
            jobs,
            signing_key=signing_key,
            key_id=config.signing_key_id,
            revisions=resolver,
            server_id=self.server_id,
            pickup_deadline_seconds=config.rollout.pickup_deadline_seconds,
            job_ttl_seconds=config.rollout.job_ttl_seconds,
        )
        await jobs.start()
        await engine.start()
        app = create_api(
            store,
            credentials=config.credentials,
            rollout=engine,
            bundles_route=lambda api: mount(api, bundles, verifier=api[SIGV4_VERIFIER]),
            region=config.region,
            account_id=config.account_id,
        )
        self._runner = runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=_tls(config))
        try:
            await site.start()
        except OSError as exc:
            raise ServerConfigError(
                f"Cannot listen on {config.listen}: {exc.strerror}. Is another server running, "
                "or the port taken? Change `listen` in the server config."
            ) from exc
        bound = runner.addresses[0] if runner.addresses else (host, port)
        scheme = "https" if config.tls_cert else "http"
        self.api_url = f"{scheme}://{_host(bound[0])}:{bound[1]}"
        _log.info(
            "server started",
            api=self.api_url,
            mqtt=endpoint,
            database=store.location,
            server_id=self.server_id,
            embedded_broker=self.broker is not None,
        )

    async def _broker(self) -> tuple[str, str | None, str | None]:
        settings = self.config.mqtt
        if settings.endpoint is not None:
            password = None
            if settings.password_file is not None:
                password = await asyncio.to_thread(_read_secret, settings.password_file)
            return settings.endpoint, settings.username, password
        users_file = settings.users_file or _state_dir(self.config) / "mqtt-users.json"
        users = await asyncio.to_thread(load_users, users_file, [SERVER_USER])
        host, port = split_host_port(settings.embedded_listen, "mqtt.listen")
        self.broker = broker = EmbeddedBroker(users, host=host, port=port)
        await broker.start()
        return broker.endpoint, SERVER_USER, users[SERVER_USER]

    async def stop(self) -> None:
        """Stop in the reverse order; each part gets a bounded time."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.engine is not None:
            await self.engine.stop()
            self.engine = None
        if self.jobs is not None:
            await self.jobs.stop(_STOP_GRACE)
            self.jobs = None
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None
        if self.store is not None:
            await self.store.close()
            self.store = None
        _log.info("server stopped", server_id=self.server_id)


def _signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        return load_private_key(path)
    except SigningKeyError as exc:
        raise ServerConfigError(
            f"{exc}. Create the job signing key with `codedeploy-server keygen --private {path} "
            f"--public {path.with_suffix('.pub.pem')}` and give the public key to the agents "
            "(security.trusted_keys)."
        ) from exc


def _read_secret(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").removesuffix("\n")
    except OSError as exc:
        raise ServerConfigError(f"Cannot read {path}: {exc.strerror}") from exc


def _state_dir(config: ServerConfig) -> Path:
    if config.database.startswith(("postgresql://", "postgres://")):
        return config.bundle_store.path.parent
    return Path(config.database).parent


def _public_url(host: str, port: int, config: ServerConfig) -> str:
    scheme = "https" if config.tls_cert else "http"
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - naming, not binding
    return f"{scheme}://{_host(shown)}:{port}"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _tls(config: ServerConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ServerConfigError(
            f"Cannot load tls_cert {config.tls_cert} / tls_key {config.tls_key}: {exc}"
        ) from exc
    return context
