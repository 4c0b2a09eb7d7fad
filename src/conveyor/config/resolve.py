"""From a parsed file to the values of one section: `inherits:`, the merge over `default`,
and the ``!env``/``!expr`` values of the section that is actually used.

Resolution keeps, for every leaf value, the section it came from (``Sourced``), so the CLI can
say "default", "test" or "inherited from development" beside each value. Sections are resolved
once per parsed file; ``!env`` values are read from the environment on every use.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.config.merge import merge
from conveyor.config.parse import ConfigFile, EnvRef, ExprRef
from conveyor.errors import (
    ConfigError,
    ConfigStructureError,
    InheritanceError,
    UnknownSection,
    UnresolvedValue,
)

DEFAULT = "default"


class UnknownEnvironment(dict[str, str]):
    """An environment in which every variable is set, to a value not known here: what CI
    checks with, since on the server the variables come from the app's settings. An
    `inherits:` read from a variable is then checked with its fallback."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return "(set on the server)"

    def get(self, key: str, default: object = None) -> str:
        return self[key]


@dataclass(frozen=True)
class Sourced:
    """A leaf value as written, and the section that supplied it."""

    value: Any
    section: str


def structure_problems(cf: ConfigFile) -> list[ConfigError]:
    """Everything wrong with the file's shape: errors inside sections (malformed tags,
    duplicate keys), no `default`, non-mapping sections, bad `inherits:` values. Empty when
    the file is well formed."""
    problems: list[ConfigError] = list(cf.problems)
    if DEFAULT not in cf.sections:
        problems.append(
            ConfigStructureError(
                f"{cf.path} has no `default` section; every config file needs one, because the "
                f"other sections are merged over it (sections: {_names(cf)})"
            )
        )
    for name, body in cf.sections.items():
        where = f"{cf.path}, line {cf.line_of(name)}"
        if body is not None and not isinstance(body, dict):
            problems.append(
                ConfigStructureError(
                    f"{where}: section {name!r} must be a mapping of keys, found {_describe(body)}"
                )
            )
            continue
        inherits = (body or {}).get("inherits")
        # `inherits:` in `default` is ignored, whatever it holds (see default_inherits_note).
        if name != DEFAULT and inherits is not None and not _is_names(inherits):
            problems.append(
                ConfigStructureError(
                    f"{where}: `inherits` in section {name!r} must be a section name or a list "
                    f'of names (each may be read with !expr Sys.getenv("NAME", "fallback")), '
                    f"found {_describe(inherits)}"
                )
            )
    return problems


def default_inherits_note(cf: ConfigFile) -> str | None:
    """A message when the `default` section has `inherits:`, which is ignored: `default` is
    the base of every section, and R's config::get() never follows its `inherits:` either."""
    body = cf.sections.get(DEFAULT)
    if not isinstance(body, dict) or "inherits" not in body:
        return None
    return (
        f"{cf.path}, line {cf.line_of(DEFAULT)}: `inherits:` in the `default` section is "
        f"ignored (as R's config package ignores it): `default` is the base every other "
        f"section is merged over, so it cannot inherit. Move those values into `default`, or "
        f"remove the `inherits:` line"
    )


def section_to_use(cf: ConfigFile, name: str, *, strict: bool) -> tuple[str, str | None]:
    """The section that serves active name ``name``, and a warning when that is `default`
    standing in for a missing section (an UnknownSection error instead when ``strict``).

    Raises the file's first structure problem, since no section of a malformed file is usable.
    """
    _require_well_formed(cf)
    if name in cf.sections:
        return name, None
    if strict:
        raise unknown_section(cf, name)
    return DEFAULT, (
        f"{cf.path} has no section {name!r}, so `default` is used (as R's config package does); "
        f"sections: {_names(cf)}"
    )


def unknown_section(cf: ConfigFile, name: str) -> UnknownSection:
    return UnknownSection(
        f"{cf.path} has no section {name!r} (sections: {_names(cf)}); add a `{name}:` "
        f"section, or set CONVEYOR_ENV to one of those"
    )


def resolved_tree(cf: ConfigFile, section: str) -> dict[str, Any]:
    """``section`` with its parents and `default` merged under it; leaves are ``Sourced``.

    Raises the file's first structure problem, or InheritanceError. Memoised per parsed file
    while the variables its `inherits:` read keep their values.
    """
    memo_key = ("tree", section)
    values = tuple(os.environ.get(name) for name in inherits_variables(cf))
    cached = cf.memo.get(memo_key)
    if cached is not None and cached[0] == values:
        return cached[1]  # type: ignore[no-any-return]
    _require_well_formed(cf)
    tree = merged_section(cf, section, environ=os.environ)
    cf.memo[memo_key] = (values, tree)
    return tree


def inherits_variables(cf: ConfigFile) -> tuple[str, ...]:
    """The environment variables that `inherits:` lines read (``!expr Sys.getenv(...)``)."""
    names: list[str] = []
    for name, body in cf.sections.items():
        if name == DEFAULT or not isinstance(body, dict):
            continue
        inherits = body.get("inherits")
        for item in inherits if isinstance(inherits, list) else [inherits]:
            if isinstance(item, EnvRef) and item.r_code is not None:
                names.append(item.name)
    return tuple(dict.fromkeys(names))


def _require_well_formed(cf: ConfigFile) -> None:
    if ("well-formed", "") not in cf.memo:
        problems = structure_problems(cf)
        if problems:
            raise problems[0]
        cf.memo[("well-formed", "")] = True


def merged_section(
    cf: ConfigFile,
    section: str,
    problems: list[ConfigError] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Like ``resolved_tree`` but without checking the file's shape first: malformed sections
    count as empty. Raises InheritanceError, or, when ``problems`` is a list, appends each
    one there and leaves out the parents it concerns, resolving the rest of the section.
    ``environ`` (default: the process's) is what `inherits:` read with Sys.getenv sees."""
    environment = os.environ if environ is None else environ
    tree = _with_parents(cf, section, (), problems, environment)
    if section != DEFAULT and DEFAULT in cf.sections:
        tree = merge(_with_parents(cf, DEFAULT, (), problems, environment), tree)
    return tree


def _parents(inherits: Any, environ: Mapping[str, str]) -> list[tuple[str, EnvRef | None]]:
    """The parent sections `inherits:` names, in order, each with the Sys.getenv it was read
    by (if any). A variable that reads as "" names no parent: R's config finds no such
    section and ignores it."""
    if not _is_names(inherits):
        return []
    parents: list[tuple[str, EnvRef | None]] = []
    for item in inherits if isinstance(inherits, list) else [inherits]:
        if isinstance(item, str):
            parents.append((item, None))
            continue
        if isinstance(environ, UnknownEnvironment) or item.name not in environ:
            name = str(item.fallback)
        else:
            name = environ[item.name]
        if name:
            parents.append((name, item))
    return parents


def _with_parents(
    cf: ConfigFile,
    name: str,
    chain: tuple[str, ...],
    problems: list[ConfigError] | None,
    environ: Mapping[str, str],
) -> dict[str, Any]:
    # A malformed section or `inherits:` is reported by structure_problems(); treating it as
    # empty here lets `conveyor config check` go on to find every other problem.
    body = cf.sections.get(name)
    body = body if isinstance(body, dict) else {}
    parents = [] if name == DEFAULT else _parents(body.get("inherits"), environ)
    tree: dict[str, Any] = {}
    # Earlier parents win over later ones, so merge from the last parent to the first.
    for parent, read_by in reversed(parents):
        try:
            inherited = _with_parents(
                cf, parent, _checked(cf, parent, (*chain, name), read_by), problems, environ
            )
        except InheritanceError as error:
            if problems is None:
                raise
            problems.append(error)
            continue
        tree = merge(tree, inherited)
    own = {key: value for key, value in body.items() if key != "inherits"}
    return merge(tree, _sourced(own, name))


def _checked(
    cf: ConfigFile, name: str, chain: tuple[str, ...], read_by: EnvRef | None = None
) -> tuple[str, ...]:
    """``chain`` if section ``name`` can be resolved after it; else InheritanceError."""
    if name in chain:
        cycle = chain[chain.index(name) :]
        loop = " -> ".join((*cycle, name))
        raise InheritanceError(
            f"{cf.path}: section {name!r} inherits from itself ({loop})", cycle=cycle
        )
    if name not in cf.sections:
        raise InheritanceError(
            f"{cf.path}, line {cf.line_of(chain[-1])}: section {chain[-1]!r} inherits from "
            f"{name!r}{_read_by(read_by)}, which is not a section of this file (sections: "
            f"{_names(cf)})"
        )
    return chain


def _read_by(ref: EnvRef | None) -> str:
    if ref is None:
        return ""
    return f" (read by {ref.describe().removeprefix('!expr ')} at line {ref.line})"


def _sourced(body: Mapping[str, Any], section: str) -> dict[str, Any]:
    return {
        key: _sourced(value, section) if isinstance(value, Mapping) else Sourced(value, section)
        for key, value in body.items()
    }


@dataclass(frozen=True)
class Materialized:
    """Plain values of a resolved section, and the section each dotted key came from."""

    values: dict[str, Any]
    sources: dict[str, str]


def materialize(
    cf: ConfigFile,
    tree: Mapping[str, Any],
    active: str,
    environ: Mapping[str, str],
    problems: list[ConfigError] | None = None,
) -> Materialized:
    """Replace ``!env`` values by the environment's, refuse ``!expr``.

    Raises UnresolvedValue at the first problem, or appends every problem to ``problems``
    when a list is given (``conveyor config check`` wants them all).
    """
    sources: dict[str, str] = {}

    def value_of(value: Any, key: str, section: str) -> Any:
        if isinstance(value, EnvRef):
            if value.name in environ:
                return environ[value.name]
            if value.has_fallback:
                return value_of(value.fallback, key, section)
            fail(
                value.line,
                f"key {key!r} in section {section!r}{_active_note(section, active)} reads "
                f"${value.name} with !env, but {value.name} is not set. Set it, or give a "
                f"fallback: !env [{value.name}, VALUE]",
            )
            return None
        if isinstance(value, ExprRef):
            fail(
                value.line,
                f"key {key!r} in section {section!r}{_active_note(section, active)} is an R "
                f"expression (!expr {value.code}); Conveyor does not run R code. Read the value "
                f"from an environment variable with !env NAME instead, or with "
                f'!expr Sys.getenv("NAME") (optionally with a fallback: "NAME", "fallback"), '
                f"which R reads too",
            )
            return None
        if isinstance(value, Mapping):
            return {k: value_of(v, f"{key}.{k}", section) for k, v in value.items()}
        if isinstance(value, list):
            return [value_of(v, f"{key}[{i}]", section) for i, v in enumerate(value)]
        return value

    def fail(line: int, message: str) -> None:
        error = UnresolvedValue(f"{cf.path}, line {line}: {message}")
        if problems is None:
            raise error
        problems.append(error)

    def walk(node: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in node.items():
            dotted = f"{prefix}{key}"
            if isinstance(item, Sourced):
                sources[dotted] = item.section
                out[key] = value_of(item.value, dotted, item.section)
            else:
                out[key] = walk(item, f"{dotted}.")
        return out

    values = walk(tree, "")
    return Materialized(values, sources)


def variables_read(node: Any) -> tuple[str, ...]:
    """The environment variables that the ``!env`` values under ``node`` may read, fallbacks
    included, in order of appearance."""
    if isinstance(node, Sourced):
        return variables_read(node.value)
    if isinstance(node, EnvRef):
        return (node.name, *variables_read(node.fallback))
    children: Iterable[Any]
    if isinstance(node, Mapping):
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return ()
    return tuple(dict.fromkeys(name for child in children for name in variables_read(child)))


def source_label(section: str, active_section: str) -> str:
    """How a value's origin reads beside it: `default`, `test`, `inherited from development`."""
    if section in (DEFAULT, active_section):
        return section
    return f"inherited from {section}"


def _active_note(section: str, active: str) -> str:
    return "" if section == active else f" (used by {active!r})"


def _is_names(value: Any) -> bool:
    """A section name or a list of names, each written or read with Sys.getenv."""
    if isinstance(value, list):
        return all(_is_name(v) for v in value)
    return _is_name(value)


def _is_name(value: Any) -> bool:
    return (isinstance(value, str) and bool(value)) or _is_getenv(value)


def _is_getenv(value: Any) -> bool:
    return isinstance(value, EnvRef) and value.r_code is not None


def _describe(value: Any) -> str:
    """A wrong value, for a message. Lists and mappings are not printed: they may hold
    secrets, and with aliases they can be huge."""
    if isinstance(value, list):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key{'' if len(value) == 1 else 's'}"
    return f"{type(value).__name__} {value!r}"


def _names(cf: ConfigFile) -> str:
    return ", ".join(cf.sections) or "none"
