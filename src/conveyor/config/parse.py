"""Reading a config file: YAML plus the ``!env`` and ``!expr`` tags (``!expr Sys.getenv(...)``
read like ``!env``, see conveyor.config.rexpr), remembered by
(path, mtime, size) so reading a value in a loop never re-reads the file."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import yaml

from conveyor.config.rexpr import parse_getenv
from conveyor.errors import ConfigStructureError, ConfigSyntaxError


@dataclass(frozen=True)
class EnvRef:
    """``!env NAME`` or ``!env [NAME, fallback]``: a value read from the process environment
    when the section is used, not when the file is parsed."""

    name: str
    fallback: Any = None
    has_fallback: bool = False
    line: int = field(default=0, compare=False, repr=False)
    #: Set when written as R's ``!expr Sys.getenv("NAME"[, "fallback"])``: that code. An unset
    #: variable then gives the fallback, "" when none is given, as in R.
    r_code: str | None = None

    def describe(self) -> str:
        if self.r_code is not None:
            return f"!expr {self.r_code}"
        if self.has_fallback:
            return f"!env [{self.name}, {self.fallback!r}]"
        return f"!env {self.name}"


@dataclass(frozen=True)
class ExprRef:
    """``!expr CODE``: an R expression other than ``Sys.getenv(...)`` (which is read as an
    EnvRef). Kept so R files load; an error if the active section needs it."""

    code: str
    line: int = field(default=0, compare=False, repr=False)

    def describe(self) -> str:
        return f"!expr {self.code}"


@dataclass
class ConfigFile:
    """One parsed config file: its sections as written (tags unresolved), and where they are."""

    path: str
    sections: dict[str, Any]
    section_lines: dict[str, int]
    # Errors in single sections (a malformed tag, a duplicate key), each naming its section.
    # Such a section reads as empty here; conveyor.config.resolve refuses the file for get().
    problems: list[ConfigSyntaxError] = field(default_factory=list)
    # Per-file memo of resolved sections, filled by conveyor.config.resolve.
    memo: dict[tuple[str, str], Any] = field(default_factory=dict)

    def line_of(self, section: str) -> int:
        return self.section_lines.get(section, 0)


class _Loader(yaml.SafeLoader):
    """SafeLoader with string keys (as R's yaml gives), duplicate keys refused, dates kept as
    the text written, and our tags. Remembers the anchor names, for messages."""

    anchor_names: dict[int, str]

    def compose_document(self) -> yaml.Node | None:
        # As PyYAML's, but keeps the names of the anchors (by node id) before forgetting them.
        self.get_event()  # type: ignore[no-untyped-call]
        node = self.compose_node(None, None)  # type: ignore[arg-type]
        self.get_event()  # type: ignore[no-untyped-call]
        self.anchor_names = {id(anchored): name for name, anchored in self.anchors.items()}
        self.anchors = {}
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        _check_keys(node)
        self.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            # Keys are names: `on:` or `yes:` stay the strings "on" and "yes", not booleans.
            mapping[str(key_node.value)] = self.construct_object(value_node, deep=deep)
        return mapping


def _check_keys(node: yaml.MappingNode) -> None:
    """Refuse keys that are lists or mappings, and duplicate keys (before `<<:` merges)."""
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "a key must be a plain name, not a list or mapping",
                key_node.start_mark,
            )
        if key_node.value in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key_node.value!r} (first on line {seen[key_node.value]})",
                key_node.start_mark,
            )
        seen[key_node.value] = key_node.start_mark.line + 1


def _construct_timestamp(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    # R's yaml package gives dates and times as the strings written; so do we (a
    # datetime.date would also break json.dumps of the configuration).
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


def _construct_env(loader: yaml.SafeLoader, node: yaml.Node) -> EnvRef:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        name = loader.construct_scalar(node)
        if isinstance(name, str) and name.strip():
            return EnvRef(name.strip(), line=line)
    elif isinstance(node, yaml.SequenceNode):
        items = loader.construct_sequence(node, deep=True)
        if len(items) == 2 and isinstance(items[0], str) and items[0].strip():
            return EnvRef(items[0].strip(), items[1], True, line=line)
    raise yaml.constructor.ConstructorError(
        None,
        None,
        "!env takes a variable name (!env DB_PASSWORD) or a name and a fallback "
        "(!env [DB_HOST, localhost])",
        node.start_mark,
    )


def _construct_expr(loader: yaml.SafeLoader, node: yaml.Node) -> EnvRef | ExprRef:
    if isinstance(node, yaml.ScalarNode):
        code = str(loader.construct_scalar(node))
        line = node.start_mark.line + 1
        getenv = parse_getenv(code)
        if getenv is not None:
            return EnvRef(getenv.name, getenv.unset, True, line=line, r_code=code.strip())
        return ExprRef(code, line=line)
    raise yaml.constructor.ConstructorError(
        None, None, "!expr takes a single line of R code", node.start_mark
    )


_Loader.add_constructor("!env", _construct_env)
_Loader.add_constructor("!expr", _construct_expr)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)

#: How many values YAML aliases (``*name``) may add to a file once expanded. Sharing a block
#: between sections adds a few hundred; a "billion laughs" file adds billions.
MAX_ALIAS_EXPANSION = 100_000
#: How deeply values may nest. Real files nest a handful of levels.
MAX_DEPTH = 100


def yaml_root(text: str) -> yaml.Node | None:
    """The file's YAML node tree, tags unresolved (for reporting where things are written)."""
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def parse(text: str, path: str) -> ConfigFile:
    """Parse config text. Raises ConfigSyntaxError (with line and column) or
    ConfigStructureError when the file as a whole cannot be read: not YAML, not a mapping of
    sections, recursive or exploding aliases. An error inside one section (a malformed tag, a
    duplicate key) is kept in ``problems`` instead, so every such error can be reported."""
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise ConfigSyntaxError(
                f"{path}: values are nested too deeply to read (more than {MAX_DEPTH} levels)"
            ) from None
        if node is None:
            raise ConfigStructureError(
                f"{path} is empty: a config file needs at least a `default:` section"
            )
        if not isinstance(node, yaml.MappingNode):
            raise ConfigStructureError(
                f"{path}, line {node.start_mark.line + 1}: the top level must be a mapping of "
                f"section names (default:, dev:, ...), found {_kind(node)}"
            )
        _check_graph(node, path, loader.anchor_names)
        lines = {
            str(key.value): key.start_mark.line + 1
            for key, _ in node.value
            if isinstance(key, yaml.ScalarNode)
        }
        _check_keys(node)
        loader.flatten_mapping(node)
        sections: dict[str, Any] = {}
        problems: list[ConfigSyntaxError] = []
        for key_node, value_node in node.value:
            name = str(key_node.value)
            try:
                sections[name] = loader.construct_document(value_node)
            except yaml.MarkedYAMLError as exc:
                problems.append(_syntax_error(exc, path, f", in section {name!r}"))
                sections[name] = None
                # construct_document() resets its state only when it succeeds.
                loader.constructed_objects = {}
                loader.recursive_objects = {}
                loader.state_generators = []
                loader.deep_construct = False
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, path) from None
    except yaml.YAMLError as exc:
        raise ConfigSyntaxError(f"{path}: {exc}") from None
    finally:
        loader.dispose()
    return ConfigFile(path=path, sections=sections, section_lines=lines, problems=problems)


def _syntax_error(exc: yaml.MarkedYAMLError, path: str, where: str = "") -> ConfigSyntaxError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    if mark is None:
        return ConfigSyntaxError(f"{path}: {problem}{where}")
    line, column = mark.line + 1, mark.column + 1
    return ConfigSyntaxError(
        f"{path}, line {line}, column {column}: {problem}{where}", line=line, column=column
    )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_graph(root: yaml.Node, path: str, anchor_names: dict[int, str]) -> None:
    """Refuse an alias inside the anchor it names (a value that contains itself), aliases
    that expand to more than MAX_ALIAS_EXPANSION values, and nesting beyond MAX_DEPTH.

    Aliases make the node graph a DAG (or, when recursive, not even that); everything after
    parsing copies values as trees, so the size that matters is the expanded one. Walked
    without recursion, each node once.
    """
    expanded: dict[int, int] = {}  # id(node) -> values in it once aliases are expanded
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 0, False)]
    while stack:
        node, depth, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            expanded[key] = 1 + sum(expanded[id(child)] for child in _children(node))
            continue
        if key in expanded:
            continue
        line = node.start_mark.line + 1
        if key in on_path:
            name = anchor_names.get(key, "?")
            raise ConfigSyntaxError(
                f"{path}, line {line}: the anchor &{name} contains itself (*{name} is used "
                f"inside it), which would make an endless value; refer to it only from "
                f"outside the anchored value",
                line=line,
                column=node.start_mark.column + 1,
            )
        if depth > MAX_DEPTH:
            raise ConfigSyntaxError(
                f"{path}, line {line}: values are nested more than {MAX_DEPTH} levels deep",
                line=line,
                column=node.start_mark.column + 1,
            )
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node))
    added = expanded[id(root)] - len(expanded)
    if added > MAX_ALIAS_EXPANSION:
        anchors = [key for key in anchor_names if key in expanded]
        worst = max(anchors, key=lambda key: expanded[key], default=None)
        largest = f" (&{anchor_names[worst]} alone holds {expanded[worst]:,})" if worst else ""
        raise ConfigSyntaxError(
            f"{path}: the YAML aliases in this file expand to more than "
            f"{MAX_ALIAS_EXPANSION:,} values{largest}; a config file needs far fewer. "
            f"Repeat less through anchors"
        )


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"a single value ({node.value!r})" if isinstance(node, yaml.ScalarNode) else "a value"


_cache: dict[str, tuple[int, int, ConfigFile]] = {}
_cache_lock = threading.Lock()


def load(path: str, stat: os.stat_result) -> ConfigFile:
    """The parsed file at ``path``; parsed again only when its mtime or size changed."""
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(path)
    if cached is not None and cached[:2] == key:
        return cached[2]
    with open(path, encoding="utf-8-sig") as handle:
        try:
            text = handle.read()
        except UnicodeDecodeError as exc:
            raise ConfigSyntaxError(
                f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"
            ) from None
    parsed = parse(text, path)
    with _cache_lock:
        _cache[path] = (*key, parsed)
    return parsed
