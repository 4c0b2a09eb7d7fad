"""Quarto documents: rendered with the `quarto` executable when the server has one."""

import os
import shutil
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from conveyor.errors import RuntimeFailure
from conveyor.runtime.adapters.base import LaunchContext, RenderedAdapter
from conveyor.runtime.steps import run_step


def _render(context: LaunchContext, env: Mapping[str, str], log: Callable[[str], None]) -> None:
    # The app's PATH first (a runtime may carry one), then the server's own.
    quarto = shutil.which("quarto", path=env.get("PATH")) or shutil.which("quarto")
    if quarto is None:
        raise RuntimeFailure(
            "this server has no `quarto` executable, so Quarto documents cannot be rendered; "
            "install Quarto on the server (see quarto.org, Get Started) and put it on the PATH "
            "of `conveyor serve`, or publish the report as type `notebook`"
        )
    installation = Path(quarto).resolve().parents[1]  # .../quarto/bin/quarto
    run_step(
        context.confine(
            [quarto, "render", context.entrypoint, "--output-dir", str(context.output_dir)],
            visible=() if installation.is_relative_to("/usr") else (installation,),
        ),
        cwd=context.app_dir,
        env=env,
        log=log,
        what=f"rendering {context.entrypoint}",
        timeout=context.timeout,
    )
    index = context.output_dir / "index.html"
    pages = sorted(context.output_dir.glob("*.html"))
    if not index.exists() and len(pages) == 1:
        # One document: it is the page at /<app>/ (a project's own index.html is kept).
        _index_from(pages[0], index)


def _index_from(page: Path, index: Path) -> None:
    """Copy the render's one page to index.html, readable by the app's user that serves it
    (this copy is the server's, made under its umask). The render ran as the app: a page it
    left as a link (or anything but a regular file) is not followed here, where it could reach
    the server's own files; index.html links to it instead, resolved in the app's sandbox."""
    try:
        descriptor = os.open(page, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        index.symlink_to(page.name)
        return
    with os.fdopen(descriptor, "rb") as source:
        if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
            index.symlink_to(page.name)
            return
        with open(index, "xb") as target:
            shutil.copyfileobj(source, target)
    os.chmod(index, 0o644)


ADAPTER = RenderedAdapter(_render)
