"""Which files `conveyor lint` reads: Python files and notebooks under a directory, leaving out
virtual environments, caches, version control, Conveyor's own `.conveyor/`, hidden directories
and, unless asked, tests (which legitimately name local addresses and scratch paths)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

#: Directories that hold no part of the app's own code.
SKIPPED_DIRECTORIES = frozenset(
    {".venv", "venv", "__pycache__", ".git", ".conveyor", "node_modules", "site-packages"}
)
#: Directories of tests, and the file names pytest collects (or configures itself with).
TEST_DIRECTORIES = frozenset({"tests", "test"})
SUFFIXES = (".py", ".ipynb")


@dataclass(frozen=True)
class SourceFile:
    path: Path  # to open
    relative: str  # to report: relative to the directory linted, forward slashes

    @property
    def is_notebook(self) -> bool:
        return self.path.suffix == ".ipynb"


def is_test_file(name: str) -> bool:
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


def source_files(
    root: Path, *, include_tests: bool = False, errors: list[tuple[str, str]] | None = None
) -> list[SourceFile]:
    """The files to lint under ``root``, sorted; ``root`` itself when it is a file (whatever
    its name: naming a file asks for it). Directories that cannot be listed are appended to
    ``errors`` as (path, why)."""
    if root.is_file():
        return [SourceFile(root, root.name)]
    found: list[SourceFile] = []

    def unreadable(error: OSError) -> None:
        if errors is not None:
            errors.append((str(error.filename), error.strerror or str(error)))

    for directory, directories, files in os.walk(root, onerror=unreadable):
        here = Path(directory)
        directories[:] = sorted(
            d
            for d in directories
            if not d.startswith(".")
            and d not in SKIPPED_DIRECTORIES
            and not d.endswith(".egg-info")
            and not (d in TEST_DIRECTORIES and not include_tests)
            and not (here / d / "pyvenv.cfg").exists()  # a virtual environment, by any name
        )
        for name in sorted(files):
            if name.startswith(".") or not name.endswith(SUFFIXES):
                continue
            if not include_tests and name.endswith(".py") and is_test_file(name):
                continue
            path = here / name
            relative = PurePosixPath(path.relative_to(root).as_posix())
            found.append(SourceFile(path, str(relative)))
    return found
