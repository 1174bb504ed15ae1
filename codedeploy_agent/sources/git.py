"""Git revisions: one commit of any git remote, checked out as a directory bundle.

The system `git` (`git.executable`) runs as argv lists, never through a shell, in a sandbox
under `<deployment>/git-checkout/`: a private HOME and global config (no system or user git
config, no credential helpers or hooks of the host; ssh still reads its own system and user
config, so `ssh_command` pins what matters on its command line), `protocol.allow=never` except
for the one transport the URL uses (`ext::` never; `file` only for a file:// URL or path the
job names), `LC_ALL=C` so messages can be classified, no terminal prompts, and only PATH and the
CA-bundle variables of the agent's environment (SSL_CERT_FILE / SSL_CERT_DIR also become
GIT_SSL_CAINFO / GIT_SSL_CAPATH unless those are set: git built on GnuTLS reads only its own).
The proxy is chosen per URL by `proxy.proxy_for`, as for downloads.

Credentials never reach a command line (`ps` shows argv) or a log:
- https/http: a credential helper in the sandbox reads the user name and password from the git
  process's environment and answers only for the remote's own protocol and host (not for a
  redirect target). A `user:password@` in the URL is moved there too (git would otherwise pass
  it to git-remote-http on its command line). Configured credentials go over plain http only to
  loopback hosts; elsewhere they are withheld, with a warning.
- ssh: `GIT_SSH_COMMAND="ssh -i <git.ssh_key_file> -o IdentitiesOnly=yes -o BatchMode=yes"`;
  unknown host keys fail (BatchMode), they are never accepted blindly.

The commit is fetched alone (`git fetch --depth 1 --no-tags origin <sha>`). A server that refuses
requests for unadvertised objects (protocol v0 without `uploadpack.allowReachableSHA1InWant`),
and an abbreviated commit id, fall back to fetching every branch and tag, which is logged. The
checked-out commit is verified, then the work tree (never `.git`, which lives beside it) is
copied to `deployment-archive/` with the rules every bundle obeys: links stay inside the
revision, size and member limits hold. All of it is bounded by `git.timeout_seconds`; on timeout
or cancellation the git process group is killed.

Submodules are NOT fetched (a `.gitmodules` file gets a warning in the log): they would make the
agent contact hosts the job never named, and the GitHub and Bitbucket archives (the other commit
sources) do not include them either. Git LFS files stay pointer files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal
from urllib.parse import unquote, urlsplit

from codedeploy_agent.archive import copy_directory_bundle
from codedeploy_agent.config import AgentConfig
from codedeploy_agent.errors import BundleError
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.log import get_logger
from codedeploy_agent.sources.credentials import read_secret_file
from codedeploy_agent.sources.proxy import is_loopback, proxy_for
from codedeploy_agent.sources.redact import MASK, redact_url
from codedeploy_agent.spec import GitRevision

_log = get_logger("codedeploy_agent.sources.git")

Transport = Literal["https", "http", "ssh", "git", "file"]

#: The checkout's scratch folder, next to `deployment-archive/` (same file system).
CHECKOUT_DIR: Final = "git-checkout"
#: Variables of the agent's environment a git process may see.
_PASSED_ENV: Final = ("PATH", "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH")
#: OpenSSL's CA variables and the git settings that carry them to any TLS backend.
_CA_VARIABLES: Final = (("SSL_CERT_FILE", "GIT_SSL_CAINFO"), ("SSL_CERT_DIR", "GIT_SSL_CAPATH"))
#: What git says when the server will not hand out a commit by id (or does not have it), or
#: cannot serve a shallow fetch at all (the dumb http protocol).
_REFUSED: Final = re.compile(
    r"not our ref|does not allow request for unadvertised object|couldn't find remote ref|"
    r"does not support shallow"
)
_AUTH: Final = re.compile(
    r"Authentication failed|could not read (Username|Password)|returned error: 40[13]|"
    r"Permission denied \(|HTTP Basic: Access denied",
    re.IGNORECASE,
)
_HOST_KEY: Final = re.compile(r"Host key verification failed|REMOTE HOST IDENTIFICATION")
#: The server's certificate was refused (GnuTLS's words, then OpenSSL's), or the CA file is bad.
_CERTIFICATE: Final = re.compile(
    r"server certificate verification failed|SSL certificate problem|"
    r"error setting certificate|certificate verify failed",
    re.IGNORECASE,
)
_NETWORK: Final = re.compile(
    r"Could not resolve|Failed to connect|Connection refused|Connection timed out|"
    r"Connection reset|SSL certificate problem|unable to access|Could not read from remote",
    re.IGNORECASE,
)
_NOT_FOUND: Final = re.compile(
    r"not found|does not appear to be a git repository|returned error: 404", re.IGNORECASE
)
#: The password of a URL's user info, for messages about URLs too odd for `redact_url`.
_USERINFO_PASSWORD: Final = re.compile(r"(://[^/@]*?):[^/@]*@")
#: The credential helper (`credential.helper`): answers `get` for the expected protocol and
#: host only. printf is a shell builtin, so no process's argv ever carries the secret.
_HELPER: Final = """\
test "$1" = get || exit 0
protocol= host=
while IFS= read -r line; do
  case $line in
    protocol=*) protocol=${line#protocol=} ;;
    host=*) host=${line#host=} ;;
    '') break ;;
  esac
done
if [ "$protocol" = "$CODEDEPLOY_GIT_PROTOCOL" ] && [ "$host" = "$CODEDEPLOY_GIT_HOST" ]; then
  printf 'username=%s\\npassword=%s\\n' "$CODEDEPLOY_GIT_USERNAME" "$CODEDEPLOY_GIT_PASSWORD"
fi
"""


@dataclass(frozen=True, slots=True)
class HttpCredentials:
    """A user name and password (or token) for an http(s) remote."""

    username: str
    password: str = field(repr=False)
    #: True when the user name carries a secret too (CodeCommit's `<key id>%<session token>`).
    username_is_secret: bool = False

    def __post_init__(self) -> None:
        # The credential protocol is line-based: a line break would forge another field.
        if any(c in value for value in (self.username, self.password) for c in "\n\r\0"):
            raise BundleError("Git credentials must not contain line breaks or NUL characters.")

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values to mask in messages."""
        return (self.password, self.username) if self.username_is_secret else (self.password,)


#: Called before each git command that talks to the remote (CodeCommit signs per command).
CredentialSource = Callable[[], Awaitable[HttpCredentials]]


@dataclass(frozen=True, slots=True)
class Remote:
    """Where a commit comes from, and how messages talk about it."""

    url: str
    #: How messages name it: "the git remote https://host/repo" (credentials masked).
    description: str
    #: What to check when the remote refuses the credentials.
    auth_hint: str
    credentials: CredentialSource | None = None


def constant_credentials(credentials: HttpCredentials) -> CredentialSource:
    """A credential source that always gives `credentials`."""

    async def source() -> HttpCredentials:
        return credentials

    return source


async def fetch_git(revision: GitRevision, deployment: DeploymentDir, config: AgentConfig) -> None:
    """Check out `revision.commit_id` of `revision.url` into `deployment-archive/`.

    http(s) credentials: a `user:password@` in the URL, else `git.username` and
    `git.password_file`; ssh: `git.ssh_key_file`. Raises BundleError.
    """
    transport = url_transport(revision.url)
    where = config_name(config)
    url, credentials = revision.url, None
    if transport in ("https", "http"):
        # git hands the URL to git-remote-http on its command line, where `ps` shows it: user
        # info moves to the credential helper (a user name alone is a token, as on GitHub).
        url, user, password = split_userinfo(revision.url)
        if password is not None:
            credentials = HttpCredentials(user or "", password)
        else:
            configured = await asyncio.to_thread(
                read_credentials, config.git.username, config.git.password_file, "git.", config
            )
            host = urlsplit(url).hostname or ""
            if configured is not None and transport == "http" and not is_loopback(host):
                _log.warning(
                    "git credentials withheld: plain http to a host that is not loopback",
                    remote=redact_url(url),
                )
                configured = None
            if configured is not None:
                credentials = HttpCredentials(user or configured.username, configured.password)
            elif user is not None:
                credentials = HttpCredentials(user, "", username_is_secret=True)
    hints = {
        "ssh": f"Check git.ssh_key_file in {where} and that its public key may read the repository",
        "file": "Check that the agent's user can read the repository",
        "git": "The git:// protocol has no authentication; use https:// or ssh://",
    }
    remote = Remote(
        url=url,
        description=f"the git remote {shown_url(revision.url)}",
        auth_hint=hints.get(
            transport,
            f"Check git.username and git.password_file in {where} (a token with read access "
            "to the repository), or the credentials in the URL",
        ),
        credentials=None if credentials is None else constant_credentials(credentials),
    )
    await clone_commit(remote, revision.commit_id, deployment, config)


def config_name(config: AgentConfig) -> str:
    """The agent config file, as messages name it."""
    return str(config.source) if config.source is not None else "codedeployagent.yml"


def read_credentials(
    username: str | None, password_file: Path | None, prefix: str, config: AgentConfig
) -> HttpCredentials | None:
    """`username` and the content of `password_file`, or None when neither is set.

    `prefix` names the two settings in messages (`git.`, `git.codecommit_`). Blocking file I/O.
    """
    if username is None and password_file is None:
        return None
    if username is None or password_file is None:
        given, missing = ("username", "password_file")
        if username is None:
            given, missing = missing, given
        raise BundleError(
            f"{prefix}{given} is set in {config_name(config)} but {prefix}{missing} is not; "
            "git credentials need both. Set both, or neither."
        )
    password = read_secret_file(password_file, f"{prefix}password_file", config.source)
    return HttpCredentials(username, password)


# ---------------------------------------------------------------------------------------------
# URLs.


def url_transport(url: str) -> Transport:
    """The transport git would use for `url`; BundleError for anything else.

    The job-document decoder already refuses `ext::`, option-like and odd URLs; this check is
    defence in depth for every caller (a `<helper>::` prefix, a leading `-` in the URL or the
    ssh host, white space and control characters are refused).
    """
    shown = _USERINFO_PASSWORD.sub(rf"\1:{MASK}@", url)
    refused = BundleError(
        f"The git URL {shown!r} is not allowed: use an "
        "https://, http://, ssh://, git:// or file:// URL, an scp-like user@host:path, or an "
        "absolute path."
    )
    if not url or url.startswith("-") or any(c.isspace() or ord(c) < 32 for c in url):
        raise refused
    if "://" in url:
        scheme, _, rest = url.partition("://")
        scheme = scheme.lower()
        if scheme not in ("https", "http", "ssh", "git", "file"):
            raise refused
        host = rest.partition("/")[0].rpartition("@")[2]
        if scheme != "file" and (not host or host.startswith("-")):
            raise refused
        return scheme  # type: ignore[return-value]
    if url.startswith("/"):
        return "file"
    host, colon, _path = url.partition(":")
    host = host.rpartition("@")[2]
    if colon and "::" not in url and "/" not in host and host and not host.startswith("-"):
        return "ssh"
    raise refused


def shown_url(url: str) -> str:
    """`url` as messages show it: credentials masked (scp-like addresses and paths as they are)."""
    return redact_url(url) if "://" in url else url


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """`https://user:pass@host/repo` -> (`https://host/repo`, user, password), decoded."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not sep or not at:
        return url, None, None
    user, colon, password = userinfo.partition(":")
    clean = f"{scheme}://{host}{slash}{path}"
    return clean, unquote(user), unquote(password) if colon else None


def ssh_command(config: AgentConfig) -> str:
    """`GIT_SSH_COMMAND`: batch mode (no prompts), unknown host keys refused, the configured key
    and known_hosts file.

    StrictHostKeyChecking=yes on the command line wins over /etc/ssh/ssh_config(.d) and the
    agent user's ~/.ssh/config, which ssh reads whatever HOME says: an `accept-new` or `no`
    there must not make the agent trust a host it has never seen.
    """
    argv = ["ssh"]
    if config.git.ssh_key_file is not None:
        argv += ["-i", str(config.git.ssh_key_file), "-o", "IdentitiesOnly=yes"]
    argv += ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    if config.git.ssh_known_hosts_file is not None:
        argv += ["-o", f"UserKnownHostsFile={config.git.ssh_known_hosts_file}"]
    return shlex.join(argv)


def _mask(text: str, secrets: list[str]) -> str:
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _quote(value: str) -> str:
    """A git config value in double quotes (spaces, `#` and `;` kept as they are)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------------------------
# The checkout.


@dataclass(frozen=True, slots=True)
class _Sandbox:
    """The scratch folder of one checkout: git dir, work tree and private HOME side by side."""

    root: Path

    @property
    def git_dir(self) -> Path:
        return self.root / "git"

    @property
    def tree(self) -> Path:
        return self.root / "tree"

    @property
    def home(self) -> Path:
        return self.root / "home"

    def create(self, transport: Transport, proxy: str | None) -> None:
        """Start empty; write the private global config and the credential helper."""
        shutil.rmtree(self.root, ignore_errors=True)  # left by an agent killed mid-clone
        for folder in (self.home, self.tree):
            folder.mkdir(parents=True, mode=0o700)
        helper = self.home / "credential-helper.sh"
        helper.write_text(_HELPER, encoding="utf-8")
        settings = [
            "[init]\n\tdefaultBranch = deploy\n[advice]\n\tdetachedHead = false\n",
            # No background gc or maintenance that would outlive the checkout.
            "[gc]\n\tauto = 0\n[maintenance]\n\tauto = false\n",
            # Only the URL's own transport; this also bounds the protocols of http redirects.
            '[protocol]\n\tallow = never\n[protocol "ext"]\n\tallow = never\n',
            f'[protocol "{transport}"]\n\tallow = always\n',
            # `sh <file>`: works where the deployment root is mounted noexec.
            f"[credential]\n\thelper = {_quote(f'!/bin/sh {shlex.quote(str(helper))}')}\n",
            # An empty proxy makes git connect directly, whatever libcurl finds elsewhere.
            f"[http]\n\tproxy = {_quote(proxy or '')}\n",
        ]
        (self.home / ".gitconfig").write_text("".join(settings), encoding="utf-8")

    def add_remote(self, url: str) -> None:
        """Name the remote in the repository's config: a file, so the URL is never in argv."""
        with open(self.git_dir / "config", "a", encoding="utf-8") as handle:
            handle.write(f'[remote "origin"]\n\turl = {_quote(url)}\n')

    def environment(
        self, config: AgentConfig, url: str, credentials: HttpCredentials | None
    ) -> dict[str, str]:
        """The whole environment of a git process."""
        env = {name: os.environ[name] for name in _PASSED_ENV if os.environ.get(name)}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        # The CAs the agent's own downloads trust (SSL_CERT_FILE / SSL_CERT_DIR), for git too:
        # Debian's and Ubuntu's git use libcurl-gnutls, which ignores OpenSSL's variables, while
        # git's own work with every TLS backend. The operator's GIT_SSL_* settings win.
        for openssl, git_name in _CA_VARIABLES:
            if openssl in env:
                env.setdefault(git_name, env[openssl])
        env |= {
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(self.home / ".gitconfig"),
            "GIT_DIR": str(self.git_dir),
            "GIT_WORK_TREE": str(self.tree),
            "GIT_TERMINAL_PROMPT": "0",
            "GCM_INTERACTIVE": "never",
            "LC_ALL": "C",
            "LANG": "C",
            "GIT_SSH_COMMAND": ssh_command(config),
            "GIT_SSH_VARIANT": "ssh",
        }
        if credentials is not None:
            parts = urlsplit(url)
            env |= {
                "CODEDEPLOY_GIT_PROTOCOL": parts.scheme.lower(),
                "CODEDEPLOY_GIT_HOST": parts.netloc.rpartition("@")[2],
                "CODEDEPLOY_GIT_USERNAME": credentials.username,
                "CODEDEPLOY_GIT_PASSWORD": credentials.password,
            }
        return env


class _TimedOut(Exception):  # noqa: N818 - internal signal, turned into BundleError
    """A git command outlived the deadline; its process group was killed."""


@dataclass(frozen=True, slots=True)
class _Result:
    returncode: int
    stdout: str
    stderr: str


async def clone_commit(
    remote: Remote, commit_id: str, deployment: DeploymentDir, config: AgentConfig
) -> None:
    """Fetch `commit_id` of `remote` and place its tree (no `.git`) at `deployment.archive`.

    Raises BundleError naming the remote, the commit, git's own last words (credentials masked)
    and the fix; ArchiveError when the tree breaks a bundle rule. `<deployment>/git-checkout`
    is removed whatever happens.
    """
    clone = _Clone(remote, commit_id.lower(), deployment, config)
    try:
        await clone.run()
    finally:
        await asyncio.to_thread(shutil.rmtree, clone.sandbox.root, True)


class _Clone:
    """One checkout: the git commands in order, under one deadline."""

    def __init__(
        self, remote: Remote, commit: str, deployment: DeploymentDir, config: AgentConfig
    ) -> None:
        self.remote = remote
        self.commit = commit
        self.deployment = deployment
        self.config = config
        self.transport = url_transport(remote.url)
        self.sandbox = _Sandbox(deployment.path / CHECKOUT_DIR)
        self.deadline = asyncio.get_running_loop().time() + config.git.timeout_seconds
        web = self.transport in ("https", "http")
        self.proxy = proxy_for(remote.url, config, os.environ) if web else None
        self.secrets = [urlsplit(self.proxy).password or ""] if self.proxy else []
        self.log = _log.bind(remote=shown_url(remote.url), commit=self.commit)

    async def run(self) -> None:
        try:
            await asyncio.to_thread(self.sandbox.create, self.transport, self.proxy)
        except OSError as exc:
            raise BundleError(
                f"Cannot create the git checkout folder {self.sandbox.root}: {exc.strerror}. "
                "Check that the deployment root is writable and the disk is not full."
            ) from exc
        # A 64-character id is a SHA-256 repository's; the local repository must match it.
        object_format = "sha256" if len(self.commit) == 64 else "sha1"
        await self._git(
            "init", "--quiet", "--template=", f"--object-format={object_format}", step="git init"
        )
        await asyncio.to_thread(self.sandbox.add_remote, self.remote.url)
        self.log.info("git fetch started")
        target = await self._fetch()
        await self._git("checkout", "--quiet", "--detach", target, "--", step="git checkout")
        head = (await self._git("rev-parse", "HEAD", step="git rev-parse")).stdout.strip()
        if not head.startswith(self.commit):
            raise self._error(f"the checkout ended at {head}, not at the commit asked for", "")
        if await asyncio.to_thread(self._place):
            self.log.warning(
                "the revision has submodules (.gitmodules); they are not fetched: vendor them "
                "into the repository or fetch them in a hook"
            )
        self.log.info("git checkout placed", commit=head, archive=str(self.deployment.archive))

    def _place(self) -> bool:
        """Copy the work tree to the archive folder; True when it declares submodules.

        A copy rather than a rename: the tree gets the rules every bundle obeys (links stay
        inside the revision, size and member limits), whatever the repository holds.
        """
        copy_directory_bundle(
            self.sandbox.tree, self.deployment.archive, limits=self.config.archive
        )
        return (self.sandbox.tree / ".gitmodules").exists()

    async def _fetch(self) -> str:
        """Fetch the commit; return what to check out."""
        if len(self.commit) in (40, 64):
            result = await self._git(
                "fetch", "--depth", "1", "--no-tags", "origin", self.commit,
                step="git fetch", remote=True, check=False,
            )  # fmt: skip
            if result.returncode == 0:
                return "FETCH_HEAD"
            if not _REFUSED.search(result.stderr):
                raise self._failure("git fetch", result)
            self.log.info(
                "the server does not hand out this commit by id; fetching all branches and tags"
            )
        else:
            self.log.info("abbreviated commit id; fetching all branches and tags to find it")
        await self._git(
            "fetch", "--no-tags", "origin",
            "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*",
            step="git fetch", remote=True,
        )  # fmt: skip
        found = await self._git(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{self.commit}^{{commit}}",
            step="git rev-parse", check=False,
        )  # fmt: skip
        if found.returncode != 0:
            raise self._error(
                "no branch or tag of the remote contains that commit",
                "Check the commit id (an abbreviated id must be unambiguous) and that the "
                "commit has been pushed",
            )
        return found.stdout.strip()

    async def _git(
        self, *args: str, step: str, remote: bool = False, check: bool = True
    ) -> _Result:
        credentials = None
        if remote and self.remote.credentials is not None:
            credentials = await self.remote.credentials()
            self.secrets += credentials.secrets
        env = self.sandbox.environment(self.config, self.remote.url, credentials)
        argv = [self.config.git.executable, *args]
        try:
            result = await _run(argv, env, self.sandbox.root, self.deadline)
        except FileNotFoundError as exc:
            raise BundleError(
                f"The git program {self.config.git.executable!r} was not found. Install git "
                "(apt-get install git, dnf install git) or set git.executable in "
                f"{config_name(self.config)}."
            ) from exc
        except _TimedOut as exc:
            raise self._error(
                f"{step} did not finish within {self.config.git.timeout_seconds:g} seconds "
                "(git.timeout_seconds) and was stopped",
                "Check the network path to the remote, or raise git.timeout_seconds in "
                f"{config_name(self.config)} for a very large repository",
            ) from exc
        if check and result.returncode != 0:
            raise self._failure(step, result)
        return result

    def _failure(self, step: str, result: _Result) -> BundleError:
        said = result.stderr
        where = config_name(self.config)
        if _AUTH.search(said):
            return self._error("the remote refused the credentials", self.remote.auth_hint, said)
        if _HOST_KEY.search(said):
            return self._error(
                "the server's ssh host key is unknown or has changed",
                "Add the server's host key (checked out of band) to the agent user's "
                f"~/.ssh/known_hosts, or to a file named by git.ssh_known_hosts_file in {where}",
                said,
            )
        if _CERTIFICATE.search(said):
            return self._error(
                "the remote's TLS certificate was not accepted",
                "Check the host name in the URL and that a CA this host trusts signed the "
                "certificate: the system's CA certificates, or SSL_CERT_FILE / SSL_CERT_DIR in "
                "the agent's environment (git gets them as GIT_SSL_CAINFO / GIT_SSL_CAPATH "
                "unless those are set), and any TLS-inspecting proxy",
                said,
            )
        if _NETWORK.search(said):
            return self._error(
                "the remote cannot be reached",
                "Check the URL, DNS, the network and the proxy settings of this host (proxy_uri, "
                "HTTPS_PROXY, NO_PROXY, download.no_proxy)",
                said,
            )
        if _NOT_FOUND.search(said):
            return self._error(
                "the repository was not found",
                "Check the URL and that the credentials may read the repository",
                said,
            )
        return self._error(f"{step} failed with exit code {result.returncode}", "", said)

    def _error(self, what: str, fix: str, said: str = "") -> BundleError:
        message = f"Cannot fetch commit {self.commit} from {self.remote.description}: {what}."
        if said:
            lines = [line.strip() for line in said.replace("\r", "\n").splitlines()]
            tail = "; ".join(line for line in lines if line)[-600:]
            message = f"{message} git said: {tail.rstrip('.')}."
        if fix:
            message += f" {fix}."
        message = _mask(message, self.secrets)
        self.log.warning("git fetch failed", reason=_mask(what, self.secrets))
        return BundleError(message)


async def _run(argv: list[str], env: Mapping[str, str], cwd: Path, deadline: float) -> _Result:
    """Run one git command in its own process group; kill the whole group at the deadline."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout_at(deadline):
            stdout, stderr = await process.communicate()
            returncode = await process.wait()
    except TimeoutError:
        await _kill(process)
        raise _TimedOut from None
    except BaseException:
        await _kill(process)  # cancelled (the deployment is being stopped): leave nothing behind
        raise
    return _Result(returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))


async def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the process group (git, its remote helpers, ssh), then reap git."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await process.wait()
