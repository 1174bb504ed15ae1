"""Keeping the resident daemon small: glibc malloc settings and returning freed memory.

The real agent's memory grows by hundreds of megabytes during a deployment and never shrinks
(a known pain point). Python frees objects, but glibc keeps the freed pages in per-thread arenas;
limiting the arenas and calling `malloc_trim` after each deployment hands them back to the OS.
Both are no-ops where glibc is not the C library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Final

from codedeploy_agent.log import get_logger

_log = get_logger("codedeploy_agent.host.memory")

#: mallopt parameter: the maximum number of malloc arenas (glibc's M_ARENA_MAX).
_M_ARENA_MAX: Final = -8
#: The agent's few threads (hook output pump, file work) share two arenas instead of 8 x cores.
ARENAS: Final = 2


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _libc()


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (call early, before threads start); True when applied."""
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(_M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """Return freed heap pages to the OS (`malloc_trim(0)`); blocking, call it in a thread."""
    if _LIBC is None:
        return False
    released = bool(_LIBC.malloc_trim(0))
    _log.debug("malloc_trim", released=released)
    return released
