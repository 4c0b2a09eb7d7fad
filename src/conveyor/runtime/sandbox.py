"""Confining an app's processes with bubblewrap, the sandbox Flatpak uses.

``Confinement`` describes what one process may see; ``confined`` turns it into one command
line: ``[prlimit ...] bwrap ... [setpriv ...] -- argv``. Inside, the process sees the
machine's system files read-only (``/usr``, and from ``/etc`` only what programs need to run
and reach the network), the paths it is given (its release and runtime read-only, its output
location read-write), a private ``/tmp`` (its ``HOME``), its own ``/proc`` in a new PID
namespace (no other process is visible, the server's included) and a minimal ``/dev``. It
shares the network: apps must reach their databases. Where libseccomp is available, a system
call filter (runtime/syscall_filter.py) refuses namespaces, mounts, the keyring, bpf and the
other calls no app needs.

A server running as root runs each app as its own unprivileged user (``Confinement.uid``):
bubblewrap builds the sandbox as root, then ``setpriv`` switches to that user, drops every
capability and sets no-new-privileges before the app starts. A server running as another user
runs apps as itself, inside the sandbox.

Resource limits are rlimits set by ``prlimit`` before the sandbox starts: memory as the data
segment (``RLIMIT_DATA``: allocations beyond it fail), processes as ``RLIMIT_NPROC`` (only
where the app has its own user: the limit counts every process of that user). CPU shares need
cgroups v2, which this module does not manage: ``Limits.unenforced`` says so.

The environment is never put on the command line (anyone may read a process's arguments):
the process gets exactly the environment its caller passes to it, and bubblewrap hands it on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from conveyor.domain.apps import Resources, show_size
from conveyor.runtime.syscall_filter import write_filter

#: What programs need from /etc to run and reach the network; nothing else of it is visible.
ETC_FILES = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "fonts",
    "gai.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "passwd",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
)
#: Top-level directories programs expect, bound read-only (or linked, as on the host).
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
#: The home an app gets inside the sandbox: its private /tmp.
SANDBOX_HOME = "/tmp"
#: The size of an app's /tmp (memory) when its resources set no memory limit.
DEFAULT_TMP_SIZE = 512 * 2**20


class Isolation(StrEnum):
    BUBBLEWRAP = "bubblewrap"
    NONE = "none"


def unenforced(resources: Resources, own_user: bool) -> list[str]:
    """The limits rlimits cannot enforce here, each with why."""
    missing = []
    if resources.cpus is not None:
        missing.append("cpus (needs cgroups v2)")
    if resources.processes is not None and not own_user:
        missing.append("processes (needs the app to run as its own user: a root server)")
    return missing


@dataclass(frozen=True)
class Confinement:
    """What one process may see and use."""

    read_only: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    #: Run as this user and group (a root server); None: as the server's own user.
    uid: int | None = None
    gid: int | None = None
    limits: Resources = field(default_factory=Resources)


@dataclass(frozen=True)
class Sandboxing:
    """What isolation this machine offers the server, found once when it starts."""

    isolation: Isolation
    #: For people: what apps run in, or why they run without a sandbox.
    detail: str
    bwrap: str | None = None
    setpriv: str | None = None
    prlimit: str | None = None
    #: The compiled seccomp filter bubblewrap installs (runtime/syscall_filter.py), if any.
    syscall_filter: Path | None = None

    @property
    def own_users(self) -> bool:
        """Apps run as their own users (the server is root and can switch)."""
        return self.isolation is Isolation.BUBBLEWRAP and self.setpriv is not None

    @classmethod
    def none(cls, detail: str) -> Sandboxing:
        return cls(Isolation.NONE, detail, prlimit=shutil.which("prlimit"))


def detect(syscall_filter: Path | None = None) -> Sandboxing:
    """Whether bubblewrap is here and works (a sandbox is tried once), and whether apps can
    run as their own users; the system call filter is written to ``syscall_filter``."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Sandboxing.none(
            "bubblewrap (bwrap) is not installed: apps run unsandboxed, as the server's user. "
            "Install it: `apt-get install bubblewrap` (Debian, Ubuntu), `dnf install "
            "bubblewrap` (Fedora)"
        )
    probe = [bwrap, *_system_binds(), "--proc", "/proc", "--dev", "/dev", "--unshare-pid"]
    try:
        done = subprocess.run(
            [*probe, "--", "/bin/true"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Sandboxing.none(f"bubblewrap did not run ({exc}): apps run unsandboxed")
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return Sandboxing.none(
            f"bubblewrap is installed but cannot make a sandbox here ({reason[0]}); it needs "
            "unprivileged user namespaces or root: apps run unsandboxed"
        )
    version = subprocess.run(
        [bwrap, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout.strip()
    setpriv = shutil.which("setpriv") if os.geteuid() == 0 else None
    who = (
        "each app as its own unprivileged user"
        if setpriv
        else "apps as the server's user"
        + (" (setpriv is missing: install util-linux)" if os.geteuid() == 0 else "")
    )
    filtered: Path | None = None
    if syscall_filter is not None:
        missing = write_filter(syscall_filter)
        if missing is None:
            filtered = syscall_filter
            who += ", system calls filtered"
        else:
            who += f"; {missing}"
    return Sandboxing(
        Isolation.BUBBLEWRAP,
        f"{version or 'bubblewrap'}: {who}",
        bwrap=bwrap,
        setpriv=setpriv,
        prlimit=shutil.which("prlimit"),
        syscall_filter=filtered,
    )


def confined(
    sandboxing: Sandboxing, confinement: Confinement, argv: Sequence[str], cwd: Path
) -> list[str]:
    """The command line that runs ``argv`` (in ``cwd``) as ``confinement`` says."""
    command = list(argv)
    if sandboxing.isolation is Isolation.BUBBLEWRAP:
        assert sandboxing.bwrap is not None
        if sandboxing.setpriv is not None and confinement.uid is not None:
            gid = confinement.gid if confinement.gid is not None else confinement.uid
            command = [
                sandboxing.setpriv,
                f"--reuid={confinement.uid}",
                f"--regid={gid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
                *command,
            ]
        command = [sandboxing.bwrap, *bwrap_arguments(confinement, cwd), "--", *command]
        if sandboxing.syscall_filter is not None:
            # bubblewrap reads the filter from a descriptor: the shell opens it as 9 and
            # becomes bubblewrap, so every caller starts one command line as before.
            command = [
                "/bin/sh",
                "-c",
                'exec "$@" 9<"$0"',
                str(sandboxing.syscall_filter),
                command[0],
                "--seccomp",
                "9",
                *command[1:],
            ]
    return _with_limits(sandboxing, confinement, command)


def bwrap_arguments(confinement: Confinement, cwd: Path) -> list[str]:
    """bubblewrap's options for ``confinement``: what is visible, and where it starts."""
    arguments = [
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "conveyor-app",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--size",
        str(confinement.limits.memory or DEFAULT_TMP_SIZE),
        "--tmpfs",
        "/tmp",
        *_system_binds(),
        *_parents(confinement),
    ]
    for path in confinement.read_only:
        arguments += ["--ro-bind", str(path), str(path)]
    for path in confinement.writable:
        arguments += ["--bind", str(path), str(path)]
    arguments += ["--chdir", str(cwd)]
    return arguments


def _parents(confinement: Confinement) -> list[str]:
    """Directories leading to what is shown, made 0755 in the sandbox: bubblewrap would make
    them as private as on the host (``/root`` is 0700), and an app running as its own user
    could not reach what is bound below them."""
    shown = [*confinement.read_only, *confinement.writable]
    made = {Path("/"), Path("/tmp"), *shown}
    parents = sorted(
        {parent for path in shown for parent in path.parents if parent not in made},
        key=lambda path: len(path.parts),
    )
    arguments: list[str] = []
    for parent in parents:
        arguments += ["--perms", "0755", "--dir", str(parent)]
    return arguments


def _system_binds() -> list[str]:
    """/usr and its companions as on the host (links stay links), and the parts of /etc
    programs need."""
    arguments: list[str] = []
    for name in SYSTEM_DIRS:
        path = Path("/") / name
        if path.is_symlink():
            arguments += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            arguments += ["--ro-bind", str(path), str(path)]
    # /etc itself is made here, readable by everyone: bubblewrap would copy the mode of a
    # private parent, and an app running as its own user could then resolve no name.
    arguments += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_FILES:
        path = Path("/etc") / name
        if path.exists() or path.is_symlink():
            arguments += ["--ro-bind-try", str(path), str(path)]
    return arguments


def _with_limits(sandboxing: Sandboxing, confinement: Confinement, command: list[str]) -> list[str]:
    limits = confinement.limits
    options = []
    if limits.memory is not None:
        options.append(f"--data={limits.memory}")
    if limits.processes is not None and sandboxing.own_users and confinement.uid is not None:
        options.append(f"--nproc={limits.processes}")
    if not options or sandboxing.prlimit is None:
        return command
    return [sandboxing.prlimit, *options, "--", *command]


#: What an app prints when an allocation failed against its memory limit, or a fork against
#: its processes limit.
_OUT_OF_MEMORY = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")
_OUT_OF_PROCESSES = ("Resource temporarily unavailable", "can't start new thread")


def limit_reached(limits: Resources, output_tail: str) -> str | None:
    """Why a process that exited hit one of its limits, judged from its last output; None
    when it did not (as far as can be told)."""
    if limits.memory is not None and any(s in output_tail for s in _OUT_OF_MEMORY):
        return f"reached its memory limit ({show_size(limits.memory)})"
    if limits.processes is not None and any(s in output_tail for s in _OUT_OF_PROCESSES):
        return f"reached its processes limit ({limits.processes})"
    return None


def interpreter_prefix(runtime: Path) -> Path | None:
    """The installation a runtime's Python comes from (``home`` in its ``pyvenv.cfg``, one
    level up): the sandbox must show it, read-only, for the runtime to start."""
    try:
        lines = (runtime / "pyvenv.cfg").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "home" and value.strip():
            return Path(value.strip()).resolve().parent
    return None


def readable_by_the_app(root: Path) -> None:
    """Let a sandboxed app (another user) read ``root``: directories 0755, files keep their
    0644/0755. The server's home stays 0700, so nobody else reaches them. Links are never
    followed: an app may have made them (a build's output), and a chmod through one would
    change, as the server, whatever it points at."""
    _open_to_all(str(root))
    for directory, subdirectories, _ in os.walk(root):
        for name in subdirectories:
            _open_to_all(os.path.join(directory, name))


def _open_to_all(path: str) -> None:
    """chmod 0755 a directory, through a descriptor opened without following a link."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return  # a link (or gone): left alone
    try:
        os.fchmod(descriptor, 0o755)
    finally:
        os.close(descriptor)


def describe_confinement(sandboxing: Sandboxing, confinement: Confinement) -> str:
    """How a release's processes are isolated, for people: e.g. "bubblewrap, as user
    3000002; limits: memory 1 GiB"."""
    if sandboxing.isolation is Isolation.NONE:
        text = "none (unsandboxed, as the server's user)"
    elif confinement.uid is not None:
        text = f"bubblewrap, as user {confinement.uid}"
    else:
        text = "bubblewrap, as the server's user"
    limits = confinement.limits
    if limits.describe() != "no limits":
        text += f"; limits: {limits.describe()}"
        missing = unenforced(limits, confinement.uid is not None)
        if missing:
            text += f" (not enforced here: {', '.join(missing)})"
    return text
