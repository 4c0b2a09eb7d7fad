"""Safe reading of bundles: every crafted attack is refused, and a refused extraction leaves
nothing behind."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from conveyor.bundles.archive import (
    MAX_EXTENDED_HEADER_BYTES,
    MAX_MANIFEST_BYTES,
    Limits,
    _create,
    bundle_id,
    canonical_json,
    extract,
    read_manifest,
    verify,
)
from conveyor.bundles.build import build_bundle
from conveyor.errors import BundleError, UnsafeArchive

CONTENT = b"print('hello')\n"
LOCK = b"six==1.16.0 --hash=sha256:" + b"1" * 64 + b"\n"


def manifest_for(files: dict[str, bytes], *, lock: bool = True) -> dict:
    """A valid manifest of ``files`` plus, with ``lock``, a requirements.txt lock."""
    files = {**files, "requirements.txt": LOCK} if lock else files
    return {
        "format": 1,
        "app": "evil",
        "type": "command",
        "entrypoint": "python app.py",
        "python": ">=3.11",
        "lock": {
            "path": "requirements.txt",
            "format": "requirements-txt",
            "packages": 1,
            "sha256": hashlib.sha256(LOCK).hexdigest(),
        },
        "checks": ["health"],
        "files": [
            {"path": p, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b), "mode": 0o644}
            for p, b in sorted(files.items())
        ],
    }


def craft(
    path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], manifest=None, *, lock=True
) -> Path:
    """An archive of manifest.json, then ``members``, then (with ``lock``) the lock file."""
    manifest = manifest if manifest is not None else manifest_for({"app.py": CONTENT})
    if lock:
        members = [*members, file_entry("app/requirements.txt", LOCK)]
    with tarfile.open(path, "w:gz") as tar:
        body = canonical_json(manifest)
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def file_entry(name: str, data: bytes = CONTENT) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def test_a_well_formed_archive_extracts(tmp_path):
    archive = craft(tmp_path / "ok.tar.gz", [file_entry("app/app.py")])
    opened = extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "app.py").read_bytes() == CONTENT
    assert opened.id == bundle_id(manifest_for({"app.py": CONTENT}))


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([file_entry("/etc/app.py")], "absolute path"),
        ([file_entry("app/../../app.py")], "climbs out of the bundle"),
        ([special("app/app.py", tarfile.SYMTYPE, "/etc/passwd")], "link to '/etc/passwd'"),
        ([special("app/app.py", tarfile.SYMTYPE, "../../x")], "outside the bundle"),
        ([special("app/app.py", tarfile.LNKTYPE, "../../etc/passwd")], "hard link to"),
        ([special("app/app.py", tarfile.SYMTYPE, "other.py")], "bundles hold only files"),
        ([special("app/app.py", tarfile.CHRTYPE)], "is a device"),
        ([special("app/app.py", tarfile.BLKTYPE)], "is a device"),
        ([special("app/app.py", tarfile.FIFOTYPE)], "is a FIFO"),
        ([special("app/sub", tarfile.DIRTYPE)], "not a regular file"),
        ([file_entry("app/app.py"), file_entry("app/app.py")], "appears twice"),
        ([file_entry("app/app.py"), file_entry("app/extra.py")], "not listed in manifest.json"),
        ([file_entry("elsewhere.py")], "outside app/"),
        ([file_entry("app/app.py", b"print('HACKED')\n")], "does not match its sha256"),
        ([], "are missing from the archive, e.g. app.py"),
    ],
)
def test_crafted_archives_are_refused_and_leave_nothing(tmp_path, members, message):
    archive = craft(tmp_path / "evil.tar.gz", members)
    with pytest.raises(UnsafeArchive, match=message):
        verify(archive)
    with pytest.raises(UnsafeArchive, match=message):
        extract(archive, tmp_path / "out" / "release")
    assert not (tmp_path / "out" / "release").exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_entries_over_the_size_limits(tmp_path):
    big = b"x" * 2048
    archive = craft(
        tmp_path / "big.tar.gz", [file_entry("app/app.py", big)], manifest_for({"app.py": big})
    )
    with pytest.raises(UnsafeArchive, match="over the 1024-byte limit per file"):
        verify(archive, limits=Limits(max_file_bytes=1024))
    with pytest.raises(UnsafeArchive, match="over the 1000-byte limit"):
        verify(archive, limits=Limits(max_total_bytes=1000))
    with pytest.raises(UnsafeArchive, match="lists 2 files, more than the 1 a bundle may hold"):
        verify(archive, limits=Limits(max_entries=2))
    members = [file_entry("app/app.py"), file_entry("app/requirements.txt", LOCK)]
    extra = craft(tmp_path / "extra.tar.gz", [*members, file_entry("app/x.py")], lock=False)
    with pytest.raises(UnsafeArchive, match="more than 3 entries"):
        verify(extra, limits=Limits(max_entries=3))


def test_an_archive_that_does_not_match_its_claimed_id(tmp_path):
    archive = craft(tmp_path / "a.tar.gz", [file_entry("app/app.py")])
    with pytest.raises(UnsafeArchive, match="not 0000000000 as claimed"):
        verify(archive, expected_id="0" * 64)


def test_manifest_must_come_first_and_be_valid(tmp_path):
    path = tmp_path / "x.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info, data = file_entry("app/app.py")
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(UnsafeArchive, match="manifest.json must be the first entry"):
        verify(path)
    bad = craft(tmp_path / "y.tar.gz", [], manifest={"format": 99})
    with pytest.raises(UnsafeArchive, match="not a format-1 bundle manifest"):
        verify(bad)


def test_not_a_tarball_and_truncated(tmp_path, make_app):
    (tmp_path / "notes.tar.gz").write_text("hello")
    with pytest.raises(BundleError, match="is not a bundle"):
        verify(tmp_path / "notes.tar.gz")
    with pytest.raises(BundleError, match="does not exist"):
        verify(tmp_path / "missing.tar.gz")
    built = build_bundle(make_app({"app.py": "x" * 50_000}), tmp_path / "b.tar.gz")
    data = built.archive.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="truncated or corrupt|not a bundle|missing"):
        verify(tmp_path / "cut.tar.gz")


def test_extraction_target_must_be_new(tmp_path):
    archive = craft(tmp_path / "ok.tar.gz", [file_entry("app/app.py")])
    (tmp_path / "out").mkdir()
    with pytest.raises(BundleError, match="already exists"):
        extract(archive, tmp_path / "out")


def test_a_manifest_path_that_escapes_through_an_empty_part_is_refused(tmp_path):
    """`app//tmp/x` once joined the target with an absolute path and wrote outside it."""
    outside = tmp_path / "escaped.py"
    manifest = manifest_for({str(outside): CONTENT})
    archive = craft(tmp_path / "evil.tar.gz", [file_entry("app/" + str(outside))], manifest)
    for read in (verify, lambda a: extract(a, tmp_path / "out" / "release")):
        with pytest.raises(UnsafeArchive, match="has an absolute path"):
            read(archive)
    assert not outside.exists()
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("app//app.py", "has an empty part"),
        ("app/./app.py", "has a '.' part"),
        ("app/app.py/", "has an empty part"),
        ("app/sub\\app.py", "backslash"),
        ("app", "outside app/"),
    ],
)
def test_entry_names_must_be_clean(tmp_path, name, message):
    archive = craft(tmp_path / "evil.tar.gz", [file_entry("app/app.py"), file_entry(name)])
    with pytest.raises(UnsafeArchive, match=message):
        verify(archive)


def test_two_spellings_of_one_file_are_refused(tmp_path):
    """`x` and `./x` (or `x/`) would both be written to one file."""
    manifest = manifest_for({"app.py": CONTENT, "./app.py": b"other\n"})
    archive = craft(
        tmp_path / "twice.tar.gz",
        [file_entry("app/app.py"), file_entry("app/./app.py", b"other\n")],
        manifest,
    )
    with pytest.raises(UnsafeArchive, match=r"`files\[0\]\.path` './app.py' has a '.' part"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_also_a_directory_is_refused_cleanly(tmp_path):
    manifest = manifest_for({"a": CONTENT, "a/b": CONTENT})
    archive = craft(
        tmp_path / "clash.tar.gz", [file_entry("app/a"), file_entry("app/a/b")], manifest
    )
    with pytest.raises(UnsafeArchive, match="'a' is listed as a file and is also a directory"):
        extract(archive, tmp_path / "out")
    assert list(tmp_path.iterdir()) == [archive]


def test_an_entry_the_filesystem_cannot_hold_is_a_clean_error_and_leaves_nothing(tmp_path):
    long_name = "x" * 300 + ".py"  # over the 255-byte limit of a file name
    manifest = manifest_for({long_name: CONTENT})
    archive = craft(tmp_path / "long.tar.gz", [file_entry("app/" + long_name)], manifest)
    assert verify(archive).manifest == manifest  # valid; it only cannot be written here
    with pytest.raises(BundleError, match=f"cannot extract entry 'app/{long_name}'"):
        extract(archive, tmp_path / "out" / "release")
    assert list((tmp_path / "out").iterdir()) == []


def test_extraction_never_writes_through_a_link_inside_the_target(tmp_path):
    root = tmp_path / "target"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", root / "sub")
    with pytest.raises(UnsafeArchive, match="would be written outside"):
        _create(tmp_path / "a.tar.gz", "app/sub/x.py", root, "sub/x.py")
    os.symlink(tmp_path / "elsewhere" / "y.py", root / "y.py")
    with pytest.raises(UnsafeArchive, match="collides with another entry"):
        _create(tmp_path / "a.tar.gz", "app/y.py", root, "y.py")
    assert list((tmp_path / "elsewhere").iterdir()) == []


def valid_manifest() -> dict:
    return manifest_for({"app.py": CONTENT})


def changed(change) -> dict:
    manifest = valid_manifest()
    change(manifest)
    return manifest


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (changed(lambda m: m.update(lock=None)), "`lock` must be an object .* found null"),
        (changed(lambda m: m.update(lock=["x"])), "`lock` must be an object"),
        (changed(lambda m: m["lock"].pop("sha256")), "`lock.sha256` must be the sha256"),
        (changed(lambda m: m["lock"].update(sha256="0" * 64)), "`lock.sha256` must be"),
        (changed(lambda m: m["lock"].update(path="nope.txt")), "`lock.path` must be one of"),
        (changed(lambda m: m["lock"].update(format="conda")), "`lock.format` must be one of"),
        (changed(lambda m: m["lock"].update(packages=True)), "`lock.packages` must be a whole"),
        (changed(lambda m: m.pop("app")), "`app` must be an app name .* found null"),
        (changed(lambda m: m.update(app="Evil App")), '`app` must be an app name .* "Evil App"'),
        (changed(lambda m: m.update(app="evil\n")), "`app` must be an app name"),
        (changed(lambda m: m.update(type="django")), "`type` must be one of"),
        (changed(lambda m: m.update(entrypoint=3)), "`entrypoint` must be text"),
        (changed(lambda m: m.update(checks=["lint"])), "`checks` must be a list of"),
        (changed(lambda m: m.update(files={"app.py": 1})), "`files` must be a list"),
        (changed(lambda m: m["files"].append("app.py")), r"`files\[2\]` must be an object"),
        (changed(lambda m: m["files"][0].pop("size")), r"`files\[0\]\.size` must be a whole"),
        (changed(lambda m: m["files"][0].update(size=-1)), r"`files\[0\]\.size` must be"),
        (changed(lambda m: m["files"][0].update(mode=0o777)), r"`files\[0\]\.mode` must be"),
        (
            changed(lambda m: m["files"][0].update(sha256="AB" * 32)),
            r"`files\[0\]\.sha256` must be 64 lowercase",
        ),
        (
            changed(lambda m: m["files"][0].update(path="../x")),
            r"`files\[0\]\.path` '\.\./x' climbs out",
        ),
        (
            changed(lambda m: m["files"][0].update(path="a\x00b")),
            r"`files\[0\]\.path` .* contains a NUL",
        ),
        (changed(lambda m: m["files"][0].update(path="")), r"`files\[0\]\.path` '' is empty"),
        (changed(lambda m: m["files"].append(dict(m["files"][0]))), "'app.py' is listed twice"),
    ],
)
def test_manifest_schema_is_checked_with_a_clear_error(tmp_path, manifest, message):
    archive = craft(tmp_path / "m.tar.gz", [file_entry("app/app.py")], manifest)
    with pytest.raises(UnsafeArchive, match=f"manifest.json: {message}"):
        read_manifest(archive)
    with pytest.raises(UnsafeArchive, match=message):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_manifest_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    archive = craft(tmp_path / "ok.tar.gz", [file_entry("app/app.py")])
    with pytest.raises(UnsafeArchive, match="manifest.json is .* bytes, over the 100-byte limit"):
        verify(archive, limits=Limits(max_manifest_bytes=100))
    # A header that claims a huge manifest is refused without reading (or inflating) it.
    info = tarfile.TarInfo("manifest.json")
    info.size = MAX_MANIFEST_BYTES + 1
    (tmp_path / "huge.tar.gz").write_bytes(gzip.compress(info.tobuf() + b"\0" * 1024))
    with pytest.raises(UnsafeArchive, match=f"over the {MAX_MANIFEST_BYTES}-byte limit"):
        verify(tmp_path / "huge.tar.gz")


def test_oversized_extended_headers_are_refused(tmp_path):
    big = "x" * (MAX_EXTENDED_HEADER_BYTES + 1)
    manifest = manifest_for({"app.py": CONTENT})
    pax = tmp_path / "pax.tar.gz"
    with tarfile.open(pax, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        body = canonical_json(manifest)
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        info.pax_headers = {"comment": big}
        tar.addfile(info, io.BytesIO(body))
        for name, data in (("app/app.py", CONTENT), ("app/requirements.txt", LOCK)):
            tar.addfile(file_entry(name, data)[0], io.BytesIO(data))
    with pytest.raises(UnsafeArchive, match="extended header .* over the 65536-byte limit"):
        verify(pax)
    gnu = tmp_path / "gnu.tar.gz"
    with tarfile.open(gnu, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        body = canonical_json(manifest)
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
        tar.addfile(file_entry("app/" + "a/" * 40_000 + "x.py")[0], io.BytesIO(CONTENT))
    with pytest.raises(UnsafeArchive, match="extended header .* over the 65536-byte limit"):
        verify(gnu)


def test_a_chain_of_extended_headers_is_refused(tmp_path):
    body = canonical_json(manifest_for({"app.py": CONTENT}))
    info = tarfile.TarInfo("manifest.json")
    info.size = len(body)
    pax = tarfile.TarInfo._create_pax_generic_header({"comment": "x"}, tarfile.XHDTYPE, "utf-8")
    raw = (
        pax * 10 + info.tobuf(tarfile.USTAR_FORMAT) + body.ljust(-(-len(body) // 512) * 512, b"\0")
    )
    (tmp_path / "chain.tar.gz").write_bytes(gzip.compress(raw + b"\0" * 1024))
    with pytest.raises(UnsafeArchive, match="more than 4 extended headers before one entry"):
        verify(tmp_path / "chain.tar.gz")


def test_sparse_entries_are_refused(tmp_path):
    info, data = file_entry("app/app.py")
    info.type = tarfile.GNUTYPE_SPARSE
    path = tmp_path / "sparse.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        body = canonical_json(manifest_for({"app.py": CONTENT}))
        head = tarfile.TarInfo("manifest.json")
        head.size = len(body)
        tar.addfile(head, io.BytesIO(body))
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(UnsafeArchive, match="is a sparse file"):
        verify(path)


def test_a_built_bundle_reads_back_with_its_lock_checked(tmp_path, make_app):
    built = build_bundle(make_app(), tmp_path / "b.tar.gz")
    manifest = read_manifest(built.archive)
    assert manifest == built.manifest
    opened = extract(built.archive, tmp_path / "out", expected_id=built.id)
    lock = (tmp_path / "out" / manifest["lock"]["path"]).read_bytes()
    assert hashlib.sha256(lock).hexdigest() == manifest["lock"]["sha256"]
    assert opened.id == built.id
