"""Serves a report's or a job's output inside its sandbox, with the runtime's own Python:

- ``/`` the latest successful run's output (the rendering made when the release started, until
  a run succeeds);
- ``/_runs/`` a list of the kept runs, and ``/_runs/<id>/`` each one's output.

Conveyor writes which run is current into the ``--pointer`` file when a run succeeds; the file
is read on each request, so a new output is served from the next request on without a
restart. Only the standard library is used: it runs in any app's runtime."""

from __future__ import annotations

import argparse
import html
import os
import posixpath
import urllib.parse
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RUNS_PREFIX = "/_runs/"


class OutputsHandler(SimpleHTTPRequestHandler):
    runs: Path
    release_output: Path
    pointer: Path

    def __init__(self, *args: object, runs: Path, release_output: Path, pointer: Path) -> None:
        self.runs, self.release_output, self.pointer = runs, release_output, pointer
        super().__init__(*args, directory=str(release_output))  # type: ignore[arg-type]

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self._runs_index():
            return
        if self._nothing_yet():
            return
        super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802
        if self._nothing_yet():
            return
        super().do_HEAD()

    def log_message(self, format: str, *args: object) -> None:
        return  # requests are counted by the proxy; keep the app's log for what it prints

    def translate_path(self, path: str) -> str:
        path = urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0])
        base, rest = self._current(), path
        if path.startswith(RUNS_PREFIX):
            run, _, rest = path[len(RUNS_PREFIX) :].partition("/")
            base = self.runs / run if run.isdigit() else self.runs / "missing"
            rest = "/" + rest
        parts = [p for p in posixpath.normpath(rest).split("/") if p not in ("", ".", "..")]
        return str(base.joinpath(*parts)) + ("/" if rest.endswith("/") and parts else "")

    def _current(self) -> Path:
        try:
            run = self.pointer.read_text().strip()
        except OSError:
            return self.release_output
        return self.runs / run if run.isdigit() else self.release_output

    def _runs_index(self) -> bool:
        if self.path.split("?", 1)[0] not in ("/_runs", "/_runs/"):
            return False
        try:
            kept = sorted((int(n) for n in os.listdir(self.runs) if n.isdigit()), reverse=True)
        except OSError:
            kept = []
        items = "".join(f'<li><a href="{n}/">run {n}</a></li>' for n in kept)
        self._page(HTTPStatus.OK, "Runs", f"<ul>{items}</ul>" if kept else "<p>No runs kept.</p>")
        return True

    def _nothing_yet(self) -> bool:
        if self.path.split("?", 1)[0] != "/":
            return False
        try:
            if any(self._current().iterdir()):
                return False
        except OSError:
            pass
        self._page(
            HTTPStatus.OK,
            "No output yet",
            "<p>This has not run yet. Someone with the right to run it can start a run: "
            "<code>conveyor run APP --env ENV</code>.</p>",
        )
        return True

    def _page(self, status: HTTPStatus, title: str, body: str) -> None:
        page = (
            f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}"
            f"</title><h1>{html.escape(title)}</h1>{body}</html>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(page)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--release-output", type=Path, required=True)
    parser.add_argument("--pointer", type=Path, required=True)
    options = parser.parse_args(argv)
    handler = partial(
        OutputsHandler,
        runs=options.runs,
        release_output=options.release_output,
        pointer=options.pointer,
    )
    with ThreadingHTTPServer(("127.0.0.1", options.port), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
