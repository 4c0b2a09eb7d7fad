"""The server's periodic threads (scheduler, sleeper, daily gc): work runs again and again, a
failing pass does not end the loop, and stop() ends the thread."""

from __future__ import annotations

import logging
import threading

from conveyor.periodic import Periodic


def test_work_runs_again_after_a_failing_pass_until_stopped(caplog):
    passes: list[int] = []
    third = threading.Event()

    def work() -> None:
        passes.append(len(passes))
        if len(passes) == 1:
            raise RuntimeError("the database went away for a moment")
        if len(passes) >= 3:
            third.set()

    periodic = Periodic("conveyor-test", work, lambda: 0.01, logging.getLogger("test"))
    with caplog.at_level(logging.ERROR):
        periodic.start()
        try:
            assert third.wait(60)
        finally:
            periodic.stop(timeout=60)
    assert not periodic.running
    assert "conveyor-test: a pass failed" in caplog.text
