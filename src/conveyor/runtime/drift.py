"""Drift: what in a runtime no longer matches the lock it was built from, and its repair.

A runtime is built read-only and synced exactly to its lock (``conveyor.runtime.builds``), but a
person with shell access can still make it writable and "fix things by hand": install or remove a
package, upgrade one, edit a file. ``runtime_drift`` finds all of that without starting the
runtime's Python: it reads the installed distributions with ``importlib.metadata`` pointed at the
runtime's site-packages and compares them with the lock's entries (read by
``conveyor.runtime.lock_entries``): distributions missing, extra, or at another version. Then it
checks every installed file against the sha256 its distribution's ``RECORD`` lists, and looks for
files in site-packages that no ``RECORD`` lists (a ``.pth`` or a module dropped in by hand). Only
drift is reported, not what a build itself makes:

- the venv's own files (``bin/activate``, ``pyvenv.cfg``, ...) are in no ``RECORD`` and are not
  looked at; in site-packages, Conveyor's ``.pth`` for its library is expected;
- bytecode is not in ``RECORD`` (uv compiles it after installing), and a ``.pyc`` in
  ``__pycache__`` is never run without its source beside it, so ``__pycache__`` is skipped;
- ``RECORD`` lines without a hash (``RECORD`` itself) are not checked;
- a lock's entries are matched with their environment markers evaluated for the runtime's
  interpreter (its environment built here from the runtime, never the server's own Python), so
  ``colorama ; sys_platform == 'win32'`` is not "missing" on Linux. A marker that cannot be
  evaluated makes its entry optional: never reported missing, its version accepted;
- Conveyor's library copy (``conveyor-lib``) is compared with this Conveyor's own library when
  the runtime was built from it (the runtime's id, which covers the library, says so); a runtime
  built by another Conveyor gets a note instead.

Installed files are hard links into uv's cache (uv links rather than copies), so a file edited
in place in one runtime is edited in the cache and in every runtime that links the same file;
such a file is reported with ``shared=True``, and its distribution is in ``RuntimeDrift.refresh``.

Repair (``repair``, with ``RuntimeBuilder.rebuild``): a runtime's id is the hash of its inputs,
so the rebuilt runtime has the same id and the same path as the drifted one, and releases find it
through ``ensure`` as before. The drifted runtime cannot be fixed in place (it is read-only and
may be in use), so the builder builds a new one beside it under the id's build lock, removing the
packages in ``refresh`` from uv's cache first so their edited files are downloaded again instead
of linked back; checks the new one with ``runtime_drift`` and stops there when it is not clean;
then swaps the two directories in one atomic ``renameat2(RENAME_EXCHANGE)`` (renames within one
parent need write permission on the parent only, so the read-only trees do not stop it) and
moves the old one to ``.retired-<id>-<time>``, kept for inspection. From that moment, a release
that starts runs on the clean runtime. Processes already running keep the files they have open
(on Linux an open or mapped file lives on after its name moves); what they import afterwards
comes from the clean runtime, which has the same lock. The caller then moves every release on
that runtime to it with a normal blue-green switch (which restarts them on the same path) and
calls ``RuntimeBuilder.remove_retired`` once they have switched; removal makes the read-only tree
writable first.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

import conveyor
from conveyor.errors import NotFound, RuntimeFailure
from conveyor.runtime.app_library import LIBRARY_DIR, LIBRARY_FILES, PTH_FILE
from conveyor.runtime.builds import (
    LOCK_FORMATS,
    MARKER,
    RuntimeBuilder,
    RuntimeInfo,
    runtime_id,
)
from conveyor.runtime.interpreters import Interpreter
from conveyor.runtime.lock_entries import LockEntry, read_lock

#: Files a runtime's site-packages has that no RECORD lists: Conveyor's .pth for its library,
#: and the virtualenv shim some uv versions add.
_UNRECORDED = (PTH_FILE, "_virtualenv.pth", "_virtualenv.py")
_LISTED_FILES = 20  # file lines in a summary before "... and N more"

FileProblem = Literal["changed", "missing", "added", "unreadable"]


@dataclass(frozen=True)
class DistributionDrift:
    """A distribution that differs from the lock. ``locked`` is None for one the lock does not
    list (for this interpreter); ``installed`` is None for one that is not installed."""

    name: str  # normalised (PEP 503)
    locked: str | None
    installed: str | None


@dataclass(frozen=True)
class FileDrift:
    """A file that differs from what its distribution's RECORD says (``changed``, ``missing``,
    ``unreadable``), or one in site-packages that no RECORD lists (``added``). ``shared``: the
    file is hard-linked elsewhere (uv's cache, other runtimes), so an edit in place changed those
    too."""

    path: str  # relative to the runtime's directory
    distribution: str | None  # whose RECORD lists it; "conveyor-lib" for Conveyor's library
    problem: FileProblem
    shared: bool = False


@dataclass(frozen=True)
class RuntimeDrift:
    """How a runtime differs from its lock. ``notes`` say what could not be checked; they do not
    make it unclean."""

    runtime: Path
    id: str
    missing: tuple[DistributionDrift, ...] = ()
    extra: tuple[DistributionDrift, ...] = ()
    changed: tuple[DistributionDrift, ...] = ()
    files: tuple[FileDrift, ...] = ()
    notes: tuple[str, ...] = ()
    distributions_checked: int = 0
    files_checked: int = 0

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.changed or self.files)

    @property
    def refresh(self) -> tuple[str, ...]:
        """Distributions with a file edited in place: their files in uv's cache are edited too,
        so a rebuild must download them again rather than link them from the cache."""
        names = {
            f.distribution
            for f in self.files
            if f.shared and f.problem == "changed" and f.distribution not in (None, LIBRARY_DIR)
        }
        return tuple(sorted(str(name) for name in names))

    def summary(self) -> str:
        checked = (
            f"{self.distributions_checked} distributions, {self.files_checked:,} files checked"
        )
        if self.clean:
            lines = [f"runtime {self.id[:12]} matches its lock ({checked})"]
        else:
            lines = [f"runtime {self.id[:12]} has drifted from its lock ({checked}):"]
        lines += [f"  extra: {d.name} {d.installed}, not in the lock" for d in self.extra]
        lines += [
            f"  missing: {d.name} {d.locked}, in the lock, not installed" for d in self.missing
        ]
        lines += [
            f"  changed: {d.name} {d.installed} installed, the lock has {d.locked}"
            for d in self.changed
        ]
        for drifted in self.files[:_LISTED_FILES]:
            detail = [drifted.distribution] if drifted.distribution else []
            if drifted.shared and drifted.problem == "changed":
                detail.append("hard-linked: uv's cache and runtimes sharing it have the edit")
            suffix = f" ({'; '.join(detail)})" if detail else ""
            lines.append(f"  file {drifted.problem}: {drifted.path}{suffix}")
        if len(self.files) > _LISTED_FILES:
            lines.append(f"  ... and {len(self.files) - _LISTED_FILES} more files")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class Repair:
    """What ``repair`` did: ``rebuilt`` is False when the runtime was clean already. The caller
    moves the releases on ``runtime`` to it with a blue-green switch, then removes the retired
    runtime (``RuntimeBuilder.remove_retired(runtime.id)``)."""

    runtime: RuntimeInfo
    before: RuntimeDrift
    after: RuntimeDrift
    rebuilt: bool
    refreshed: tuple[str, ...] = ()


# --- the check -------------------------------------------------------------------------------


def runtime_drift(runtime_path: Path, lock_file: Path, lock_format: str) -> RuntimeDrift:
    """Compare the runtime at ``runtime_path`` with the lock it was built from (``lock_format``
    as in a bundle's manifest). RuntimeFailure when it is not a complete runtime or was built
    from another lock."""
    root = runtime_path.absolute()
    marker = _read_marker(root)
    if lock_format not in LOCK_FORMATS:
        raise RuntimeFailure(f"unknown lock format {lock_format!r}")
    try:
        lock_bytes = lock_file.read_bytes()
    except OSError as exc:
        raise RuntimeFailure(f"cannot read the lock {lock_file}: {exc.strerror}") from None
    identity = str(marker.get("id", root.name))
    if (marker.get("lock_format"), marker.get("lock_sha256")) != (
        lock_format,
        hashlib.sha256(lock_bytes).hexdigest(),
    ):
        raise RuntimeFailure(
            f"runtime {identity[:12]} was not built from {lock_file} ({lock_format}); "
            f"compare a runtime with the lock it was built from"
        )
    notes: list[str] = []
    site = _site_packages(root, str(marker.get("python", "")))
    environment = _marker_environment(root, marker)
    locked = read_lock(lock_file, lock_format, lock_bytes, environment, notes)

    listed: set[str] = set()
    files: list[FileDrift] = []
    installed: dict[str, list[str]] = {}
    files_checked = 0
    expected = {entry.name for entry in locked if entry.applies is not False}
    for distribution in importlib.metadata.distributions(path=[str(site)]):
        metadata = distribution.metadata  # parsed on each access: once
        name, version = canonicalize_name(metadata["Name"] or ""), metadata["Version"] or ""
        if not name:
            notes.append("a distribution in site-packages has no name in its metadata")
            continue
        installed.setdefault(name, []).append(version)
        record = distribution.read_text("RECORD")
        if record is None:
            notes.append(f"{name} {version} has no RECORD; its files are unchecked")
            continue
        verify = name in expected  # an extra one is reported as such; its files only count
        files_checked += _check_record(str(root), str(site), name, record, verify, listed, files)
    files += _unrecorded_files(str(root), str(site), listed)
    library_checked, library_drift = _check_library(
        root, site, marker, lock_format, lock_bytes, lock_file, notes
    )
    files += library_drift
    files_checked += library_checked

    missing, extra, changed = _compare(locked, installed, notes)
    return RuntimeDrift(
        runtime=root,
        id=identity,
        missing=missing,
        extra=extra,
        changed=changed,
        files=tuple(sorted(files, key=lambda f: (f.path, f.problem))),
        notes=tuple(notes),
        distributions_checked=sum(len(versions) for versions in installed.values()),
        files_checked=files_checked,
    )


def repair(
    builder: RuntimeBuilder,
    python_requirement: str,
    lock_file: Path,
    lock_format: str,
    log: Callable[[str], None],
) -> Repair:
    """Rebuild the runtime for this lock when it has drifted, and swap the clean one in at the
    same path (``RuntimeBuilder.rebuild``; see this module's docstring). The rebuilt runtime is
    checked before the swap: when it does not match its lock either, RuntimeFailure, and the old
    one stays. NotFound when no runtime is built for this lock."""
    found = builder.find(python_requirement, lock_file, lock_format)
    if found is None:
        raise NotFound(f"no runtime is built for {lock_file}; there is nothing to repair")
    before = runtime_drift(found.path, lock_file, lock_format)
    for line in before.summary().splitlines():
        log(line)
    if before.clean:
        return Repair(found, before, before, rebuilt=False)

    def check(staged: Path) -> None:
        rebuilt = runtime_drift(staged, lock_file, lock_format)
        if not rebuilt.clean:
            raise RuntimeFailure(
                "the rebuilt runtime does not match its lock either, so it was not swapped in:\n"
                + rebuilt.summary()
            )

    info = builder.rebuild(
        python_requirement, lock_file, lock_format, log, refresh=before.refresh, check=check
    )
    after = runtime_drift(info.path, lock_file, lock_format)
    for line in after.summary().splitlines():
        log(line)
    return Repair(info, before, after, rebuilt=True, refreshed=before.refresh)


# --- the runtime -----------------------------------------------------------------------------


def _read_marker(root: Path) -> dict[str, Any]:
    try:
        marker = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuntimeFailure(f"{root} is not a complete runtime (it has no {MARKER})") from None
    except (OSError, ValueError) as exc:
        raise RuntimeFailure(f"cannot read {root / MARKER}: {exc}") from None
    if not isinstance(marker, dict):
        raise RuntimeFailure(f"{root / MARKER} is not what a runtime build writes")
    return marker


def _site_packages(root: Path, python: str) -> Path:
    """``lib/python3.X/site-packages`` (``python3.Xt`` on a free-threaded build); when there are
    several, the one of the interpreter the runtime was built on."""
    found = sorted(root.glob("lib/python*/site-packages"))
    if len(found) > 1:
        minor = ".".join(python.split(".")[:2])
        found = [path for path in found if path.parent.name.startswith(f"python{minor}")]
    if len(found) != 1:
        raise RuntimeFailure(f"cannot find the site-packages of the runtime at {root}")
    return found[0]


def _marker_environment(root: Path, marker: Mapping[str, Any]) -> dict[str, str]:
    """PEP 508 marker values of the runtime's interpreter: its version and implementation from
    the runtime, the operating system's from this machine, where the runtime was built."""
    config: dict[str, str] = {}
    try:
        for line in (root / "pyvenv.cfg").read_text(encoding="utf-8").splitlines():
            key, separator, value = line.partition("=")
            if separator:
                config[key.strip()] = value.strip()
    except OSError:
        pass
    full = str(marker.get("python") or config.get("version_info", ""))
    implementation = config.get("implementation", "CPython")
    return {
        "python_version": ".".join(full.split(".")[:2]),
        "python_full_version": full,
        "implementation_name": implementation.lower(),
        "implementation_version": full,
        "platform_python_implementation": implementation,
        "os_name": os.name,
        "sys_platform": sys.platform,
        "platform_machine": platform.machine(),
        "platform_system": platform.system(),
        "platform_release": platform.release(),
        "platform_version": platform.version(),
    }


def _check_record(
    root: str,
    site: str,
    distribution: str,
    record: str,
    verify: bool,
    listed: set[str],
    drift: list[FileDrift],
) -> int:
    """Add the files ``record`` lists to ``listed``; when ``verify``, check each one's size and
    hash, adding what differs to ``drift``. Returns how many files were checked."""
    checked = 0
    for row in csv.reader(record.splitlines()):
        if not row or not row[0]:
            continue
        path = os.path.normpath(os.path.join(site, row[0]))
        listed.add(path)
        recorded = row[1] if len(row) > 1 else ""
        if not verify or not recorded or not path.startswith(root + os.sep):
            continue  # RECORD itself has no hash; nothing outside the runtime is read
        checked += 1
        problem, shared = _file_state(path, recorded, row[2] if len(row) > 2 else "")
        if problem is not None:
            relative = os.path.relpath(path, root)
            drift.append(FileDrift(relative, distribution, problem, shared))
    return checked


def _file_state(path: str, recorded: str, size: str) -> tuple[FileProblem | None, bool]:
    algorithm, _, expected = recorded.partition("=")
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return "missing", False
    except OSError:
        return "unreadable", False
    shared = status.st_nlink > 1
    if size.isdigit() and int(size) != status.st_size:
        return "changed", shared
    if algorithm not in hashlib.algorithms_guaranteed:
        return None, shared  # not a hash this Python has: nothing to compare with
    try:
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, algorithm).digest()
    except OSError:
        return "unreadable", shared
    actual = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return (None if actual == expected else "changed"), shared


def _unrecorded_files(root: str, site: str, listed: set[str]) -> list[FileDrift]:
    """Files in site-packages that no RECORD lists, apart from what a build adds itself."""
    known = {os.path.join(site, name) for name in _UNRECORDED}
    added = []
    for directory, subdirectories, names in os.walk(site):
        # A .pyc in __pycache__ runs only with its source beside it; uv writes them.
        subdirectories[:] = [name for name in subdirectories if name != "__pycache__"]
        for name in names:
            path = os.path.join(directory, name)
            if path not in listed and path not in known:
                added.append(FileDrift(os.path.relpath(path, root), None, "added"))
    return added


def _check_library(
    root: Path,
    site: Path,
    marker: Mapping[str, Any],
    lock_format: str,
    lock_bytes: bytes,
    lock_file: Path,
    notes: list[str],
) -> tuple[int, list[FileDrift]]:
    """Conveyor's .pth and library copy. The copy's modules are compared with this Conveyor's
    when the runtime was built from them: its id, which covers the library, is then the id this
    Conveyor computes from the runtime's interpreter and lock."""
    drift = []
    pth = site / PTH_FILE
    expected_pth = os.path.relpath(root / LIBRARY_DIR, site) + "\n"
    try:
        if pth.read_text(encoding="utf-8") != expected_pth:
            drift.append(FileDrift(str(pth.relative_to(root)), LIBRARY_DIR, "changed"))
    except FileNotFoundError:
        drift.append(FileDrift(str(pth.relative_to(root)), LIBRARY_DIR, "missing"))
    except (OSError, UnicodeDecodeError):
        drift.append(FileDrift(str(pth.relative_to(root)), LIBRARY_DIR, "unreadable"))
    if not _built_from_this_library(marker, lock_format, lock_bytes, lock_file):
        notes.append(
            f"{LIBRARY_DIR} was built from another version of Conveyor's library; "
            f"not compared with this one"
        )
        return 1, drift
    source = Path(conveyor.__file__).parent
    copy = root / LIBRARY_DIR / "conveyor"
    modules: set[Path] = set()
    for name in LIBRARY_FILES:
        item = source / name
        modules.update(item.rglob("*.py") if item.is_dir() else [item] if item.is_file() else [])
    checked = 1
    wanted: set[Path] = set()
    for module in sorted(modules):
        if module.suffix != ".py":
            continue
        relative = module.relative_to(source)
        wanted.add(relative)
        target = copy / relative
        shown = str(target.relative_to(root))
        checked += 1
        try:
            if target.read_bytes() != module.read_bytes():
                drift.append(FileDrift(shown, LIBRARY_DIR, "changed"))
        except FileNotFoundError:
            drift.append(FileDrift(shown, LIBRARY_DIR, "missing"))
        except OSError:
            drift.append(FileDrift(shown, LIBRARY_DIR, "unreadable"))
    for present in sorted(copy.rglob("*.py")):
        if present.relative_to(copy) not in wanted:
            drift.append(FileDrift(str(present.relative_to(root)), LIBRARY_DIR, "added"))
    return checked, drift


def _built_from_this_library(
    marker: Mapping[str, Any], lock_format: str, lock_bytes: bytes, lock_file: Path
) -> bool:
    """The runtime's id is the one this Conveyor computes for its interpreter (as the marker
    records it) and lock. Any other difference (another Conveyor computed ids otherwise) makes
    this False, which only skips the library comparison."""
    tag = str(marker.get("platform", ""))
    implementation, _, rest = tag.partition("-")
    system, _, abi = rest.partition("-")
    stand_in = Interpreter(
        executable=Path(str(marker.get("interpreter", ""))),
        version=str(marker.get("python", "")),
        implementation=implementation,
        platform=system,
        abi=abi,
    )
    companion = None
    if lock_format == "uv.lock":
        try:
            companion = (lock_file.parent / "pyproject.toml").read_bytes()
        except OSError:
            return False
    if stand_in.platform_tag != tag:
        return False
    return runtime_id(stand_in, lock_format, lock_bytes, companion) == marker.get("id")


# --- the comparison --------------------------------------------------------------------------


def _compare(
    locked: list[LockEntry], installed: Mapping[str, list[str]], notes: list[str]
) -> tuple[
    tuple[DistributionDrift, ...], tuple[DistributionDrift, ...], tuple[DistributionDrift, ...]
]:
    by_name: dict[str, list[LockEntry]] = {}
    for entry in locked:
        by_name.setdefault(entry.name, []).append(entry)
    missing, extra, changed = [], [], []
    for name in sorted(by_name):
        required = [e for e in by_name[name] if e.applies is True]
        if required and name not in installed:
            missing.append(DistributionDrift(name, required[0].version, None))
    for name in sorted(installed):
        versions = installed[name]
        if len(versions) > 1:
            notes.append(f"{name} is installed {len(versions)} times ({', '.join(versions)})")
        candidates = [e for e in by_name.get(name, []) if e.applies is not False]
        for version in versions:
            if not candidates:
                extra.append(DistributionDrift(name, None, version))
            elif not any(
                e.version is None or _same_version(e.version, version) for e in candidates
            ):
                wanted = " or ".join(sorted({str(e.version) for e in candidates}))
                changed.append(DistributionDrift(name, wanted, version))
    return tuple(missing), tuple(extra), tuple(changed)


def _same_version(locked: str, installed: str) -> bool:
    """PEP 440 equality (``1.0`` is ``1.0.0``; spelling aside); text equality otherwise."""
    try:
        return Version(locked) == Version(installed)
    except InvalidVersion:
        return locked.strip().lower() == installed.strip().lower()
