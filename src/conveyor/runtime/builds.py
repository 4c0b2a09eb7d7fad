"""Runtimes: the Python environments releases run in, built once per (Python, platform, lock).

A runtime lives at ``CONVEYOR_HOME/runtimes/<id>``, where the id is the sha256 of the
interpreter's full version, its platform tag and the lock's bytes. Every release whose bundle
carries that lock, in any environment, runs in the same directory, so Test and Prod run the same
installed files. A runtime is a virtual environment synced exactly to the lock with uv, plus
Conveyor's app-facing library (``conveyor.config``; see ``conveyor.runtime.app_library``) on its
path, so apps import it without listing Conveyor.

A build happens in a temporary directory beside the final one and is renamed into place only
when it is complete, verified and read-only (``conveyor.runtime.read_only_trees``); a failed
build leaves nothing. One file lock per id
makes two threads or processes that need the same missing runtime build it once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import conveyor
from conveyor.errors import RuntimeFailure
from conveyor.runtime.app_library import LIBRARY_DIR, add_library, library_digest
from conveyor.runtime.bytecode import BytecodeStore
from conveyor.runtime.interpreters import Interpreter, choose, discover
from conveyor.runtime.read_only_trees import exchange_directories, make_read_only, remove_tree
from conveyor.runtime.steps import run_step

MARKER = ".conveyor-runtime.json"
LOCK_FORMATS = ("requirements-txt", "uv.lock", "pylock.toml")
#: A runtime's directory name: its id.
RUNTIME_ID = re.compile(r"^[0-9a-f]{64}$")
#: A runtime replaced by ``rebuild``: ``.retired-<id>-<UTC time>-<random>``.
RETIRED_PREFIX = ".retired-"
# Variables that would point uv or the runtime's Python at another environment than the one
# being built.
#: What a runtime build gets from the server's environment: where programs are, the locale,
#: a temporary directory, how to reach a package index (proxies, certificates, index URLs and
#: their credentials, uv's own settings). Nothing else.
_BUILD_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TMPDIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_CERT",
    }
)
_BUILD_PREFIXES = ("UV_",)
_NOT_INHERITED = (
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "PYTHONPATH",
    "PYTHONHOME",
    "UV_PYTHON",
    "UV_SYSTEM_PYTHON",
    "UV_PROJECT_ENVIRONMENT",
)


@dataclass(frozen=True)
class RuntimeInfo:
    """A runtime ready to run releases: ``python`` is its interpreter, ``path / "bin"`` holds
    its scripts. ``reused`` is True when it existed already and nothing was installed."""

    id: str
    path: Path
    python: Path
    python_version: str
    reused: bool


class RuntimeBuilder:
    """Builds and reuses runtimes under ``home/runtimes``.

    uv's cache is ``home/cache/uv`` unless ``cache_dir`` is given; it should be on the same
    filesystem as ``home`` so uv hard-links installed files instead of copying them."""

    def __init__(
        self,
        home: Path,
        *,
        cache_dir: Path | None = None,
        bytecode_dir: Path | None = None,
        build_timeout: float = 1800.0,
    ) -> None:
        self.root = home.absolute() / "runtimes"
        self.cache_dir = (cache_dir or home / "cache" / "uv").absolute()
        #: Compiled files runtimes share: by default beside the uv cache whose files they are
        #: compiled from (homes sharing a uv cache share them too).
        self.bytecode = BytecodeStore(
            bytecode_dir or self.cache_dir.parent / f"{self.cache_dir.name}-bytecode"
        )
        self.build_timeout = build_timeout
        #: Wraps a command that runs a runtime's own Python (which executes the packages' .pth
        #: files) so it runs sandboxed, unprivileged: the runtime (``root``) is the lock's
        #: code, never to be run as the server. Set by the local runtime; none by default.
        self.confine: Callable[[list[str], Path], list[str]] = lambda argv, root: argv
        self._interpreters: list[Interpreter] | None = None
        self._discovery = threading.Lock()

    def path_of(self, runtime_id: str) -> Path:
        """Where the runtime with this id lives (whether or not it has been built)."""
        if not RUNTIME_ID.match(runtime_id):
            raise RuntimeFailure(f"{runtime_id!r} is not a runtime id (64 hex digits)")
        return self.root / runtime_id

    def ensure(
        self,
        python_requirement: str,
        lock_file: Path,
        lock_format: str,
        log: Callable[[str], None],
    ) -> RuntimeInfo:
        """The runtime for this lock on an interpreter satisfying ``python_requirement``: the
        existing one when it was built before, else built now. Every line of uv's output goes
        to ``log`` as it is printed. RuntimeFailure when no interpreter fits or the build
        fails; a failed build leaves nothing behind."""
        identity, interpreter, lock_file, lock_bytes = self._identify(
            python_requirement, lock_file, lock_format
        )
        final = self.path_of(identity)
        if _is_complete(final):
            return self._info(identity, interpreter, reused=True)
        with self._build_lock(identity, log):
            # Another thread or process may have built it while this one waited.
            if _is_complete(final):
                log(f"runtime {identity[:12]} was built meanwhile; reusing it")
                return self._info(identity, interpreter, reused=True)
            self._build(identity, interpreter, lock_file, lock_format, lock_bytes, log)
        return self._info(identity, interpreter, reused=False)

    # --- building ------------------------------------------------------------------------

    def _build(
        self,
        identity: str,
        interpreter: Interpreter,
        lock_file: Path,
        lock_format: str,
        lock_bytes: bytes,
        log: Callable[[str], None],
        into: Path | None = None,
    ) -> None:
        final = into or self.path_of(identity)
        self._clear_leftovers(identity, log)
        started = time.monotonic()
        log(
            f"building runtime {identity[:12]} for Python {interpreter.version} "
            f"({interpreter.executable}) from {lock_file.name}"
        )
        building = self.root / f".build-{identity[:16]}-{secrets.token_hex(4)}"
        try:
            self._uv(
                ["venv", str(building), "--python", str(interpreter.executable)]
                + ["--relocatable", "--no-project"],
                cwd=self.root,
                log=log,
                step="creating the virtual environment",
            )
            python = building / "bin" / "python"
            self._install(python, building, lock_file, lock_format, log)
            add_library(building)
            self._compile(python, building, log)
            _write_marker(building, identity, interpreter, lock_format, lock_bytes)
            # Read-only (and readable by the builder user) before its own Python runs.
            make_read_only(building)
            self._verify(python, building, log)
            # Atomic: readers see no runtime or a complete one, never a partial one.
            os.rename(building, final)
        except OSError as exc:
            remove_tree(building, ignore_errors=True)
            raise RuntimeFailure(f"building runtime {identity[:12]} failed: {exc}") from exc
        except BaseException:
            remove_tree(building, ignore_errors=True)
            raise
        log(f"runtime {identity[:12]} built in {time.monotonic() - started:.1f} s")

    def _compile(self, python: Path, venv: Path, log: Callable[[str], None]) -> None:
        """Bytecode for everything installed, so an app's first start is not slowed by it:
        linked from the shared store where a runtime compiled the same file before (see
        runtime/bytecode.py), compiled here otherwise. -S: no site processing, so no
        package's .pth file runs here, as the server."""
        environment = self._environment()
        tag = self._run(
            [str(python), "-I", "-S", "-c", "import sys; print(sys.implementation.cache_tag)"],
            cwd=venv,
            env=environment,
            log=lambda line: None,
            step="asking the runtime's Python for its bytecode tag",
        )[-1].strip()

        def compile_files(paths: list[Path]) -> None:
            listing = venv.parent / f".compile-{venv.name}.txt"
            listing.write_text(
                "".join(f"{path}\n" for path in paths if "\n" not in str(path)), encoding="utf-8"
            )
            try:
                self._run(
                    [str(python), "-I", "-S", "-m", "compileall", "-q", "-j", "0"]
                    + ["-i", str(listing)],
                    cwd=venv,
                    env=environment,
                    log=log,
                    step="compiling bytecode",
                )
            finally:
                listing.unlink(missing_ok=True)

        filled = self.bytecode.fill([venv / "lib", venv / LIBRARY_DIR], tag, compile_files)
        log(
            f"bytecode: {filled.linked} file(s) shared with other runtimes, "
            f"{filled.compiled} compiled"
        )

    def _install(
        self,
        python: Path,
        venv: Path,
        lock_file: Path,
        lock_format: str,
        log: Callable[[str], None],
    ) -> None:
        """Sync the venv to exactly what the lock lists, from wheels only: building a source
        distribution (or a local directory) would run the bundle's own build code, here, as
        the server. A package without a wheel fails with uv's message and what to do."""
        if lock_format == "uv.lock":
            arguments = ["sync", "--frozen", "--no-install-project", "--no-build"]
            arguments += ["--python", str(python), "--project", str(lock_file.parent)]
            extra_env: dict[str, str] | None = {"UV_PROJECT_ENVIRONMENT": str(venv)}
        else:
            arguments = ["pip", "sync", str(lock_file), "--require-hashes", "--no-build"]
            arguments += ["--python", str(python)]
            if lock_format == "pylock.toml":
                arguments += ["--preview-features", "pylock"]
            extra_env = None
        try:
            self._uv(
                arguments,
                cwd=lock_file.parent,
                log=log,
                step=f"installing {lock_file.name}",
                extra_env=extra_env,
            )
        except RuntimeFailure as exc:
            if "--no-build" not in str(exc):
                raise
            raise RuntimeFailure(
                f"{exc}\nConveyor installs packages from wheels only: building a source "
                "distribution would run its build code on the server. Pin a version that "
                "publishes a wheel for this platform, or build the wheel yourself and serve it "
                "from your package index (UV_INDEX_URL / UV_FIND_LINKS on the server)."
            ) from None

    def _verify(self, python: Path, venv: Path, log: Callable[[str], None]) -> None:
        """The runtime's Python starts and imports the config library (from this runtime's
        copy, not some other package called ``conveyor`` that the lock installed) and PyYAML."""
        script = "import conveyor, conveyor.config, yaml; print(conveyor.__file__)"
        # Importing runs the installed packages' .pth files: in the sandbox, unprivileged.
        lines = self._run(
            self.confine([str(python), "-I", "-c", script], venv),
            cwd=venv,
            env=self._environment(),
            log=log,
            step="checking that the runtime imports conveyor.config and yaml",
        )
        imported = Path(lines[-1]).resolve() if lines else None
        library = (venv / LIBRARY_DIR).resolve()
        if imported is None or library not in imported.parents:
            raise RuntimeFailure(
                f"the runtime imports `conveyor` from {imported}, not from Conveyor's library: "
                f"the lock installs another package named conveyor; remove it from the "
                f"requirements"
            )

    # --- finding, rebuilding, retiring -----------------------------------------------------

    def find(
        self, python_requirement: str, lock_file: Path, lock_format: str
    ) -> RuntimeInfo | None:
        """The runtime ``ensure`` would return for this lock, when it is built; None when it is
        not. Builds nothing (for checks such as drift, which must not build what is missing)."""
        identity, interpreter, _, _ = self._identify(python_requirement, lock_file, lock_format)
        if not _is_complete(self.path_of(identity)):
            return None
        return self._info(identity, interpreter, reused=True)

    def rebuild(
        self,
        python_requirement: str,
        lock_file: Path,
        lock_format: str,
        log: Callable[[str], None],
        *,
        refresh: Sequence[str] = (),
        check: Callable[[Path], None] | None = None,
    ) -> RuntimeInfo:
        """Build the runtime for this lock again, from nothing, and swap it in for the one at its
        path (a runtime that drifted from its lock), which moves to ``.retired-<id>-<time>``
        for inspection until ``remove_retired``. See ``conveyor.runtime.drift`` for the design.

        The new runtime is built beside the old one under the id's build lock, then ``check``
        (when given) is called with its path and may raise to stop the swap, which leaves the
        old runtime in place. The swap is one atomic exchange of the two directories where the
        system has it (Linux), so the runtime's path never stops naming a complete runtime.
        ``refresh`` names packages removed from uv's cache first, so they are downloaded
        again: installed files are hard links into that cache, so a file edited in place in a
        runtime is edited in the cache too, and would be linked back."""
        identity, interpreter, lock_file, lock_bytes = self._identify(
            python_requirement, lock_file, lock_format
        )
        final = self.path_of(identity)
        with self._build_lock(identity, log):
            if refresh:
                self._uv(
                    ["cache", "clean", *refresh],
                    cwd=self.root,
                    log=log,
                    step=f"removing {', '.join(refresh)} from uv's cache",
                )
            staged = self.root / f".build-{identity[:16]}-{secrets.token_hex(4)}-rebuilt"
            self._build(identity, interpreter, lock_file, lock_format, lock_bytes, log, staged)
            try:
                if check is not None:
                    check(staged)
                if not _is_complete(final):
                    os.rename(staged, final)
                    return self._info(identity, interpreter, reused=False)
                stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                retired = self.root / f"{RETIRED_PREFIX}{identity}-{stamp}-{secrets.token_hex(2)}"
                exchange_directories(staged, final)
            except OSError as exc:
                remove_tree(staged, ignore_errors=True)
                raise RuntimeFailure(f"swapping in runtime {identity[:12]} failed: {exc}") from exc
            except BaseException:
                remove_tree(staged, ignore_errors=True)
                raise
            try:  # ``staged`` now holds the old runtime
                os.rename(staged, retired)
                log(f"runtime {identity[:12]} rebuilt; the one it replaced is {retired.name}")
            except OSError as exc:  # harmless: the next build of this id clears it
                log(f"runtime {identity[:12]} rebuilt; the one it replaced stays as {staged.name}")
                log(f"(it could not be renamed to {retired.name}: {exc.strerror})")
        return self._info(identity, interpreter, reused=False)

    def remove_retired(self, runtime_id: str | None = None) -> list[Path]:
        """Delete the runtimes ``rebuild`` replaced (of one id, or all): the caller's part once
        no release runs on them. Returns what was removed."""
        pattern = f"{RETIRED_PREFIX}{self.path_of(runtime_id).name if runtime_id else ''}*"
        removed = []
        for retired in sorted(self.root.glob(pattern)):
            remove_tree(retired, ignore_errors=True)
            if retired.exists():
                raise RuntimeFailure(f"could not remove the retired runtime {retired}")
            removed.append(retired)
        return removed

    def _identify(
        self, python_requirement: str, lock_file: Path, lock_format: str
    ) -> tuple[str, Interpreter, Path, bytes]:
        """What ``ensure`` starts from: the id, the interpreter, the absolute lock and its bytes."""
        if lock_format not in LOCK_FORMATS:
            raise RuntimeFailure(
                f"unknown lock format {lock_format!r}; expected one of {', '.join(LOCK_FORMATS)}"
            )
        lock_file = lock_file.absolute()  # uv runs elsewhere
        try:
            lock_bytes = lock_file.read_bytes()
        except OSError as exc:
            raise RuntimeFailure(f"cannot read the lock {lock_file}: {exc.strerror}") from None
        companion = _companion(lock_file, lock_format)
        interpreter = self._interpreter_for(python_requirement)
        identity = runtime_id(interpreter, lock_format, lock_bytes, companion)
        return identity, interpreter, lock_file, lock_bytes

    # --- processes -----------------------------------------------------------------------

    def _uv(
        self,
        arguments: list[str],
        *,
        cwd: Path,
        log: Callable[[str], None],
        step: str,
        extra_env: Mapping[str, str] | None = None,
    ) -> list[str]:
        return self._run(
            [_uv_binary(), *arguments],
            cwd=cwd,
            env={**self._environment(), **(extra_env or {})},
            log=log,
            step=step,
        )

    def _run(
        self,
        command: list[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log: Callable[[str], None],
        step: str,
    ) -> list[str]:
        """Run ``command``, its output into ``log`` as it comes (minus uv's per-package and
        activation lines, which the summary lines cover); its lines, or RuntimeFailure with
        the last of them."""
        return run_step(
            command,
            cwd=cwd,
            env=env,
            log=log,
            what=step,
            timeout=self.build_timeout,
            quiet=_uv_detail,
        )

    def _environment(self) -> dict[str, str]:
        """A minimal environment for uv and the packages it builds: never the server's own
        (which holds the secrets behind ``${...}`` references); only what reaching an index
        and finding programs needs, uv's own settings, and: the shared cache, no Python
        downloads, no progress bars in the log."""
        environment = {
            k: v
            for k, v in os.environ.items()
            if (k in _BUILD_NAMES or k.startswith(_BUILD_PREFIXES)) and k not in _NOT_INHERITED
        }
        environment.update(
            UV_CACHE_DIR=str(self.cache_dir),
            UV_PYTHON_DOWNLOADS="never",
            UV_NO_PROGRESS="1",
        )
        return environment

    # --- interpreters, locks, leftovers --------------------------------------------------

    def discover_interpreters(self) -> list[Interpreter]:
        """Find the machine's interpreters now, if not yet done (about 2 s: every Python on the
        machine is started). The server does this as it starts, so its first release does not
        wait for it."""
        with self._discovery:
            if self._interpreters is None:
                self._interpreters = discover(_uv_binary(), self._environment())
            return list(self._interpreters)

    def _interpreter_for(self, requirement: str) -> Interpreter:
        """Discovery runs once per builder (it starts every Python on the machine); again
        only when nothing fits, in case one was installed since."""
        with self._discovery:
            if self._interpreters is not None:
                try:
                    return choose(requirement, self._interpreters)
                except RuntimeFailure:
                    pass
            self._interpreters = discover(_uv_binary(), self._environment())
            return choose(requirement, self._interpreters)

    @contextmanager
    def _build_lock(self, identity: str, log: Callable[[str], None]) -> Iterator[None]:
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        # One open file description per caller, so flock excludes threads as well as processes.
        with open(locks / f"{identity}.lock", "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log(f"waiting for another build of runtime {identity[:12]}")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _clear_leftovers(self, identity: str, log: Callable[[str], None]) -> None:
        """Remove what a build of this id killed midway left, and a final directory without
        its marker (which no build of this code leaves). Safe: the caller holds the id's lock."""
        for leftover in self.root.glob(f".build-{identity[:16]}-*"):
            log(f"removing {leftover.name}, left by an interrupted build")
            remove_tree(leftover, ignore_errors=True)
        final = self.path_of(identity)
        if final.exists() and not _is_complete(final):
            log(f"removing incomplete runtime {identity[:12]}")
            remove_tree(final, ignore_errors=True)

    def _info(self, identity: str, interpreter: Interpreter, *, reused: bool) -> RuntimeInfo:
        path = self.path_of(identity)
        return RuntimeInfo(
            id=identity,
            path=path,
            python=path / "bin" / "python",
            python_version=interpreter.version,
            reused=reused,
        )


def runtime_id(
    interpreter: Interpreter, lock_format: str, lock: bytes, companion: bytes | None = None
) -> str:
    """sha256 of what decides a runtime's contents: the interpreter's full version and
    platform tag, and the lock (for a uv.lock also its pyproject.toml, which decides the
    dependency groups installed)."""
    inputs = {
        "python": interpreter.version,
        "platform": interpreter.platform_tag,
        "lock_format": lock_format,
        "lock_sha256": hashlib.sha256(lock).hexdigest(),
        "companion_sha256": None if companion is None else hashlib.sha256(companion).hexdigest(),
        # A runtime carries Conveyor's app-facing library: a new one needs a new runtime.
        "library_sha256": library_digest(),
    }
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()


def _companion(lock_file: Path, lock_format: str) -> bytes | None:
    if lock_format != "uv.lock":
        return None
    project = lock_file.parent / "pyproject.toml"
    try:
        return project.read_bytes()
    except OSError:
        raise RuntimeFailure(
            f"{lock_file.name} needs its pyproject.toml beside it to be installed"
        ) from None


def _is_complete(path: Path) -> bool:
    return (path / MARKER).is_file()


def _uv_binary() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def _write_marker(
    venv: Path, identity: str, interpreter: Interpreter, lock_format: str, lock: bytes
) -> None:
    """What the runtime was built from; its presence also says the build completed."""
    marker = {
        "id": identity,
        "python": interpreter.version,
        "interpreter": str(interpreter.executable),
        "platform": interpreter.platform_tag,
        "lock_format": lock_format,
        "lock_sha256": hashlib.sha256(lock).hexdigest(),
        "conveyor": conveyor.__version__,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (venv / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _uv_detail(line: str) -> bool:
    """uv lines that only repeat what its summary says ("Installed 23 packages")."""
    return line.startswith((" + ", " - ", "Activate with:")) or line.endswith(
        "conveyor/__init__.py"
    )
