"""Running one step of a build or a render (uv, nbconvert, quarto, a static site's build
command): its output goes line by line into the operation's log as it is printed, it is stopped
(its whole process group) when it takes too long, and a failure carries its last lines."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import RuntimeFailure

_TAIL = 30
_OUTPUT_LIMIT = 64 * 1024


def run_step(
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Callable[[str], None],
    what: str,
    timeout: float = 900,
    quiet: Callable[[str], bool] = lambda line: False,
) -> list[str]:
    """Run ``argv``; every output line goes to ``log`` unless ``quiet(line)``. Returns all
    lines; RuntimeFailure naming ``what`` when it cannot start, fails or times out."""
    lines: list[str] = []
    tail: deque[str] = deque(maxlen=_TAIL)
    timed_out = threading.Event()
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
        )
    except OSError as exc:
        raise RuntimeFailure(f"{what} could not start: {exc}") from None

    def stop() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    watchdog = threading.Timer(timeout, stop)
    watchdog.start()
    with process:  # closes the pipe and waits, however this ends
        try:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.rstrip("\r\n")
                lines.append(line)
                tail.append(line)
                if not quiet(line):
                    log(line)
            code = process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                stop()
    if timed_out.is_set():
        raise RuntimeFailure(f"{what} took longer than {timeout:.0f} s and was stopped")
    if code != 0:
        raise RuntimeFailure(
            f"{what} failed (exit code {code}):\n  " + "\n  ".join(tail or ["(no output)"])
        )
    return lines


@dataclass(frozen=True)
class CommandResult:
    passed: bool
    output: str  # stdout then stderr, the last 64 KiB; or why it was stopped


def run_tests_command(
    command: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    confine: Callable[[list[str]], list[str]] = lambda argv: argv,
) -> CommandResult:
    """A bundle's `checks.tests` command, run by /bin/sh with exactly ``env`` (in the
    release's sandbox, through ``confine``); its output is captured (the server's release
    checks and `conveyor check` both run tests this way)."""
    # Its own session: no controlling terminal (so no keystrokes pushed into the server's
    # terminal), and one process group to stop, sandbox and all, when it takes too long.
    process = subprocess.Popen(
        confine(["/bin/sh", "-c", command]),
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        # A process that left the group may still hold the pipes: wait a little, not forever.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=5)
        return CommandResult(False, f"{command} took longer than {timeout:.0f} s and was stopped")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # what it left running in its group
    output = (stdout + stderr)[-_OUTPUT_LIMIT:]
    return CommandResult(process.returncode == 0, output)
