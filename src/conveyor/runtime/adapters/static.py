"""Static sites: a directory of files, optionally produced by the app's `build` command."""

import os
import shlex
import shutil
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from conveyor.errors import RuntimeFailure
from conveyor.runtime.adapters.base import LaunchContext, RenderedAdapter
from conveyor.runtime.steps import run_step

#: Files of the app's root that are not part of the site.
_NOT_SERVED = ("conveyor.yml", "conveyor.lock", "config.yml", "requirements*.txt", "*.py", ".*")


def _produce(context: LaunchContext, env: Mapping[str, str], log: Callable[[str], None]) -> None:
    build = context.build
    if build:
        run_step(
            context.confine(shlex.split(build), writable_app=True),
            cwd=context.app_dir,
            env=env,
            log=log,
            what="the build",
        )
    source = _site_directory(context)
    if source is None:
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
    # A copy, not a link: what is served does not change when the release's own files are
    # restored from its bundle (which removes what a build added to them). Links are copied as
    # links, never followed here: they resolve inside the sandbox that serves them.
    context.output_dir.rmdir()
    not_served = shutil.ignore_patterns(*_NOT_SERVED)
    at_root = source == context.app_dir.resolve()

    def ignore(directory: str, names: list[str]) -> set[str]:
        # The bundle's root is the site: serve it without Conveyor's own files (those at the
        # root only: a site's own examples/demo.py is served).
        return not_served(directory, names) if at_root and directory == str(source) else set()

    shutil.copytree(
        source, context.output_dir, symlinks=True, ignore=ignore, copy_function=_copy_readable
    )


def _site_directory(context: LaunchContext) -> Path | None:
    """The directory the site is served from, inside the app directory; None where there is
    none (missing, outside, not a directory, or a loop of links a build made)."""
    try:
        source = (context.app_dir / context.entrypoint).resolve()
    except (OSError, RuntimeError):
        return None
    inside = source.is_relative_to(context.app_dir.resolve())
    return source if inside and source.is_dir() else None


def _copy_readable(source: str, target: str) -> None:
    """Copy a file of the site so that the app's own user, which serves it, can read it: the
    copy is the server's, and the build made the original with the server's umask (0600 under
    `conveyor serve`). The copy is 0644, or 0755 where the original is executable."""
    shutil.copy2(source, target)
    executable = os.stat(source).st_mode & stat.S_IXUSR
    os.chmod(target, 0o755 if executable else 0o644)


ADAPTER = RenderedAdapter(_produce)
