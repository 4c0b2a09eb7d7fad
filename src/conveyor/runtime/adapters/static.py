"""Static sites: a directory of files, optionally produced by the app's `build` command."""

import shlex
import shutil
from collections.abc import Callable, Mapping

from conveyor.errors import RuntimeFailure
from conveyor.runtime.adapters.base import LaunchContext, RenderedAdapter
from conveyor.runtime.steps import run_step

#: Files of the app's root that are not part of the site.
_NOT_SERVED = ("conveyor.yml", "conveyor.lock", "config.yml", "requirements*.txt", "*.py", ".*")


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
    if not (source / "index.html").is_file():
        raise RuntimeFailure(
            f"static site directory {context.entrypoint!r} has no index.html"
            + (" after the build" if build else "")
            + "; the page at /<app>/ is its index.html"
        )
    if source == context.app_dir.resolve():
        # The bundle's root is the site: serve a copy without Conveyor's own files.
        context.output_dir.rmdir()
        shutil.copytree(source, context.output_dir, ignore=shutil.ignore_patterns(*_NOT_SERVED))
    else:
        context.output_dir.rmdir()
        context.output_dir.symlink_to(source, target_is_directory=True)


ADAPTER = RenderedAdapter(_produce)
