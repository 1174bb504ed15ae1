"""Ed25519 signatures over job documents, and the key files they use.

**Canonical JSON** (what is signed): the document without its `Signature` key, encoded exactly as
Python's `json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` and then
UTF-8. Object keys are sorted by Unicode code point; strings are written raw except `"`, `\\` and
the control characters U+0000-U+001F, which use `\\"`, `\\\\`, `\\b \\f \\n \\r \\t` or
lowercase `\\u00xx`; no whitespace between tokens. Only objects (string keys), arrays, strings,
integers within +/-(2**53 - 1), booleans and null are allowed: **floats are refused** (their text
differs between JSON libraries), and so are strings with unpaired surrogates (not UTF-8). With
those rules the bytes equal RFC 8785 (JCS) output except for key order among non-BMP characters,
so a signer in another language can reproduce them.

**What is bound**: the signature covers the whole document: DeploymentId, the revision and its
digest, LifecycleEvents, Environment, IssuedAt and ExpiresAt, and keys this version does not
know. A signed document cannot be altered, only replayed as is. Replays are bounded by
`ExpiresAt` (`jobdoc.check_expiry`) and by the Jobs job id: the agent never runs a job id that
already reached a terminal state on the host, and the control plane gives every deployment a new
job id.

`Signature` is `{"Algorithm": "Ed25519", "KeyId": <id>, "Value": <standard base64, padded>}`;
the agent trusts a set of key ids, each with one public key (config `security.trusted_keys`).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, NoReturn, Protocol

from codedeploy_agent.protocol.errors import (
    JobRejected,
    ProtocolError,
    RejectReason,
    SigningKeyError,
)
from codedeploy_agent.protocol.keys import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
    InvalidSignatureError,
    KeyFormatError,
    parse_private_key,
    parse_public_key,
)

ALGORITHM: Final = "Ed25519"
SIGNATURE_KEY: Final = "Signature"
MAX_SAFE_INTEGER: Final = 2**53 - 1
_SIGNATURE_BYTES: Final = 64


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """The canonical UTF-8 JSON of `document` (module docstring); ProtocolError if not allowed."""
    _check_canonical(document)
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def _check_canonical(document: object) -> None:
    # Iterative, so a deeply nested document gives our error rather than a RecursionError.
    stack: list[tuple[object, str]] = [(document, "$")]
    while stack:
        value, path = stack.pop()
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, int):
            if abs(value) > MAX_SAFE_INTEGER:
                raise ProtocolError(f"{path}: integer {value} is outside +/-(2**53 - 1)")
        elif isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ProtocolError(f"{path}: object key {key!r} is not a string")
                _check_text(key, path)
                stack.append((item, f"{path}.{key}"))
        elif isinstance(value, list | tuple):
            stack.extend((item, f"{path}[{index}]") for index, item in enumerate(value))
        elif isinstance(value, float):
            raise ProtocolError(f"{path}: floats are not allowed in signed documents ({value!r})")
        else:
            raise ProtocolError(f"{path}: {type(value).__name__} is not a JSON value")


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(f"{path}: string has an unpaired surrogate (not UTF-8)") from None


def _without_signature(document: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != SIGNATURE_KEY}


class Signer(Protocol):
    """Anything that signs bytes with Ed25519 (our key, or a `cryptography` key in tests)."""

    def sign(self, data: bytes) -> bytes:
        """The 64-byte signature of `data`."""


def sign_document(document: Mapping[str, Any], private_key: Signer, key_id: str) -> dict[str, Any]:
    """A copy of `document` with a `Signature` over its canonical JSON (any old one replaced)."""
    if not key_id or not isinstance(key_id, str):
        raise ProtocolError("key_id must be a non-empty string")
    unsigned = _without_signature(document)
    value = private_key.sign(canonical_json(unsigned))
    unsigned[SIGNATURE_KEY] = {
        "Algorithm": ALGORITHM,
        "KeyId": key_id,
        "Value": base64.b64encode(value).decode("ascii"),
    }
    return unsigned


def verify_document(document: Mapping[str, Any], trusted: Mapping[str, Ed25519PublicKey]) -> None:
    """Check `document`'s signature against the trusted keys; raise JobRejected(SignatureInvalid).

    With no trusted keys configured nothing is checked (signatures are then optional), which
    the daemon announces at startup.
    """
    if not trusted:
        return
    signature = document.get(SIGNATURE_KEY)
    if signature is None:
        _refuse(
            "The job document is not signed, but this agent accepts only documents signed by "
            f"one of its trusted keys ({', '.join(sorted(trusted))}); configure the control "
            "plane's signing key"
        )
    if not isinstance(signature, dict):
        _refuse("Signature must be an object with Algorithm, KeyId and Value")
    algorithm, key_id, value = (signature.get(k) for k in ("Algorithm", "KeyId", "Value"))
    if algorithm != ALGORITHM:
        _refuse(f"Signature Algorithm is {algorithm!r}; this agent verifies only {ALGORITHM!r}")
    if not isinstance(key_id, str) or key_id not in trusted:
        _refuse(
            f"The job document is signed with key id {key_id!r}, which this agent does not "
            f"trust (trusted: {', '.join(sorted(trusted))}); add its public key to "
            "security.trusted_keys"
        )
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _SIGNATURE_BYTES:
        _refuse(f"Signature Value must be the standard base64 of {_SIGNATURE_BYTES} bytes")
    try:
        payload = canonical_json(_without_signature(document))
    except ProtocolError as err:
        _refuse(f"The job document cannot be verified: {err}")
    try:
        trusted[key_id].verify(raw, payload)
    except InvalidSignatureError:
        _refuse(
            f"The job document's signature does not match its content for key id {key_id!r}: "
            "it was changed after signing, or signed with another key"
        )


def _refuse(message: str) -> NoReturn:
    raise JobRejected(RejectReason.SIGNATURE_INVALID, message)


# --- key files ------------------------------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise SigningKeyError(f"Cannot read {what} {path}: {err.strerror or err}") from None


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM (`BEGIN PUBLIC KEY`) or OpenSSH (`ssh-ed25519`) file."""
    path = Path(path)
    data = _read(path, "public key file")
    try:
        return parse_public_key(data)
    except KeyFormatError as err:
        if "not Ed25519" in str(err) or "not an Ed25519" in str(err):
            raise SigningKeyError(
                f"{path} is not an Ed25519 public key; job documents are signed with Ed25519 "
                "keys only"
            ) from None
        raise SigningKeyError(
            f"{path} is not a PEM or OpenSSH public key ({err}); create one with "
            "`openssl pkey -in private.pem -pubout` or `ssh-keygen -t ed25519`"
        ) from None


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key from a PEM (PKCS#8) or OpenSSH private key file."""
    path = Path(path)
    data = _read(path, "private key file")
    try:
        return parse_private_key(data)
    except KeyFormatError as err:
        if "encrypted" in str(err):
            raise SigningKeyError(
                f"{path} is encrypted; the signing key must be stored unencrypted (mode 0600)"
            ) from None
        if "not Ed25519" in str(err) or "not an Ed25519" in str(err):
            raise SigningKeyError(
                f"{path} is not an Ed25519 private key; only Ed25519 is supported"
            ) from None
        raise SigningKeyError(
            f"{path} is not a PEM or OpenSSH private key ({err}); create one with "
            "`codedeploy-server keygen` or `openssl genpkey -algorithm ed25519`"
        ) from None


def load_trusted_keys(entries: Iterable[tuple[str, Path]]) -> dict[str, Ed25519PublicKey]:
    """Key id -> public key for config `security.trusted_keys` entries."""
    return {key_id: load_public_key(path) for key_id, path in entries}


def generate_keypair(private_path: Path | str, public_path: Path | str) -> Ed25519PublicKey:
    """Create a new key pair: private key PEM (PKCS#8, mode 0600), public key PEM (0644).

    Refuses to overwrite an existing file: a replaced signing key would silently make every
    agent reject the control plane's jobs.
    """
    private_path, public_path = Path(private_path), Path(public_path)
    for path in (private_path, public_path):
        if path.exists():
            raise SigningKeyError(f"{path} already exists; remove it first to make a new key")
    key = Ed25519PrivateKey.generate()
    _write_atomically(private_path, key.pem(), 0o600)
    _write_atomically(public_path, key.public_key().pem(), 0o644)
    return key.public_key()


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    try:
        # mkstemp creates the file 0600, so the private key is never readable by others.
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            Path(temp).chmod(mode)
            Path(temp).replace(path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as err:
        raise SigningKeyError(f"Cannot write {path}: {err.strerror or err}") from None
