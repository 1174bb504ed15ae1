"""Local git remotes for the git and CodeCommit source tests (helpers and fixtures).

- `make_repository(root, name, allow_sha_fetch=...)`: a bare repository with three commits on
  `main` (`first`, `second`, `third`); `second` is the commit tests deploy, so the pinned commit is
  never the branch head.
- `GitHttpServer`: `git http-backend` (CGI) behind a small threaded HTTP server on 127.0.0.1,
  with an optional Basic-auth check (`authorize` sees user, password and path), a `stall` switch
  that makes every request hang (for timeout tests), and a record of the requests it answered.
  Given `tls` (a server SSLContext) it speaks HTTPS and `url()` gives https:// URLs.
- Fixtures `git_repos` and `git_server` (import them into a test module to use them).

Everything here is loopback only; `git` comes from the system, as in the agent.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import psutil
import pytest

from codedeploy_agent.host.layout import DeploymentDir

_HTTP_BACKEND: Final = "/usr/lib/git-core/git-http-backend"
#: A fixed identity and dates: the same content always gives the same commit ids.
_GIT_ENV: Final = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.invalid",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.invalid",
    "GIT_AUTHOR_DATE": "2024-01-02T03:04:05+00:00",
    "GIT_COMMITTER_DATE": "2024-01-02T03:04:05+00:00",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}

Authorize = Callable[[str, str, str], bool]


def git(*args: str, cwd: Path | None = None) -> str:
    """Run the system git with a fixed identity; return its stdout (stripped)."""
    env = {**os.environ, **_GIT_ENV}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@dataclass(frozen=True, slots=True)
class Repository:
    """A bare repository and the commits on its `main` branch."""

    path: Path
    #: Commit ids by name: `first`, `second` (the one tests deploy), `third` (the branch head).
    commits: dict[str, str]

    @property
    def name(self) -> str:
        """The repository's folder name, as served under the project root."""
        return self.path.name


def make_repository(root: Path, name: str, *, allow_sha_fetch: bool) -> Repository:
    """A bare repository `root/<name>` with three commits; `second` adds `app/run.sh` (0755).

    With `allow_sha_fetch`, `uploadpack.allowReachableSHA1InWant` is on, so a client may fetch a
    commit by its id (as GitHub, GitLab and CodeCommit allow); without it the server refuses.
    """
    work = root / f"{name}-work"
    work.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    commits: dict[str, str] = {}
    (work / "appspec.yml").write_text("version: 0.0\nos: linux\n")
    (work / "README").write_text("first\n")
    commits["first"] = _commit(work, "first")
    (work / "README").write_text("second\n")
    (work / "app").mkdir()
    (work / "app" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (work / "app" / "run.sh").chmod(0o755)
    (work / "app" / "link").symlink_to("run.sh")
    commits["second"] = _commit(work, "second")
    (work / "README").write_text("third\n")
    (work / "later.txt").write_text("only in the third commit\n")
    commits["third"] = _commit(work, "third")
    bare = root / f"{name}.git"
    git("clone", "--quiet", "--bare", str(work), str(bare))
    shutil.rmtree(work)
    git("config", "http.receivepack", "false", cwd=bare)
    git("config", "uploadpack.allowReachableSHA1InWant", str(allow_sha_fetch).lower(), cwd=bare)
    return Repository(bare, commits)


def _commit(work: Path, message: str) -> str:
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", message, cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def make_one_commit_repository(
    root: Path,
    name: str,
    files: dict[str, str],
    symlinks: dict[str, str] | None = None,
    *,
    object_format: str = "sha1",
) -> Repository:
    """A bare repository `root/<name>.git` with one commit (`only`) of `files` and `symlinks`."""
    work = root / f"{name}-work"
    work.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main", f"--object-format={object_format}", cwd=work)
    for relative, content in files.items():
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        (work / relative).write_text(content)
    for relative, target in (symlinks or {}).items():
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        (work / relative).symlink_to(target)
    commit = _commit(work, "only")
    bare = root / f"{name}.git"
    git("clone", "--quiet", "--bare", str(work), str(bare))
    shutil.rmtree(work)
    return Repository(bare, {"only": commit})


@dataclass(frozen=True, slots=True)
class Request:
    """One request the server answered."""

    method: str
    path: str
    #: The Basic-auth user name sent, if any.
    user: str | None
    status: int


@dataclass
class GitHttpServer:
    """`git http-backend` for every repository under `project_root`, on 127.0.0.1."""

    project_root: Path
    #: None: no authentication; otherwise called with (user, password, path) for every request.
    authorize: Authorize | None = None
    #: When set, every request waits here until the server stops (a hung remote).
    stall: bool = False
    #: Repositories (folder names) served with protocol v0 only. Protocol v2 lets a client fetch
    #: any commit by id; v0 refuses ids that are not advertised unless the repository allows it,
    #: which is what a strict server looks like.
    v0_only: frozenset[str] = frozenset()
    #: A server-side TLS context: serve HTTPS instead of plain HTTP.
    tls: ssl.SSLContext | None = None
    requests: list[Request] = field(default_factory=list)
    _server: _TlsServer | None = None
    _thread: threading.Thread | None = None
    _release: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        """The port the server listens on."""
        assert self._server is not None
        return int(self._server.server_address[1])

    def url(self, repository: str, *, userinfo: str = "") -> str:
        """The clone URL of `repository` (a folder name under the project root)."""
        at = f"{userinfo}@" if userinfo else ""
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{at}127.0.0.1:{self.port}/{repository}"

    def start(self) -> GitHttpServer:
        """Listen on a free port and serve in a background thread."""
        handler = _handler_for(self)
        self._server = _TlsServer(("127.0.0.1", 0), handler)
        self._server.tls = self.tls
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release stalled requests and stop serving."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _TlsServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that wraps accepted connections in TLS when `tls` is set."""

    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            # The handshake happens in the handler's thread, on first read: a client that
            # refuses the certificate does not hold up the accepting thread.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().handle_error(request, client_address)
        # Over TLS, clients that refuse the certificate hang up mid-handshake: expected.


def _handler_for(server: GitHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
            del format, args  # quiet: pytest shows our records instead

        def _serve(self) -> None:
            if server.stall:
                server._release.wait(timeout=60)
                return
            body = self._body()
            parts = urlsplit(self.path)
            user, password = _basic_auth(self.headers.get("Authorization"))
            if server.authorize is not None and (
                user is None or not server.authorize(user, password or "", parts.path)
            ):
                self._reply(401, {"WWW-Authenticate": 'Basic realm="git"'}, b"auth required\n")
                server.requests.append(Request(self.command, parts.path, user, 401))
                return
            v2 = parts.path.strip("/").split("/")[0] not in server.v0_only
            status, headers, payload = _run_backend(self, server.project_root, body, user, v2=v2)
            server.requests.append(Request(self.command, parts.path, user, status))
            self._reply(status, headers, payload)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def _basic_auth(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.startswith("Basic "):
        return None, None
    decoded = base64.b64decode(header[len("Basic ") :]).decode()
    user, _, password = decoded.partition(":")
    return user, password


def _run_backend(
    request: BaseHTTPRequestHandler,
    project_root: Path,
    body: bytes,
    user: str | None,
    *,
    v2: bool,
) -> tuple[int, dict[str, str], bytes]:
    """Run git-http-backend as a CGI script and split its answer into status, headers, body."""
    parts = urlsplit(request.path)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": str(project_root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "REQUEST_METHOD": request.command,
        "PATH_INFO": parts.path,
        "QUERY_STRING": parts.query,
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_USER": user or "",
        "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
        "GIT_PROTOCOL": request.headers.get("Git-Protocol", "") if v2 else "",
    }
    done = subprocess.run([_HTTP_BACKEND], input=body, env=env, capture_output=True, check=False)
    head, _, payload = done.stdout.partition(b"\r\n\r\n")
    status = 200
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            headers[name.strip()] = value.strip()
    return status, headers, payload


@dataclass(frozen=True, slots=True)
class GitRepos:
    """The repositories tests clone: one that allows fetching by id, one that refuses."""

    root: Path
    fast: Repository
    refusing: Repository


@pytest.fixture(scope="session")
def git_repos(tmp_path_factory: pytest.TempPathFactory) -> GitRepos:
    """Two bare repositories with the same three commits under one project root (read-only:
    shared by every test of the session)."""
    root = tmp_path_factory.mktemp("remotes")
    fast = make_repository(root, "app", allow_sha_fetch=True)
    refusing = make_repository(root, "strict", allow_sha_fetch=False)
    return GitRepos(root, fast, refusing)


@pytest.fixture
def git_server(git_repos: GitRepos) -> Iterator[GitHttpServer]:
    """An http-backend server for `git_repos`, protocol v0 (so `allow_sha_fetch` decides), no
    authentication until a test sets `authorize`."""
    v0 = frozenset({git_repos.fast.name, git_repos.refusing.name})
    server = GitHttpServer(git_repos.root, v0_only=v0).start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------
# What the agent's git processes show to other users of the host.


def recording_git(folder: Path) -> tuple[Path, Path]:
    """A `git` wrapper that appends `<pid> <argv...>` to a log, then execs the system git.

    Returns (the wrapper, its log); set the wrapper as `git.executable`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "argv.log"
    wrapper = folder / "git"
    real = shutil.which("git")
    assert real is not None
    wrapper.write_text(f'#!/bin/sh\necho "$$ $*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, log


class CommandLines:
    """Every command line seen on the host while it runs (sampled from /proc every 2 ms)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            for proc in psutil.process_iter(["cmdline"]):
                cmdline = proc.info.get("cmdline")
                if cmdline:
                    self.seen.add(" ".join(cmdline))

    def containing(self, text: str) -> list[str]:
        """The command lines seen that contain `text`."""
        return sorted(line for line in self.seen if text in line)


# --- shared by the git source tests ------------------------------------------------------


def make_deployment(tmp_path: Path) -> DeploymentDir:
    """A fresh deployment directory, as the executor creates it."""
    deployment = DeploymentDir(tmp_path / "root" / "dg-1" / "d-1")
    deployment.path.mkdir(parents=True)
    return deployment


def tree(root: Path) -> dict[str, str]:
    """Every file under `root`: its content, or `-> target` for a symbolic link."""
    found = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[name] = f"-> {path.readlink()}"
        elif path.is_file():
            found[name] = path.read_text()
    return found
