"""`nextToken` paging for the List operations.

A token is opaque to clients: base64url of `{"l": <listing>, "o": <offset>}`. The listing tag
(operation plus its filters) makes a token from one listing invalid for another, which AWS
reports as `InvalidNextTokenException`. Offsets are over the listing's stable order (names,
creation times), so a page boundary moves only when items are created or deleted meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from typing import Final, TypeVar

from codedeploy_server.api.errors import InvalidNextTokenException

T = TypeVar("T")

#: Items per page (AWS's List operations return up to 100).
PAGE_SIZE: Final = 100


def paginate(
    items: Sequence[T], token: str | None, *, listing: str, page_size: int = PAGE_SIZE
) -> tuple[list[T], str | None]:
    """One page of `items` from `token` on, and the token for the next page (None at the end)."""
    tag = hashlib.sha256(listing.encode()).hexdigest()[:16]
    offset = 0 if token is None else _offset(token, tag)
    page = list(items[offset : offset + page_size])
    end = offset + len(page)
    return page, (_token(tag, end) if end < len(items) else None)


def _token(tag: str, offset: int) -> str:
    raw = json.dumps({"l": tag, "o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _offset(token: str, tag: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = json.loads(raw)
    except (binascii.Error, ValueError):
        decoded = None
    if (
        not isinstance(decoded, dict)
        or decoded.get("l") != tag
        or not isinstance(decoded.get("o"), int)
        or isinstance(decoded.get("o"), bool)
        or decoded["o"] < 0
    ):
        raise InvalidNextTokenException(
            "The next token was specified in an invalid format. Pass the nextToken the "
            "previous call of the same listing (same filters) returned."
        )
    offset: int = decoded["o"]
    return offset
