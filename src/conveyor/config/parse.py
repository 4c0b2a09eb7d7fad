"""Reading a config file: YAML plus the ``!env`` and ``!expr`` tags, remembered by
(path, mtime, size) so reading a value in a loop never re-reads the file."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import yaml

from conveyor.errors import ConfigStructureError, ConfigSyntaxError


@dataclass(frozen=True)
class EnvRef:
    """``!env NAME`` or ``!env [NAME, fallback]``: a value read from the process environment
    when the section is used, not when the file is parsed."""

    name: str
    fallback: Any = None
    has_fallback: bool = False
    line: int = field(default=0, compare=False, repr=False)

    def describe(self) -> str:
        if self.has_fallback:
            return f"!env [{self.name}, {self.fallback!r}]"
        return f"!env {self.name}"


@dataclass(frozen=True)
class ExprRef:
    """``!expr CODE``: an R expression. Kept so R files load; an error if the active section
    needs it."""

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
    # Per-file memo of resolved sections, filled by conveyor.config.resolve.
    memo: dict[tuple[str, str], Any] = field(default_factory=dict)

    def line_of(self, section: str) -> int:
        return self.section_lines.get(section, 0)


class _Loader(yaml.SafeLoader):
    """SafeLoader with string keys (as R's yaml gives), duplicate keys refused, and our tags."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
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
        self.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            # Keys are names: `on:` or `yes:` stay the strings "on" and "yes", not booleans.
            mapping[str(key_node.value)] = self.construct_object(value_node, deep=deep)
        return mapping


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


def _construct_expr(loader: yaml.SafeLoader, node: yaml.Node) -> ExprRef:
    if isinstance(node, yaml.ScalarNode):
        return ExprRef(str(loader.construct_scalar(node)), line=node.start_mark.line + 1)
    raise yaml.constructor.ConstructorError(
        None, None, "!expr takes a single line of R code", node.start_mark
    )


_Loader.add_constructor("!env", _construct_env)
_Loader.add_constructor("!expr", _construct_expr)


def parse(text: str, path: str) -> ConfigFile:
    """Parse config text. Raises ConfigSyntaxError (with line and column) or
    ConfigStructureError when the top level is not a mapping of sections."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigStructureError(
                f"{path} is empty: a config file needs at least a `default:` section"
            )
        if not isinstance(node, yaml.MappingNode):
            raise ConfigStructureError(
                f"{path}, line {node.start_mark.line + 1}: the top level must be a mapping of "
                f"section names (default:, dev:, ...), found {_kind(node)}"
            )
        lines = {
            str(key.value): key.start_mark.line + 1
            for key, _ in node.value
            if isinstance(key, yaml.ScalarNode)
        }
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if mark is None:
            raise ConfigSyntaxError(f"{path}: {problem}") from None
        line, column = mark.line + 1, mark.column + 1
        raise ConfigSyntaxError(
            f"{path}, line {line}, column {column}: {problem}", line=line, column=column
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigSyntaxError(f"{path}: {exc}") from None
    finally:
        loader.dispose()
    return ConfigFile(path=path, sections=data, section_lines=lines)


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
