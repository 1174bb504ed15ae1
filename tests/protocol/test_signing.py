"""Signatures: canonical JSON, sign/verify and each failure, key files."""

from __future__ import annotations

import base64
import copy
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey as CryptographyPrivateKey,
)

from codedeploy_agent.protocol.errors import (
    JobRejected,
    ProtocolError,
    RejectReason,
    SigningKeyError,
)
from codedeploy_agent.protocol.keys import Ed25519PrivateKey
from codedeploy_agent.protocol.signing import (
    canonical_json,
    generate_keypair,
    load_private_key,
    load_public_key,
    load_trusted_keys,
    sign_document,
    verify_document,
)


def refused(document: dict[str, Any], trusted: dict[str, Any]) -> str:
    """Verify `document`, expecting SignatureInvalid; return the message."""
    with pytest.raises(JobRejected) as info:
        verify_document(document, trusted)
    assert info.value.reason_code is RejectReason.SIGNATURE_INVALID
    return str(info.value)


# --- canonical JSON -----------------------------------------------------------------------------


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    """Keys sort by code point at every level; no spaces between tokens."""
    doc = {"b": 1, "a": {"z": [3, {"y": True, "x": None}], "A": "s"}, "B": False}
    assert canonical_json(doc) == b'{"B":false,"a":{"A":"s","z":[3,{"x":null,"y":true}]},"b":1}'


def test_canonical_json_is_independent_of_insertion_order() -> None:
    """Two dicts with the same content in another order give the same bytes."""
    first = {"one": 1, "two": {"a": "x", "b": "y"}}
    second = {"two": {"b": "y", "a": "x"}, "one": 1}
    assert canonical_json(first) == canonical_json(second)


def test_canonical_json_writes_unicode_raw_and_escapes_controls() -> None:
    """Non-ASCII is raw UTF-8; quotes, backslashes and control characters are escaped."""
    doc = {"é": 'Grüße "日本" \\ \n\t\x01\u2028😀'}
    assert canonical_json(doc) == ('{"é":"Grüße \\"日本\\" \\\\ \\n\\t\\u0001\u2028😀"}'.encode())


def test_canonical_json_refuses_floats() -> None:
    """Floats are refused with their path, since their text varies between libraries."""
    with pytest.raises(ProtocolError) as info:
        canonical_json({"Revision": {"Download": {"Size": 1.5}}})
    assert str(info.value) == (
        "$.Revision.Download.Size: floats are not allowed in signed documents (1.5)"
    )


def test_canonical_json_refuses_unsafe_integers() -> None:
    """Integers beyond 2**53 - 1 are refused; the limit itself is allowed."""
    assert canonical_json({"n": 2**53 - 1}) == b'{"n":9007199254740991}'
    with pytest.raises(ProtocolError, match=r"\$.n: integer 9007199254740992 is outside"):
        canonical_json({"n": 2**53})


def test_canonical_json_refuses_lone_surrogates_and_other_types() -> None:
    """Strings that are not UTF-8 and non-JSON values are refused."""
    with pytest.raises(ProtocolError, match=r"\$.s: string has an unpaired surrogate"):
        canonical_json({"s": "\ud800"})
    with pytest.raises(ProtocolError, match=r"\$.s: bytes is not a JSON value"):
        canonical_json({"s": b"x"})
    with pytest.raises(ProtocolError, match="object key 1 is not a string"):
        canonical_json({"a": {1: "x"}})


def test_canonical_json_survives_deep_nesting() -> None:
    """A deeply nested float is found without a RecursionError."""
    value: Any = 1.0
    for _ in range(5000):
        value = [value]
    with pytest.raises(ProtocolError, match="floats are not allowed"):
        canonical_json({"deep": value})


# --- sign and verify ----------------------------------------------------------------------------


def test_sign_then_verify(document: dict[str, Any], private_key: Ed25519PrivateKey) -> None:
    """A signed document verifies with the matching public key."""
    signed = sign_document(document, private_key, "cp-1")
    assert set(signed["Signature"]) == {"Algorithm", "KeyId", "Value"}
    assert signed["Signature"]["Algorithm"] == "Ed25519"
    assert signed["Signature"]["KeyId"] == "cp-1"
    assert len(base64.b64decode(signed["Signature"]["Value"], validate=True)) == 64
    verify_document(signed, {"cp-1": private_key.public_key()})
    assert "Signature" not in document


def test_signature_covers_the_canonical_json_without_signature(
    document: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    """The signature is Ed25519 over canonical_json(document without Signature)."""
    signed = sign_document(document, private_key, "cp-1")
    raw = base64.b64decode(signed["Signature"]["Value"])
    private_key.public_key().verify(raw, canonical_json(document))


def test_key_order_and_whitespace_do_not_matter(
    document: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    """The signature still verifies after the JSON is re-serialised in another key order."""
    signed = sign_document(document, private_key, "cp-1")
    reordered = dict(reversed(list(copy.deepcopy(signed).items())))
    verify_document(reordered, {"cp-1": private_key.public_key()})


def test_resigning_replaces_the_old_signature(
    document: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    """Signing a signed document replaces its Signature instead of signing it too."""
    other = Ed25519PrivateKey.generate()
    twice = sign_document(sign_document(document, other, "old"), private_key, "cp-1")
    assert twice["Signature"]["KeyId"] == "cp-1"
    verify_document(twice, {"cp-1": private_key.public_key()})


def test_no_trusted_keys_means_no_check(document: dict[str, Any]) -> None:
    """With no keys configured, unsigned documents pass."""
    verify_document(document, {})


def test_unsigned_document_is_refused_when_keys_are_trusted(
    document: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    """A missing Signature is SignatureInvalid once keys are configured."""
    assert refused(
        document, {"cp-1": private_key.public_key(), "cp-0": private_key.public_key()}
    ) == (
        "The job document is not signed, but this agent accepts only documents signed by one "
        "of its trusted keys (cp-0, cp-1); configure the control plane's signing key"
    )


def test_unknown_key_id_is_refused(
    document: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    """A key id the agent does not trust is refused, naming it and the trusted ones."""
    signed = sign_document(document, private_key, "rogue")
    assert refused(signed, {"cp-1": private_key.public_key()}) == (
        "The job document is signed with key id 'rogue', which this agent does not trust "
        "(trusted: cp-1); add its public key to security.trusted_keys"
    )


def test_wrong_algorithm_is_refused(
    document: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    """Only Ed25519 is verified."""
    signed = sign_document(document, private_key, "cp-1")
    signed["Signature"]["Algorithm"] = "RS256"
    assert refused(signed, {"cp-1": private_key.public_key()}) == (
        "Signature Algorithm is 'RS256'; this agent verifies only 'Ed25519'"
    )


@pytest.mark.parametrize("value", ["not base64!", "YWJj", "", 42, "QUJD" * 30])
def test_bad_base64_is_refused(
    document: dict[str, Any], private_key: Ed25519PrivateKey, value: object
) -> None:
    """A Value that is not standard base64 of 64 bytes is refused."""
    signed = sign_document(document, private_key, "cp-1")
    signed["Signature"]["Value"] = value
    assert refused(signed, {"cp-1": private_key.public_key()}) == (
        "Signature Value must be the standard base64 of 64 bytes"
    )


def test_malformed_signature_block_is_refused(
    document: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    """A Signature that is not an object is refused."""
    document["Signature"] = "abc"
    assert refused(document, {"cp-1": private_key.public_key()}) == (
        "Signature must be an object with Algorithm, KeyId and Value"
    )


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("DeploymentId",), "d-OTHER"),
        (("ExpiresAt",), "2099-01-01T00:00:00Z"),
        (("Revision", "S3Revision", "Key"), "evil.zip"),
        (("Environment", "DB_PASSWORD", "SsmParameter"), "/other"),
    ],
)
def test_any_change_breaks_the_signature(
    document: dict[str, Any],
    private_key: Ed25519PrivateKey,
    path: tuple[str, ...],
    value: str,
) -> None:
    """Changing the deployment id, expiry, revision or secrets invalidates the signature."""
    signed = sign_document(document, private_key, "cp-1")
    target = signed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert refused(signed, {"cp-1": private_key.public_key()}) == (
        "The job document's signature does not match its content for key id 'cp-1': it was "
        "changed after signing, or signed with another key"
    )


def test_added_key_breaks_the_signature(
    document: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    """Adding a key, even one the agent ignores, invalidates the signature."""
    signed = sign_document(document, private_key, "cp-1")
    signed["Extra"] = True
    assert "does not match its content" in refused(signed, {"cp-1": private_key.public_key()})


def test_other_key_with_same_id_is_refused(
    document: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    """A signature by another key under a trusted key id does not verify."""
    signed = sign_document(document, Ed25519PrivateKey.generate(), "cp-1")
    assert "does not match its content" in refused(signed, {"cp-1": private_key.public_key()})


def test_float_in_signed_document_is_refused(
    document: dict[str, Any], private_key: Ed25519PrivateKey
) -> None:
    """A document with a float cannot be canonicalised and so is refused."""
    signed = sign_document(document, private_key, "cp-1")
    signed["Revision"]["Download"]["Size"] = 123.0
    assert refused(signed, {"cp-1": private_key.public_key()}) == (
        "The job document cannot be verified: $.Revision.Download.Size: floats are not allowed "
        "in signed documents (123.0)"
    )


def test_signing_a_float_fails_on_the_server(private_key: Ed25519PrivateKey) -> None:
    """The control plane cannot sign a document with a float."""
    with pytest.raises(ProtocolError, match="floats are not allowed"):
        sign_document({"x": 0.5}, private_key, "cp-1")


def test_sign_requires_a_key_id(private_key: Ed25519PrivateKey) -> None:
    """An empty key id is refused."""
    with pytest.raises(ProtocolError, match="key_id must be a non-empty string"):
        sign_document({}, private_key, "")


# --- key files ----------------------------------------------------------------------------------


def test_generate_keypair_writes_pem_with_private_mode_0600(tmp_path: Path) -> None:
    """The private key is PKCS#8 PEM with mode 0600, the public key SPKI PEM with 0644."""
    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    key = generate_keypair(private, public)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----\n")
    assert load_public_key(public).raw() == key.raw()
    assert load_private_key(private).public_key().raw() == key.raw()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pem", "k.pub"]


def test_generate_keypair_refuses_to_overwrite(key_files: tuple[Path, Path]) -> None:
    """An existing key file is never replaced."""
    private, public = key_files
    before = private.read_bytes()
    with pytest.raises(SigningKeyError) as info:
        generate_keypair(private, public.with_name("new.pub"))
    assert str(info.value) == f"{private} already exists; remove it first to make a new key"
    assert private.read_bytes() == before
    assert not public.with_name("new.pub").exists()


def test_generate_keypair_into_missing_directory(tmp_path: Path) -> None:
    """A directory that does not exist gives SigningKeyError naming the file."""
    with pytest.raises(SigningKeyError, match=rf"^Cannot write {tmp_path}/no/k.pem: "):
        generate_keypair(tmp_path / "no" / "k.pem", tmp_path / "k.pub")


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_load_keys_made_by_ssh_keygen(tmp_path: Path) -> None:
    """OpenSSH-format ed25519 keys from ssh-keygen load and sign/verify."""
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops@host", "-f", str(key)],
        check=True,
        capture_output=True,
    )
    signed = sign_document({"a": 1}, load_private_key(key), "ssh")
    verify_document(signed, {"ssh": load_public_key(tmp_path / "id_ed25519.pub")})


def test_load_openssh_format_keys(tmp_path: Path) -> None:
    """OpenSSH-format keys written by the cryptography package load as the same key pair."""
    private = CryptographyPrivateKey.generate()
    (tmp_path / "k").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "k.pub").write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b" comment\n"
    )
    raw = private.public_key().public_bytes_raw()
    assert load_public_key(tmp_path / "k.pub").raw() == raw
    assert load_private_key(tmp_path / "k").public_key().raw() == raw


def test_missing_key_file_names_the_file(tmp_path: Path) -> None:
    """A missing file gives SigningKeyError with its path."""
    path = tmp_path / "absent.pem"
    with pytest.raises(SigningKeyError) as info:
        load_public_key(path)
    assert str(info.value) == f"Cannot read public key file {path}: No such file or directory"


def test_garbage_key_file_is_refused(tmp_path: Path) -> None:
    """A file that is not a key gives SigningKeyError naming the file and the fix."""
    path = tmp_path / "junk.pem"
    path.write_text("hello\n")
    with pytest.raises(SigningKeyError, match=rf"^{path} is not a PEM or OpenSSH public key"):
        load_public_key(path)
    with pytest.raises(SigningKeyError, match=rf"^{path} is not a PEM or OpenSSH private key"):
        load_private_key(path)


def test_non_ed25519_keys_are_refused(tmp_path: Path) -> None:
    """An EC key is refused: only Ed25519 signs job documents."""
    ec = generate_private_key(SECP256R1())
    public = tmp_path / "ec.pub"
    public.write_bytes(
        ec.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    private = tmp_path / "ec.pem"
    private.write_bytes(
        ec.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(SigningKeyError) as info:
        load_public_key(public)
    assert str(info.value) == (
        f"{public} is not an Ed25519 public key; job documents are signed with Ed25519 keys only"
    )
    with pytest.raises(SigningKeyError, match="is not an Ed25519 private key"):
        load_private_key(private)


def test_encrypted_private_key_is_refused(tmp_path: Path) -> None:
    """An encrypted private key is refused with the fix."""
    path = tmp_path / "enc.pem"
    path.write_bytes(
        CryptographyPrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    with pytest.raises(SigningKeyError) as info:
        load_private_key(path)
    assert str(info.value) == (
        f"{path} is encrypted; the signing key must be stored unencrypted (mode 0600)"
    )


def test_load_trusted_keys(key_files: tuple[Path, Path], private_key: Ed25519PrivateKey) -> None:
    """Config entries (id, path) load into a key-id -> public-key mapping that verifies."""
    trusted = load_trusted_keys([("cp-1", key_files[1])])
    verify_document(sign_document({"a": "b"}, private_key, "cp-1"), trusted)
