"""Ed25519 keys and their files, with PyNaCl (libsodium) doing the cryptography.

The agent only needs to verify signatures; libsodium does that in a 1 MB library, where the
`cryptography` package would add about 8 MB of resident memory to a daemon that must stay small
(BENCHMARKS.md). The key files stay the standard ones: PEM (`BEGIN PUBLIC KEY`, an X.509
SubjectPublicKeyInfo; `BEGIN PRIVATE KEY`, unencrypted PKCS#8) as written by
`openssl genpkey -algorithm ed25519`, and OpenSSH (`ssh-ed25519 ...`, `BEGIN OPENSSH PRIVATE
KEY`) as written by `ssh-keygen -t ed25519`. For Ed25519 both DER forms are fixed-size
structures, so they are recognised by their fixed prefix rather than by a general ASN.1 parser.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from typing import Final

import nacl.exceptions
import nacl.signing

from codedeploy_agent.protocol.errors import ProtocolError

#: DER of SubjectPublicKeyInfo{AlgorithmIdentifier{1.3.101.112}, BIT STRING} minus the 32 bytes.
_SPKI_PREFIX: Final = bytes.fromhex("302a300506032b6570032100")
#: DER of OneAsymmetricKey v1{0, AlgorithmIdentifier{1.3.101.112}, OCTET STRING{OCTET STRING}}.
_PKCS8_PREFIX: Final = bytes.fromhex("302e020100300506032b657004220420")
_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)
_SSH_TYPE: Final = b"ssh-ed25519"
_OPENSSH_MAGIC: Final = b"openssh-key-v1\x00"


class KeyFormatError(ProtocolError):
    """Raised when bytes are not an Ed25519 key in a supported format; says which format."""


class InvalidSignatureError(ProtocolError):
    """Raised by `Ed25519PublicKey.verify` when the signature does not match."""


class Ed25519PublicKey:
    """A 32-byte Ed25519 public key."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise KeyFormatError("an Ed25519 public key is 32 bytes")
        self._key = nacl.signing.VerifyKey(raw)

    def raw(self) -> bytes:
        """The 32 key bytes."""
        return bytes(self._key)

    def verify(self, signature: bytes, data: bytes) -> None:
        """Raise InvalidSignatureError unless `signature` signs `data` with this key."""
        try:
            self._key.verify(data, signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            raise InvalidSignatureError("signature does not match") from None

    def pem(self) -> bytes:
        """The key as a `BEGIN PUBLIC KEY` PEM block."""
        return _pem("PUBLIC KEY", _SPKI_PREFIX + self.raw())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ed25519PublicKey) and self.raw() == other.raw()

    def __hash__(self) -> int:
        return hash(self.raw())


class Ed25519PrivateKey:
    """An Ed25519 private key (its 32-byte seed)."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise KeyFormatError("an Ed25519 private key seed is 32 bytes")
        self._key = nacl.signing.SigningKey(seed)

    @classmethod
    def generate(cls) -> Ed25519PrivateKey:
        """A new random key."""
        return cls(bytes(nacl.signing.SigningKey.generate()))

    def sign(self, data: bytes) -> bytes:
        """The 64-byte signature of `data`."""
        return self._key.sign(data).signature

    def public_key(self) -> Ed25519PublicKey:
        """The matching public key."""
        return Ed25519PublicKey(bytes(self._key.verify_key))

    def pem(self) -> bytes:
        """The key as an unencrypted PKCS#8 `BEGIN PRIVATE KEY` PEM block."""
        return _pem("PRIVATE KEY", _PKCS8_PREFIX + bytes(self._key))


def parse_public_key(data: bytes) -> Ed25519PublicKey:
    """A PEM or OpenSSH (`ssh-ed25519 AAAA...`) public key."""
    text = data.strip()
    if text.startswith(b"ssh-"):
        fields = text.split()
        if fields[0] != _SSH_TYPE or len(fields) < 2:
            raise KeyFormatError(
                f"an OpenSSH {fields[0].decode(errors='replace')} key, not Ed25519"
            )
        blob = _b64(fields[1])
        kind, rest = _ssh_string(blob)
        key, _ = _ssh_string(rest)
        if kind != _SSH_TYPE:
            raise KeyFormatError("the OpenSSH key blob is not ssh-ed25519")
        return Ed25519PublicKey(key)
    label, der = _unpem(text)
    if label != b"PUBLIC KEY":
        raise KeyFormatError(f"a {label.decode()} PEM block, not a PUBLIC KEY")
    if len(der) != len(_SPKI_PREFIX) + 32 or not der.startswith(_SPKI_PREFIX):
        raise KeyFormatError("the PUBLIC KEY is not an Ed25519 key")
    return Ed25519PublicKey(der[len(_SPKI_PREFIX) :])


def parse_private_key(data: bytes) -> Ed25519PrivateKey:
    """An unencrypted PKCS#8 PEM or OpenSSH private key."""
    label, der = _unpem(data.strip())
    if label == b"ENCRYPTED PRIVATE KEY":
        raise KeyFormatError("the private key is encrypted")
    if label == b"OPENSSH PRIVATE KEY":
        return _openssh_private(der)
    if label != b"PRIVATE KEY":
        raise KeyFormatError(f"a {label.decode()} PEM block, not a PRIVATE KEY")
    if len(der) != len(_PKCS8_PREFIX) + 32 or not der.startswith(_PKCS8_PREFIX):
        raise KeyFormatError("the PRIVATE KEY is not an Ed25519 key (or carries extra fields)")
    return Ed25519PrivateKey(der[len(_PKCS8_PREFIX) :])


def _openssh_private(blob: bytes) -> Ed25519PrivateKey:
    # PROTOCOL.key of OpenSSH: magic, cipher, kdf, kdf options, key count, public key, then the
    # private section: two check ints, key type, public key, 64 bytes (seed + public), comment.
    if not blob.startswith(_OPENSSH_MAGIC):
        raise KeyFormatError("not an openssh-key-v1 private key")
    rest = blob[len(_OPENSSH_MAGIC) :]
    cipher, rest = _ssh_string(rest)
    _kdf, rest = _ssh_string(rest)
    _options, rest = _ssh_string(rest)
    if cipher != b"none":
        raise KeyFormatError("the private key is encrypted")
    (count,), rest = struct.unpack(">I", rest[:4]), rest[4:]
    if count != 1:
        raise KeyFormatError("the OpenSSH file holds more than one key")
    _public, rest = _ssh_string(rest)
    private, _ = _ssh_string(rest)
    check1, check2 = struct.unpack(">II", private[:8])
    if check1 != check2:
        raise KeyFormatError("the private key is encrypted or damaged")
    kind, section = _ssh_string(private[8:])
    if kind != _SSH_TYPE:
        raise KeyFormatError(f"an OpenSSH {kind.decode(errors='replace')} key, not Ed25519")
    _pub, section = _ssh_string(section)
    secret, _ = _ssh_string(section)
    if len(secret) != 64:
        raise KeyFormatError("the OpenSSH Ed25519 key is damaged")
    return Ed25519PrivateKey(secret[:32])


def _ssh_string(blob: bytes) -> tuple[bytes, bytes]:
    if len(blob) < 4:
        raise KeyFormatError("the OpenSSH key is truncated")
    (length,) = struct.unpack(">I", blob[:4])
    if len(blob) < 4 + length:
        raise KeyFormatError("the OpenSSH key is truncated")
    return blob[4 : 4 + length], blob[4 + length :]


def _unpem(data: bytes) -> tuple[bytes, bytes]:
    match = _PEM.search(data)
    if match is None:
        raise KeyFormatError("no PEM block (-----BEGIN ...-----) found")
    return match.group(1), _b64(b"".join(match.group(2).split()))


def _b64(text: bytes) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("the key's base64 is damaged") from None


def _pem(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        b"\n".join([f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----".encode()])
        + b"\n"
    )
