"""The log writers and the diagnostics tail (reference §4.5, §4.9, §4.10)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from codedeploy_agent.hooks.pump import MAX_ENTRY_BYTES, _Splitter
from codedeploy_agent.hooks.scriptlog import DeploymentLogs, EventLog, ScriptTail

SCRIPTS_LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
DEPLOYMENTS_LINE = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] "


def ruby_script_log(entries: list[str]) -> list[str]:
    """The real agent's ScriptLog#append_to_log loop, transcribed step by step (for comparison)."""
    log: list[str] = []
    for entry in entries:
        log.append(entry)
        index = len(log)
        remaining = 2048
        while index > 0 and remaining - len(log[index - 1]) > 0:
            index -= 1
            remaining -= len(log[index - 1])  # Ruby's log[-1] is the last entry, as Python's
        if index > 0:
            log = log[index:]
    return log


def tail_of(entries: list[str]) -> list[str]:
    tail = ScriptTail()
    tail.extend(entries)
    text = tail.text()
    return text.splitlines(keepends=True)


def test_tail_keeps_twenty_100_char_lines() -> None:
    """100-character entries: the newest 20 are kept (2,000 < 2,048), as in the real agent."""
    entries = [f"{i:099d}\n" for i in range(50)]
    assert tail_of(entries) == entries[-20:]
    assert ruby_script_log(entries) == entries[-20:]


def test_tail_keeps_two_1000_char_lines() -> None:
    """1,000-character entries: the newest 2 are kept."""
    entries = [f"{i:0999d}\n" for i in range(5)]
    assert tail_of(entries) == entries[-2:]
    assert ruby_script_log(entries) == entries[-2:]


def test_tail_drops_an_entry_of_2048_chars_or_more_with_everything_before() -> None:
    """A 3,000-character entry empties the tail; so does one of exactly 2,048."""
    assert tail_of(["short\n", "x" * 2999 + "\n"]) == []
    assert ruby_script_log(["short\n", "x" * 2999 + "\n"]) == []
    assert tail_of(["a\n", "y" * 2047 + "\n"]) == []
    assert tail_of(["y" * 2046 + "\n"]) == ["y" * 2046 + "\n"]


def test_tail_total_stays_below_the_budget_where_ruby_overshoots() -> None:
    """Mixed lengths: we keep the total below 2,048; Ruby's off-by-one loop keeps far more."""
    entries = [f"{i:09d}\n" for i in range(300)] + ["z" * 1999 + "\n"]
    ours = tail_of(entries)
    assert ours[-1] == "z" * 1999 + "\n"
    assert sum(map(len, ours)) == 2000 + 4 * 10
    assert len(ours) == 5
    assert sum(map(len, ruby_script_log(entries))) > 3000


def test_scripts_log_and_deployments_log_lines(tmp_path: Path) -> None:
    """scripts.log gets `local-time message`, the deployments log `[time.ms] [id]message`."""
    scripts, deployments = tmp_path / "a" / "scripts.log", tmp_path / "b" / "deploy.log"
    before = time.strftime("%Y-%m-%d %H:%M:%S")
    with DeploymentLogs(scripts, deployments, "d-ABC") as logs:
        logs.write("LifecycleEvent - ApplicationStart")
        logs.write("[stdout]  spaced out \r")
    after = time.strftime("%Y-%m-%d %H:%M:%S")
    lines = scripts.read_bytes().decode().split("\n")
    assert lines[2] == ""
    assert re.fullmatch(SCRIPTS_LINE + "LifecycleEvent - ApplicationStart", lines[0])
    assert re.fullmatch(SCRIPTS_LINE + r"\[stdout\]  spaced out \r", lines[1])
    assert before <= lines[0][:19] <= after
    text = deployments.read_text()
    assert re.fullmatch(
        DEPLOYMENTS_LINE
        + r"\[d-ABC\]LifecycleEvent - ApplicationStart\n"
        + DEPLOYMENTS_LINE
        + r"\[d-ABC\]\[stdout\]  spaced out\n",
        text,
    )
    assert before <= text[1:20] <= after


def test_scripts_log_is_appended_to_and_created_only_on_first_write(tmp_path: Path) -> None:
    """No write, no file; an existing scripts.log is appended to, never truncated."""
    scripts = tmp_path / "logs" / "scripts.log"
    with DeploymentLogs(scripts, None, "d-1"):
        pass
    assert not scripts.exists()
    scripts.parent.mkdir()
    scripts.write_text("earlier\n")
    with DeploymentLogs(scripts, None, "d-1") as logs:
        logs.write("LifecycleEvent - X\n")
    lines = scripts.read_text().splitlines()
    assert lines[0] == "earlier"
    assert re.fullmatch(SCRIPTS_LINE + "LifecycleEvent - X", lines[1])
    assert len(lines) == 2


def test_deployments_log_rotates_like_ruby_logger(tmp_path: Path) -> None:
    """Past the size limit the file shifts to `.0`; 8 files in all, the oldest being `.6`."""
    path = tmp_path / "deploy.log"
    with DeploymentLogs(tmp_path / "s.log", path, "d-1", deployments_log_max_bytes=500) as logs:
        for i in range(200):
            logs.write(f"[stdout]line {i:04d} " + "x" * 40)
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("deploy.log"))
    assert names == ["deploy.log", *(f"deploy.log.{i}" for i in range(7))]
    newest = path.read_text().splitlines()
    assert newest[-1].endswith("line 0199 " + "x" * 40)
    older = (tmp_path / "deploy.log.0").read_text().splitlines()
    assert older[-1].endswith(f"line {int(newest[0].split()[3]) - 1:04d} " + "x" * 40)
    assert all(len((tmp_path / n).read_bytes()) <= 500 + 100 for n in names)


def test_two_writers_share_the_deployments_log(tmp_path: Path) -> None:
    """Two deployments' logs writing at once: every line arrives whole, once."""
    path = tmp_path / "deploy.log"
    first = DeploymentLogs(tmp_path / "1.log", path, "d-1")
    second = DeploymentLogs(tmp_path / "2.log", path, "d-2")

    def spam(logs: DeploymentLogs) -> None:
        for i in range(500):
            logs.write(f"[stdout]{i}")

    threads = [threading.Thread(target=spam, args=(logs,)) for logs in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first.close()
    second.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 1000
    for deployment in ("d-1", "d-2"):
        mine = [line.split("]", 2)[2] for line in lines if f"] [{deployment}]" in line]
        assert mine == [f"[stdout]{i}" for i in range(500)]


def test_secrets_are_redacted_from_both_logs_and_the_tail(tmp_path: Path) -> None:
    """Each secret value (and each line of a multi-line one) becomes `***` everywhere."""
    scripts, deployments = tmp_path / "s.log", tmp_path / "d.log"
    with DeploymentLogs(scripts, deployments, "d-1", secrets=["hunter2", "", "k1\nk2"]) as logs:
        event = EventLog(logs)
        event.write_lines(["[stdout]password=hunter2;again hunter2", "[stderr]k2 and k1"])
    for text in (scripts.read_text(), deployments.read_text(), event.text()):
        assert "hunter2" not in text
        assert "k1" not in text
        assert "k2" not in text
        assert "[stdout]password=***;again ***" in text
        assert "[stderr]*** and ***" in text
    assert event.text() == "[stdout]password=***;again ***\n[stderr]*** and ***\n"


def test_splitter_bounds_long_lines_at_utf8_boundaries() -> None:
    """A line without newline is cut every 64 KiB, never inside a multi-byte character."""
    splitter = _Splitter("[stdout]")
    data = b"a" * (MAX_ENTRY_BYTES - 1) + "é".encode() + b"b" * 10 + b"\nend"
    entries = splitter.feed(data[:70000]) + splitter.feed(data[70000:]) + splitter.finish()
    assert entries == [
        "[stdout]" + "a" * (MAX_ENTRY_BYTES - 1),
        "[stdout]é" + "b" * 10,
        "[stdout]end",
    ]
    splitter = _Splitter("[stderr]")
    entries = splitter.feed(b"y" * (3 * MAX_ENTRY_BYTES + 5)) + splitter.finish()
    assert [len(e) for e in entries] == [8 + MAX_ENTRY_BYTES] * 3 + [8 + 5]
    assert _Splitter("[stdout]").feed(b"bad \xff byte\n\n") == [
        "[stdout]bad \ufffd byte",
        "[stdout]",
    ]
