"""A `conveyor serve` process on this machine, started and stopped by its process id: what
`conveyor demo` runs, and what the end-to-end tests and benchmarks run too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from conveyor.errors import RuntimeFailure


def environments_file(
    path: Path, ports: Mapping[str, int], settings: Mapping[str, str] | None = None
) -> Path:
    """Write an environments file giving each environment (in order) its port, and any other
    ``settings`` per environment (YAML flow entries, e.g. ``{"prod": "approvals: 1"}``)."""
    extra = settings or {}
    path.write_text(
        "environments:\n"
        + "".join(
            f"  {name}: {{port: {port}" + (f", {extra[name]}" if name in extra else "") + "}\n"
            for name, port in ports.items()
        )
    )
    return path


class LocalServer:
    """``conveyor serve --home HOME --port PORT [--environments FILE]`` in its own process
    group, its output in ``log``. Without a file, the server keeps the environments its store
    has (a later start of a server first started with one)."""

    def __init__(
        self,
        home: Path,
        port: int,
        environments: Path | None,
        env: Mapping[str, str],
        log: Path,
        arguments: Sequence[str] = (),
    ) -> None:
        self.home, self.port, self.environments = home, port, environments
        self.env, self.log = dict(env), log
        #: More options for `conveyor serve` (e.g. --oidc-issuer).
        self.arguments = list(arguments)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> None:
        """Start it and wait until its API answers; RuntimeFailure with its output if not."""
        command = [sys.executable, "-m", "conveyor", "serve", "--home", str(self.home)]
        command += ["--port", str(self.port)]
        if self.environments is not None:
            command += ["--environments", str(self.environments)]
        command += self.arguments
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeFailure(f"the server exited while starting:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/api/v1/health", timeout=2):  # noqa: S310
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeFailure(f"the server did not answer within {timeout:.0f} s; see {self.log}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM (the server stops its apps), SIGKILL to its group after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL the server alone: it gets no chance to stop its apps."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
