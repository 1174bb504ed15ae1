"""The agent log: the real agent's text format, JSON lines, context, files, reopen, failures."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import structlog
from structlog.contextvars import bound_contextvars
from structlog.testing import capture_logs

from codedeploy_agent.log import (
    configure_logging,
    get_logger,
    merge_context,
    reopen_log_files,
)

PREFIX = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
AGENT = rf"\[codedeploy-agent\({os.getpid()}\)\]: "


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _text_log(tmp_path: Path, *, verbose: bool = False) -> Path:
    log_file = tmp_path / "log" / "codedeploy-agent.log"
    configure_logging(log_file=log_file, fmt="text", verbose=verbose, stderr=False)
    return log_file


def test_text_line_has_the_real_agents_format(tmp_path: Path) -> None:
    """A text line is `date LEVEL [program(pid)]: component: event`, then context, then kwargs."""
    log_file = _text_log(tmp_path)
    with bound_contextvars(deployment_id="d-ABCDEF123", event="Install"):
        get_logger("codedeploy_agent.executor").info("Archives to retain is: 5", job_id="j-1")
    [line] = _lines(log_file)
    assert re.fullmatch(
        PREFIX + "INFO  " + AGENT + r"codedeploy_agent\.executor: Archives to retain is: 5 "
        r"deployment_id=d-ABCDEF123 lifecycle_event=Install job_id=j-1",
        line,
    ), line


def test_levels_are_padded_like_the_logging_gem(tmp_path: Path) -> None:
    """Levels print as DEBUG, INFO␠, WARN␠, ERROR and FATAL (`%-5l`)."""
    log_file = _text_log(tmp_path, verbose=True)
    log = get_logger("c")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("f")
    levels = [line[20:26] for line in _lines(log_file)]
    assert levels == ["DEBUG ", "INFO  ", "WARN  ", "ERROR ", "FATAL "]


def test_debug_is_dropped_unless_verbose(tmp_path: Path) -> None:
    """Without verbose the level is info: debug lines are not written."""
    log_file = _text_log(tmp_path)
    get_logger("c").debug("hidden")
    get_logger("c").info("shown")
    assert [line.rsplit(": ", 1)[1] for line in _lines(log_file)] == ["shown"]


def test_values_with_spaces_are_quoted(tmp_path: Path) -> None:
    """key=value pairs stay parseable: values with spaces or quotes are JSON strings."""
    log_file = _text_log(tmp_path)
    get_logger("c").info("e", path="/a b", ok=True, n=3, empty="")
    assert _lines(log_file)[0].endswith(' e path="/a b" ok=true n=3 empty=""')


def test_exception_traceback_follows_the_line(tmp_path: Path) -> None:
    """log.exception appends the traceback under the line."""
    log_file = _text_log(tmp_path)
    try:
        int("boom")
    except ValueError:
        get_logger("c").exception("Error during perform")
    lines = _lines(log_file)
    assert re.fullmatch(PREFIX + "ERROR " + AGENT + "c: Error during perform", lines[0])
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: invalid literal for int() with base 10: 'boom'"


def test_file_and_directory_are_created_with_mode_0644(tmp_path: Path) -> None:
    """The log file is created (with its directories) readable by all, whatever the umask."""
    old = os.umask(0o077)
    try:
        log_file = _text_log(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o644


def test_json_lines(tmp_path: Path) -> None:
    """JSON format: one object per line with RFC 3339 UTC timestamp, level, component, context."""
    log_file = tmp_path / "agent.log"
    configure_logging(log_file=log_file, fmt="json", verbose=False, stderr=False)
    with bound_contextvars(deployment_id="d-1"):
        get_logger("codedeploy_agent.daemon").warning("Clock skew", seconds=42.5)
    record = json.loads(log_file.read_text(encoding="utf-8"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record.pop("timestamp"))
    assert record == {
        "level": "warning",
        "component": "codedeploy_agent.daemon",
        "event": "Clock skew",
        "deployment_id": "d-1",
        "seconds": 42.5,
    }


def test_stderr_gets_the_same_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """With stderr on (journald), lines are written there in the same format."""
    configure_logging(log_file=None, fmt="text", verbose=False)
    get_logger("c").info("to the journal")
    assert re.fullmatch(PREFIX + "INFO  " + AGENT + "c: to the journal\n", capsys.readouterr().err)


def test_stdlib_logging_joins_at_warning(tmp_path: Path) -> None:
    """Third-party libraries' stdlib records appear at WARNING and above, named by logger."""
    log_file = _text_log(tmp_path)
    logging.getLogger("aiomqtt").info("chatter")
    logging.getLogger("aiomqtt").warning("Reconnecting in %s s", 2)
    [line] = _lines(log_file)
    assert re.fullmatch(PREFIX + "WARN  " + AGENT + "aiomqtt: Reconnecting in 2 s", line)


def test_reopen_after_logrotate_moved_the_file(tmp_path: Path) -> None:
    """After a rename, lines go to the old file until reopen, then to a new file."""
    log_file = _text_log(tmp_path)
    log = get_logger("c")
    log.info("one")
    rotated = log_file.with_name("codedeploy-agent.log.1")
    log_file.rename(rotated)
    log.info("two")
    reopen_log_files()
    log.info("three")
    assert [line.rsplit(": ", 1)[1] for line in _lines(rotated)] == ["one", "two"]
    assert [line.rsplit(": ", 1)[1] for line in _lines(log_file)] == ["three"]


def test_full_disk_falls_back_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """Writes that fail (ENOSPC on /dev/full) never raise: the lines go to stderr, said once."""
    configure_logging(log_file=Path("/dev/full"), fmt="text", verbose=False, stderr=False)
    get_logger("c").info("first")
    get_logger("c").info("second")
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        "Cannot write the log file /dev/full: No space left on device; the log goes to stderr "
        "until the file can be written again"
    )
    assert [line.rsplit(": ", 1)[1] for line in err[1:]] == ["first", "second"]


def test_unopenable_log_file_falls_back_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log file that cannot be created is reported, and lines go to stderr instead."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("", encoding="utf-8")
    configure_logging(log_file=blocker / "agent.log", fmt="text", verbose=False, stderr=False)
    get_logger("c").info("still logged")
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"Cannot write the log file {blocker / 'agent.log'}: ")
    assert err[1].endswith(
        f"codedeploy_agent.log: Cannot open the log file; logging to stderr only "
        f"log_file={blocker / 'agent.log'}"
    )
    assert err[2].endswith("c: still logged")


def test_reconfiguring_replaces_the_output(tmp_path: Path) -> None:
    """A second configure_logging sends lines to the new file only, with one stdlib bridge."""
    first = tmp_path / "first.log"
    second = tmp_path / "second.log"
    configure_logging(log_file=first, fmt="text", verbose=False, stderr=False)
    configure_logging(log_file=second, fmt="text", verbose=False, stderr=False)
    logging.getLogger("lib").error("once")
    assert first.read_text(encoding="utf-8") == ""
    assert len(_lines(second)) == 1


def test_threads_never_interleave_lines(tmp_path: Path) -> None:
    """Lines logged from many threads at once arrive whole."""
    log_file = _text_log(tmp_path)
    log = get_logger("c")

    def work(n: int) -> None:
        for i in range(200):
            log.info("line", thread=n, i=i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = _lines(log_file)
    assert len(lines) == 1600
    assert all(
        re.fullmatch(PREFIX + "INFO  " + AGENT + r"c: line thread=\d i=\d+", ln) for ln in lines
    )


def test_capture_logs_sees_module_level_loggers() -> None:
    """Loggers made before configuration (module level) are seen by structlog's capture_logs."""
    log = get_logger("codedeploy_agent.hooks")
    configure_logging(log_file=None, fmt="text", verbose=False, stderr=False)
    with capture_logs() as logs:
        log.warning("Script timed out", script="a.sh")
    assert logs == [
        {
            "component": "codedeploy_agent.hooks",
            "event": "Script timed out",
            "script": "a.sh",
            "log_level": "warning",
        }
    ]


def test_merge_context_renames_event_and_puts_context_first() -> None:
    """Bound `event` becomes `lifecycle_event`; context keys come first, in a fixed order."""
    with bound_contextvars(zone="z", job_id="j-1", event="BeforeInstall", deployment_id="d-1"):
        merged = merge_context(structlog.get_logger(), "info", {"event": "msg", "x": 1})
    assert list(merged.items()) == [
        ("deployment_id", "d-1"),
        ("lifecycle_event", "BeforeInstall"),
        ("job_id", "j-1"),
        ("zone", "z"),
        ("event", "msg"),
        ("x", 1),
    ]


def test_the_daemon_does_not_load_rich_but_a_later_import_still_works() -> None:
    """Importing the daemon leaves rich (10 MB) unloaded, and does not stop a program that
    wants it (the `codedeploy` CLI) from importing it afterwards."""
    code = (
        "import sys, codedeploy_agent.daemon.service\n"
        "print('rich' in sys.modules)\n"
        "import rich.console\n"
        "print('rich' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["False", "True"]
