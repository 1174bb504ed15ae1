"""`codedeploy instances [--tag KEY=VALUE ...] [--registration-status S]`: on-premises instances.

ListOnPremisesInstances with tag filters (`KEY=VALUE`: KEY_AND_VALUE, `KEY`: KEY_ONLY, `=VALUE`:
VALUE_ONLY; an instance matches any of them, as the API defines), then
BatchGetOnPremisesInstances for the details and tags.
"""

from __future__ import annotations

from collections.abc import Sequence

from codedeploy_server.opcli.client import CodeDeployApi
from codedeploy_server.opcli.errors import UsageError
from codedeploy_server.opcli.queries import list_instances
from codedeploy_server.opcli.render import Output, instances_table

REGISTRATION_STATUSES = ("Registered", "Deregistered")


def parse_tag_filter(text: str) -> dict[str, str]:
    """`KEY=VALUE`, `KEY` or `=VALUE` as a TagFilter."""
    key, sep, value = text.partition("=")
    if not key and not value:
        raise UsageError(f"Invalid --tag {text!r}: give KEY=VALUE, KEY or =VALUE.")
    if not sep:
        return {"Key": key, "Type": "KEY_ONLY"}
    if not key:
        return {"Value": value, "Type": "VALUE_ONLY"}
    return {"Key": key, "Value": value, "Type": "KEY_AND_VALUE"}


def run_instances(
    api: CodeDeployApi,
    output: Output,
    *,
    tags: Sequence[str] = (),
    registration_status: str | None = None,
) -> int:
    """Show the matching instances with their tags, sorted by name."""
    found = list_instances(
        api,
        tag_filters=[parse_tag_filter(t) for t in tags],
        registration_status=registration_status,
    )
    if not found:
        output.note("No on-premises instances found.")
        return 0
    output.show(instances_table(found, tty=output.tty))
    return 0
