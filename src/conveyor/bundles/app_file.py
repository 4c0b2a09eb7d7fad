"""Reading an app's `conveyor.yml` into an AppSpec; every error names the file, the field and
the fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NoReturn

import yaml

from conveyor.domain.apps import (
    APP_NAME,
    CI_CONFIG_MODES,
    DEFAULT_BRANCHES,
    DEFAULT_ENTRYPOINTS,
    RUNNABLE_TYPES,
    AppSpec,
    AppType,
    Checks,
    Resources,
    SmokeCheck,
    parse_size,
)
from conveyor.domain.run_email import EmailRule, parse_rules
from conveyor.domain.schedules import DEFAULT_TIMEOUT, Schedule, parse_duration, parse_schedule
from conveyor.domain.sleep import parse_sleep_after
from conveyor.errors import InvalidInput, ManifestError

APP_FILE = "conveyor.yml"
REQUIREMENT_FILES = ("uv.lock", "pylock.toml", "requirements.txt", "pyproject.toml")
_FIELDS = {
    "name",
    "type",
    "entrypoint",
    "python",
    "requirements",
    "health",
    "checks",
    "exclude",
    "workers",
    "ci",
    "build",
    "limits",
    "resources",
    "schedule",
    "timeout",
    "sleep_after",
    "email",
}


def read_app_file(directory: Path) -> AppSpec:
    """The AppSpec declared in ``directory/conveyor.yml``."""
    path = directory / APP_FILE
    if not path.is_file():
        raise ManifestError(
            f"{directory} has no {APP_FILE}; create one with at least `name:` and `type:` "
            f"(types: {', '.join(t.value for t in AppType)})"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ManifestError(f"{path}{where}: not valid YAML: {exc.problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot be read as YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a mapping of fields (name:, type:, ...)")
    return parse_app_spec(data, path, directory)


#: Characters no field may hold: control characters other than tab and newline (a carriage
#: return would end a line wherever the text is shown: logs, the console's live streams).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")


def _control_characters(value: Any, where: str = "") -> str | None:
    """The first field (dotted path) whose text holds a control character, or None."""
    if isinstance(value, str):
        return where or "a field" if _CONTROL.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{where}.{key}" if where else str(key)
            found = _control_characters(str(key), inner) or _control_characters(item, inner)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _control_characters(item, f"{where}[{index}]")
            if found:
                return found
    return None


def parse_app_spec(data: dict[str, Any], path: Path, directory: Path) -> AppSpec:
    holding = _control_characters(data)
    if holding:
        raise ManifestError(
            f"{path}: `{holding}` holds a control character (a carriage return, NUL, escape "
            "...); only tabs and newlines may appear in a field"
        )
    reader = _Fields(data, path)
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ManifestError(
            f"{path}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known fields: {', '.join(sorted(_FIELDS))}"
        )
    name = reader.text("name", required=True)
    if not APP_NAME.fullmatch(name):
        reader.fail(
            "name",
            f"{name!r} is not a valid app name; use lowercase letters, digits and dashes, "
            f"starting with a letter (e.g. sales-forecast)",
        )
    type_name = reader.text("type", required=True)
    try:
        app_type = AppType(type_name)
    except ValueError:
        reader.fail(
            "type", f"{type_name!r} is not a type; use one of: {', '.join(t for t in AppType)}"
        )
    entrypoint = reader.text("entrypoint") or DEFAULT_ENTRYPOINTS[app_type]
    if app_type is AppType.COMMAND and not entrypoint:
        reader.fail("entrypoint", "a command app needs the command to run, serving on $PORT")
    if app_type is AppType.JOB and not entrypoint:
        reader.fail(
            "entrypoint",
            "a job needs the command to run, e.g. `python refresh.py` (it writes its files "
            "into $CONVEYOR_RUN_OUTPUT)",
        )
    requirements = reader.text("requirements") or _found_requirements(directory)
    if requirements is not None and not (directory / requirements).is_file():
        reader.fail("requirements", f"{requirements} does not exist in {directory}")
    if (
        requirements is not None
        and Path(requirements).name not in REQUIREMENT_FILES
        and not (requirements.endswith((".txt", ".in")))
    ):
        reader.fail(
            "requirements",
            f"{requirements} is not a requirements file; use requirements.txt, "
            f"pyproject.toml, uv.lock or pylock.toml",
        )
    health = reader.text("health") or "/"
    if not health.startswith("/"):
        reader.fail("health", f"{health!r} must be a path starting with /")
    workers = reader.integer("workers", 1, minimum=1)
    limits = reader.mapping("limits")
    return AppSpec(
        name=name,
        type=app_type,
        entrypoint=entrypoint,
        python=reader.text("python") or ">=3.11",
        requirements=requirements,
        health=health,
        checks=_checks(reader),
        exclude=tuple(reader.strings("exclude")),
        workers=workers,
        branches=_branches(reader),
        ci_config=_ci_config(reader),
        build=reader.text("build"),
        max_file_mb=_Fields(limits, path, "limits.").integer("file_mb", 100, minimum=1),
        max_total_mb=_Fields(limits, path, "limits.").integer("total_mb", 500, minimum=1),
        max_files=_Fields(limits, path, "limits.").integer("files", 20_000, minimum=1),
        resources=_resources(reader),
        schedule=_schedule(reader, app_type),
        timeout=_timeout(reader),
        sleep_after=_sleep_after(reader),
        email=_email(reader, app_type),
    )


def _schedule(reader: _Fields, app_type: AppType) -> Schedule | None:
    """`schedule: "0 6 * * 1-5"` or `schedule: {cron: "0 6 * * 1-5", timezone: Europe/Berlin}`."""
    declared = reader.data.get("schedule")
    if declared is None:
        return None
    if app_type not in RUNNABLE_TYPES:
        reader.fail(
            "schedule",
            f"a {app_type} app does not run on a schedule; only "
            f"{', '.join(sorted(RUNNABLE_TYPES))} apps do",
        )
    if isinstance(declared, str):
        declared = {"cron": declared}
    if not isinstance(declared, dict):
        reader.fail("schedule", "must be a cron expression or {cron: ..., timezone: ...}")
    sub = _Fields(declared, reader.path, "schedule.")
    unknown = sorted(set(declared) - {"cron", "timezone"})
    if unknown:
        sub.fail(unknown[0], "unknown field; a schedule has `cron` and `timezone`")
    try:
        return parse_schedule(sub.text("cron", required=True), sub.text("timezone"))
    except InvalidInput as exc:
        reader.fail("schedule", str(exc))


def _email(reader: _Fields, app_type: AppType) -> tuple[EmailRule, ...]:
    """`email: {to: [team@example.com], on: failure}`, or a list of such rules (one per `on`)."""
    declared = reader.data.get("email")
    if declared is None:
        return ()
    if app_type not in RUNNABLE_TYPES:
        reader.fail(
            "email",
            f"a {app_type} app has no runs to email about; only "
            f"{', '.join(sorted(RUNNABLE_TYPES))} apps do",
        )
    try:
        return parse_rules(_yaml_on(declared))
    except InvalidInput as exc:
        reader.fail("email", str(exc))


def _yaml_on(declared: Any) -> Any:
    """YAML 1.1 reads an unquoted `on:` key as the boolean true: it means `on` here."""
    if isinstance(declared, list):
        return [_yaml_on(item) for item in declared]
    if isinstance(declared, dict):
        return {("on" if key is True else key): value for key, value in declared.items()}
    return declared


def _timeout(reader: _Fields) -> int:
    declared = reader.data.get("timeout")
    if declared is None:
        return DEFAULT_TIMEOUT
    try:
        return parse_duration(declared, "timeout")
    except InvalidInput:
        reader.fail("timeout", f"{declared!r} is not a duration; write e.g. 90s, 30m or 2h")


def _sleep_after(reader: _Fields) -> str | None:
    if "sleep_after" not in reader.data:
        return None
    try:
        return parse_sleep_after(reader.data["sleep_after"])
    except InvalidInput:
        reader.fail("sleep_after", "write a duration such as 15m or 2h, or off (never sleep)")


def _resources(reader: _Fields) -> Resources:
    """`resources: {memory: 1GiB, cpus: 1.5, processes: 256}`: each optional."""
    declared = reader.mapping("resources")
    sub = _Fields(declared, reader.path, "resources.")
    unknown = sorted(set(declared) - {"memory", "cpus", "processes"})
    if unknown:
        sub.fail(unknown[0], "unknown resource; resources are memory, cpus and processes")
    memory = declared.get("memory")
    size = None
    if memory is not None:
        try:
            size = parse_size(memory, "memory")
        except InvalidInput:
            sub.fail("memory", f"{memory!r} is not a size: write e.g. 512MiB or 2GiB")
        if size < 16 * 2**20:
            sub.fail("memory", "must be at least 16MiB: a Python process needs that to start")
    cpus = declared.get("cpus")
    if cpus is not None and (
        isinstance(cpus, bool) or not isinstance(cpus, int | float) or cpus <= 0
    ):
        sub.fail("cpus", f"must be a number of CPUs above 0 (e.g. 1.5), found {cpus!r}")
    processes = sub.integer("processes", 0, minimum=0) if "processes" in declared else None
    if processes == 0:
        sub.fail("processes", "must be a whole number of at least 1")
    return Resources(
        memory=size, cpus=float(cpus) if cpus is not None else None, processes=processes
    )


def _found_requirements(directory: Path) -> str | None:
    for name in REQUIREMENT_FILES:
        if (directory / name).is_file():
            return name
    return None


def _checks(reader: _Fields) -> Checks:
    checks = reader.mapping("checks")
    sub = _Fields(checks, reader.path, "checks.")
    unknown = sorted(set(checks) - {"tests", "smoke"})
    if unknown:
        sub.fail(unknown[0], "unknown check; checks are `tests` (a command) and `smoke` (a list)")
    smoke_items = checks.get("smoke") or []
    if not isinstance(smoke_items, list):
        sub.fail("smoke", "must be a list of {path, status, contains} expectations")
    smoke = []
    for index, item in enumerate(smoke_items):
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict):
            sub.fail(f"smoke[{index}]", "must be a path or a mapping with path, status, contains")
        one = _Fields(item, reader.path, f"checks.smoke[{index}].")
        path = one.text("path", required=True)
        if not path.startswith("/"):
            one.fail("path", f"{path!r} must start with /")
        status = one.integer("status", 200, minimum=100)
        smoke.append(SmokeCheck(path=path, status=status, contains=one.text("contains")))
    return Checks(tests=sub.text("tests"), smoke=tuple(smoke))


def _branches(reader: _Fields) -> tuple[tuple[str, str], ...]:
    ci = reader.mapping("ci")
    branches = ci.get("branches")
    if branches is None:
        return DEFAULT_BRANCHES
    if not isinstance(branches, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in branches.items()
    ):
        reader.fail("ci.branches", "must map branch names to environments, e.g. {main: prod}")
    return tuple(sorted(branches.items()))


def _ci_config(reader: _Fields) -> str:
    """`ci.config`: `warn` (the default: an environment without a section in config.yml is a
    warning, as the app reads `default` there) or `strict` (it fails the check)."""
    value = reader.mapping("ci").get("config", CI_CONFIG_MODES[0])
    if value not in CI_CONFIG_MODES:
        reader.fail(
            "ci.config",
            f"{value!r} is not a mode; use `warn` (a missing section in config.yml warns, "
            f"the default) or `strict` (it fails the check)",
        )
    return str(value)


class _Fields:
    """Typed access to one mapping of conveyor.yml with errors that name the field."""

    def __init__(self, data: dict[str, Any], path: Path, prefix: str = "") -> None:
        self.data = data
        self.path = path
        self.prefix = prefix

    def fail(self, field: str, message: str) -> NoReturn:
        raise ManifestError(f"{self.path}: field `{self.prefix}{field}`: {message}")

    def text(self, field: str, *, required: bool = False) -> Any:
        value = self.data.get(field)
        if value is None:
            if required:
                self.fail(field, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(field, f"must be text, found {type(value).__name__}")
        return str(value)

    def integer(self, field: str, default: int, *, minimum: int) -> int:
        value = self.data.get(field, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(field, f"must be a whole number of at least {minimum}, found {value!r}")
        return int(value)

    def strings(self, field: str) -> list[str]:
        value = self.data.get(field) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(field, "must be a list of glob patterns, e.g. [data/raw/**, '*.parquet']")
        return list(value)

    def mapping(self, field: str) -> dict[str, Any]:
        value = self.data.get(field) or {}
        if not isinstance(value, dict):
            self.fail(field, f"must be a mapping, found {type(value).__name__}")
        return value
