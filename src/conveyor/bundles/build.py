"""Building a bundle from an app directory: spec, lock, files, manifest, canonical archive."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from conveyor.bundles.app_file import APP_FILE, read_app_file
from conveyor.bundles.archive import FORMAT, bundle_id, normalised_mode, write_archive
from conveyor.bundles.lock import Lock, resolve_lock
from conveyor.bundles.provenance import provenance
from conveyor.bundles.selection import select_files
from conveyor.domain.apps import AppSpec
from conveyor.domain.policy import bundle_alias
from conveyor.domain.run_email import rules_json
from conveyor.domain.schedules import DEFAULT_TIMEOUT
from conveyor.errors import BundleError
from conveyor.storage.atomic_files import write_atomically


@dataclass(frozen=True)
class BuiltBundle:
    id: str
    spec: AppSpec
    manifest: dict[str, Any]
    provenance: dict[str, Any]
    lock: Lock  # every bundle has one: at least the packages its app type needs
    archive: Path
    size: int  # bytes of the archive

    @property
    def alias(self) -> str:
        return bundle_alias(self.id)

    @property
    def file_count(self) -> int:
        return len(self.manifest["files"])


def build_bundle(
    directory: Path,
    output: Path | None = None,
    *,
    progress: Callable[[str], None] = lambda message: None,
    warn: Callable[[str], None] = lambda message: None,
) -> BuiltBundle:
    """Build the bundle of the app in ``directory`` and write its archive to ``output``
    (default: ``directory/.conveyor/bundles/NAME-ALIAS.tar.gz``).

    The lock is resolved first, since it may write ``conveyor.lock`` into ``directory`` (with
    the packages the app type needs added), and that file is then bundled with the rest."""
    directory = directory.resolve()
    if not directory.is_dir():
        raise BundleError(f"{directory} is not a directory; give the app's directory")
    spec = read_app_file(directory)
    lock = resolve_lock(directory, spec, progress=progress)
    files = select_files(
        directory,
        spec.exclude,
        max_file_mb=spec.max_file_mb,
        max_total_mb=spec.max_total_mb,
        max_files=spec.max_files,
        warn=warn,
    )
    paths = {f.path for f in files}
    if APP_FILE not in paths:
        raise BundleError(
            f"{APP_FILE} is not among the bundled files, and a release reads it; it is left out "
            f"by `exclude:` or by a .gitignore or git exclude rule (for the latter, "
            f"`git add -f {APP_FILE}`)"
        )
    _check_entrypoint(spec, paths)
    progress(f"hashing {len(files)} files")
    entries = [
        {
            "path": f.path,
            "sha256": _sha256(f.source),
            "size": f.size,
            "mode": normalised_mode(f.executable),
        }
        for f in files
    ]
    manifest = make_manifest(spec, lock, entries)
    identity = bundle_id(manifest)
    target = output or directory / ".conveyor" / "bundles" / f"{spec.name}-{identity[:10]}.tar.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    progress(f"writing {target}")
    sources = {f.path: f.source for f in files}
    write_atomically(target, lambda handle: write_archive(manifest, sources, handle))
    return BuiltBundle(
        id=identity,
        spec=spec,
        manifest=manifest,
        provenance=provenance(directory),
        lock=lock,
        archive=target,
        size=target.stat().st_size,
    )


def make_manifest(spec: AppSpec, lock: Lock, files: list[dict[str, Any]]) -> dict[str, Any]:
    """What the bundle id covers: the files and what decides how they run. The lock must be
    one of ``files``; its sha256 is repeated in the lock entry."""
    lock_path = PurePosixPath(lock.path).as_posix()
    lock_file = next((entry for entry in files if entry["path"] == lock_path), None)
    if lock_file is None:
        raise BundleError(
            f"the lock {lock.path} is not among the bundled files, so the bundle could not be "
            f"run as locked; it is left out by `exclude:` in conveyor.yml, by a .gitignore or "
            f"git exclude rule, or it is outside the app directory. Bundle it (for a git ignore "
            f"rule: `git add -f {lock.path}`), or point `requirements:` at a file inside the app"
        )
    manifest = {
        "format": FORMAT,
        "app": spec.name,
        "type": spec.type.value,
        "entrypoint": spec.entrypoint,
        "python": spec.python,
        "lock": {
            "path": lock_path,
            "format": lock.format,
            "packages": lock.packages,
            "sha256": lock_file["sha256"],
        },
        "checks": list(spec.required_checks()),
        "files": files,
    }
    run = run_settings(spec)
    if run:
        manifest["run"] = run
    return manifest


def run_settings(spec: AppSpec) -> dict[str, Any]:
    """A runnable app's default schedule and timeout, as the manifest keeps them (only what
    conveyor.yml declares, so other bundles' ids do not change)."""
    run: dict[str, Any] = {}
    if spec.schedule is not None:
        run["schedule"] = {"cron": spec.schedule.cron, "timezone": spec.schedule.timezone}
    if spec.timeout != DEFAULT_TIMEOUT:
        run["timeout"] = spec.timeout
    if spec.email:
        run["email"] = rules_json(spec.email)
    return run


def _check_entrypoint(spec: AppSpec, paths: set[str]) -> None:
    module_file = spec.entrypoint.split(":", 1)[0]
    candidates = {module_file, module_file.replace(".", "/") + ".py"}
    if ":" in spec.entrypoint and not candidates & paths:
        raise BundleError(
            f"entrypoint {spec.entrypoint!r} needs {module_file.replace('.', '/')}.py, which is "
            f"not among the bundled files; set `entrypoint:` in conveyor.yml"
        )
    if spec.type.value in ("shiny", "streamlit", "notebook", "quarto") and module_file not in paths:
        raise BundleError(
            f"entrypoint {spec.entrypoint!r} is not among the bundled files; set `entrypoint:` "
            f"in conveyor.yml to the {spec.type.value} file to run"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
