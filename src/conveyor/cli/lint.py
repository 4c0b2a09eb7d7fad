"""`conveyor lint [PATH]`: hard-coded hosts, URLs, connection strings and absolute output paths
in an app's Python files and notebooks, with the config.yml key or data connection to use
instead. Exit 0 when there are none, 1 when there are."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from conveyor.cli import output
from conveyor.cli.exit_codes import ExitCode
from conveyor.lint import Finding, LintReport, lint


@click.command("lint")
@click.argument("path", default=".", type=click.Path(exists=True, dir_okay=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the findings as a JSON list.")
@click.option(
    "--include-tests",
    is_flag=True,
    help="Also check tests (tests/ and test/ directories, test_*.py, *_test.py, conftest.py), "
    "which are left out by default.",
)
def lint_command(path: Path, as_json: bool, include_tests: bool) -> int:
    """Find hard-coded hosts, URLs, connection strings and absolute output paths in the Python
    files and notebooks in PATH (default: this directory), which belong in config.yml or a data
    connection, and say which key to use instead.

    Code is read with Python's parser: docstrings, messages and relative paths do not count.
    End a line with `# conveyor: ignore` to silence it. Files that cannot be parsed are warned
    about and skipped. Exit 0 when nothing is found, 1 when something is."""
    report = lint(path, include_tests=include_tests)
    for problem in report.problems:
        output.warn(f"{replace(problem, path=_shown(path, problem.path)).where}: {problem.message}")
    if as_json:
        output.as_json([{**f.as_dict(), "path": _shown(path, f.path)} for f in report.findings])
    else:
        _print(path, report)
    return ExitCode.OK if report.ok else ExitCode.FAILURE


def _print(root: Path, report: LintReport) -> None:
    by_file: dict[str, list[Finding]] = {}
    for finding in report.findings:
        by_file.setdefault(finding.path, []).append(finding)
    for file, findings in by_file.items():
        click.echo(click.style(_shown(root, file), bold=True))
        places = [_place(f) for f in findings]
        width = max(len(p) for p in places)
        kind_width = max(len(str(f.kind)) for f in findings)
        indent = " " * (2 + width + 2)
        for place, finding in zip(places, findings, strict=True):
            click.echo(
                f"  {place.ljust(width)}  {str(finding.kind).ljust(kind_width)}  {finding.literal}"
            )
            click.echo(f"{indent}{finding.message}")
            click.echo(f"{indent}fix: {finding.suggestion}")
        click.echo()
    click.echo(_summary(report))


def _place(finding: Finding) -> str:
    if finding.cell is not None:
        return f"cell {finding.cell} line {finding.line}:{finding.column}"
    return f"{finding.line}:{finding.column}"


def _summary(report: LintReport) -> str:
    checked = f"{report.files} file{'' if report.files == 1 else 's'} checked"
    skipped = ""
    if report.problems:
        count = len({p.path for p in report.problems})
        skipped = f"; {count} not fully checked (see the warnings)"
    if report.ok:
        return f"No hard-coded hosts, URLs or output paths ({checked}{skipped})."
    found = len(report.findings)
    files = len(report.files_with_findings)
    return (
        f"{found} finding{'' if found == 1 else 's'} in {files} file{'' if files == 1 else 's'}"
        f" ({checked}{skipped}). Move them to config.yml or a data connection, or end a line "
        "that is meant with `# conveyor: ignore`."
    )


def _shown(root: Path, relative: str) -> str:
    """A path as the user can open it: under the PATH they gave."""
    if root.is_file():
        return str(root)
    if root == Path("."):
        return relative
    return (root / relative).as_posix()
