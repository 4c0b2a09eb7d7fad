"""A plain-Python service: any command that serves HTTP on $PORT can be a Conveyor app."""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNTERS = {"requests": 0}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        COUNTERS["requests"] += 1
        if self.path == "/healthz":
            body = b"ok"
        else:
            body = json.dumps({"metrics": COUNTERS, "env": os.environ.get("CONVEYOR_ENV")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
