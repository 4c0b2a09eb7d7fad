"""Jobs: a batch command (e.g. `python refresh.py`) with no HTTP port. It runs only when asked
to (`conveyor run`, or its schedule), in the release's runtime and sandbox, with
$CONVEYOR_RUN_OUTPUT naming a fresh directory for this run's files; the latest successful
run's files are served at `/<app>/`. No shell runs the command."""

import shlex
from collections.abc import Callable, Mapping

from conveyor.runtime.adapters.base import LaunchContext, RenderedAdapter
from conveyor.runtime.steps import run_step


def _run(context: LaunchContext, env: Mapping[str, str], log: Callable[[str], None]) -> None:
    run_step(
        context.confine(shlex.split(context.entrypoint)),
        cwd=context.app_dir,
        env={**env, "CONVEYOR_RUN_OUTPUT": str(context.output_dir)},
        log=log,
        what=f"running `{context.entrypoint}`",
        timeout=context.timeout,
    )


ADAPTER = RenderedAdapter(_run, at_release=False)
