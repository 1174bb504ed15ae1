"""Credentials kept in files named by the agent config (tokens, app passwords).

They are read when a download needs them, never at import or config load, so that a rotated
token is picked up by the next deployment without a restart. Call from a thread (file I/O).
"""

from __future__ import annotations

from pathlib import Path

from codedeploy_agent.errors import BundleError


def read_secret_file(path: Path, key: str, config_file: Path | None = None) -> str:
    """The content of `path` with one trailing newline removed.

    `key` is the config key that names the file (`github.token_file`); it and the file appear in
    the BundleError raised when the file is missing, unreadable or empty. The secret itself
    never appears in a message.
    """
    where = f" in {config_file}" if config_file is not None else ""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BundleError(
            f"Cannot read {key} {path} ({exc.strerror or exc}). Create the file with the "
            f"credential in it, readable by the agent, or change {key}{where}."
        ) from None
    except UnicodeDecodeError:
        raise BundleError(
            f"{key} {path} is not UTF-8 text. Write the credential as plain text, on one line."
        ) from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text.strip():
        raise BundleError(f"{key} {path} is empty. Write the credential in it, on one line.")
    if "\n" in text or "\r" in text:
        # A header value with a line break would be refused by http.client (or worse, split
        # the request); say what is wrong instead.
        raise BundleError(
            f"{key} {path} holds more than one line. Write only the credential, on one line."
        )
    return text
