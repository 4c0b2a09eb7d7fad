"""Directory trees that are read-only once written (runtimes, rendered outputs): making a tree
read-only and readable by every app's user, swapping two such trees of one parent atomically,
and removing one, read-only parts included.

Runtimes (``conveyor.runtime.builds``) are made read-only before their own Python first runs and
swapped for a rebuilt one in place; gc (``conveyor.services.retention``) and the removal of a
runtime (``conveyor.runtime.installed``) delete trees with ``remove_tree``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
import stat
from pathlib import Path


def make_read_only(root: Path) -> None:
    """Clear every write bit in the tree, and let everyone read it: sandboxed apps run as
    users of their own (the server's home, 0700, keeps everyone else out). Symbolic links are
    left alone: their own mode means nothing on Linux, and following one (bin/python) would
    change the interpreter's file."""
    for directory, subdirectories, files in os.walk(root, topdown=False):
        for name in [*files, *subdirectories]:
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode):
                os.chmod(path, _readable(mode))
    os.chmod(root, _readable(os.lstat(root).st_mode))


def _readable(mode: int) -> int:
    """``mode`` without write bits, readable by all, and executable by all where anyone
    could execute it (directories always)."""
    executable = stat.S_ISDIR(mode) or stat.S_IMODE(mode) & 0o111
    return 0o555 if executable else 0o444


def exchange_directories(first: Path, second: Path) -> None:
    """Swap two directories of one parent: one atomic ``renameat2(RENAME_EXCHANGE)`` on Linux,
    so ``second`` always names one of them; three renames where that call is missing or the
    filesystem refuses it (``second`` is missing for an instant). Renames within one parent need
    write permission on the parent only, not on the (read-only) directories themselves."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        fd, name = ctypes.c_int, ctypes.c_char_p
        renameat2.argtypes = (fd, name, fd, name, ctypes.c_uint)
        renameat2.restype = ctypes.c_int
        at_fdcwd, rename_exchange = -100, 2
        result = renameat2(
            at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange
        )
        if result == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(second))
    aside = second.with_name(f"{second.name}.exchange-{secrets.token_hex(4)}")
    os.rename(second, aside)
    try:
        os.rename(first, second)
    except OSError:
        os.rename(aside, second)
        raise
    os.rename(aside, first)


def remove_tree(root: Path, *, ignore_errors: bool = False) -> None:
    """Delete a tree, read-only parts (runtimes, rendered outputs) included; missing is fine.
    ``ignore_errors``: leave behind what cannot be removed instead of raising OSError."""
    if not root.exists() and not root.is_symlink():
        return
    try:
        if root.is_symlink() or not root.is_dir():
            root.unlink()
            return
        for directory, _, _ in os.walk(root):
            os.chmod(directory, stat.S_IMODE(os.lstat(directory).st_mode) | stat.S_IWUSR)
        shutil.rmtree(root)
    except OSError:
        if not ignore_errors:
            raise
        shutil.rmtree(root, ignore_errors=True)
