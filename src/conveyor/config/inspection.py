"""What `conveyor config show | diff | check` report, as data (the CLI does the printing).

These read the file as written: ``!env`` values are shown by the variable they read, never by
their value, and ``!expr`` is shown, not run. Keys that look secret are masked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.config.locate import active_name, locate
from conveyor.config.parse import ConfigFile, EnvRef, ExprRef, load
from conveyor.config.resolve import (
    DEFAULT,
    Sourced,
    default_inherits_note,
    materialize,
    merged_section,
    resolved_tree,
    section_to_use,
    source_label,
    structure_problems,
    unknown_section,
)
from conveyor.errors import ConfigError, ConfigStructureError, InheritanceError

MASK = "********"
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "key",
        "apikey",
        "credential",
        "credentials",
        "passphrase",
    }
)


def looks_secret(dotted_key: str) -> bool:
    """True when any part of the key reads like a secret: password, secret, token, key, ...
    (``db.password``, ``api_key``, ``authToken``)."""
    words = re.split(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", dotted_key)
    return any(
        word.lower() in _SECRET_WORDS or word.lower().removesuffix("s") in _SECRET_WORDS
        for word in words
    )


@dataclass(frozen=True)
class Entry:
    """One resolved leaf value, ready to display."""

    key: str
    value: Any  # the value as written, or MASK (or with its secret parts replaced by MASK)
    source: str  # "default", "test", "inherited from development"
    masked: bool
    env: str | None = None  # the variable an !env value reads
    env_state: str = ""  # "set", "not set", "not set, fallback used"
    expr: str | None = None  # R code of an !expr value (never run)
    # A digest of the value as written, so masked values can still be compared.
    fingerprint: str = field(default="", repr=False)

    def display(self) -> str:
        if self.env is not None:
            return f"{MASK} (!env {self.env}, {self.env_state})"
        if self.expr is not None:
            return f"!expr {self.expr} (R expression, not run)"
        if isinstance(self.value, str):
            return self.value
        return json.dumps(self.value, default=str)


@dataclass(frozen=True)
class Shown:
    file: str
    active: str
    section: str
    entries: list[Entry]
    warnings: list[str] = field(default_factory=list)


def show(
    env: str | None = None,
    file: str | os.PathLike[str] | None = None,
    key: str | None = None,
    use_parent: bool = True,
) -> Shown:
    """The resolved values of environment ``env`` (default: the active name), each with the
    section it came from. ``key`` narrows to one key or dotted prefix."""
    active = active_name(env)
    parsed = _load(file, use_parent)
    section, warning = section_to_use(parsed, active, strict=False)
    warnings = [w for w in (default_inherits_note(parsed), warning) if w]
    entries = list(_entries(resolved_tree(parsed, section), section))
    if key is not None:
        entries = [e for e in entries if e.key == key or e.key.startswith(f"{key}.")]
        if not entries:
            top = ", ".join(resolved_tree(parsed, section)) or "none"
            raise ConfigError(f"{parsed.path}: no key {key!r} in section {section!r} (keys: {top})")
    return Shown(parsed.path, active, section, entries, warnings)


@dataclass(frozen=True)
class Change:
    key: str
    kind: str  # "changed", "added" (only in B), "missing" (only in A)
    before: Entry | None
    after: Entry | None


@dataclass(frozen=True)
class Diff:
    file: str
    a: str
    b: str
    changes: list[Change]
    warnings: list[str] = field(default_factory=list)


def diff(
    a: str, b: str, file: str | os.PathLike[str] | None = None, use_parent: bool = True
) -> Diff:
    """Keys whose resolved values differ between environments ``a`` and ``b``, or that only
    one of them has. ``!env`` values compare by the variable they read."""
    parsed = _load(file, use_parent)
    sides: list[dict[str, Entry]] = []
    note = default_inherits_note(parsed)
    warnings: list[str] = [note] if note else []
    for name in (a, b):
        section, warning = section_to_use(parsed, name, strict=False)
        if warning:
            warnings.append(warning)
        sides.append({e.key: e for e in _entries(resolved_tree(parsed, section), section)})
    left, right = sides
    changes: list[Change] = []
    for key in sorted(left.keys() | right.keys()):
        before, after = left.get(key), right.get(key)
        if before is None:
            changes.append(Change(key, "added", None, after))
        elif after is None:
            changes.append(Change(key, "missing", before, None))
        elif before.fingerprint != after.fingerprint:
            changes.append(Change(key, "changed", before, after))
    return Diff(parsed.path, a, b, changes, warnings)


@dataclass(frozen=True)
class CheckReport:
    file: str
    sections: list[str]
    checked: list[str]
    problems: list[str]
    # What does not stop the app (a section `default` stands in for, when lenient), and where
    # R's config package would read the file differently.
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(
    envs: Sequence[str] = (),
    file: str | os.PathLike[str] | None = None,
    use_parent: bool = True,
    environ: Mapping[str, str] | None = None,
    *,
    lenient: bool = False,
) -> CheckReport:
    """Every problem in the file, not just the first: errors inside sections (tags, duplicate
    keys), the `default` section, section shapes, `inherits:` (missing parents, cycles, an
    ignored `inherits:` in `default`), and for each environment in ``envs`` (default: the
    active name) that it has a section and that its ``!env`` variables are set and it needs
    no ``!expr``. A broken section does not stop the others, or itself, from being checked:
    whatever can be resolved is.

    ``lenient`` turns what ``get()`` only warns about into warnings: an environment with no
    section (the app reads `default` there) and an ignored `inherits:` in `default`."""
    names = list(envs) or [active_name()]
    try:
        parsed = _load(file, use_parent)
    except ConfigError as exc:
        return CheckReport(os.fspath(file) if file else "config.yml", [], names, [str(exc)])
    problems: list[ConfigError] = list(structure_problems(parsed))
    warnings: list[str] = []
    note = default_inherits_note(parsed)
    if note is not None and lenient:
        warnings.append(note)
    elif note is not None:
        problems.append(ConfigStructureError(note))
    # Missing parents and cycles are left out of the tree (and reported), not fatal.
    trees = {section: merged_section(parsed, section, problems) for section in parsed.sections}
    environment = os.environ if environ is None else environ
    for name in names:
        if name in trees:
            materialize(parsed, trees[name], name, environment, problems)
        elif lenient:
            warnings.append(
                f"{parsed.path} has no section {name!r}; the app reads `default` there "
                f"(sections: {', '.join(parsed.sections)})"
            )
            if DEFAULT in trees:
                materialize(parsed, trees[DEFAULT], name, environment, problems)
        else:
            problems.append(unknown_section(parsed, name))
    return CheckReport(parsed.path, list(parsed.sections), names, _unique(problems), warnings)


def _unique(problems: Iterable[ConfigError]) -> list[str]:
    """The messages, each once; a cycle once, from whichever section it was first met."""
    seen: set[object] = set()
    messages: list[str] = []
    for problem in problems:
        if isinstance(problem, InheritanceError) and problem.cycle:
            key: object = frozenset(problem.cycle)
        else:
            key = str(problem)
        if key not in seen:
            seen.add(key)
            messages.append(str(problem))
    return messages


def _load(file: str | os.PathLike[str] | None, use_parent: bool) -> ConfigFile:
    path, stat = locate(file, use_parent)
    return load(path, stat)


def _entries(tree: Mapping[str, Any], section: str, prefix: str = "") -> Iterable[Entry]:
    for key, node in tree.items():
        dotted = f"{prefix}{key}"
        if not isinstance(node, Sourced):
            yield from _entries(node, section, f"{dotted}.")
            continue
        label = source_label(node.section, section)
        value = node.value
        digest = _fingerprint(value)
        if isinstance(value, EnvRef):
            state = "set" if value.name in os.environ else "not set"
            if state == "not set" and value.has_fallback:
                state = "not set, fallback used"
            yield Entry(
                dotted, MASK, label, True, env=value.name, env_state=state, fingerprint=digest
            )
        elif isinstance(value, ExprRef):
            yield Entry(
                dotted, f"!expr {value.code}", label, False, expr=value.code, fingerprint=digest
            )
        elif looks_secret(dotted):
            yield Entry(dotted, MASK, label, True, fingerprint=digest)
        else:
            shown, masked = _masked(value)
            yield Entry(dotted, shown, label, masked, fingerprint=digest)


def _masked(value: Any) -> tuple[Any, bool]:
    """``value`` with what is secret inside it replaced by MASK, and whether anything was:
    ``!env`` (and ``!expr``) values, and the values of secret-looking keys in mappings, at
    any depth inside lists (sections' own mappings are split into dotted keys before this)."""
    if isinstance(value, EnvRef | ExprRef):
        return MASK, True
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        hidden = False
        for key, item in value.items():
            if looks_secret(str(key)):
                out[key], masked = MASK, True
            else:
                out[key], masked = _masked(item)
            hidden = hidden or masked
        return out, hidden
    if isinstance(value, list):
        items = [_masked(item) for item in value]
        return [shown for shown, _ in items], any(masked for _, masked in items)
    return value, False


def _fingerprint(value: Any) -> str:
    if isinstance(value, EnvRef | ExprRef):
        text = value.describe()
    else:
        # type-exact: `true` and `1` differ, so do "1" and 1
        text = json.dumps(value, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()
