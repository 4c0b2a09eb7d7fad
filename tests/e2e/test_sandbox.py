"""A hostile app deployed to Dev tries what a Dev app could do before the sandbox, against a
real server: read Prod's secrets from the server's process, read or change the server's
database, keys and the CLI's credentials, change its own release and the runtime it shares
with Prod, write Prod's outputs. Each attempt fails; what the app may do (write its own
outputs) still works. A release whose files were edited is restored before its restart."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import textwrap
import urllib.request
from pathlib import Path

import pytest

from .server import Server, make_app, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("bwrap") is None and os.environ.get("CI") != "true",
        reason="bubblewrap is not installed (apt-get install bubblewrap); CI installs it",
    ),
]

MARKER = "prod-secret-7f3a9c"

ENVIRONMENTS = (
    "environments:\n  dev: {{port: {dev}}}\n  test: {{port: {test}}}\n"
    "  prod:\n    port: {prod}\n    isolation: required\n"
    "    secrets: {{API_KEY: '${{PROD_API_KEY}}'}}\n"
)

HOSTILE = """
import json, os, socket, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def attempt(action):
    try:
        result = action()
    except Exception as exc:
        return "refused: " + type(exc).__name__
    return "DONE: " + str(result)[:200]


def read(path):
    with open(path, "rb") as handle:
        return handle.read(4096)


def write(path):
    with open(path, "a") as handle:
        handle.write("owned")
    return path


def environ_of_everyone():
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found.append(read(f"/proc/{entry}/environ").decode(errors="replace"))
            except OSError:
                pass
    return "\\n".join(found)


def new_user_namespace():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER: every capability, inside it
        raise OSError(ctypes.get_errno(), "unshare")
    return "a user namespace"


def tries():
    targets = json.loads(os.environ["TARGETS"])
    own_output = json.loads(os.environ["CONVEYOR_DATA"])["output"]
    return {
        "server environ": attempt(lambda: read(f"/proc/{targets['server_pid']}/environ")),
        # The marker comes reversed, so this app's own TARGETS variable does not hold it.
        "all environs": "DONE" if targets["marker"][::-1] in environ_of_everyone() else "refused",
        "other processes": attempt(
            lambda: [p for p in os.listdir("/proc") if p.isdigit() and int(p) > 8][:1] or 1 / 0
        ),
        "database": attempt(lambda: read(targets["database"])),
        "database write": attempt(lambda: write(targets["database"])),
        "keys": attempt(lambda: read(targets["keys"])),
        "credentials": attempt(lambda: read(targets["credentials"])),
        # Inside the sandbox the home is only the way to what is shown (releases, runtimes,
        # outputs): its own files must not be there.
        "server home": attempt(
            lambda: set(os.listdir(targets["home"])) & {"conveyor.db", "keys.json", "blobs"}
            or 1 / 0
        ),
        "own release": attempt(lambda: write("serve.py")),
        "runtime": attempt(lambda: write(os.path.join(os.environ["VIRTUAL_ENV"], "pyvenv.cfg"))),
        "prod outputs": attempt(lambda: write(os.path.join(targets["prod_outputs"], "x"))),
        "own outputs": attempt(lambda: write(os.path.join(own_output, "ok.txt"))),
        "user namespace": attempt(new_user_namespace),
        # What the app needs of the system: name resolution reads /etc as the app's user.
        "resolver": attempt(lambda: read("/etc/hosts") and socket.getaddrinfo("localhost", 80)),
        "uid": os.getuid(),
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(tries() if self.path == "/try" else {"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture
def guarded(tmp_path):
    server = Server(tmp_path, ENVIRONMENTS)
    server.env["PROD_API_KEY"] = MARKER
    try:
        server.start()
        yield server
    finally:
        server.stop()


def hostile_app(root: Path) -> Path:
    app = root / "hostile"
    app.mkdir(parents=True)
    (app / "conveyor.yml").write_text(
        "name: hostile\ntype: command\nentrypoint: python serve.py\nhealth: /\n"
    )
    (app / "serve.py").write_text(textwrap.dedent(HOSTILE))
    return app


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_a_hostile_dev_app_reaches_nothing_of_the_server_or_prod(guarded, tmp_path):
    server = guarded
    assert "bubblewrap" in server.log(), server.log()
    assert server.cli("deploy", str(make_app(tmp_path, "v1")), "--env", "test").code == 0
    assert server.cli("promote", "hello", "--to", "prod").code == 0  # prod has outputs now
    credentials = Path(server.env["CONVEYOR_CREDENTIALS"])
    targets = {
        "server_pid": server.process.process.pid,
        "marker": MARKER[::-1],
        "database": str(server.home / "conveyor.db"),
        "keys": str(server.home / "keys.json"),
        "credentials": str(credentials),
        "home": str(server.home),
        "prod_outputs": str(server.home / "outputs" / "prod" / "hello"),
    }
    assert server.cli("deploy", str(hostile_app(tmp_path)), "--env", "dev").code == 0
    assert (
        server.cli("vars", "set", "hostile", f"TARGETS={json.dumps(targets)}", "--env", "dev").code
        == 0
    )
    assert server.cli("deploy", str(hostile_app(tmp_path / "again")), "--env", "dev").code == 0
    found = get_json(server.app_url("dev", "hostile", "/try"))
    allowed = {"own outputs", "resolver", "uid"}
    filtered = "system calls filtered" in server.log()
    if os.environ.get("CI") == "true":
        assert filtered, server.log()
    elif not filtered:  # no libseccomp here: the filter's part is not tested
        allowed.add("user namespace")
    leaks = {k: v for k, v in found.items() if k not in allowed and str(v).startswith("DONE")}
    assert not leaks, found
    assert found["own outputs"].startswith("DONE"), found
    assert found["resolver"].startswith("DONE"), found
    if os.geteuid() == 0:  # a root server runs apps as users of their own
        assert found["uid"] != 0
    else:
        assert found["uid"] == os.getuid()
    # Prod's processes run as another user than Dev's.
    status = server.cli_json("status")
    assert "bubblewrap" in status["isolation"]
    cells = {(c["app"], c["environment"]): c for c in status["cells"]}
    if os.geteuid() == 0:
        assert f"user {found['uid']}" in cells[("hostile", "dev")]["isolation"]
        assert f"user {found['uid']}" not in cells[("hello", "prod")]["isolation"]


def test_an_edited_release_is_restored_from_its_bundle_before_a_restart(server, tmp_path):
    assert server.cli("deploy", str(make_app(tmp_path, "v1"))).code == 0
    assert server.get("dev", "hello") == (200, "v1")
    [cell] = server.cli_json("status")["cells"]
    app_dir = server.home / "releases" / str(cell["release"]) / "app"
    serve = app_dir / "serve.py"
    os.chmod(serve, 0o644)
    serve.write_text(serve.read_text().replace("VERSION = 'v1'", "VERSION = 'tampered'"))
    (app_dir / "sitecustomize.py").write_text("print('planted')\n")
    # Kill the worker: the supervisor restarts it, after putting the bundle's files back.
    pids = [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _runs(p, "serve.py", app_dir)
    ]
    assert pids, "the worker was not found"
    for pid in pids:  # the sandbox and the worker in it: killing one may end the other
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: server.get("dev", "hello")[0] == 200, "the restarted worker")
    assert server.get("dev", "hello") == (200, "v1")
    assert "VERSION = 'v1'" in serve.read_text()
    assert not (app_dir / "sitecustomize.py").exists()
    [cell] = server.cli_json("status")["cells"]
    assert "files restored from bundle" in cell["repaired"]
    assert "serve.py changed" in cell["repaired"] and "sitecustomize.py added" in cell["repaired"]
    events = [e for e in server.cli_json("audit") if e["action"] == "release.repaired"]
    assert events and events[-1]["details"]["release"] == cell["release"]
    shutil.rmtree(tmp_path / "hello-v1", ignore_errors=True)


def _runs(process: Path, script: str, app_dir: Path) -> bool:
    """Whether ``process`` is this release's worker running ``script`` (its working directory
    is the release's app directory): never another test's, which may run meanwhile."""
    try:
        argv = (process / "cmdline").read_bytes().split(b"\0")
        cwd = Path(os.readlink(process / "cwd"))
    except OSError:
        return False
    return any(part.endswith(script.encode()) for part in argv) and (
        cwd == app_dir or app_dir in cwd.parents
    )


GREEDY = """
import os, traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/eat":
            try:
                hoard = bytearray(256 * 1024 * 1024)
            except MemoryError:
                traceback.print_exc()
                os._exit(1)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def test_a_worker_stopped_by_its_memory_limit_is_reported_as_that(server, tmp_path):
    app = tmp_path / "greedy"
    app.mkdir()
    (app / "conveyor.yml").write_text(
        "name: greedy\ntype: command\nentrypoint: python serve.py\nhealth: /\n"
        "resources: {memory: 64MiB, processes: 64}\n"
    )
    (app / "serve.py").write_text(GREEDY)
    assert server.cli("deploy", str(app)).code == 0
    [cell] = [c for c in server.cli_json("status")["cells"] if c["app"] == "greedy"]
    assert "limits: memory 64 MiB, processes 64" in cell["isolation"]
    try:
        urllib.request.urlopen(server.app_url("dev", "greedy", "/eat"), timeout=30)
    except OSError:
        pass  # the worker died under the request
    wait_for(
        lambda: (
            "reached its memory limit (64 MiB)" in server.cli("logs", "greedy", "--env", "dev").out
        ),
        "the limit in the log",
    )
    wait_for(lambda: server.get("dev", "greedy") == (200, "ok"), "the restarted worker")


def test_an_environment_that_requires_isolation_never_runs_an_app_unsandboxed(platform):
    from conveyor.domain.environments import Environment, Policy
    from conveyor.runtime.sandbox import Sandboxing
    from conveyor.services.pipeline import deploy
    from conveyor.storage import catalog

    with platform.services.store.transaction() as connection:
        catalog.save_environments(
            connection,
            [Environment("dev", 0, platform.ports["dev"], policy=Policy(), isolation="required")],
        )
    platform.runtime.sandboxing = Sandboxing.none("bwrap is not installed here")
    bundle = platform.upload(make_app(platform.work / "src", "v1"))
    outcome = deploy(platform.services, "hello", bundle, "dev", "ana")
    assert not outcome.live
    assert "dev requires isolation, and this server cannot sandbox apps" in outcome.message
    assert "bwrap is not installed here" in outcome.message


def test_a_writable_sqlite_database_beside_the_servers_home_is_refused(platform):
    """Its directory is shown to the app read-write: never one that holds Conveyor's home."""
    from conveyor.domain.environments import DataConnection, Environment, Policy
    from conveyor.services.pipeline import deploy
    from conveyor.storage import catalog

    beside = platform.work / "app.db"  # the home is platform.work / "home"
    connection = DataConnection("local", f"sqlite:///{beside}", "read-write")
    with platform.services.store.transaction() as transaction:
        catalog.save_environments(
            transaction,
            [Environment("dev", 0, platform.ports["dev"], policy=Policy(), data=(connection,))],
        )
    bundle = platform.upload(make_app(platform.work / "src", "v1"))
    outcome = deploy(platform.services, "hello", bundle, "dev", "ana")
    assert not outcome.live
    assert "which holds Conveyor's home" in outcome.message, outcome.message
    assert "give the database a directory of its own" in outcome.message
