"""Static sites: a directory of files, optionally produced by the app's `build` command."""

import shlex
from collections.abc import Callable, Mapping

from conveyor.errors import RuntimeFailure
from conveyor.runtime.adapters.base import LaunchContext, RenderedAdapter, run_step


def _produce(context: LaunchContext, env: Mapping[str, str], log: Callable[[str], None]) -> None:
    build = context.build
    if build:
        run_step(shlex.split(build), cwd=context.app_dir, env=env, log=log, what="the build")
    source = (context.app_dir / context.entrypoint).resolve()
    if not source.is_relative_to(context.app_dir.resolve()) or not source.is_dir():
        raise RuntimeFailure(
            f"static site directory {context.entrypoint!r} does not exist in the bundle"
            + (" after the build" if build else "")
            + "; set `entrypoint:` in conveyor.yml to the directory with index.html"
        )
    context.output_dir.rmdir()
    context.output_dir.symlink_to(source, target_is_directory=True)


ADAPTER = RenderedAdapter(_produce)
