"""A bundle's tests command as the server runs it: stopped with everything it started when it
takes too long, and nothing it left running outlives it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from conveyor.runtime.steps import run_tests_command


def gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for its reaper counts as ended)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_a_command_that_takes_too_long_is_stopped_with_what_it_started(tmp_path):
    pid_file = tmp_path / "pid"
    result = run_tests_command(
        f"sleep 300 >/dev/null 2>&1 & echo $! > {pid_file}; sleep 300",
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        timeout=1,
    )
    assert not result.passed and "took longer than 1 s and was stopped" in result.output
    assert gone(int(pid_file.read_text()))


def test_what_a_finished_command_left_running_is_stopped(tmp_path):
    pid_file = tmp_path / "pid"
    result = run_tests_command(
        f"sleep 300 >/dev/null 2>&1 & echo $! > {pid_file}; echo done",
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        timeout=30,
    )
    assert result.passed and "done" in result.output
    assert gone(int(pid_file.read_text()))


def test_the_command_runs_in_a_session_of_its_own(tmp_path):
    """Not the server's session, so not the server's terminal: nothing to push keystrokes
    into (TIOCSTI) when the server runs in one."""
    result = run_tests_command(
        "echo $$; cut -d' ' -f6 /proc/$$/stat",
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        timeout=30,
    )
    shell, session = (int(n) for n in result.output.split())
    assert session == shell != os.getsid(0)
