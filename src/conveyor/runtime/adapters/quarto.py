"""Quarto documents: rendered with the `quarto` executable when the server has one."""

import shutil
from collections.abc import Callable, Mapping

from conveyor.errors import RuntimeFailure
from conveyor.runtime.adapters.base import LaunchContext, RenderedAdapter, run_step


def _render(context: LaunchContext, env: Mapping[str, str], log: Callable[[str], None]) -> None:
    quarto = shutil.which("quarto", path=env.get("PATH"))
    if quarto is None:
        raise RuntimeFailure(
            "this server has no `quarto` executable, so Quarto documents cannot be rendered; "
            "install Quarto on the server (see quarto.org, Get Started) and put it on the PATH "
            "of `conveyor serve`, or publish the report as type `notebook`"
        )
    run_step(
        [quarto, "render", context.entrypoint, "--output-dir", str(context.output_dir)],
        cwd=context.app_dir,
        env=env,
        log=log,
        what=f"rendering {context.entrypoint}",
    )


ADAPTER = RenderedAdapter(_render)
