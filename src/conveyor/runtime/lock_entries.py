"""A lock's entries for one runtime: what its ``requirements.txt``, ``pylock.toml`` or ``uv.lock``
says is installed for the runtime's interpreter, and at which version. Drift
(``conveyor.runtime.drift``) compares a runtime's installed distributions with them.

- ``requirements-txt``: ``name==version [; marker]`` lines (``name @ url`` pins no version);
  options such as ``--hash`` are skipped, and a line not understood is a note, not an entry.
- ``pylock.toml`` (PEP 751): its ``[[packages]]``; their markers see no extras and the lock's
  default groups.
- ``uv.lock``: what ``uv sync --frozen --no-install-project`` installs, the packages reached from
  the project through its dependencies and default groups (``[tool.uv] default-groups`` in the
  ``pyproject.toml`` beside the lock), following the markers and extras on each edge.

Environment markers (PEP 508) are evaluated for the runtime's interpreter, from the environment
the caller builds from the runtime, never from this server's own Python. ``packaging`` parses
each marker and makes each comparison in it; ``and`` and ``or`` are combined here with a third
value, unknown, so an entry whose marker cannot be decided is optional (``applies`` None: never
missing, its version accepted) while a marker decided by its other terms is decided. Unknown:
a marker ``packaging`` cannot parse; ``extra``, which a lock's entries should not need and uv's
conflict markers use in their own way; a variable the environment does not give; ordering
strings that are not versions.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging._parser import Variable
from packaging.markers import (
    EvaluateContext,
    InvalidMarker,
    Marker,
    UndefinedComparison,
    UndefinedEnvironmentName,
)
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from conveyor.errors import RuntimeFailure


@dataclass(frozen=True)
class LockEntry:
    """One entry of a lock: ``version`` None when it does not pin one (a URL); ``applies`` None
    when its marker could not be evaluated."""

    name: str
    version: str | None
    applies: bool | None


def read_lock(
    lock_file: Path,
    lock_format: str,
    lock_bytes: bytes,
    environment: Mapping[str, str],
    notes: list[str],
) -> list[LockEntry]:
    """The entries of ``lock_file`` (its content ``lock_bytes``, its format as in a bundle's
    manifest), markers evaluated with ``environment``; what could not be read is added to
    ``notes``. RuntimeFailure when a TOML lock is not valid TOML."""
    text = lock_bytes.decode("utf-8")
    if lock_format == "requirements-txt":
        return _requirements_entries(text, environment, notes)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuntimeFailure(f"{lock_file} is not valid TOML: {exc}") from None
    if lock_format == "pylock.toml":
        return _pylock_entries(data, environment)
    return _uv_lock_entries(data, lock_file.parent / "pyproject.toml", environment, notes)


_REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?\s*"
    r"(?:===?\s*(?P<version>[^\s;]+)|@\s*\S+)\s*(?:;\s*(?P<marker>.*?))?\s*$"
)


def _requirements_entries(
    text: str, environment: Mapping[str, str], notes: list[str]
) -> list[LockEntry]:
    """``name==version [; marker]`` lines; options (``--hash``, ``--index-url``) are skipped."""
    entries = []
    joined = re.sub(r"\\\r?\n", " ", text)
    for raw in joined.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement = re.split(r"\s--", line, maxsplit=1)[0].strip()
        found = _REQUIREMENT.match(requirement)
        if found is None:
            notes.append(f"the lock line {requirement!r} was not understood; not checked")
            continue
        entries.append(
            LockEntry(
                canonicalize_name(found["name"]),
                found["version"],
                _evaluate(found["marker"], environment),
            )
        )
    return entries


def _pylock_entries(data: Mapping[str, Any], environment: Mapping[str, str]) -> list[LockEntry]:
    """PEP 751 ``[[packages]]``; markers see no extras and the lock's default groups."""
    groups = frozenset(canonicalize_name(str(g)) for g in data.get("default-groups", []) or [])
    sets = {"extras": frozenset[str](), "dependency_groups": groups}
    entries = []
    for package in data.get("packages", []):
        if not isinstance(package, dict) or "name" not in package:
            continue
        version = package.get("version")
        entries.append(
            LockEntry(
                canonicalize_name(str(package["name"])),
                None if version is None else str(version),
                _evaluate(package.get("marker"), environment, sets),
            )
        )
    return entries


def _uv_lock_entries(
    data: Mapping[str, Any],
    pyproject: Path,
    environment: Mapping[str, str],
    notes: list[str],
) -> list[LockEntry]:
    """What ``uv sync --frozen --no-install-project`` installs: the packages reached from the
    project through its dependencies and its default dependency groups, following the markers
    and extras on each edge. The project itself, and virtual packages, are not installed."""
    packages = [p for p in data.get("package", []) if isinstance(p, dict) and "name" in p]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for package in packages:
        by_name.setdefault(canonicalize_name(str(package["name"])), []).append(package)
    project: dict[str, Any] = {}
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        notes.append(f"{pyproject} could not be read; its default groups are taken as dev")
    roots = [
        p for p in packages if _source(p).get("virtual") == "." or _source(p).get("editable") == "."
    ]
    if not roots:
        name = canonicalize_name(str(project.get("project", {}).get("name", "")))
        roots = by_name.get(name, [])
    if not roots:
        notes.append("the project was not found in uv.lock; its packages are taken as optional")
        return [
            LockEntry(canonicalize_name(str(p["name"])), _text(p.get("version")), None)
            for p in packages
        ]
    uv_settings = project.get("tool", {}).get("uv", {})
    default_groups = uv_settings.get("default-groups", ["dev"])

    # Breadth-first over (package, extras); a package reached only through a marker that could
    # not be evaluated is optional (None), through any evaluated one required (True).
    reached: dict[int, bool | None] = {}
    queue: list[tuple[dict[str, Any], frozenset[str], bool | None]] = []
    for root in roots:
        groups = root.get("dev-dependencies", {}) or {}
        chosen = groups if default_groups == "all" else default_groups
        edges = list(root.get("dependencies", []))
        for group in chosen:
            edges += groups.get(group, [])
        queue += _follow(edges, by_name, environment, True, notes)
    seen: set[tuple[int, frozenset[str], bool | None]] = set()
    while queue:
        package, extras, certain = queue.pop()
        key = (id(package), extras, certain)
        if key in seen:
            continue
        seen.add(key)
        if reached.get(id(package)) is not True:
            reached[id(package)] = certain
        edges = list(package.get("dependencies", []))
        optional = package.get("optional-dependencies", {}) or {}
        for extra in extras:
            edges += optional.get(extra, [])
        queue += _follow(edges, by_name, environment, certain, notes)
    return [
        LockEntry(canonicalize_name(str(p["name"])), _text(p.get("version")), reached[id(p)])
        for p in packages
        if id(p) in reached and "virtual" not in _source(p)
    ]


def _follow(
    edges: Iterable[Any],
    by_name: Mapping[str, list[dict[str, Any]]],
    environment: Mapping[str, str],
    certain: bool | None,
    notes: list[str],
) -> list[tuple[dict[str, Any], frozenset[str], bool | None]]:
    """The packages ``edges`` (uv.lock dependency entries) lead to for this interpreter."""
    found = []
    for edge in edges:
        if not isinstance(edge, dict) or "name" not in edge:
            continue
        applies = _evaluate(edge.get("marker"), environment)
        if applies is False:
            continue
        candidates = by_name.get(canonicalize_name(str(edge["name"])), [])
        if len(candidates) > 1:  # several versions of one name: the edge says which
            candidates = [
                c
                for c in candidates
                if edge.get("version") in (None, c.get("version"))
                and edge.get("source") in (None, c.get("source"))
            ]
        if len(candidates) != 1:
            notes.append(f"uv.lock: cannot tell which {edge['name']} a dependency means")
            continue
        extras = frozenset(str(e) for e in edge.get("extra", []) or [])
        found.append((candidates[0], extras, certain if applies else None))
    return found


def _source(package: Mapping[str, Any]) -> Mapping[str, Any]:
    source = package.get("source", {})
    return source if isinstance(source, dict) else {}


def _text(value: object) -> str | None:
    return None if value is None else str(value)


# --- PEP 508 markers -------------------------------------------------------------------------


def _evaluate(
    marker: object,
    environment: Mapping[str, str],
    sets: Mapping[str, frozenset[str]] | None = None,
) -> bool | None:
    """True or False for the runtime's interpreter; None when it cannot be evaluated: not PEP 508
    as ``packaging`` reads it, or deciding it needs a comparison that cannot be made (a variable
    ``environment`` and ``sets`` do not give, such as ``extra``, which a lock's entries should not
    need and uv's conflict markers use in their own way; a comparison ``packaging`` leaves
    undefined). ``packaging`` parses the marker and makes each comparison; ``and`` and ``or`` are
    combined here, so a marker whose other terms decide it is decided all the same."""
    if marker is None or str(marker).strip() == "":
        return True
    try:
        parsed = Marker(str(marker))
    except InvalidMarker:
        return None
    values: dict[str, str | frozenset[str]] = {**environment, **(sets or {})}
    # packaging's parse tree is private (``Marker._markers``); its shape is the same in 25 and 26:
    # comparisons as (lhs, op, rhs) tuples, parenthesised groups as lists, "and"/"or" between.
    # tests/runtime_drift/test_markers.py fails on a packaging that changes it.
    return _decided(parsed._markers, values, "lock_file" if sets else "requirement")


def _decided(
    tree: Sequence[object], values: Mapping[str, str | frozenset[str]], context: EvaluateContext
) -> bool | None:
    """``and`` binds tighter than ``or``; an unknown (None) term decides only when the others do
    not: ``False and unknown`` is False, ``True or unknown`` is True."""
    alternatives: list[list[bool | None]] = [[]]
    for node in tree:
        if node == "or":
            alternatives.append([])
        elif node == "and":
            continue
        elif isinstance(node, list):
            alternatives[-1].append(_decided(node, values, context))
        elif isinstance(node, tuple) and len(node) == 3:
            alternatives[-1].append(_comparison(node, values, context))
        else:
            return None  # a shape this module does not know
    terms = [False if False in t else None if None in t else True for t in alternatives]
    return True if True in terms else None if None in terms else False


def _comparison(
    node: tuple[Any, Any, Any], values: Mapping[str, str | frozenset[str]], context: EvaluateContext
) -> bool | None:
    """One comparison, made by ``packaging`` with ``values`` only: a variable they do not give is
    unknown here, never taken from the server's own interpreter (``Marker.evaluate`` would)."""
    lhs, op, rhs = node
    names = [side.value for side in (lhs, rhs) if isinstance(side, Variable)]
    if len(names) != 1 or names[0] not in values:
        return None
    if not isinstance(values[names[0]], str) and not (
        isinstance(rhs, Variable) and op.value in ("in", "not in")
    ):
        return None  # a set (extras, dependency_groups) only in `'name' in set`
    if op.value in ("<", "<=", ">", ">=", "~=") and not all(
        _is_version(str(values[side.value]) if isinstance(side, Variable) else side.value)
        for side in (lhs, rhs)
    ):
        # PEP 508 orders strings that are not versions as Python does; packaging's releases
        # disagree (26 says False): unknown here, so the entry is neither missing nor extra.
        return None
    try:
        one = Marker(" ".join(part.serialize() for part in node))
        return one.evaluate(values, context)
    # InvalidVersion: packaging 25 on a value that is no version (`'3.11.*' < python_version`);
    # KeyError: packaging before 26.3 for a variable it was not given.
    except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName, InvalidVersion, KeyError):
        return None


def _is_version(text: str) -> bool:
    try:
        Version(text)
    except InvalidVersion:
        return False
    return True
