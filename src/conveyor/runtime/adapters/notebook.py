"""Jupyter notebooks: executed in the runtime with the environment's configuration and
rendered to HTML once per release, then served."""

from collections.abc import Callable, Mapping
from pathlib import Path

from conveyor.runtime.adapters.base import LaunchContext, RenderedAdapter
from conveyor.runtime.steps import run_step


def _render(context: LaunchContext, env: Mapping[str, str], log: Callable[[str], None]) -> None:
    run_step(
        context.confine(
            [
                context.python,
                "-m",
                "nbconvert",
                "--to",
                "html",
                "--execute",
                f"--ExecutePreprocessor.timeout={int(context.timeout)}",
                "--output-dir",
                str(context.output_dir),
                "--output",
                "index",
                context.entrypoint,
            ]
        ),
        cwd=context.app_dir,
        env=env,
        log=log,
        what=f"executing {Path(context.entrypoint).name}",
        timeout=context.timeout,
    )


ADAPTER = RenderedAdapter(_render)
