"""The report's vocabulary: a finding's status, the finding itself, and the closing summary."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

#: The service every fix refers to, and where its log is.
UNIT: Final = "codedeploy-agent.service"
JOURNAL: Final = f"journalctl -u {UNIT} -n 50"


class Status(StrEnum):
    """How a finding is shown; only FAIL makes the exit status non-zero."""

    OK = "ok"
    INFO = "info"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


_LABELS: Final = {
    Status.OK: "[ OK ]",
    Status.INFO: "[INFO]",
    Status.WARN: "[WARN]",
    Status.FAIL: "[FAIL]",
    Status.SKIP: "[SKIP]",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: which check, its outcome, what it found and how to fix it."""

    check: str
    status: Status
    message: str
    fix: str | None = None

    def format(self) -> str:
        """`[FAIL] broker: ...` and, when there is one, an indented `fix:` line."""
        line = f"{_LABELS[self.status]} {self.check}: {self.message}"
        return f"{line}\n       fix: {self.fix}" if self.fix else line


@dataclass(slots=True)
class Lines:
    """The findings of one check, collected in order (each method adds one and returns all)."""

    check: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, status: Status, message: str, fix: str | None = None) -> list[Finding]:
        self.findings.append(Finding(self.check, status, message, fix))
        return self.findings

    def ok(self, message: str) -> list[Finding]:
        return self.add(Status.OK, message)

    def info(self, message: str) -> list[Finding]:
        return self.add(Status.INFO, message)

    def warn(self, message: str, fix: str | None = None) -> list[Finding]:
        return self.add(Status.WARN, message, fix)

    def fail(self, message: str, fix: str | None = None) -> list[Finding]:
        return self.add(Status.FAIL, message, fix)


def summary(findings: Iterable[Finding]) -> str:
    """The closing line: `problems found: 1 failed, 2 warnings, 9 ok`."""
    counts = dict.fromkeys(Status, 0)
    for finding in findings:
        counts[finding.status] += 1
    failed, warned = counts[Status.FAIL], counts[Status.WARN]
    verdict = "problems found" if failed else "no problems found"
    plural = "" if warned == 1 else "s"
    return f"{verdict}: {failed} failed, {warned} warning{plural}, {counts[Status.OK]} ok"
