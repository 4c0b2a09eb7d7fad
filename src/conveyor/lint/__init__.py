"""`conveyor lint`: hard-coded hosts, URLs, connection strings and absolute output paths in an
app's Python files and notebooks, which belong in config.yml or a data connection.

    from conveyor.lint import lint

    report = lint(Path("my-app"))
    for finding in report.findings:
        ...  # finding.where, .kind, .literal, .message, .key, .fix, .suggestion

The code is read with Python's parser, never matched as text: which strings count depends on
where they are used (`rules`), so docstrings, messages and relative paths are left alone. A line
ending in ``# conveyor: ignore`` is silenced. See docs/lint.md."""

from __future__ import annotations

from conveyor.lint.findings import Finding, Kind, LintReport, Problem
from conveyor.lint.scan import lint, lint_source

__all__ = ["Finding", "Kind", "LintReport", "Problem", "lint", "lint_source"]
