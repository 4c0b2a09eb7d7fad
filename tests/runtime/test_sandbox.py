"""The sandbox's command line from its typed description, what a runtime build inherits, and
a release's files checked against its bundle (the real sandbox runs in tests/e2e)."""

from __future__ import annotations

import pytest

from conveyor.bundles.build import build_bundle
from conveyor.domain.apps import Resources
from conveyor.runtime.builds import RuntimeBuilder
from conveyor.runtime.release_files import changes, restore
from conveyor.runtime.sandbox import (
    Confinement,
    Isolation,
    Sandboxing,
    confined,
    limit_reached,
    readable_by_the_app,
)

BWRAP = Sandboxing(
    Isolation.BUBBLEWRAP, "test", "/usr/bin/bwrap", "/usr/bin/setpriv", "/usr/bin/prlimit"
)


def test_the_command_line_shows_only_what_the_confinement_names(tmp_path):
    release, runtime, output = tmp_path / "r", tmp_path / "rt", tmp_path / "out"
    confinement = Confinement(
        read_only=(release, runtime),
        writable=(output,),
        uid=3000007,
        gid=3000007,
        limits=Resources(memory=64 * 2**20, processes=32),
    )
    argv = confined(BWRAP, confinement, ["python", "serve.py"], release)
    assert argv[:4] == ["/usr/bin/prlimit", f"--data={64 * 2**20}", "--nproc=32", "--"]
    bwrap = argv[4:]
    assert bwrap[0] == "/usr/bin/bwrap"
    joined = " ".join(bwrap)
    assert f"--ro-bind {release} {release}" in joined
    assert f"--ro-bind {runtime} {runtime}" in joined
    assert f"--bind {output} {output}" in joined
    assert "--unshare-pid" in bwrap and "--proc /proc" in joined and "--tmpfs /tmp" in joined
    assert "--clearenv" not in bwrap  # the environment is given to the process, not in argv
    setpriv = bwrap[bwrap.index("--") + 1 :]
    assert setpriv[:3] == ["/usr/bin/setpriv", "--reuid=3000007", "--regid=3000007"]
    assert "--no-new-privs" in setpriv and setpriv[-2:] == ["python", "serve.py"]
    assert "/etc/shadow" not in joined and "/root" not in joined.replace(str(tmp_path), "")


def test_without_bubblewrap_only_the_limits_apply(tmp_path):
    none = Sandboxing.none("no bwrap here")
    argv = confined(none, Confinement(limits=Resources(memory=2**30)), ["python"], tmp_path)
    assert argv[-1] == "python" and "bwrap" not in " ".join(argv)


def test_limits_are_recognised_in_what_a_worker_printed():
    limits = Resources(memory=64 * 2**20, processes=8)
    assert limit_reached(limits, "Traceback ...\nMemoryError\n") == (
        "reached its memory limit (64 MiB)"
    )
    assert limit_reached(limits, "BlockingIOError: [Errno 11] Resource temporarily unavailable")
    assert limit_reached(Resources(), "MemoryError") is None
    assert limit_reached(limits, "KeyError: 'x'") is None


def test_a_runtime_build_gets_no_secret_of_the_server(tmp_path, monkeypatch):
    monkeypatch.setenv("WAREHOUSE_PROD_PASSWORD", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "also-secret")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("UV_INDEX_URL", "https://pypi.example/simple")
    environment = RuntimeBuilder(tmp_path)._environment()
    assert "hunter2" not in environment.values() and "also-secret" not in environment.values()
    assert environment["HTTPS_PROXY"] == "http://proxy.example:3128"
    assert environment["UV_INDEX_URL"] == "https://pypi.example/simple"
    assert "PATH" in environment


def test_changed_added_and_missing_files_are_found_and_restored(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "conveyor.yml").write_text("name: hello\ntype: fastapi\n")
    (source / "app.py").write_text("VERSION = 1\napp = None\n")
    (source / "pkg").mkdir()
    (source / "pkg" / "util.py").write_text("X = 1\n")
    built = build_bundle(source, tmp_path / "bundle.tar.gz")
    from conveyor.bundles.archive import extract

    app = tmp_path / "release" / "app"
    manifest = extract(built.archive, app, expected_id=built.id).manifest
    assert changes(app, manifest) == []
    (app / "app.py").write_text("VERSION = 'evil'\n")
    (app / "pkg" / "util.py").unlink()
    (app / "sitecustomize.py").write_text("import os\n")
    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\x00")
    (app / "linked").symlink_to("/etc")
    found = changes(app, manifest)
    assert "app.py changed" in found and "pkg/util.py missing" in found
    assert "sitecustomize.py added" in found and "linked added" in found
    assert "__pycache__/app.cpython-311.pyc added" in found
    restore(app, built.archive, built.id)
    assert changes(app, manifest) == []
    assert (app / "app.py").read_text() == "VERSION = 1\napp = None\n"


def test_opening_a_release_to_its_app_never_follows_a_link(tmp_path):
    """A build's output may hold links the app made: chmod through one would change, as the
    server, whatever it points at."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    root = tmp_path / "runtime"
    (root / "lib").mkdir(parents=True)
    (root / "lib").chmod(0o700)
    (root / "lib" / "escape").symlink_to(private)
    readable_by_the_app(root)
    assert (root / "lib").stat().st_mode & 0o777 == 0o755
    assert private.stat().st_mode & 0o777 == 0o700


def test_the_system_call_filter_is_handed_to_bubblewrap_on_a_descriptor(tmp_path):
    """The shell opens the compiled filter as descriptor 9 and becomes bubblewrap."""
    import dataclasses

    from conveyor.runtime.syscall_filter import write_filter

    missing = write_filter(tmp_path / "filter.bpf")
    if missing is not None:
        pytest.skip(missing)
    compiled = (tmp_path / "filter.bpf").read_bytes()
    assert compiled and len(compiled) % 8 == 0  # whole BPF instructions
    assert (tmp_path / "filter.bpf").stat().st_mode & 0o077 == 0
    filtered = dataclasses.replace(BWRAP, syscall_filter=tmp_path / "filter.bpf")
    argv = confined(filtered, Confinement(), ["python"], tmp_path)
    assert argv[:6] == [
        "/bin/sh",
        "-c",
        'exec "$@" 9<"$0"',
        str(tmp_path / "filter.bpf"),
        "/usr/bin/bwrap",
        "--seccomp",
    ]
    assert argv[6] == "9" and argv[-1] == "python"
