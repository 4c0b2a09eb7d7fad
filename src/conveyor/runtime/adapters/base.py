"""What an adapter is: how one app type is launched, where it answers, and how rendered types
produce their output."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class Confine(Protocol):
    """Wraps a command line so it runs in the release's sandbox. ``writable_app`` lets a build
    step write into the app's directory; ``visible`` shows more paths read-only (a tool's
    installation, for instance)."""

    def __call__(
        self, argv: list[str], *, writable_app: bool = False, visible: Sequence[Path] = ()
    ) -> list[str]: ...


#: The file in a runnable app's runs directory naming the run whose output a release serves:
#: ``<runs dir>/.serving-<release id>``, written when a run succeeds (one per release).
SERVING_POINTER = ".serving-"


def serving_pointer(runs_dir: Path, release_id: int) -> Path:
    """Where release ``release_id`` finds the run whose output it serves."""
    return runs_dir / f"{SERVING_POINTER}{release_id}"


def unconfined(
    argv: list[str], *, writable_app: bool = False, visible: Sequence[Path] = ()
) -> list[str]:
    """Runs the command as it is (no sandbox)."""
    return argv


@dataclass(frozen=True)
class LaunchContext:
    """Everything an adapter may use to build a worker's command line."""

    app: str
    entrypoint: str
    app_dir: Path  # the extracted bundle
    runtime_bin: Path  # the runtime's bin directory (python, uvicorn, ...)
    port: int
    health: str  # the app's declared health path, e.g. "/health"
    output_dir: Path  # where rendered types put their HTML
    build: str | None = None  # static sites: the command that produces the directory
    #: How render and build steps are sandboxed (workers are sandboxed by the runtime).
    confine: Confine = unconfined
    #: How long a render, build or run may take.
    timeout: float = 900
    #: Runnable types: where the outputs of runs are kept (one directory per run), and the file
    #: naming the run whose output is served.
    runs_dir: Path | None = None
    pointer: Path | None = None

    @property
    def prefix(self) -> str:
        return f"/{self.app}"

    @property
    def python(self) -> str:
        return str(self.runtime_bin / "python")


@dataclass(frozen=True)
class Launch:
    """How to run one worker, and how the proxy and health check should address it."""

    argv: list[str]
    #: Extra environment for this app type (the runtime adds PORT, CONVEYOR_ENV, ...).
    env: Mapping[str, str] = field(default_factory=dict)
    #: True: the worker serves at `/`, the proxy removes `/<app>`; False: it serves at `/<app>/`.
    strip_prefix: bool = False
    #: The path the health check asks, as the worker sees it.
    health_path: str = "/"


Render = Callable[[LaunchContext, Mapping[str, str], Callable[[str], None]], None]


class Adapter(Protocol):
    @property
    def kind(self) -> str:
        """ "process": a server the app runs itself; "rendered": output produced once, then
        served."""
        ...

    @property
    def at_release(self) -> bool:
        """True: ``render`` runs when a release starts (reports), not only on a run (jobs)."""
        ...

    def launch(self, context: LaunchContext) -> Launch: ...

    def render(
        self, context: LaunchContext, env: Mapping[str, str], log: Callable[[str], None]
    ) -> None: ...


@dataclass(frozen=True)
class ServerAdapter:
    """An app type that is its own server: ``make`` builds its launch."""

    make: Callable[[LaunchContext], Launch]
    kind: str = "process"
    at_release: bool = False  # nothing to render

    def launch(self, context: LaunchContext) -> Launch:
        return self.make(context)

    def render(
        self, context: LaunchContext, env: Mapping[str, str], log: Callable[[str], None]
    ) -> None:
        return None


@dataclass(frozen=True)
class RenderedAdapter:
    """An app type that produces files, then served: reports render once when a release
    starts and again on each run; a job produces its files only when it runs."""

    produce: Render
    kind: str = "rendered"
    #: False: nothing is produced when a release starts (a job runs only when asked to).
    at_release: bool = True

    def launch(self, context: LaunchContext) -> Launch:
        if context.runs_dir is None or context.pointer is None:
            return serve_directory(context, context.output_dir)
        return Launch(
            argv=[
                context.python,
                "-m",
                "conveyor.outputs_server",
                "--port",
                str(context.port),
                "--runs",
                str(context.runs_dir),
                "--release-output",
                str(context.output_dir),
                "--pointer",
                str(context.pointer),
            ],
            strip_prefix=True,
            health_path="/",
        )

    def render(
        self, context: LaunchContext, env: Mapping[str, str], log: Callable[[str], None]
    ) -> None:
        context.output_dir.mkdir(parents=True, exist_ok=True)
        self.produce(context, env, log)


def serve_directory(context: LaunchContext, directory: Path) -> Launch:
    """Serve ``directory`` with the runtime's own Python (threaded http.server)."""
    return Launch(
        argv=[
            context.python,
            "-m",
            "http.server",
            str(context.port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(directory),
        ],
        strip_prefix=True,
        health_path="/",
    )
