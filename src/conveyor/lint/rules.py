"""The rules: which string literals in a module are hard-coded locations, judged by the string
(`literals`) and by where the syntax tree says it is used.

- A string that is a URL or a database connection string, whole: always.
- A host name or address: when given to a name that says host (``host=``, ``DB_HOST =``,
  ``{"server": ...}``, ``def f(url=...)``), or to a call that takes one (``socket.
  create_connection``, ``smtplib.SMTP``); not a server's bind address (``app.run(host=...)``).
- An absolute path: when something writes to it (``open(p, "w")``, ``df.to_csv(p)``,
  ``Path(p).write_text()``, ``os.makedirs(p)``), when a database is opened at it
  (``sqlite3.connect(p)``), or when it is plainly a file system's path given to a name that
  says path, directory, file or output (``OUTPUT_DIR = "/data/out"``).

Docstrings and other strings that stand alone as statements are never read, nor the fallback
of a variable Conveyor itself sets in every environment (``os.environ.get("CONVEYOR_APP_URL",
"http://127.0.0.1:5000")``), which is used only outside Conveyor."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from conveyor.lint import literals
from conveyor.lint.findings import Kind
from conveyor.lint.literals import Target

#: Last words of names that hold a host or an address.
HOST_WORDS = frozenset(
    {
        "host",
        "hosts",
        "hostname",
        "hostnames",
        "server",
        "servers",
        "endpoint",
        "endpoints",
        "url",
        "urls",
        "uri",
        "uris",
        "dsn",
        "addr",
        "address",
        "netloc",
    }
)
#: Words in names that hold a file system location.
PATH_WORDS = frozenset(
    {
        "out",
        "output",
        "outputs",
        "outdir",
        "outfile",
        "export",
        "exports",
        "save",
        "dir",
        "dirs",
        "directory",
        "folder",
        "path",
        "paths",
        "file",
        "files",
        "filename",
        "filepath",
        "dest",
        "destination",
    }
)
#: Calls that start a server: their host is the address it listens on, which Conveyor chooses.
BIND_CALLS = frozenset(
    {
        "run",
        "run_server",
        "run_simple",
        "serve",
        "listen",
        "bind",
        "make_server",
        "create_server",
        "start_server",
        "start_http_server",
        "uvicorn.Config",
    }
)
#: Calls whose first argument is a host (or a (host, port) pair).
HOST_CALLS = frozenset(
    {
        "create_connection",
        "getaddrinfo",
        "gethostbyname",
        "SMTP",
        "SMTP_SSL",
        "FTP",
        "FTP_TLS",
        "HTTPConnection",
        "HTTPSConnection",
        "Redis",
        "StrictRedis",
        "MongoClient",
    }
)
#: Calls that return their first argument as a path: the path is where the result goes.
PATH_WRAPPERS = frozenset(
    {
        "Path",
        "PurePath",
        "PosixPath",
        "WindowsPath",
        "PurePosixPath",
        "PureWindowsPath",
        "UPath",
        "join",
        "expanduser",
        "expandvars",
        "abspath",
        "realpath",
        "normpath",
        "fspath",
        "str",
    }
)
#: Methods of a path (or string) that return another one: ``Path(p).expanduser()``.
WRAPPER_METHODS = frozenset(
    {"expanduser", "resolve", "absolute", "joinpath", "with_name", "with_suffix", "with_stem"}
)
WRAPPER_ATTRIBUTES = frozenset({"parent"})
#: Methods of a path that write to it.
PATH_WRITE_METHODS = frozenset(
    {"write_text", "write_bytes", "touch", "mkdir", "symlink_to", "hardlink_to"}
)
#: Functions and methods that write to the path given as their argument at this position.
WRITE_CALLS = {
    **{
        name: 0
        for name in (
            "makedirs",
            "mkdir",
            "savefig",
            "save",
            "savez",
            "savez_compressed",
            "savetxt",
            "save_model",
            "save_pretrained",
            "to_csv",
            "to_parquet",
            "to_excel",
            "to_json",
            "to_feather",
            "to_pickle",
            "to_hdf",
            "to_stata",
            "to_html",
            "to_latex",
            "to_markdown",
            "to_xml",
            "to_orc",
            "to_netcdf",
            "to_zarr",
            "to_file",
            "write_csv",
            "write_parquet",
            "write_json",
            "write_ndjson",
            "write_excel",
            "write_ipc",
            "write_avro",
            "write_delta",
            "write_image",
            "write_html",
            "sink_parquet",
            "sink_csv",
            "sink_ipc",
            "sink_ndjson",
            "FileHandler",
            "RotatingFileHandler",
            "TimedRotatingFileHandler",
            "WatchedFileHandler",
        )
    },
    **{
        name: 1
        for name in (
            "copy",
            "copy2",
            "copyfile",
            "copytree",
            "move",
            "os.rename",
            "os.replace",
            "dump",
            "write_table",
            "torch.save",
        )
    },
}
#: Keywords that name the written path in those calls (``df.to_csv(path_or_buf=...)``).
PATH_KEYWORDS = frozenset(
    {
        "path",
        "path_or_buf",
        "excel_writer",
        "fname",
        "filename",
        "file",
        "f",
        "buf",
        "target",
        "dst",
        "dest",
        "destination",
        "where",
        "name",
        "uri",
        "save_directory",
        "outfile",
    }
)
#: ``open(path, mode)``-like calls: they write when the mode says so.
OPEN_CALLS = frozenset({"open", "ZipFile"})
#: Calls that open a database file at their first argument.
DATABASE_FILE_CALLS = frozenset({"sqlite3.connect", "duckdb.connect"})
#: ``something.get("key", fallback)``-like calls, whose fallback belongs to the key.
FALLBACK_CALLS = frozenset({"get", "getenv", "setdefault", "pop"})
CONVEYOR_CONFIG_GET = frozenset({"config.get", "conveyor.config.get"})
#: Variables Conveyor sets for every release (CONVEYOR_APP_URL, ...): a fallback for one is
#: used only outside Conveyor, on a laptop.
CONVEYOR_VARIABLE_PREFIX = "CONVEYOR_"


@dataclass(frozen=True)
class Context:
    """Where a string literal goes."""

    name: str | None = None  # the variable, parameter, keyword or dict key it is given to
    shown: str | None = None  # that name as the message shows it: X, host=, "HOST":
    chosen: bool = False  # the name is the app's own (a variable, a parameter), not an API's
    call: str | None = None  # the call it (or a path made of it) is an argument of
    writes: bool = False  # that call writes to it
    binds: bool = False  # that call starts a server, so a host is a bind address
    host_argument: bool = False  # that call takes a host there
    opens_database: bool = False  # that call opens a database file at it
    fallback_of: str | None = None  # the key of ``.get("key", it)`` / ``getenv("KEY", it)``
    config_default: bool = False  # ... and the call is conveyor's config.get


@dataclass(frozen=True)
class Hit:
    """A literal the rules flag, before suggestions and silencing."""

    node: ast.expr
    statement_line: int  # the first line of the statement it is in
    kind: Kind
    target: Target
    context: Context
    message: str


def words(name: str) -> list[str]:
    """``warehouseURL`` -> [warehouse, url]; ``OUTPUT_DIR`` -> [output, dir]; ``s3`` -> [s3]."""
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])\d*|[A-Z]?[a-z]+\d*|\d+", name)]


def is_host_name(name: str) -> bool:
    found = words(name)
    return bool(found) and found[-1] in HOST_WORDS


def is_path_name(name: str) -> bool:
    return any(word in PATH_WORDS for word in words(name))


def hits(tree: ast.Module) -> list[Hit]:
    """Every flagged literal in ``tree``, in source order."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        text = _string(node, parents)
        if text is None:
            continue
        assert isinstance(node, ast.expr)
        context = context_of(node, parents)
        hit = _judge(text, context)
        if hit is not None:
            kind, target, message = hit
            line = _statement_line(node, parents)
            found.append(Hit(node, line, kind, target, context, message))
    return sorted(found, key=lambda h: (h.node.lineno, h.node.col_offset))


def _string(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str | None:
    """The text of a string literal, f-string fields as ``{name}``; None for anything else, and
    for docstrings, strings standing alone as statements, and the parts of an f-string."""
    parent = parents.get(node)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        if isinstance(parent, ast.JoinedStr):
            return None
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        if isinstance(parent, ast.FormattedValue):
            return None  # a format spec: {value:.1%}
        text = "".join(
            part.value
            if isinstance(part, ast.Constant) and isinstance(part.value, str)
            else "{" + _field(part) + "}"
            for part in node.values
        )
    else:
        return None
    if isinstance(parent, ast.Expr):
        return None  # a docstring, or a string used as a comment
    return text


def _field(part: ast.expr) -> str:
    if isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name | ast.Attribute):
        return ast.unparse(part.value)
    return ""


def _judge(text: str, context: Context) -> tuple[Kind, Target, str] | None:
    if context.fallback_of and context.fallback_of.startswith(CONVEYOR_VARIABLE_PREFIX):
        return None  # Conveyor sets it in every environment: the fallback is for elsewhere
    target = literals.classify(text)
    if target is not None:
        return target.kind, target, _message(target.kind, target, context)
    host_context = context.host_argument or (
        context.name is not None and is_host_name(context.name) and not context.binds
    )
    if host_context:
        host = literals.as_host(text)
        if host is not None:
            return Kind.HOST, host, _message(Kind.HOST, host, context)
    if not literals.is_absolute_path(text):
        return None
    shown = text.strip()
    if context.opens_database:
        target = Target(
            Kind.CONNECTION, shown, "sqlite", path=shown, database=literals.file_name(shown)
        )
        return Kind.CONNECTION, target, _message(Kind.CONNECTION, target, context)
    if context.writes or (
        context.name is not None and is_path_name(context.name) and literals.looks_like_file(text)
    ):
        target = Target(Kind.OUTPUT_PATH, shown, path=shown)
        return Kind.OUTPUT_PATH, target, _message(Kind.OUTPUT_PATH, target, context)
    return None


def _message(kind: Kind, target: Target, context: Context) -> str:
    what = {
        Kind.URL: "hard-coded URL",
        Kind.CONNECTION: "hard-coded database connection string"
        + (" with its password" if target.has_password else ""),
        Kind.HOST: "hard-coded host",
        Kind.OUTPUT_PATH: "hard-coded absolute path",
    }[kind]
    if kind is Kind.CONNECTION and not target.host and target.path:
        what = "hard-coded database file at an absolute path"
    if context.config_default and context.fallback_of:
        return (
            f"{what} as the default of config.get({context.fallback_of!r}): an environment "
            f"whose config.yml lacks {context.fallback_of} silently uses it"
        )
    if context.fallback_of:
        return (
            f"{what} as the fallback for {context.fallback_of}: wherever that is unset, every "
            "environment uses this one"
        )
    if kind is Kind.OUTPUT_PATH and context.writes and context.call:
        return f"{what} written by {context.call}(): every environment writes to the same place"
    given = f" in {context.shown}" if context.shown else ""
    if kind is Kind.OUTPUT_PATH:
        return f"{what}{given}: every environment uses the same place"
    if kind is Kind.CONNECTION:
        return f"{what}{given}: every environment uses the same database"
    return f"{what}{given}: every environment (Dev, Test, Prod) uses this one"


def context_of(node: ast.expr, parents: dict[ast.AST, ast.AST]) -> Context:
    """Where ``node`` goes, looking through the expressions that pass a value on: ``a or b``,
    ``a if c else b``, lists and tuples, ``Path(a)``, ``os.path.join(a, ...)``, ``a / b`` and
    ``a + b`` (for their left-hand side: ``base + "/out.csv"`` does not start with it)."""
    current: ast.AST = node
    while True:
        parent = parents.get(current)
        if parent is None:
            return Context()
        if isinstance(parent, ast.BinOp):
            if parent.left is not current or not isinstance(parent.op, ast.Add | ast.Div | ast.Mod):
                return Context()
        elif isinstance(parent, ast.IfExp):
            if parent.test is current:
                return Context()
        elif isinstance(parent, ast.BoolOp | ast.Tuple | ast.List | ast.Set | ast.Starred):
            pass
        elif isinstance(parent, ast.Call):
            if current is parent.func:
                return Context()
            position = next(i for i, a in enumerate(parent.args) if a is current)
            if not (position == 0 and _last(_dotted(parent.func)) in PATH_WRAPPERS):
                return _call_context(parent, position=position)
        elif isinstance(parent, ast.keyword):
            owner = parents[parent]
            if isinstance(owner, ast.Call):
                return _call_context(owner, keyword=parent.arg)
            return Context(name=parent.arg, shown=f"{parent.arg}=" if parent.arg else None)
        elif isinstance(parent, ast.Attribute):
            method_call = parents.get(parent)
            if parent.attr in WRAPPER_ATTRIBUTES:
                pass
            elif not (isinstance(method_call, ast.Call) and method_call.func is parent):
                return Context()
            elif parent.attr in WRAPPER_METHODS:
                parent = method_call
            else:
                return _receiver_context(method_call, parent.attr)
        elif isinstance(parent, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
            targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
            if current in targets:
                return Context()
            name = next(filter(None, map(_target_name, targets)), None)
            return Context(name=name, shown=name, chosen=True)
        elif isinstance(parent, ast.Dict):
            for key, value in zip(parent.keys, parent.values, strict=True):
                if value is current and isinstance(key, ast.Constant):
                    if not isinstance(key.value, str):
                        return Context()
                    return Context(name=key.value, shown=f"{key.value!r}:")
            return Context()
        elif isinstance(parent, ast.arguments):
            name = _parameter_of(parent, current)
            shown = f"the default of {name}" if name else None
            return Context(name=name, shown=shown, chosen=True)
        else:
            return Context()
        current = parent


def _call_context(
    call: ast.Call, *, position: int | None = None, keyword: str | None = None
) -> Context:
    name = _dotted(call.func)
    last = _last(name)
    shown = last or "the call"
    first = call.args[0] if call.args else None
    key = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
    if last in FALLBACK_CALLS and key is not None:
        is_config = name in CONVEYOR_CONFIG_GET
        if keyword == "default" or (position == 1 and not is_config):
            return Context(
                name=key, call=shown, fallback_of=key, config_default=is_config, chosen=True
            )
    writes = False
    if last in OPEN_CALLS:
        writes = (position == 0 or keyword in PATH_KEYWORDS) and _writing_mode(call, 1)
    else:
        index = WRITE_CALLS.get(name, WRITE_CALLS.get(last))
        writes = index is not None and (
            position == index or (keyword is not None and keyword in PATH_KEYWORDS)
        )
        if last == "basicConfig" and keyword == "filename":
            writes = True
    return Context(
        name=keyword,
        shown=f"{keyword}=" if keyword else None,
        call=shown,
        writes=writes,
        binds=last in BIND_CALLS or name in BIND_CALLS,
        host_argument=last in HOST_CALLS and position == 0,
        opens_database=name in DATABASE_FILE_CALLS and (position == 0 or keyword == "database"),
    )


def _receiver_context(call: ast.Call, method: str) -> Context:
    """The literal (or a path made of it) is what ``method`` is called on."""
    writes = method in PATH_WRITE_METHODS or (method == "open" and _writing_mode(call, 0))
    return Context(call=method, writes=writes)


def _writing_mode(call: ast.Call, position: int) -> bool:
    mode: ast.expr | None = call.args[position] if len(call.args) > position else None
    for keyword in call.keywords:
        if keyword.arg == "mode":
            mode = keyword.value
    if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
        return any(c in mode.value for c in "wax+")
    return False


def _target_name(target: ast.expr) -> str | None:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Subscript):
        key = target.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return key.value
    return None


def _parameter_of(arguments: ast.arguments, default: ast.AST) -> str | None:
    positional = [*arguments.posonlyargs, *arguments.args]
    for parameter, value in zip(
        positional[len(positional) - len(arguments.defaults) :], arguments.defaults, strict=True
    ):
        if value is default:
            return parameter.arg
    for parameter, given in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True):
        if given is default:
            return parameter.arg
    return None


def _dotted(func: ast.expr) -> str:
    """``os.path.join`` for that call; ``df.to_csv`` for ``df.to_csv``; the last name for
    anything more complex (``frame().to_csv`` -> ``to_csv``)."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        inner = _dotted(func.value)
        return f"{inner}.{func.attr}" if inner else func.attr
    return ""


def _last(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _statement_line(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> int:
    current: ast.AST | None = node
    while current is not None and not isinstance(current, ast.stmt):
        current = parents.get(current)
    return current.lineno if current is not None else getattr(node, "lineno", 1)
