"""Safe reading of bundles: every crafted attack is refused, and a refused extraction leaves
nothing behind."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from conveyor.bundles.archive import Limits, bundle_id, canonical_json, extract, verify
from conveyor.bundles.build import build_bundle
from conveyor.errors import BundleError, UnsafeArchive

CONTENT = b"print('hello')\n"


def manifest_for(files: dict[str, bytes]) -> dict:
    return {
        "format": 1,
        "app": "evil",
        "type": "command",
        "entrypoint": "python app.py",
        "python": ">=3.11",
        "lock": None,
        "checks": ["health"],
        "files": [
            {"path": p, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b), "mode": 0o644}
            for p, b in sorted(files.items())
        ],
    }


def craft(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], manifest=None) -> Path:
    manifest = manifest if manifest is not None else manifest_for({"app.py": CONTENT})
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
        ([], "are missing, e.g. app.py"),
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
    with pytest.raises(UnsafeArchive, match="more than 1 entries"):
        verify(archive, limits=Limits(max_entries=1))


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
