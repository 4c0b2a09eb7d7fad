"""The scaffold of one project: everything `conveyor init` writes, decided before anything is
written (so a question the files leave open, or a bad name, leaves the project untouched), then
written without replacing an existing file unless forced. config.yml holds the person's
settings and is never replaced."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path

from conveyor.bundles.app_file import APP_FILE, REQUIREMENT_FILES, read_app_file
from conveyor.domain.apps import APP_NAME, AppSpec, AppType
from conveyor.errors import InvalidInput, ManifestError
from conveyor.scaffold import files
from conveyor.scaffold.ci import CI_FILES, Pipeline, Provider, pipeline_order, render
from conveyor.scaffold.detection import Ask, Detection, detect
from conveyor.storage.atomic_files import write_atomically

CONFIG_FILE = "config.yml"
NEW_REQUIREMENTS = "requirements.txt"
#: ci.branches of a new conveyor.yml: the test branch releases to Test, main to Prod.
DEFAULT_BRANCHES: tuple[tuple[str, str], ...] = (("test", "test"), ("main", "prod"))


class Action(StrEnum):
    WRITTEN = "written"
    REPLACED = "replaced"  # existed; --force
    UPDATED = "updated"  # an existing file, changed in place (pytest added)
    KEPT = "kept"  # existed; left as it was


@dataclass(frozen=True)
class Outcome:
    path: Path
    action: Action
    detail: str = ""


@dataclass(frozen=True)
class Request:
    """What `conveyor init` was asked to do."""

    directory: Path
    provider: Provider = Provider.GITHUB
    app_type: AppType | None = None
    name: str | None = None
    entrypoint: str | None = None
    force: bool = False


@dataclass(frozen=True)
class Scaffold:
    """What `conveyor init` did."""

    directory: Path
    spec: AppSpec  # conveyor.yml as Conveyor reads it now
    detection: Detection | None  # None when an existing conveyor.yml was kept
    outcomes: tuple[Outcome, ...]
    provider: Provider
    ci_file: Path
    repository: Path | None  # the root of the git work tree, None outside one
    notes: tuple[str, ...]


class _Slot(IntEnum):
    """The order files are written and listed in."""

    APP_FILE = 0
    CONFIG = 1
    SMOKE_TEST = 2
    REQUIREMENTS = 3
    CI = 4


@dataclass(frozen=True)
class _Planned:
    slot: _Slot
    path: Path
    text: str
    replace: bool  # may replace an existing file
    action_if_exists: Action = Action.REPLACED
    detail: str = ""


@dataclass
class _Plan:
    """What will be written, what stays, and what the person should know."""

    writes: list[_Planned] = field(default_factory=list)
    kept: list[tuple[_Slot, Outcome]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _App:
    """The facts about the app the other files depend on."""

    type: AppType
    branches: tuple[tuple[str, str], ...]
    tests: str | None
    requirements: str | None
    health: str


def scaffold(request: Request, ask: Ask | None = None) -> Scaffold:
    """Write the scaffold of the project in ``request.directory``; ``ask`` settles what the
    files leave open (None: an error lists the candidates instead)."""
    directory = request.directory.resolve()
    if not directory.is_dir():
        raise InvalidInput(f"{request.directory} is not a directory")
    plan = _Plan()
    app, detection = _plan_app_file(request, directory, ask, plan)
    _plan_requirements(directory, app, plan)
    config_path = directory / CONFIG_FILE
    if config_path.exists():
        detail = "exists: your settings stay as they are"
        plan.kept.append((_Slot.CONFIG, Outcome(config_path, Action.KEPT, detail)))
    else:
        plan.writes.append(_Planned(_Slot.CONFIG, config_path, files.config_file(), replace=False))
    smoke_test = directory / files.SMOKE_TEST
    plan.writes.append(
        _Planned(_Slot.SMOKE_TEST, smoke_test, files.smoke_test(app.health), request.force)
    )
    repository = repository_root(directory)
    ci_file = _plan_ci_file(request, directory, repository, app, plan)

    plan.writes.sort(key=lambda planned: planned.slot)
    written = [(planned.slot, _write(planned)) for planned in plan.writes]
    outcomes = [outcome for _, outcome in sorted(plan.kept + written, key=lambda p: p[0])]
    return Scaffold(
        directory=directory,
        spec=read_app_file(directory),
        detection=detection,
        outcomes=tuple(outcomes),
        provider=request.provider,
        ci_file=ci_file,
        repository=repository,
        notes=tuple(plan.notes),
    )


def _plan_app_file(
    request: Request, directory: Path, ask: Ask | None, plan: _Plan
) -> tuple[_App, Detection | None]:
    """A new conveyor.yml from what the files say, or the facts of the one that is kept."""
    path = directory / APP_FILE
    if path.exists() and not request.force:
        existing = _existing_spec(directory)
        given = (
            ("--type", request.app_type),
            ("--name", request.name),
            ("--entrypoint", request.entrypoint),
        )
        ignored = [flag for flag, value in given if value]
        if ignored:
            plan.notes.append(
                f"{APP_FILE} exists, so {', '.join(ignored)} changed nothing; --force writes "
                "a new one"
            )
        if not existing.checks.tests:
            plan.notes.append(
                f"{APP_FILE} has no `checks.tests`, so {files.SMOKE_TEST} does not run on a "
                f"release: add `tests: {files.TESTS_COMMAND}` under `checks:`"
            )
        detail = "exists; --force replaces it"
        plan.kept.append((_Slot.APP_FILE, Outcome(path, Action.KEPT, detail)))
        app = _App(
            existing.type,
            existing.branches,
            existing.checks.tests,
            existing.requirements,
            existing.health,
        )
        return app, None
    detection = detect(directory, app_type=request.app_type, entrypoint=request.entrypoint, ask=ask)
    plan.notes.extend(detection.notes)
    name = _name(request.name, directory)
    requirements = next((r for r in REQUIREMENT_FILES if (directory / r).is_file()), None)
    app = _App(
        detection.type, DEFAULT_BRANCHES, files.TESTS_COMMAND, requirements, detection.health
    )
    fields = files.AppFileFields(
        name=name,
        type=detection.type,
        entrypoint=detection.entrypoint,
        # A new requirements.txt is written when there is none (see _plan_requirements).
        requirements=requirements or NEW_REQUIREMENTS,
        health=app.health,
        tests=app.tests,
        branches=app.branches,
    )
    plan.writes.append(_Planned(_Slot.APP_FILE, path, files.app_file(fields), request.force))
    return app, detection


def _plan_requirements(directory: Path, app: _App, plan: _Plan) -> None:
    """A requirements.txt when the app has none; pytest added when its tests need it."""
    needs_pytest = files.TEST_PACKAGE in (app.tests or "")
    if app.requirements is None:
        text = files.new_requirements(app.type, tests=needs_pytest)
        detail = "add the packages your code imports"
        path = directory / NEW_REQUIREMENTS
        plan.writes.append(_Planned(_Slot.REQUIREMENTS, path, text, False, detail=detail))
        return
    if not needs_pytest:
        return
    check = files.pytest_requirement(directory, app.requirements)
    if check.updated is not None:
        plan.writes.append(
            _Planned(
                _Slot.REQUIREMENTS,
                directory / app.requirements,
                check.updated,
                replace=True,
                action_if_exists=Action.UPDATED,
                detail="added pytest: the tests check runs it in the app's runtime",
            )
        )
    elif check.advice:
        plan.notes.append(check.advice)


def _plan_ci_file(
    request: Request, directory: Path, repository: Path | None, app: _App, plan: _Plan
) -> Path:
    """The CI file at the root of the repository (CI providers read it only there)."""
    root = repository or directory
    if repository is None:
        plan.notes.append(
            f"{directory} is not in a git repository: the CI file is written here; run "
            "`git init` and push the repository to your CI provider"
        )
    pipeline = Pipeline(pipeline_order(app.branches), directory.relative_to(root).as_posix())
    path = root / CI_FILES[request.provider]
    text = render(request.provider, pipeline)
    plan.writes.append(_Planned(_Slot.CI, path, text, replace=request.force))
    for other, other_path in CI_FILES.items():
        if other is not request.provider and (root / other_path).exists():
            plan.notes.append(
                f"this repository has {other_path}: for {other.value.title()}, run "
                f"`conveyor init --ci {other.value}`"
            )
    return path


def app_name(text: str) -> str:
    """``text`` (a directory's name) made an app name: "Sales Forecast (v2)" is
    "sales-forecast-v2"; "" when nothing usable is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower())
    slug = re.sub(r"^[^a-z]+", "", slug)  # an app name starts with a letter
    return slug[:63].strip("-")


def repository_root(directory: Path) -> Path | None:
    """The root of the git work tree holding ``directory``, if any."""
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _name(given: str | None, directory: Path) -> str:
    if given is not None:
        if not APP_NAME.fullmatch(given):
            suggestion = app_name(given) or "sales-forecast"
            raise InvalidInput(
                f"--name {given!r} is not an app name: use lowercase letters, digits and "
                f"dashes, starting with a letter (e.g. {suggestion})"
            )
        return given
    name = app_name(directory.name)
    if not APP_NAME.fullmatch(name):
        raise InvalidInput(
            f"cannot make an app name from the directory name {directory.name!r}: pass "
            "--name (lowercase letters, digits and dashes, starting with a letter)"
        )
    return name


def _existing_spec(directory: Path) -> AppSpec:
    try:
        return read_app_file(directory)
    except ManifestError as exc:
        raise ManifestError(
            f"{exc}\n(conveyor init keeps an existing {APP_FILE}: fix it, or pass --force to "
            "write a new one)"
        ) from None


def _write(plan: _Planned) -> Outcome:
    path = plan.path
    if path.is_dir():
        raise InvalidInput(f"{path} is a directory; conveyor init would write a file there")
    try:
        if path.exists() or path.is_symlink():
            if not plan.replace:
                return Outcome(path, Action.KEPT, "exists; --force replaces it")
            write_atomically(path, plan.text.encode("utf-8"))
            return Outcome(path, plan.action_if_exists, plan.detail)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as handle:
            handle.write(plan.text)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror or exc}") from None
    return Outcome(path, Action.WRITTEN, plan.detail)
