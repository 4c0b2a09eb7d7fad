"""The bundle archive: a canonical tar.gz of ``manifest.json`` and the app's files under
``app/``, and the safe way to read one back.

The bundle id is the sha256 of the manifest's canonical JSON. The manifest lists every file
with its sha256, size and mode, and the lock, type, entrypoint and python requirement; so the id
covers exactly what runs. It does not depend on how gzip compressed the bytes (zlib versions
differ), nor on where or when the bundle was built: that provenance is stored beside it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

from conveyor.errors import BundleError, UnsafeArchive

MANIFEST = "manifest.json"
APP_PREFIX = "app/"
FORMAT = 1
_CHUNK = 1024 * 1024


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def bundle_id(manifest: dict[str, Any]) -> str:
    """The id of the bundle this manifest describes."""
    return hashlib.sha256(canonical_json(manifest)).hexdigest()


def normalised_mode(executable: bool) -> int:
    return 0o755 if executable else 0o644


def write_archive(manifest: dict[str, Any], sources: dict[str, Path], out: BinaryIO) -> None:
    """Write the canonical archive: sorted entries, zero mtimes and owners, normalised modes,
    gzip header without name or time."""
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            body = canonical_json(manifest)
            tar.addfile(_info(MANIFEST, len(body), 0o644), io.BytesIO(body))
            for entry in manifest["files"]:
                info = _info(APP_PREFIX + entry["path"], entry["size"], entry["mode"])
                with open(sources[entry["path"]], "rb") as handle:
                    tar.addfile(info, _Verified(handle, entry))


def _info(name: str, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class _Verified(io.RawIOBase):
    """Reads a source file while hashing it, so a file changed between selection and archiving
    fails the build instead of producing a bundle that does not match its manifest."""

    def __init__(self, handle: IO[bytes], entry: dict[str, Any]) -> None:
        self.handle = handle
        self.entry = entry
        self.digest = hashlib.sha256()
        self.seen = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        self.seen += len(data)
        if not data or self.seen >= self.entry["size"]:
            if self.seen != self.entry["size"] or self.digest.hexdigest() != self.entry["sha256"]:
                raise BundleError(
                    f"{self.entry['path']} changed while the bundle was being built; build again"
                )
        return data


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 100 * 1024 * 1024
    max_total_bytes: int = 500 * 1024 * 1024
    max_entries: int = 20_001


@dataclass(frozen=True)
class OpenedBundle:
    id: str
    manifest: dict[str, Any]


def read_manifest(archive: Path) -> dict[str, Any]:
    """The manifest of an archive, without checking the files (see ``verify``)."""
    with _open(archive) as tar:
        return _first_manifest(archive, tar)


def verify(
    archive: Path, expected_id: str | None = None, limits: Limits = Limits()
) -> OpenedBundle:
    """Check every entry and hash without writing anything; return the id and manifest."""
    return _walk(archive, None, expected_id, limits)


def extract(
    archive: Path, destination: Path, expected_id: str | None = None, limits: Limits = Limits()
) -> OpenedBundle:
    """Extract the app's files into ``destination`` (which must not exist), refusing anything
    unsafe; on any refusal nothing is left behind."""
    if destination.exists():
        raise BundleError(f"{destination} already exists; extraction needs a new directory")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}."))
    try:
        opened = _walk(archive, staging, expected_id, limits)
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return opened


def _walk(
    archive: Path, target: Path | None, expected_id: str | None, limits: Limits
) -> OpenedBundle:
    with _open(archive) as tar:
        manifest = _first_manifest(archive, tar)
        identity = bundle_id(manifest)
        if expected_id is not None and identity != expected_id:
            raise UnsafeArchive(
                f"{archive}: its manifest is bundle {identity[:10]}, not {expected_id[:10]} as "
                f"claimed; the archive was altered or mislabelled"
            )
        expected = {entry["path"]: entry for entry in manifest["files"]}
        seen: set[str] = set()
        total = 0
        count = 1
        for member in _members(tar):
            count += 1
            if count > limits.max_entries:
                raise UnsafeArchive(f"{archive}: more than {limits.max_entries} entries")
            relative = _safe_relative(archive, member)
            if relative in seen:
                raise UnsafeArchive(f"{archive}: {member.name} appears twice")
            seen.add(relative)
            entry = expected.get(relative)
            if entry is None:
                raise UnsafeArchive(f"{archive}: {member.name} is not listed in {MANIFEST}")
            if member.size > limits.max_file_bytes:
                raise UnsafeArchive(
                    f"{archive}: {member.name} is {member.size} bytes, over the "
                    f"{limits.max_file_bytes}-byte limit per file"
                )
            total += member.size
            if total > limits.max_total_bytes:
                raise UnsafeArchive(
                    f"{archive}: content is over the {limits.max_total_bytes}-byte limit"
                )
            _copy_checked(archive, tar, member, entry, target, relative)
        missing = sorted(set(expected) - seen)
        if missing:
            raise UnsafeArchive(
                f"{archive}: {len(missing)} file(s) listed in {MANIFEST} are missing, "
                f"e.g. {missing[0]}"
            )
    return OpenedBundle(identity, manifest)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        member = tar.next()
        if member is None:
            return
        yield member


def _safe_relative(archive: Path, member: tarfile.TarInfo) -> str:
    name = member.name
    path = PurePosixPath(name)
    if name.startswith("/") or path.is_absolute() or "\\" in name or ":" in path.parts[0]:
        raise UnsafeArchive(f"{archive}: entry {name!r} has an absolute path")
    if ".." in path.parts:
        raise UnsafeArchive(f"{archive}: entry {name!r} climbs out of the bundle with '..'")
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        escapes = target.is_absolute() or ".." in target.parts
        kind = "hard link" if member.islnk() else "link"
        if escapes:
            raise UnsafeArchive(
                f"{archive}: entry {name!r} is a {kind} to {member.linkname!r}, outside the bundle"
            )
        raise UnsafeArchive(f"{archive}: entry {name!r} is a {kind}; bundles hold only files")
    if member.ischr() or member.isblk():
        raise UnsafeArchive(f"{archive}: entry {name!r} is a device")
    if member.isfifo():
        raise UnsafeArchive(f"{archive}: entry {name!r} is a FIFO")
    if not member.isfile():
        raise UnsafeArchive(f"{archive}: entry {name!r} is not a regular file")
    if not name.startswith(APP_PREFIX) or name == APP_PREFIX:
        raise UnsafeArchive(f"{archive}: entry {name!r} is outside {APP_PREFIX}")
    return name[len(APP_PREFIX) :]


def _copy_checked(
    archive: Path,
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    entry: dict[str, Any],
    target: Path | None,
    relative: str,
) -> None:
    source = tar.extractfile(member)
    if source is None:
        raise UnsafeArchive(f"{archive}: entry {member.name!r} has no content")
    digest = hashlib.sha256()
    size = 0
    out: IO[bytes] | None = None
    if target is not None:
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        out = open(path, "wb")  # noqa: SIM115 - closed below
    try:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
    finally:
        if out is not None:
            out.close()
    if digest.hexdigest() != entry["sha256"] or size != entry["size"]:
        raise UnsafeArchive(
            f"{archive}: {relative} does not match its sha256 in {MANIFEST}; the bundle was altered"
        )
    if target is not None:
        os.chmod(target / relative, normalised_mode(entry["mode"] == 0o755))


def _load_manifest(archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> dict[str, Any]:
    if member.size > 64 * 1024 * 1024:
        raise UnsafeArchive(f"{archive}: {MANIFEST} is implausibly large")
    handle = tar.extractfile(member)
    if handle is None:
        raise UnsafeArchive(f"{archive}: {MANIFEST} is empty")
    try:
        manifest = json.loads(handle.read())
    except ValueError as exc:
        raise UnsafeArchive(f"{archive}: {MANIFEST} is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UnsafeArchive(
            f"{archive}: {MANIFEST} is not a format-{FORMAT} bundle manifest; was it made by "
            f"a newer Conveyor?"
        )
    files = manifest.get("files")
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and {"path", "sha256", "size", "mode"} <= set(f) for f in files
    ):
        raise UnsafeArchive(f"{archive}: {MANIFEST} has no valid `files` list")
    return manifest


@contextlib.contextmanager
def _open(archive: Path) -> Iterator[tarfile.TarFile]:
    try:
        tar = tarfile.open(archive, mode="r:gz")
    except FileNotFoundError:
        raise BundleError(f"{archive} does not exist") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"{archive} is not a bundle (not a tar.gz: {exc})") from None
    try:
        with tar:
            yield tar
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BundleError(f"{archive} is truncated or corrupt ({exc})") from None


def _first_manifest(archive: Path, tar: tarfile.TarFile) -> dict[str, Any]:
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isfile():
        raise UnsafeArchive(f"{archive}: {MANIFEST} must be the first entry; not a bundle")
    return _load_manifest(archive, tar, first)
