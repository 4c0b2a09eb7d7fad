"""The system calls a sandboxed app may not make: a seccomp filter bubblewrap installs before
the app starts (``bwrap --seccomp``), built with libseccomp (through ``pyseccomp``).

Everything else is allowed: the filter takes away the kernel's most attacked surfaces, which
no data-science app needs, rather than listing what an app may do (a list that breaks the
first app that uses something new). Refused calls fail with EPERM, so a program that probes
for them carries on. What is refused and why is in ``REFUSED``; docs/security.md lists it.
"""

from __future__ import annotations

import errno
import os
import termios
from pathlib import Path

#: System call -> why an app may not make it.
REFUSED = {
    "unshare": "new namespaces: a user namespace gives back every capability inside it",
    "setns": "joining another process's namespaces",
    "mount": "mounting file systems",
    "umount2": "unmounting file systems",
    "pivot_root": "changing the root file system",
    "fsopen": "mounting file systems (new mount API)",
    "fsmount": "mounting file systems (new mount API)",
    "move_mount": "mounting file systems (new mount API)",
    "open_tree": "mounting file systems (new mount API)",
    "keyctl": "the kernel keyring, shared by every process of a user",
    "add_key": "the kernel keyring",
    "request_key": "the kernel keyring",
    "bpf": "loading programs into the kernel",
    "perf_event_open": "kernel performance counters (a frequent kernel attack surface)",
    "userfaultfd": "user page-fault handling (used to widen kernel races)",
    "kexec_load": "loading a new kernel",
    "kexec_file_load": "loading a new kernel",
    "init_module": "loading kernel modules",
    "finit_module": "loading kernel modules",
    "delete_module": "unloading kernel modules",
    "open_by_handle_at": "opening files by handle, past the sandbox's mounts",
    "acct": "process accounting",
    "swapon": "swap",
    "swapoff": "swap",
    "syslog": "the kernel log",
    "ptrace": "tracing other processes",
    "process_vm_readv": "reading another process's memory",
    "process_vm_writev": "writing another process's memory",
}

#: clone(2) flag that makes a user namespace; clone3 hides its flags in memory a filter cannot
#: read, so clone3 answers ENOSYS and the C library falls back to clone.
CLONE_NEWUSER = 0x10000000


def write_filter(path: Path) -> str | None:
    """Compile the filter for this machine into ``path`` (private to the server); None, or
    why there is no filter here."""
    try:
        import pyseccomp as seccomp  # type: ignore[import-untyped]
    except (ImportError, RuntimeError, OSError) as exc:  # RuntimeError: no libseccomp
        return f"no system call filter: libseccomp is not available ({exc})"
    try:
        syscalls = seccomp.SyscallFilter(seccomp.ALLOW)
        for name in REFUSED:
            syscalls.add_rule(seccomp.ERRNO(errno.EPERM), name)
        syscalls.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
        syscalls.add_rule(
            seccomp.ERRNO(errno.EPERM),
            "clone",
            seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER),
        )
        # Pushing keystrokes into a terminal the app shares with someone else.
        syscalls.add_rule(
            seccomp.ERRNO(errno.EPERM),
            "ioctl",
            seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, termios.TIOCSTI),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        with open(partial, "wb") as output:
            syscalls.export_bpf(output)
        partial.chmod(0o600)
        os.replace(partial, path)
    except (OSError, ValueError) as exc:
        return f"no system call filter: it could not be built ({exc})"
    return None
