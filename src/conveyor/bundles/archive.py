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
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO, NoReturn, Self

from conveyor.bundles.lock import LOCK_FORMATS
from conveyor.domain.apps import APP_NAME, AppType
from conveyor.domain.releases import CheckKind
from conveyor.domain.run_email import parse_rules
from conveyor.domain.schedules import parse_schedule
from conveyor.errors import BundleError, InvalidInput, UnsafeArchive

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


#: A manifest.json larger than this is refused before it is read; 20,000 files take about 4 MB.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
#: A PAX or GNU long-name header larger than this is refused before tarfile reads it into memory.
MAX_EXTENDED_HEADER_BYTES = 64 * 1024
#: Extended headers (PAX, GNU long name or link) allowed in a row before one entry.
MAX_CHAINED_HEADERS = 4
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)
_EXTENDED_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 100 * 1024 * 1024
    max_total_bytes: int = 500 * 1024 * 1024
    max_entries: int = 20_001
    max_manifest_bytes: int = MAX_MANIFEST_BYTES


@dataclass(frozen=True)
class OpenedBundle:
    id: str
    manifest: dict[str, Any]


def read_manifest(archive: Path, limits: Limits = Limits()) -> dict[str, Any]:
    """The manifest of an archive, checked against the manifest schema, without checking the
    files (see ``verify``)."""
    with _open(archive) as tar:
        return _first_manifest(archive, tar, limits)


def verify(
    archive: Path, expected_id: str | None = None, limits: Limits = Limits()
) -> OpenedBundle:
    """Check every entry and hash without writing anything; return the id and manifest."""
    return _walk(archive, None, expected_id, limits)


def extract(
    archive: Path, destination: Path, expected_id: str | None = None, limits: Limits = Limits()
) -> OpenedBundle:
    """Extract the app's files into ``destination`` (which must not exist), refusing anything
    unsafe. The files go to a temporary directory beside ``destination`` that is renamed to it
    at the end, so on any refusal or failure nothing is left behind."""
    if destination.exists() or destination.is_symlink():
        raise BundleError(f"{destination} already exists; extraction needs a new directory")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}."))
    except OSError as exc:
        raise BundleError(f"cannot extract {archive} into {destination}: {_reason(exc)}") from None
    try:
        opened = _walk(archive, staging, expected_id, limits)
        os.rename(staging, destination)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BundleError(f"cannot extract {archive} into {destination}: {_reason(exc)}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return opened


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a clean relative path -- parts joined by single slashes, none of them
    empty, ``.`` or ``..`` -- or None when it is one. Only clean paths can be neither escapes
    nor two spellings of one file."""
    if not path:
        return "is empty"
    if "\x00" in path:
        return "contains a NUL character"
    if "\\" in path:
        return "contains a backslash (bundle paths separate their parts with /)"
    if path.startswith("/"):
        return "has an absolute path"
    parts = path.split("/")
    if ".." in parts:
        return "climbs out of the bundle with '..'"
    if "." in parts:
        return "has a '.' part"
    if "" in parts:
        return "has an empty part (a doubled or trailing /)"
    return None


def _walk(
    archive: Path, target: Path | None, expected_id: str | None, limits: Limits
) -> OpenedBundle:
    root = target.resolve() if target is not None else None
    with _open(archive) as tar:
        manifest = _first_manifest(archive, tar, limits)
        identity = bundle_id(manifest)
        if expected_id is not None and identity != expected_id:
            raise UnsafeArchive(
                f"{archive}: its manifest is bundle {identity[:10]}, not {expected_id[:10]} as "
                f"claimed; the archive was altered or mislabelled"
            )
        expected = {entry["path"]: entry for entry in manifest["files"]}
        if len(expected) >= limits.max_entries:
            raise UnsafeArchive(
                f"{archive}: {MANIFEST} lists {len(expected)} files, more than the "
                f"{limits.max_entries - 1} a bundle may hold"
            )
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
            _copy_checked(archive, tar, member, entry, root, relative)
        missing = sorted(set(expected) - seen)
        if missing:
            raise UnsafeArchive(
                f"{archive}: {len(missing)} file(s) listed in {MANIFEST} are missing from the "
                f"archive, e.g. {missing[0]}"
            )
    return OpenedBundle(identity, manifest)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        member = tar.next()
        if member is None:
            return
        yield member


def _safe_relative(archive: Path, member: tarfile.TarInfo) -> str:
    """The path under ``app/`` of an entry that is a regular file with a clean name."""
    name = member.name
    problem = path_problem(name)
    if problem is not None:
        raise UnsafeArchive(f"{archive}: entry {name!r} {problem}")
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
    if member.type not in _FILE_TYPES:
        raise UnsafeArchive(f"{archive}: entry {name!r} is not a regular file")
    if not name.startswith(APP_PREFIX):
        raise UnsafeArchive(f"{archive}: entry {name!r} is outside {APP_PREFIX}")
    return name[len(APP_PREFIX) :]


def _copy_checked(
    archive: Path,
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    entry: dict[str, Any],
    root: Path | None,
    relative: str,
) -> None:
    """Hash an entry's content against its manifest entry, writing it under ``root`` (the
    resolved extraction directory) when one is given."""
    source = tar.extractfile(member)
    if source is None:
        raise UnsafeArchive(f"{archive}: entry {member.name!r} has no content")
    digest = hashlib.sha256()
    size = 0
    out = _create(archive, member.name, root, relative) if root is not None else None
    try:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
        if out is not None:
            os.fchmod(out.fileno(), normalised_mode(entry["mode"] == 0o755))
    finally:
        if out is not None:
            out.close()
    if digest.hexdigest() != entry["sha256"] or size != entry["size"]:
        raise UnsafeArchive(
            f"{archive}: {relative} does not match its sha256 in {MANIFEST}; the bundle was altered"
        )


def _create(archive: Path, name: str, root: Path, relative: str) -> BinaryIO:
    """A new file for entry ``name`` at ``root/relative``: never one that exists already (so two
    names the filesystem treats as one collide loudly) and never through a link."""
    path = root.joinpath(*relative.split("/"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.parent.resolve().is_relative_to(root):
            raise UnsafeArchive(f"{archive}: entry {name!r} would be written outside {root}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY
        descriptor = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UnsafeArchive(
            f"{archive}: entry {name!r} collides with another entry of the bundle on this "
            f"filesystem (one is a directory of the other, or their names differ only in case "
            f"or Unicode form)"
        ) from None
    except OSError as exc:
        raise BundleError(f"{archive}: cannot extract entry {name!r}: {_reason(exc)}") from None
    return os.fdopen(descriptor, "wb")


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _first_manifest(archive: Path, tar: tarfile.TarFile, limits: Limits) -> dict[str, Any]:
    first = tar.next()
    if first is None or first.name != MANIFEST or first.type not in _FILE_TYPES:
        raise UnsafeArchive(f"{archive}: {MANIFEST} must be the first entry; not a bundle")
    if first.size > limits.max_manifest_bytes:
        raise UnsafeArchive(
            f"{archive}: {MANIFEST} is {first.size} bytes, over the "
            f"{limits.max_manifest_bytes}-byte limit"
        )
    handle = tar.extractfile(first)
    if handle is None:
        raise UnsafeArchive(f"{archive}: {MANIFEST} is empty")
    try:
        manifest = json.loads(handle.read())
    except (ValueError, RecursionError) as exc:
        raise UnsafeArchive(f"{archive}: {MANIFEST} is not JSON ({exc})") from None
    return _checked_manifest(archive, manifest)


def _checked_manifest(archive: Path, manifest: Any) -> dict[str, Any]:
    """``manifest`` when it is a well-formed bundle manifest; else UnsafeArchive naming the
    first problem."""

    def fail(problem: str) -> NoReturn:
        raise UnsafeArchive(f"{archive}: {MANIFEST}: {problem}")

    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UnsafeArchive(
            f"{archive}: {MANIFEST} is not a format-{FORMAT} bundle manifest; was it made by "
            f"a newer Conveyor?"
        )
    app = manifest.get("app")
    if not isinstance(app, str) or not APP_NAME.fullmatch(app):
        fail(
            f"`app` must be an app name (lowercase letters, digits and dashes, starting with a "
            f"letter), found {_shown(app)}"
        )
    app_type = manifest.get("type")
    if app_type not in {t.value for t in AppType}:
        fail(f"`type` must be one of {', '.join(AppType)}, found {_shown(app_type)}")
    for field in ("entrypoint", "python"):
        if not isinstance(manifest.get(field), str):
            fail(f"`{field}` must be text, found {_shown(manifest.get(field))}")
    checks = manifest.get("checks")
    kinds = {kind.value for kind in CheckKind}
    if not isinstance(checks, list) or not all(check in kinds for check in checks):
        fail(f"`checks` must be a list of {', '.join(CheckKind)}, found {_shown(checks)}")
    sha256_of = _checked_files(manifest.get("files"), fail)
    lock = manifest.get("lock")
    if not isinstance(lock, dict):
        fail(
            f"`lock` must be an object with path, format, packages and sha256, found {_shown(lock)}"
        )
    lock_path = lock.get("path")
    if not isinstance(lock_path, str) or lock_path not in sha256_of:
        fail(f"`lock.path` must be one of the bundle's files, found {_shown(lock_path)}")
    if lock.get("format") not in LOCK_FORMATS:
        fail(
            f"`lock.format` must be one of {', '.join(LOCK_FORMATS)}, "
            f"found {_shown(lock.get('format'))}"
        )
    if not _is_count(lock.get("packages")):
        fail(f"`lock.packages` must be a whole number, found {_shown(lock.get('packages'))}")
    if lock.get("sha256") != sha256_of[lock_path]:
        fail(
            f"`lock.sha256` must be the sha256 of {lock_path} as listed in `files`, "
            f"found {_shown(lock.get('sha256'))}"
        )
    _check_run(manifest.get("run", {}), fail)
    return manifest


def _check_run(run: Any, fail: Callable[[str], NoReturn]) -> None:
    """`run`: a runnable app's default schedule ({cron, timezone}), timeout (seconds) and
    email rules ([{to, on}])."""
    if not isinstance(run, dict) or set(run) - {"schedule", "timeout", "email"}:
        fail(f"`run` must be an object with schedule, timeout and email, found {_shown(run)}")
    schedule = run.get("schedule")
    if schedule is not None:
        if not isinstance(schedule, dict) or set(schedule) != {"cron", "timezone"}:
            fail(f"`run.schedule` must be {{cron, timezone}}, found {_shown(schedule)}")
        try:
            parse_schedule(str(schedule["cron"]), str(schedule["timezone"]))
        except InvalidInput as exc:
            fail(f"`run.schedule`: {exc}")
    if "email" in run:
        if not isinstance(run["email"], list) or not run["email"]:
            fail(f"`run.email` must be a list of {{to, on}}, found {_shown(run['email'])}")
        try:
            parse_rules(run["email"])
        except InvalidInput as exc:
            fail(f"`run.email`: {exc}")
    if "timeout" in run and not _is_count(run["timeout"]):
        fail(f"`run.timeout` must be a whole number of seconds, found {_shown(run['timeout'])}")


def _checked_files(files: Any, fail: Callable[[str], NoReturn]) -> dict[str, str]:
    """Each file's sha256 by path, once ``files`` is checked: a list of {path, sha256, size,
    mode} with clean, unique paths, none of them also a directory of another."""
    if not isinstance(files, list):
        fail(f"`files` must be a list of {{path, sha256, size, mode}}, found {_shown(files)}")
    sha256_of: dict[str, str] = {}
    for index, entry in enumerate(files):
        where = f"files[{index}]"
        if not isinstance(entry, dict):
            fail(f"`{where}` must be an object with path, sha256, size and mode")
        path = entry.get("path")
        if not isinstance(path, str):
            fail(f"`{where}.path` must be text, found {_shown(path)}")
        problem = path_problem(path)
        if problem is not None:
            fail(f"`{where}.path` {path!r} {problem}")
        if path in sha256_of:
            fail(f"{path!r} is listed twice in `files`")
        sha256 = entry.get("sha256")
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            fail(f"`{where}.sha256` must be 64 lowercase hex digits, found {_shown(sha256)}")
        if not _is_count(entry.get("size")):
            fail(
                f"`{where}.size` must be a whole number of bytes, found {_shown(entry.get('size'))}"
            )
        if entry.get("mode") not in (0o644, 0o755):
            fail(
                f"`{where}.mode` must be 420 (0644) or 493 (0755), "
                f"found {_shown(entry.get('mode'))}"
            )
        sha256_of[path] = sha256
    directories = {
        "/".join(parts[:depth])
        for parts in (path.split("/") for path in sha256_of)
        for depth in range(1, len(parts))
    }
    both = sorted(directories & set(sha256_of))
    if both:
        fail(f"{both[0]!r} is listed as a file and is also a directory of other files")
    return sha256_of


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _shown(value: Any) -> str:
    """A value from the manifest as the message shows it: short, and in JSON's words."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


class _Refused(Exception):
    """A header refused while tarfile reads it; ``_open`` names the archive."""


#: How many headers deep tarfile is in reading one entry (it recurses for each extended one).
_HEADER_DEPTH: ContextVar[int] = ContextVar("conveyor_tar_header_depth", default=0)


class _GuardedTarInfo(tarfile.TarInfo):
    """tarfile's reader with limits: extended headers (which tarfile reads whole into memory)
    are refused over MAX_EXTENDED_HEADER_BYTES and beyond MAX_CHAINED_HEADERS in a row, and
    sparse files (whose maps it reads unbounded) are refused outright."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        info = super().frombuf(buf, encoding, errors)
        if info.type in _EXTENDED_TYPES and info.size > MAX_EXTENDED_HEADER_BYTES:
            raise _Refused(
                f"an extended header (PAX or GNU long name) of {info.size} bytes, over the "
                f"{MAX_EXTENDED_HEADER_BYTES}-byte limit"
            )
        if info.type == tarfile.GNUTYPE_SPARSE:
            raise _Refused(f"entry {info.name!r} is a sparse file; bundles hold only files")
        return info

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> Self:
        depth = _HEADER_DEPTH.get()
        if depth > MAX_CHAINED_HEADERS:
            raise _Refused(f"more than {MAX_CHAINED_HEADERS} extended headers before one entry")
        token = _HEADER_DEPTH.set(depth + 1)
        try:
            return super().fromtarfile(tar)
        finally:
            _HEADER_DEPTH.reset(token)

    # tarfile calls these for PAX sparse headers (GNU formats 0.0, 0.1 and 1.0).
    def _proc_gnusparse_00(self, *args: object) -> None:
        raise _Refused("an entry is a sparse file; bundles hold only files")

    _proc_gnusparse_01 = _proc_gnusparse_10 = _proc_gnusparse_00


@contextlib.contextmanager
def _open(archive: Path) -> Iterator[tarfile.TarFile]:
    try:
        tar = tarfile.open(archive, mode="r:gz", tarinfo=_GuardedTarInfo)
    except FileNotFoundError:
        raise BundleError(f"{archive} does not exist") from None
    except _Refused as exc:
        raise UnsafeArchive(f"{archive}: {exc}") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"{archive} is not a bundle (not a tar.gz: {exc})") from None
    try:
        with tar:
            yield tar
    except _Refused as exc:
        raise UnsafeArchive(f"{archive}: {exc}") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BundleError(f"{archive} is truncated or corrupt ({exc})") from None
