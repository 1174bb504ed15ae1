"""A self-hosted, CodeDeploy-compatible deployment agent."""

import sys

__version__ = "0.1.0"

# structlog's console module imports rich (and with it pygments) whenever they happen to be
# installed: about 10 MB of resident memory in a daemon that renders its own lines. Whichever
# agent module imports structlog first, this package is imported before it: structlog is loaded
# here with rich marked absent (unless something imported it already). The marks are removed
# afterwards, so a program that does use rich (the `codedeploy` CLI) can still import it.
_BLOCKED = [name for name in ("rich", "better_exceptions") if name not in sys.modules]
for _optional in _BLOCKED:
    sys.modules[_optional] = None  # type: ignore[assignment]
try:
    import structlog  # noqa: F401
finally:
    for _optional in _BLOCKED:
        if sys.modules.get(_optional, 0) is None:
            del sys.modules[_optional]
