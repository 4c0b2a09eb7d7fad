"""What `conveyor lint` reports: findings (a hard-coded location, with the fix) and problems (a
file it could not read). Plain data; the CLI decides how to show it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    URL = "url"
    CONNECTION = "connection-string"
    HOST = "host"
    OUTPUT_PATH = "output-path"


def _where(path: str, cell: int | None, line: int | None, column: int | None) -> str:
    if cell is not None:
        place = f"{path} cell {cell}"
        return (
            place
            if line is None
            else f"{place} line {line}" + (f" col {column}" if column is not None else "")
        )
    if line is None:
        return path
    return f"{path}:{line}" + (f":{column}" if column is not None else "")


@dataclass(frozen=True)
class Finding:
    """A hard-coded location that belongs in config.yml or a data connection."""

    path: str  # relative to the directory linted, with forward slashes
    line: int  # from 1; in a notebook, the line within the cell
    column: int  # from 1, in characters
    cell: int | None  # notebooks: the cell's position, from 1, markdown cells counted
    kind: Kind
    literal: str  # the string as written (f-string fields as {name}), passwords masked
    message: str  # what is wrong, in one sentence
    key: str  # the config.yml key (or data connection / output name) to use instead
    fix: str  # the code to write instead, e.g. config.get("forecast_url")
    suggestion: str  # how to fix it, in one sentence

    @property
    def where(self) -> str:
        """``app.py:12:5``, or ``report.ipynb cell 3 line 2 col 5``."""
        return _where(self.path, self.cell, self.line, self.column)

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "cell": self.cell,
            "kind": str(self.kind),
            "literal": self.literal,
            "message": self.message,
            "key": self.key,
            "fix": self.fix,
            "suggestion": self.suggestion,
        }


@dataclass(frozen=True)
class Problem:
    """A file (or notebook cell) that could not be read or parsed, so was not checked."""

    path: str
    message: str
    cell: int | None = None
    line: int | None = None

    @property
    def where(self) -> str:
        return _where(self.path, self.cell, self.line, None)


@dataclass(frozen=True)
class LintReport:
    findings: tuple[Finding, ...]
    problems: tuple[Problem, ...]
    files: int  # files checked (.py files and notebooks)

    @property
    def ok(self) -> bool:
        """No findings. Problems (unparsable files) are warnings and do not count."""
        return not self.findings

    @property
    def files_with_findings(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.path for f in self.findings))
