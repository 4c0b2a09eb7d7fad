"""The app's type, entrypoint and health path, decided from the project's files.

A type is decided when the files point to exactly one: one web framework imported (a Dash app
imports Flask too, and is Dash), else Quarto files, else notebooks, else an ``index.html``.
Two frameworks, or none of these, leave it open: a person at a terminal is asked (``ask``);
anyone else gets an error that lists what was found and says to pass ``--type``. The same goes
for an entrypoint the files do not settle (two modules that both create a FastAPI app)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from conveyor.domain.apps import DEFAULT_ENTRYPOINTS, AppType
from conveyor.errors import InvalidInput
from conveyor.scaffold.sources import ProjectFiles, scan

#: Packages whose import names an app's type, in the order candidates are listed.
FRAMEWORKS: tuple[tuple[str, AppType], ...] = (
    ("shiny", AppType.SHINY),
    ("streamlit", AppType.STREAMLIT),
    ("dash", AppType.DASH),
    ("fastapi", AppType.FASTAPI),
    ("flask", AppType.FLASK),
)
SERVER_TYPES = frozenset(t for _, t in FRAMEWORKS)
#: Module names an entrypoint usually has, best first; a shallower file beats a deeper one.
USUAL_MODULES = ("app", "main", "api", "server", "application", "streamlit_app", "dashboard")
USUAL_DOCUMENTS = ("report", "index", "main")
#: Health paths recognised among an API's routes, best first; otherwise the health check asks /.
HEALTH_PATHS = ("/health", "/healthz", "/_health", "/ping")

Ask = Callable[[str, Sequence[str]], str]
"""``ask(question, choices)`` returns one of ``choices``: how a person at a terminal settles
what the files leave open. None where nobody can answer (CI, a pipe)."""


@dataclass(frozen=True)
class Candidate:
    """A type the files point to, and why."""

    type: AppType
    evidence: str  # "app.py imports fastapi"


@dataclass(frozen=True)
class Detection:
    """What `conveyor init` writes into conveyor.yml, and what the person should know."""

    type: AppType
    entrypoint: str
    evidence: str
    health: str = "/"
    notes: tuple[str, ...] = ()


def detect(
    directory: Path,
    *,
    app_type: AppType | None = None,
    entrypoint: str | None = None,
    ask: Ask | None = None,
) -> Detection:
    """Decide the app in ``directory``; ``app_type`` and ``entrypoint`` (from the command line)
    win over the files."""
    files = scan(directory)
    notes: list[str] = []
    if files.truncated:
        notes.append(
            f"{directory} has more files than `conveyor init` reads; pass --type and "
            "--entrypoint if what it found is wrong"
        )
    if app_type is None:
        chosen, others = _decide_type(directory, files, ask)
        app_type, evidence = chosen.type, chosen.evidence
        for other in others:
            notes.append(
                f"also found: {other.evidence}; pass --type {other.type.value} to deploy that "
                "instead"
            )
    else:
        evidence = "given with --type"
    if entrypoint:
        return Detection(app_type, entrypoint, evidence, _health(app_type, files), tuple(notes))
    if app_type is AppType.COMMAND:
        raise InvalidInput(
            "a command app needs --entrypoint: the command that starts it, serving HTTP on "
            "$PORT (e.g. --entrypoint 'python serve.py')"
        )
    found, entry_notes = _entrypoint(app_type, files, ask)
    return Detection(
        app_type,
        found,
        evidence,
        _health(app_type, files),
        tuple(notes + entry_notes),
    )


def candidates(files: ProjectFiles) -> list[Candidate]:
    """Every type the files point to: web frameworks first, then documents, then a site."""
    found: list[Candidate] = []
    for package, app_type in FRAMEWORKS:
        modules = [m.path for m in files.python if m.imports_package(package)]
        if modules:
            verb = "imports" if len(modules) == 1 else "import"
            found.append(Candidate(app_type, f"{_listing(modules)} {verb} {package}"))
    if any(c.type is AppType.DASH for c in found):
        # Dash is built on Flask; a Dash app that imports flask is still a Dash app.
        found = [c for c in found if c.type is not AppType.FLASK]
    quarto = ([files.quarto_project] if files.quarto_project else []) + list(files.quarto_documents)
    if quarto:
        found.append(Candidate(AppType.QUARTO, f"Quarto files: {_listing(quarto)}"))
    if files.notebooks:
        found.append(Candidate(AppType.NOTEBOOK, f"notebooks: {_listing(files.notebooks)}"))
    if files.sites:
        pages = [str(PurePosixPath(site) / "index.html") for site in files.sites]
        found.append(Candidate(AppType.STATIC, f"a static site: {_listing(pages)}"))
    return found


def _decide_type(
    directory: Path, files: ProjectFiles, ask: Ask | None
) -> tuple[Candidate, list[Candidate]]:
    """The candidate that wins, and the others (worth a note)."""
    found = candidates(files)
    servers = [c for c in found if c.type in SERVER_TYPES]
    if len(servers) == 1:
        return servers[0], [c for c in found if c is not servers[0]]
    if len(servers) > 1:
        return _settle(directory, servers, ask), []
    if found:
        # Quarto renders notebooks too, so a Quarto project with notebooks is Quarto; a site
        # beside a report is most often the report's output.
        return found[0], found[1:]
    if ask is None:
        packages = [package for package, _ in FRAMEWORKS]
        reasons = [
            f"no Python file imports {', '.join(packages[:-1])} or {packages[-1]}",
            "there is no notebook (.ipynb), Quarto file (.qmd, _quarto.yml) or index.html",
        ]
        if files.unparsable:
            reasons.append(f"{_listing(files.unparsable)} could not be read as Python")
        raise InvalidInput(
            f"cannot tell what kind of app {directory} holds: {'; '.join(reasons)}. "
            f"Pass --type, one of: {', '.join(t.value for t in AppType)}"
        )
    answer = ask(
        f"What kind of app is in {directory}? (the files do not say)", [t.value for t in AppType]
    )
    return Candidate(AppType(answer), "chosen at the prompt"), []


def _settle(directory: Path, options: list[Candidate], ask: Ask | None) -> Candidate:
    if ask is None:
        width = max(len(c.type.value) for c in options)
        listed = "\n".join(f"  {c.type.value.ljust(width)}  {c.evidence}" for c in options)
        names = " or ".join(f"--type {c.type.value}" for c in options)
        raise InvalidInput(
            f"cannot tell what kind of app {directory} holds; it could be:\n{listed}\n"
            f"Pass {names} to say which one to deploy (or run `conveyor init` in a terminal "
            "to choose)"
        )
    listed = "; ".join(f"{c.type.value}: {c.evidence}" for c in options)
    answer = ask(f"Which app should Conveyor deploy? ({listed})", [c.type.value for c in options])
    return next(c for c in options if c.type.value == answer)


def _entrypoint(app_type: AppType, files: ProjectFiles, ask: Ask | None) -> tuple[str, list[str]]:
    """The entrypoint for ``app_type``, and notes about it."""
    default = DEFAULT_ENTRYPOINTS[app_type]
    options: list[tuple[str, str]]  # (entrypoint, the file it is in)
    notes: list[str] = []
    if app_type in (AppType.FASTAPI, AppType.FLASK):
        constructor = "FastAPI" if app_type is AppType.FASTAPI else "Flask"
        package = app_type.value
        modules = [m for m in files.python if m.imports_package(package)]
        options = [(f"{m.module}:{v}", m.path) for m in modules for v in m.objects_of(constructor)]
        if not options and app_type is AppType.FLASK:
            options = [
                (f"{m.module}:create_app()", m.path) for m in modules if "create_app" in m.functions
            ]
        what = f"module-level `{constructor}()`"
    elif app_type is AppType.DASH:
        options, notes = _dash_entrypoints(files)
        what = "module-level `Dash()`"
    elif app_type is AppType.SHINY:
        options = []
        for m in files.python:
            if m.imports_package("shiny.express"):
                options.append((m.path, m.path))
            elif m.imports_package("shiny"):
                options.extend(
                    (m.path if v == "app" else f"{m.path}:{v}", m.path) for v in m.objects_of("App")
                )
        what = "Shiny `App()` or Shiny Express file"
    elif app_type is AppType.STREAMLIT:
        options = [
            (m.path, m.path)
            for m in files.python
            if m.imports_package("streamlit") and "pages" not in PurePosixPath(m.path).parts[:-1]
        ]
        what = "file that imports streamlit"
    elif app_type is AppType.NOTEBOOK:
        options = [(n, n) for n in files.notebooks]
        what = "notebook"
    elif app_type is AppType.QUARTO:
        if files.quarto_project:
            return ".", ["the Quarto project (_quarto.yml) is rendered as a whole"]
        options = [(d, d) for d in files.quarto_documents]
        what = ".qmd document"
    else:  # static
        options = [(site, site) for site in files.sites]
        what = "index.html"
    if not options:
        notes.append(
            f"found no {what}; the entrypoint is Conveyor's default for {app_type.value}, "
            f"{default!r}: check `entrypoint:` in conveyor.yml"
        )
        return default, notes
    return _pick(app_type, options, ask), notes


def _dash_entrypoints(files: ProjectFiles) -> tuple[list[tuple[str, str]], list[str]]:
    options: list[tuple[str, str]] = []
    notes: list[str] = []
    for m in files.python:
        if not m.imports_package("dash"):
            continue
        for variable in m.objects_of("Dash"):
            servers = [
                name for name, base, attr in m.attributes if (base, attr) == (variable, "server")
            ]
            if servers:
                options.append((f"{m.module}:{servers[0]}", m.path))
            else:
                options.append((f"{m.module}:server", m.path))
                notes.append(
                    f"add `server = {variable}.server` to {m.path}: Conveyor serves a Dash app's "
                    "Flask server with gunicorn, which needs it as a module variable"
                )
    return options, notes


def _pick(app_type: AppType, options: list[tuple[str, str]], ask: Ask | None) -> str:
    """The one option, or the clearly usual one (app.py at the root), else asked."""
    ranked = sorted(options, key=lambda option: _rank(app_type, option[1]))
    if len(ranked) == 1 or _rank(app_type, ranked[0][1]) < _rank(app_type, ranked[1][1]):
        return ranked[0][0]
    entrypoints = [entrypoint for entrypoint, _ in ranked]
    if ask is None:
        raise InvalidInput(
            f"cannot tell which entrypoint this {app_type.value} app has: "
            f"{', '.join(entrypoints)}. Pass --entrypoint with the one to run "
            f"(e.g. --entrypoint {entrypoints[0]})"
        )
    return ask(f"Which entrypoint should Conveyor run for this {app_type.value} app?", entrypoints)


def _rank(app_type: AppType, path: str) -> tuple[int, int]:
    """Lower is more usual: fewer directories deep, then a usual name."""
    parts = PurePosixPath(path)
    usual = USUAL_DOCUMENTS if app_type in (AppType.NOTEBOOK, AppType.QUARTO) else USUAL_MODULES
    stem = parts.stem
    return len(parts.parts), usual.index(stem) if stem in usual else len(usual)


def _health(app_type: AppType, files: ProjectFiles) -> str:
    """A health route the API declares, else /."""
    if app_type not in (AppType.FASTAPI, AppType.FLASK):
        return "/"
    package = app_type.value
    routes: set[str] = set()
    for module in files.python:
        if module.imports_package(package):
            routes |= module.routes
    return next((path for path in HEALTH_PATHS if path in routes), "/")


def _listing(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
