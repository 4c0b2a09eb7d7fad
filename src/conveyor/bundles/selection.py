"""Which files of an app directory go into its bundle.

Inside a git work tree, git decides what is ignored: the files it lists with ``git ls-files
--cached --others --exclude-standard`` -- tracked files, and untracked ones that no ignore rule
matches: `.gitignore` files at every level of the repository (including those above the app
directory), `.git/info/exclude` and `core.excludesFile`. Outside a work tree, or without git,
the directory is walked and the `.gitignore` files inside it are honoured at every level.
Either way the app's `exclude:` globs and the defaults (.git, .venv, __pycache__, notebook
checkpoints, `.env` files, ...) apply on top."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

from conveyor.errors import BundleError

#: Never bundled, whatever .gitignore says. `.env` files hold secrets, which belong in an
#: environment's secrets, not in a bundle that every environment runs.
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
    ".env",
    ".env.*",
)
LARGE_FILE_BYTES = 10 * 1024 * 1024
MB = 1024 * 1024
_GIT_TIMEOUT = 120


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
    listed = git_listed_files(root)
    candidates = _walk(root, root, top, []) if listed is None else _from_git(root, listed, top)
    selected: list[SelectedFile] = []
    total = 0
    for relative, source in candidates:
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


def git_listed_files(directory: Path) -> list[str] | None:
    """The files under ``directory`` that git does not ignore, relative to it with / separators
    (a directory git does not look into, such as a nested repository, ends with /); None when
    git is not installed or ``directory`` is not in a git work tree."""
    try:
        result = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=directory,
            capture_output=True,
            timeout=_GIT_TIMEOUT,
            check=False,
            env={**os.environ, "LC_ALL": "C", "LANGUAGE": ""},  # messages in English
        )
    except FileNotFoundError:
        return None  # no git: the directory is walked instead
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BundleError(
            f"could not ask git which files of {directory} it ignores: {exc}; the bundle would "
            f"otherwise hold files the repository ignores"
        ) from None
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        if "not a git repository" in message:
            return None
        raise BundleError(
            f"git could not list the files of {directory}, so the repository's ignore rules "
            f"cannot be honoured: {message}"
        )
    return [os.fsdecode(name) for name in result.stdout.split(b"\0") if name]


def _from_git(
    root: Path, listed: list[str], top: pathspec.GitIgnoreSpec
) -> Iterator[tuple[str, Path]]:
    for relative in sorted({name.rstrip("/") for name in listed}):
        if _excluded(top, relative):
            continue
        path = root / relative
        if not os.path.lexists(path):
            continue  # tracked, but deleted from the work tree
        is_dir = path.is_dir()
        _check_link(root, relative, path, is_dir)
        if is_dir:
            # A nested repository or a submodule: git lists no files inside, so walk it.
            yield from _walk(root, path, top, [])
        elif path.is_file():
            yield relative, path
        else:
            raise BundleError(
                f"{relative} is not a regular file (a socket, FIFO or device); exclude it"
            )


def _excluded(top: pathspec.GitIgnoreSpec, relative: str) -> bool:
    """Whether ``relative`` or a directory above it matches the defaults or `exclude:`, as the
    walk prunes an excluded directory."""
    parts = relative.split("/")
    directories = ("/".join(parts[:depth]) + "/" for depth in range(1, len(parts)))
    return any(top.match_file(directory) for directory in directories) or top.match_file(relative)


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
        _check_link(root, relative, path, is_dir)
        if is_dir:
            yield from _walk(root, path, top, ignores)
        elif entry.is_file(follow_symlinks=True):
            yield relative, path
        else:
            raise BundleError(
                f"{relative} is not a regular file (a socket, FIFO or device); exclude it"
            )


def _check_link(root: Path, relative: str, path: Path, is_dir: bool) -> None:
    """A link is bundled as the file it points to, which must be inside the app."""
    if not path.is_symlink():
        return
    target = path.resolve()
    if not target.exists():
        raise BundleError(
            f"{relative} is a link to {target}, which does not exist; fix or remove the link, "
            f"or exclude it"
        )
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
