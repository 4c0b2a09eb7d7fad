"""`conveyor check`: what a pull/merge request must pass before it is merged.

1. `conveyor lint`: hard-coded hosts, URLs, connection strings and output paths (docs/lint.md);
2. the app's config.yml for every environment it will run in (structure, `inherits:`, tags;
   `!env` values are supplied by the server's variables, so they are not required here; an
   environment without a section is a warning, since the app reads `default` there, unless
   conveyor.yml says `ci: {config: strict}`);
3. the bundle's own tests, in a runtime built from the bundle's lock exactly as the server
   builds it (uv, the same lock, Conveyor's config library importable), with `CONVEYOR_ENV`
   set to the environment the tests should see."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.bundles.archive import extract
from conveyor.bundles.build import BuiltBundle, build_bundle
from conveyor.config import inspection
from conveyor.config.resolve import UnknownEnvironment
from conveyor.runtime.app_data import process_environment
from conveyor.runtime.builds import RuntimeBuilder
from conveyor.runtime.steps import run_tests_command


@dataclass(frozen=True)
class CheckStep:
    name: str
    ok: bool | None  # None: skipped
    detail: str = ""
    warnings: tuple[str, ...] = ()


def default_uv_cache() -> Path:
    given = os.environ.get("CONVEYOR_UV_CACHE")
    return Path(given) if given else Path.home() / ".cache" / "conveyor" / "uv"


def run_checks(
    directory: Path,
    *,
    environments: Sequence[str],
    tests_env: str,
    progress: Callable[[str], None],
    uv_cache: Path | None = None,
    strict_config: bool = False,
) -> Iterator[CheckStep]:
    """Each check as it finishes. ``strict_config``: an environment without a section in
    config.yml fails the config check instead of warning."""
    yield _lint(directory)
    yield _config(directory, environments, strict_config)
    yield from _tests(directory, tests_env, progress, uv_cache or default_uv_cache())


def _lint(directory: Path) -> CheckStep:
    """`conveyor lint` on the app (tests left out, as by default): hard-coded hosts, URLs,
    connection strings and absolute output paths fail the step. Files that cannot be parsed
    are named in the detail but do not fail it (the tests step will, if they matter)."""
    from conveyor.lint import lint

    report = lint(directory)
    skipped = [f"warning: {p.where}: {p.message}" for p in report.problems]
    lines = [f"{f.where}: {f.kind} {f.literal}: {f.suggestion}" for f in report.findings]
    checked = f"{report.files} file{'' if report.files == 1 else 's'} checked"
    if report.ok:
        summary = f"no hard-coded hosts, URLs or output paths ({checked})"
        return CheckStep("lint", True, "\n".join([*skipped, summary]))
    count = len(report.findings)
    summary = (
        f"{count} hard-coded location{'' if count == 1 else 's'} ({checked}): move them to "
        "config.yml or a data connection, or end a line that is meant with "
        "`# conveyor: ignore`; `conveyor lint` shows them"
    )
    return CheckStep("lint", False, "\n".join([*lines, *skipped, summary]))


def _config(directory: Path, environments: Sequence[str], strict: bool) -> CheckStep:
    if not (directory / "config.yml").is_file():
        return CheckStep("config", None, "no config.yml")
    report = inspection.check(
        environments,
        file=directory / "config.yml",
        use_parent=False,
        # Every `!env` variable counts as set: on the server they come from the app's
        # variables, which CI cannot see.
        environ=UnknownEnvironment(),
        lenient=not strict,
    )
    warnings = tuple(report.warnings)
    if report.ok:
        count = len(warnings)
        noted = f" ({count} warning{'' if count == 1 else 's'})" if count else ""
        detail = f"config.yml is sound for {', '.join(report.checked)}{noted}"
        return CheckStep("config", True, detail, warnings)
    return CheckStep("config", False, "\n".join(report.problems), warnings)


def _tests(
    directory: Path, tests_env: str, progress: Callable[[str], None], uv_cache: Path
) -> Iterator[CheckStep]:
    with tempfile.TemporaryDirectory(prefix="conveyor-check-") as scratch:
        work = Path(scratch)
        built: BuiltBundle = build_bundle(directory, work / "bundle.tar.gz", progress=progress)
        yield CheckStep("bundle", True, f"bundle {built.alias} ({built.lock.note})")
        command = built.spec.checks.tests
        if not command:
            yield CheckStep("tests", None, "conveyor.yml declares no `checks.tests` command")
            return
        app = work / "app"
        extract(built.archive, app, expected_id=built.id)
        lock = built.manifest["lock"]
        runtime = RuntimeBuilder(work / "home", cache_dir=uv_cache).ensure(
            built.spec.python, app / lock["path"], lock["format"], progress
        )
        progress(f"running {command} with CONVEYOR_ENV={tests_env}")
        env = {
            "LANG": "C.UTF-8",
            **process_environment(runtime.path, work, tests_env, built.spec.name),
        }
        result = run_tests_command(command, cwd=app, env=env, timeout=1800)
        yield CheckStep("tests", result.passed, result.output.strip())
