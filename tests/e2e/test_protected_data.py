"""An app released by a real server reads production data in Test and is refused every write,
while the same bundle promoted to Prod writes; its outputs land in its environment's own
location. The data connections come from the server's environments file, the login from the
server's own environment (a ${NAME} reference)."""

from __future__ import annotations

import textwrap
import urllib.parse
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.warehouse import WRITES

from .server import Server

pytestmark = pytest.mark.e2e

SERVE = """
import os
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import text

from conveyor import data

WRITES = {writes!r}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status, body = 200, ""
        if self.path == "/health":
            body = "ok"
        elif self.path == "/count":
            with data.connect("warehouse").connect() as connection:
                body = str(connection.execute(text("SELECT count(*) FROM sales")).scalar_one())
        elif self.path.startswith("/write/"):
            try:
                with data.connect("warehouse").begin() as connection:
                    connection.execute(text(WRITES[self.path.split("/")[-1]]))
                body = "written"
            except data.ReadOnlyData as refused:
                status, body = 403, str(refused)
        elif self.path == "/output":
            path = data.output_path("scores/latest.txt")
            path.write_text(os.environ["CONVEYOR_ENV"])
            body = str(path)
        encoded = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def make_reporter(root: Path) -> Path:
    app = root / "reporter"
    app.mkdir()
    (app / "conveyor.yml").write_text(
        "name: reporter\ntype: command\nentrypoint: python serve.py\nhealth: /health\n"
    )
    (app / "requirements.txt").write_text("sqlalchemy\npsycopg[binary]\n")
    (app / "serve.py").write_text(textwrap.dedent(SERVE.format(writes=WRITES)))
    return app


def test_test_reads_prod_data_read_only_and_prod_writes(tmp_path, warehouse):
    test_url = make_url(warehouse["test"]["url"])
    login = test_url.username
    # The file goes through str.format for its ports: its own braces are doubled.
    reference_url = (
        urllib.parse.unquote(test_url.set(username="${WAREHOUSE_LOGIN}").render_as_string())
        .replace("{", "{{")
        .replace("}", "}}")
    )
    outputs = tmp_path / "outputs"
    server = Server(
        tmp_path,
        "environments:\n  dev: {{port: {dev}}}\n"
        "  test:\n    port: {test}\n"
        f"    outputs: {outputs}/test\n"
        "    data:\n      warehouse:\n"
        f"        url: '{reference_url}'\n"
        f"        role: {warehouse['test']['role']}\n"
        "  prod:\n    port: {prod}\n"
        f"    outputs: {outputs}/prod\n"
        "    data:\n      warehouse:\n"
        f"        url: '{warehouse['prod']['url']}'\n        mode: read-write\n",
    )
    server.env["WAREHOUSE_LOGIN"] = str(login)
    try:
        server.start()
        # The login is set up as docs/data.md says: the database refuses its writes.
        checked = server.cli("data", "check", "--env", "test")
        assert checked.code == 0, checked
        assert "warehouse" in checked.out and "safe" in checked.out
        app = make_reporter(tmp_path)
        deployed = server.cli("deploy", str(app), "--env", "test")
        assert deployed.code == 0, deployed
        assert server.get("test", "reporter", "/count") == (200, "2")
        for write in sorted(WRITES):
            status, body = server.get("test", "reporter", f"/write/{write}")
            assert status == 403, (write, body)
            assert "data connection 'warehouse' is read-only in environment test" in body
            assert "nothing was changed" in body
            assert warehouse["count"]() == (2, False)
        status, written = server.get("test", "reporter", "/output")
        assert (status, written) == (
            200,
            str(outputs / "test" / "reporter" / "scores" / "latest.txt"),
        )

        promoted = server.cli("promote", "reporter", "--to", "prod")
        assert promoted.code == 0, promoted
        assert server.get("prod", "reporter", "/write/insert") == (200, "written")
        assert warehouse["count"]() == (3, False)
        assert server.get("prod", "reporter", "/output")[0] == 200
        assert (outputs / "prod" / "reporter" / "scores" / "latest.txt").read_text() == "prod"
        assert (outputs / "test" / "reporter" / "scores" / "latest.txt").read_text() == "test"
        diff = server.cli("diff", "reporter", "test", "prod").out
        assert "WAREHOUSE_LOGIN" not in diff and str(login) not in diff
        rows = {line.split()[0] + " " + line.split()[1]: line for line in diff.splitlines()[1:]}
        assert (
            "read-only as role" in rows["data warehouse"] and "DIFFERENT" in rows["data warehouse"]
        )
        assert rows["runtime runtime"].rstrip().endswith("same")  # test and prod: one runtime
    finally:
        server.stop()
