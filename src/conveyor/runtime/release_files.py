"""A release's files against its bundle: what changed since they were extracted, and putting
them back. Checked before every start and restart of a release's processes, so a release never
runs files its bundle does not hold, whoever edited them."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.bundles.archive import extract

_CHUNK = 1024 * 1024


def changes(app_dir: Path, manifest: Mapping[str, Any]) -> list[str]:
    """How ``app_dir`` differs from the bundle's files, as short phrases ("app.py changed",
    "evil.py added", "conveyor.yml missing"); empty when it holds exactly them."""
    expected = {str(f["path"]): f for f in manifest.get("files", [])}
    found: list[str] = []
    present: set[str] = set()
    for directory, subdirectories, files in os.walk(app_dir):
        subdirectories.sort()
        for name in sorted(files):
            path = Path(directory) / name
            relative = path.relative_to(app_dir).as_posix()
            present.add(relative)
            entry = expected.get(relative)
            if entry is None:
                found.append(f"{relative} added")
            elif path.is_symlink() or not _matches(path, entry):
                found.append(f"{relative} changed")
        for name in subdirectories:
            path = Path(directory) / name
            if path.is_symlink():
                present.add(path.relative_to(app_dir).as_posix())
                found.append(f"{path.relative_to(app_dir).as_posix()} added")
    found += [f"{relative} missing" for relative in sorted(expected.keys() - present)]
    return found


def restore(app_dir: Path, archive: Path, bundle_id: str) -> None:
    """Make ``app_dir`` hold exactly the bundle's files again, in place (processes that have
    it open, or mounted, see the restored files): changed and missing files are written from
    the verified archive, added ones removed."""
    fresh = app_dir.parent / f".{app_dir.name}-restore"
    shutil.rmtree(fresh, ignore_errors=True)
    extract(archive, fresh, expected_id=bundle_id)
    try:
        for directory, subdirectories, files in os.walk(app_dir, topdown=False):
            for name in [*files, *subdirectories]:
                path = Path(directory) / name
                original = fresh / path.relative_to(app_dir)
                if path.is_symlink() or not (original.exists() or original.is_symlink()):
                    _remove(path)
                elif path.is_dir() and not original.is_dir():
                    _remove(path)
        for directory, _, files in os.walk(fresh):
            target = app_dir / Path(directory).relative_to(fresh)
            target.mkdir(exist_ok=True)
            os.chmod(target, 0o755)
            for name in files:
                source, destination = Path(directory) / name, target / name
                if destination.is_dir() and not destination.is_symlink():
                    shutil.rmtree(destination)
                os.replace(source, destination)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def _matches(path: Path, entry: Mapping[str, Any]) -> bool:
    if path.stat().st_size != entry["size"]:
        return False
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return bool(digest.hexdigest() == entry["sha256"])


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
