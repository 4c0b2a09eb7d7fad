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

import yaml

from conveyor.config.locate import active_name, locate
from conveyor.config.parse import ConfigFile, EnvRef, ExprRef, load, yaml_root
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
    env: str | None = None  # the variable an !env (or !expr Sys.getenv) value reads
    env_state: str = ""  # "set", "not set", "not set, fallback used", "not set, reads as ''"
    env_code: str | None = None  # the R code when read with !expr Sys.getenv(...)
    expr: str | None = None  # R code of an !expr value (never run)
    # A digest of the value as written, so masked values can still be compared.
    fingerprint: str = field(default="", repr=False)

    def display(self) -> str:
        if self.env_code is not None:
            return f"{MASK} (!expr {self.env_code}, {self.env_state})"
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
    environment = os.environ if environ is None else environ
    trees = {
        section: merged_section(parsed, section, problems, environment)
        for section in parsed.sections
    }
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
    warnings.extend(r_differences(parsed))
    return CheckReport(parsed.path, list(parsed.sections), names, _unique(problems), warnings)


#: Plain scalars R's yaml package reads as TRUE or FALSE (YAML 1.1 booleans).
R_BOOLEANS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE"), "TRUE"),
    **dict.fromkeys(("on", "On", "ON"), "TRUE"),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE"), "FALSE"),
    **dict.fromkeys(("off", "Off", "OFF"), "FALSE"),
}
#: Of those, the values PyYAML (so conveyor.config) keeps as strings.
_STRINGS_TO_PYYAML = frozenset({"y", "Y", "n", "N"})


def r_differences(cf: ConfigFile) -> list[str]:
    """Where R's config package and conveyor.config read the file differently, each with its
    line: ``!env`` (R gets the variable's name, not its value), keys and values R's yaml reads
    as booleans but Conveyor does not (keys such as ``y:`` or ``on:``, which Conveyor keeps as
    written; the values ``y``, ``n``, ``Y``, ``N``), and `inherits:` naming a section the file
    does not have (R ignores it; Conveyor refuses it)."""
    try:
        with open(cf.path, encoding="utf-8-sig") as handle:
            root = yaml_root(handle.read())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []  # load() read it a moment ago; an edit in between is reported next time
    if not isinstance(root, yaml.MappingNode):
        return []
    notes: list[tuple[int, str]] = []
    seen: set[int] = set()
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue  # an alias: the anchored value was looked at once
        seen.add(id(node))
        line = node.start_mark.line + 1
        if node.tag == "!env":
            notes.append((line, _env_note(node)))
            continue
        if isinstance(node, yaml.ScalarNode):
            if node.style is None and node.value in _STRINGS_TO_PYYAML and _plain(node):
                notes.append((line, _value_note(node.value)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and _plain(key) and key.style is None:
                    if key.value in R_BOOLEANS:
                        notes.append((key.start_mark.line + 1, _key_note(key.value)))
                stack.append(value)
    for name, body in root.value:
        if isinstance(body, yaml.MappingNode) and str(name.value) != DEFAULT:
            notes.extend(_missing_parents(cf, str(name.value), body))
    return [f"{cf.path}, line {line}: {note}" for line, note in sorted(notes)]


def _plain(node: yaml.ScalarNode) -> bool:
    return node.tag in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:bool")


def _env_note(node: yaml.Node) -> str:
    name = node.value if isinstance(node, yaml.ScalarNode) else None
    if isinstance(node, yaml.SequenceNode) and node.value:
        first = node.value[0]
        name = first.value if isinstance(first, yaml.ScalarNode) else None
    got = f'the text "{name}"' if isinstance(node, yaml.ScalarNode) else "the list itself"
    fallback = ""
    if isinstance(node, yaml.SequenceNode) and len(node.value) == 2:
        item = node.value[1]
        if isinstance(item, yaml.ScalarNode):
            fallback = f', "{item.value}"'
    return (
        f"R's config package does not read !env: R gets {got}, not the value of ${name}. "
        f'Write !expr Sys.getenv("{name}"{fallback}) instead, which R and Conveyor both read'
    )


def _value_note(text: str) -> str:
    return (
        f"the value {text} is {R_BOOLEANS[text]} to R's yaml package (YAML 1.1 booleans) but "
        f"the string {text!r} to Conveyor (PyYAML). Quote it ('{text}') for a string in both, "
        f"or write {'true' if R_BOOLEANS[text] == 'TRUE' else 'false'} for a boolean in both"
    )


def _key_note(text: str) -> str:
    return (
        f"the key {text} is named {R_BOOLEANS[text]!r} in R (its yaml package reads {text} as "
        f"a boolean) but {text!r} in Conveyor, which keeps keys as written. Quote it "
        f"('{text}':) to name it {text!r} in both"
    )


def _missing_parents(cf: ConfigFile, section: str, body: yaml.MappingNode) -> list[tuple[int, str]]:
    notes = []
    for key, value in body.value:
        if not (isinstance(key, yaml.ScalarNode) and key.value == "inherits"):
            continue
        items = value.value if isinstance(value, yaml.SequenceNode) else [value]
        for item in items:
            if isinstance(item, yaml.ScalarNode) and item.tag == "tag:yaml.org,2002:str":
                if item.value and item.value not in cf.sections:
                    notes.append(
                        (
                            item.start_mark.line + 1,
                            f"section {section!r} inherits from {item.value!r}, which is not "
                            f"a section: R's config package ignores that name and reads "
                            f"{section!r} without it, while Conveyor refuses it",
                        )
                    )
    return notes


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
            if state == "not set" and value.r_code is not None and value.fallback == "":
                state = "not set, reads as ''"
            elif state == "not set" and value.has_fallback:
                state = "not set, fallback used"
            yield Entry(
                dotted,
                MASK,
                label,
                True,
                env=value.name,
                env_state=state,
                env_code=value.r_code,
                fingerprint=digest,
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
