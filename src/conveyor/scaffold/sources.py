"""What a project's files say about the app in them. Python modules are read with ``ast``:
their imports, the app objects they create at module level (``app = FastAPI()``), the routes
they declare; never by matching text, so a comment or a string that mentions a framework does
not count. Notebooks, Quarto files and HTML sites are found by name."""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

#: Directories that hold no part of the app: environments, caches, tools, version control.
SKIPPED_DIRECTORIES = frozenset(
    {
        "venv",
        "env",
        "node_modules",
        "site-packages",
        "__pycache__",
        "build",
        "dist",
    }
)
#: Directories of tests: their imports (a TestClient, say) say nothing about the app's type.
TEST_DIRECTORIES = frozenset({"tests", "test"})
#: Directories a static site commonly lives in, besides the project's root.
SITE_DIRECTORIES = ("public", "site", "_site", "www", "dist", "build")
QUARTO_PROJECT_FILES = ("_quarto.yml", "_quarto.yaml")
#: How deep and how much is read: a project is small; a home directory is not one.
MAX_DEPTH = 4
MAX_FILES = 5000
MAX_PYTHON_BYTES = 1_000_000
#: Method names of route decorators: `@app.get("/health")`, `@app.route("/health")`.
_ROUTE_METHODS = frozenset({"get", "head", "route", "api_route"})


@dataclass(frozen=True)
class AppObject:
    """A module-level ``variable = Constructor(...)``, e.g. ``app = FastAPI()``."""

    variable: str
    constructor: str  # the called name's last part: FastAPI, Flask, Dash, App


@dataclass(frozen=True)
class PythonModule:
    path: str  # relative to the project, with forward slashes
    imports: frozenset[str]  # every imported module's full dotted name, anywhere in the file
    objects: tuple[AppObject, ...]
    #: Module-level ``name = other.attribute`` assignments: (name, other, attribute).
    attributes: tuple[tuple[str, str, str], ...]
    functions: frozenset[str]  # module-level function names
    routes: frozenset[str]  # paths given to route decorators

    @property
    def module(self) -> str:
        """The dotted name servers import it by: ``api/main.py`` is ``api.main``."""
        parts = list(PurePosixPath(self.path).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        return ".".join(parts)

    def imports_package(self, package: str) -> bool:
        return any(name == package or name.startswith(package + ".") for name in self.imports)

    def objects_of(self, constructor: str) -> list[str]:
        return [o.variable for o in self.objects if o.constructor == constructor]


@dataclass(frozen=True)
class ProjectFiles:
    """The files of a project that can tell its type."""

    python: tuple[PythonModule, ...]
    unparsable: tuple[str, ...]  # .py files that are not valid Python
    notebooks: tuple[str, ...]
    quarto_documents: tuple[str, ...]
    quarto_project: str | None  # _quarto.yml when the root has one
    sites: tuple[str, ...]  # directories holding index.html: "." first, then SITE_DIRECTORIES
    truncated: bool  # the walk stopped at MAX_FILES


def scan(directory: Path) -> ProjectFiles:
    """Read the project in ``directory``."""
    python: list[PythonModule] = []
    unparsable: list[str] = []
    notebooks: list[str] = []
    quarto: list[str] = []
    files = _walk(directory)
    truncated = len(files) > MAX_FILES
    for relative in files[:MAX_FILES]:
        name = relative.name
        if name.endswith(".py") and not _is_test_file(relative):
            parsed = _read_python(directory / relative, relative.as_posix())
            if parsed is None:
                unparsable.append(relative.as_posix())
            else:
                python.append(parsed)
        elif name.endswith(".ipynb"):
            notebooks.append(relative.as_posix())
        elif name.endswith(".qmd"):
            quarto.append(relative.as_posix())
    project = next((n for n in QUARTO_PROJECT_FILES if (directory / n).is_file()), None)
    sites = [
        site for site in (".", *SITE_DIRECTORIES) if (directory / site / "index.html").is_file()
    ]
    return ProjectFiles(
        python=tuple(python),
        unparsable=tuple(unparsable),
        notebooks=tuple(notebooks),
        quarto_documents=tuple(quarto),
        quarto_project=project,
        sites=tuple(sites),
        truncated=truncated,
    )


def _walk(directory: Path) -> list[PurePosixPath]:
    """The project's files, relative and sorted, leaving out hidden, tool and test
    directories."""
    found: list[PurePosixPath] = []
    for root, directories, files in os.walk(directory):
        relative_root = PurePosixPath(Path(root).relative_to(directory).as_posix())
        depth = 0 if str(relative_root) == "." else len(relative_root.parts)
        directories[:] = sorted(
            d
            for d in directories
            if depth < MAX_DEPTH
            and not d.startswith(".")
            and d not in SKIPPED_DIRECTORIES
            and d not in TEST_DIRECTORIES
            and not d.endswith(".egg-info")
        )
        found.extend(relative_root / name for name in sorted(files) if not name.startswith("."))
        if len(found) > MAX_FILES:
            break  # enough to know the walk was cut short
    return found


def _is_test_file(path: PurePosixPath) -> bool:
    name = path.name
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


def _read_python(path: Path, relative: str) -> PythonModule | None:
    try:
        if path.stat().st_size > MAX_PYTHON_BYTES:
            return None
        tree = ast.parse(path.read_bytes(), filename=relative)
    except (SyntaxError, ValueError, OSError):
        return None
    imports: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imports.add(node.module)
            # `from shiny import express` imports the module shiny.express.
            imports.update(f"{node.module}.{alias.name}" for alias in node.names)
    objects: list[AppObject] = []
    attributes: list[tuple[str, str, str]] = []
    functions: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            functions.add(statement.name)
        target, value = _assignment(statement)
        if target is None or value is None:
            continue
        if isinstance(value, ast.Call):
            constructor = _called_name(value.func)
            if constructor:
                objects.append(AppObject(target, constructor))
        elif isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name):
            attributes.append((target, value.value.id, value.attr))
    return PythonModule(
        path=relative,
        imports=frozenset(imports),
        objects=tuple(objects),
        attributes=tuple(attributes),
        functions=frozenset(functions),
        routes=frozenset(_routes(tree)),
    )


def _assignment(statement: ast.stmt) -> tuple[str | None, ast.expr | None]:
    """``name = value`` or ``name: T = value`` at module level, else (None, None)."""
    if (
        isinstance(statement, ast.Assign)
        and len(statement.targets) == 1
        and isinstance(statement.targets[0], ast.Name)
    ):
        return statement.targets[0].id, statement.value
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        return statement.target.id, statement.value
    return None, None


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _routes(tree: ast.Module) -> set[str]:
    routes: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr in _ROUTE_METHODS
                and decorator.args
                and isinstance(decorator.args[0], ast.Constant)
                and isinstance(decorator.args[0].value, str)
            ):
                routes.add(decorator.args[0].value)
    return routes
