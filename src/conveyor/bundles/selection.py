"""Which files of an app directory go into its bundle: `.gitignore` files at every level,
the app's `exclude:` globs and defaults (.git, .venv, __pycache__, notebook checkpoints)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

from conveyor.errors import BundleError

#: Never bundled, whatever .gitignore says.
DEFAULT_EXCLUDES = (
    ".git/",
    ".hg/",
    ".svn/",
    ".venv/",
    "venv/",
    "__pycache__/",
    "*.pyc",
    ".ipynb_checkpoints/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".DS_Store",
    ".conveyor/",
    ".Rproj.user/",
)
LARGE_FILE_BYTES = 10 * 1024 * 1024
MB = 1024 * 1024


@dataclass(frozen=True)
class SelectedFile:
    path: str  # relative, with / separators
    source: Path  # absolute path to read from
    size: int
    executable: bool


def select_files(
    root: Path,
    exclude: tuple[str, ...] = (),
    *,
    max_file_mb: int = 100,
    max_total_mb: int = 500,
    max_files: int = 20_000,
    warn: Callable[[str], None] = lambda message: None,
) -> list[SelectedFile]:
    """The files to bundle, sorted by path. Symbolic links are followed when they stay inside
    ``root`` and refused when they leave it."""
    root = root.resolve()
    top = pathspec.GitIgnoreSpec.from_lines([*DEFAULT_EXCLUDES, *exclude])
    selected: list[SelectedFile] = []
    total = 0
    for relative, source in _walk(root, root, top, []):
        info = source.stat()
        if info.st_size > max_file_mb * MB:
            raise BundleError(
                f"{relative} is {info.st_size / MB:.1f} MB, over the {max_file_mb} MB limit per "
                f"file; add it to `exclude:` in conveyor.yml (data belongs in a data connection), "
                f"or raise `limits: file_mb:`"
            )
        if info.st_size > LARGE_FILE_BYTES:
            warn(f"{relative} is large ({info.st_size / MB:.1f} MB); is it meant to be bundled?")
        total += info.st_size
        selected.append(
            SelectedFile(relative, source, info.st_size, bool(info.st_mode & stat.S_IXUSR))
        )
        if len(selected) > max_files:
            raise BundleError(
                f"{root} has more than {max_files} files to bundle; exclude generated or data "
                f"directories with `exclude:` in conveyor.yml, or raise `limits: files:`"
            )
    if total > max_total_mb * MB:
        raise BundleError(
            f"the bundle would hold {total / MB:.1f} MB, over the {max_total_mb} MB limit; "
            f"exclude large files with `exclude:` in conveyor.yml, or raise `limits: total_mb:`"
        )
    return sorted(selected, key=lambda f: f.path)


def _walk(
    root: Path,
    directory: Path,
    top: pathspec.GitIgnoreSpec,
    ignores: list[tuple[str, pathspec.GitIgnoreSpec]],
) -> Iterator[tuple[str, Path]]:
    prefix = "" if directory == root else directory.relative_to(root).as_posix() + "/"
    gitignore = directory / ".gitignore"
    if gitignore.is_file():
        lines = gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
        ignores = [*ignores, (prefix, pathspec.GitIgnoreSpec.from_lines(lines))]
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        relative = prefix + entry.name
        is_dir = entry.is_dir(follow_symlinks=True)
        candidate = relative + "/" if is_dir else relative
        if top.match_file(candidate) or _ignored(candidate, ignores):
            continue
        path = Path(entry.path)
        if entry.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(root):
                raise BundleError(
                    f"{relative} is a link to {target}, outside the app directory; copy what "
                    f"it points to into the app, or exclude it"
                )
            if is_dir:
                raise BundleError(
                    f"{relative} is a link to a directory; bundles hold files, so replace it "
                    f"with the directory itself or exclude it"
                )
        if is_dir:
            yield from _walk(root, path, top, ignores)
        elif entry.is_file(follow_symlinks=True):
            yield relative, path
        else:
            raise BundleError(
                f"{relative} is not a regular file (a socket, FIFO or device); exclude it"
            )


def _ignored(candidate: str, ignores: list[tuple[str, pathspec.GitIgnoreSpec]]) -> bool:
    # A deeper .gitignore overrides a shallower one, as in git: the last one with an opinion wins.
    verdict = False
    for prefix, spec in ignores:
        if not candidate.startswith(prefix):
            continue
        result = spec.check_file(candidate[len(prefix) :])
        if result.include is not None:
            verdict = result.include
    return verdict
