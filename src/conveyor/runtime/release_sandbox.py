"""A release's place in the sandbox (``conveyor.runtime.sandbox``): what its processes see and
may write, and as whom they run.

Its workers see its files, its runtime and the Python that runtime comes from, its rendered
output and its runs directory read-only; they may write its environment's output location and
the SQLite files its data connections open read-write (``release_confinement``, which refuses
a writable SQLite file in a directory holding the server's home). A render, build or run step
is confined as the workers are and may also write its output, and a static site's build the
app's files too (``step_confine``). A runtime's own Python, run while the runtime is built or
checked, is shown that runtime and the Python it comes from, read-only, and runs as the builder
user (``confine_build``). Where apps run as users of their own (a server running as root), what
a release may write is given to its app's user first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from conveyor.domain.apps import BUILDER_UID, AppSpec
from conveyor.runtime.adapters.base import Confine
from conveyor.runtime.app_data import output_directory, refuse_shared_directory, sqlite_files
from conveyor.runtime.interface import ReleasePlan
from conveyor.runtime.sandbox import Confinement, Sandboxing, confined, interpreter_prefix


def confine_build(sandboxing: Sandboxing, argv: list[str], runtime: Path) -> list[str]:
    """A runtime's own Python, run while it is built or checked: sandboxed, read-only, as
    the builder user (its packages are the lock's code, not the server's)."""
    prefix = interpreter_prefix(runtime)
    confinement = Confinement(
        read_only=(runtime, *((prefix,) if prefix is not None else ())),
        uid=BUILDER_UID if sandboxing.own_users else None,
        gid=BUILDER_UID if sandboxing.own_users else None,
    )
    return confined(sandboxing, confinement, argv, runtime)


def step_confine(
    sandboxing: Sandboxing, serving: Confinement, output: Path, uid: int | None, app_dir: Path
) -> Confine:
    """How a render, build or run step is sandboxed: as the app's processes are, and it
    may also write ``output`` (and the app's files, for a build)."""

    def confine(
        argv: list[str], *, writable_app: bool = False, visible: Sequence[Path] = ()
    ) -> list[str]:
        if uid is not None:
            _own(output, uid)
            if writable_app:
                _own(app_dir, uid, recursive=True)
        step = replace(
            serving,
            read_only=(*serving.read_only, *visible),
            writable=(*serving.writable, output, *((app_dir,) if writable_app else ())),
        )
        return confined(sandboxing, step, argv, app_dir)

    return confine


def release_confinement(
    plan: ReleasePlan,
    app_dir: Path,
    runtime: Path,
    rendered: Path,
    uid: int | None,
    spec: AppSpec,
    runs_dir: Path | None,
    home: Path,
) -> Confinement:
    """What the release's processes see: its files, its runtime and the Python it comes
    from, its rendered output (read-only); its output location and read-write SQLite files
    (writable); read-only SQLite files."""
    output = output_directory(plan.environment, plan.app, home)
    output.mkdir(parents=True, exist_ok=True)
    if uid is not None:
        _own(output, uid)
    prefix = interpreter_prefix(runtime)
    sqlite = sqlite_files(plan.environment)
    for path, writable in sqlite:
        if writable:
            refuse_shared_directory(plan.environment.name, plan.app, path, home)
    return Confinement(
        read_only=(
            app_dir,
            runtime,
            *((prefix,) if prefix is not None else ()),
            rendered,
            *((runs_dir,) if runs_dir is not None else ()),
            *(path for path, writable in sqlite if not writable),
        ),
        writable=(output, *(path for path, writable in sqlite if writable)),
        uid=uid,
        gid=uid,
        limits=spec.resources,
    )


def _own(path: Path, uid: int, *, recursive: bool = False) -> None:
    """Give ``path`` to the app's user (a root server's sandbox); links are not followed."""
    os.lchown(path, uid, uid)
    if recursive:
        for directory, subdirectories, files in os.walk(path):
            for name in [*subdirectories, *files]:
                os.lchown(os.path.join(directory, name), uid, uid)
