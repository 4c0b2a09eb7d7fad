"""`conveyor lint` on a directory or a file: read each Python file and notebook, apply the rules,
drop what ``# conveyor: ignore`` silences, attach the suggestions."""

from __future__ import annotations

import ast
import io
import tokenize
import warnings
from pathlib import Path

from conveyor.lint.files import SourceFile, source_files
from conveyor.lint.findings import Finding, LintReport, Problem
from conveyor.lint.notebooks import NotebookError, code_cells
from conveyor.lint.rules import hits
from conveyor.lint.silencing import ignored_lines
from conveyor.lint.suggestions import suggest

#: Larger Python files are generated, not written: they are reported and left out.
MAX_PYTHON_BYTES = 2_000_000
MAX_NOTEBOOK_BYTES = 100_000_000


def lint(path: Path, *, include_tests: bool = False) -> LintReport:
    """Lint the Python files and notebooks in ``path`` (a directory, or one file). Paths in
    the report are relative to ``path`` (for a file, its name)."""
    errors: list[tuple[str, str]] = []
    files = source_files(path, include_tests=include_tests, errors=errors)
    findings: list[Finding] = []
    problems = [Problem(where, f"cannot be listed: {why}") for where, why in errors]
    for source in files:
        found, trouble = _lint_file(source)
        findings += found
        problems += trouble
    return LintReport(tuple(findings), tuple(problems), len(files))


def lint_source(source: str, relative: str = "<string>", cell: int | None = None) -> list[Finding]:
    """The findings in Python ``source`` (which must parse)."""
    with warnings.catch_warnings():  # invalid escapes in the app's strings are its business
        warnings.simplefilter("ignore")
        tree = ast.parse(source, filename=relative)
    found = hits(tree)
    if not found:
        return []
    silenced = ignored_lines(source)
    lines = source.splitlines()
    findings = []
    for hit in found:
        node = hit.node
        spanned = range(node.lineno, (node.end_lineno or node.lineno) + 1)
        if hit.statement_line in silenced or any(line in silenced for line in spanned):
            continue
        suggestion = suggest(hit.kind, hit.target, hit.context)
        findings.append(
            Finding(
                path=relative,
                line=node.lineno,
                column=_column(lines, node.lineno, node.col_offset),
                cell=cell,
                kind=hit.kind,
                literal=hit.target.shown,
                message=hit.message,
                key=suggestion.key,
                fix=suggestion.fix,
                suggestion=suggestion.text,
            )
        )
    return findings


def _lint_file(source: SourceFile) -> tuple[list[Finding], list[Problem]]:
    limit = MAX_NOTEBOOK_BYTES if source.is_notebook else MAX_PYTHON_BYTES
    try:
        if source.path.stat().st_size > limit:
            return [], [Problem(source.relative, f"not checked: larger than {limit:,} bytes")]
        data = source.path.read_bytes()
    except OSError as error:
        return [], [Problem(source.relative, f"cannot be read: {error.strerror or error}")]
    try:
        text = _decode(data)
    except (SyntaxError, UnicodeDecodeError) as error:
        return [], [Problem(source.relative, f"cannot be decoded: {error}")]
    if not source.is_notebook:
        return _lint_python(text, source.relative, None)
    try:
        cells = code_cells(text)
    except NotebookError as error:
        return [], [Problem(source.relative, str(error))]
    findings: list[Finding] = []
    problems: list[Problem] = []
    for cell in cells:
        found, trouble = _lint_python(cell.source, source.relative, cell.number)
        findings += found
        problems += trouble
    return findings, problems


def _lint_python(text: str, relative: str, cell: int | None) -> tuple[list[Finding], list[Problem]]:
    try:
        return lint_source(text, relative, cell), []
    except SyntaxError as error:
        why = error.msg or "invalid syntax"
        return [], [Problem(relative, f"not checked: cannot be parsed ({why})", cell, error.lineno)]
    except (ValueError, RecursionError) as error:  # null bytes; absurdly deep nesting
        return [], [Problem(relative, f"not checked: cannot be parsed ({error})", cell)]


def _decode(data: bytes) -> str:
    """Python source as Python reads it: its coding cookie, else UTF-8 (a BOM dropped)."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    return data.decode(encoding).removeprefix("\ufeff")


def _column(lines: list[str], line: int, offset: int) -> int:
    """``ast`` counts columns in UTF-8 bytes from 0; people count characters from 1."""
    if 0 < line <= len(lines):
        return len(lines[line - 1].encode("utf-8")[:offset].decode("utf-8", "replace")) + 1
    return offset + 1
