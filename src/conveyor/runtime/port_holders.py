"""Who holds a port: the listening sockets on it (from ``/proc/net/tcp`` and ``tcp6``) and
whether each is a socket of a given process group.

A worker is given a free port and binds it itself, so between the moment Conveyor picks the
port and the moment the worker binds it, any process on the machine (another app included) may
take it, and the health check would pass against that process. Before a worker counts as
healthy, the runtime checks that every socket listening on its port is open in the worker's
own process group (``held_by_group``)."""

from __future__ import annotations

import os
from pathlib import Path

from conveyor.errors import RuntimeFailure
from conveyor.runtime.process_records import group_members

_PROC = Path("/proc")
_LISTEN = "0A"
#: Local addresses (as /proc/net/tcp and tcp6 write them) of listeners that a connection to
#: 127.0.0.1 can reach: 127.0.0.1 and 0.0.0.0; ::ffff:127.0.0.1 and :: (dual stack).
_REACHED_FROM_LOOPBACK = {
    "0100007F",
    "00000000",
    "0000000000000000FFFF00000100007F",
    "00000000000000000000000000000000",
}


def listening_sockets(port: int, proc: Path = _PROC) -> set[int] | None:
    """The inodes of the TCP sockets listening on ``port`` where a connection to 127.0.0.1
    reaches them (IPv4 and IPv6 dual stack); None when the kernel's tables cannot be read."""
    found: set[int] = set()
    tables = [proc / "net" / "tcp", proc / "net" / "tcp6"]
    read_any = False
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        read_any = True
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            address, _, hex_port = fields[1].rpartition(":")
            if int(hex_port, 16) == port and address.upper() in _REACHED_FROM_LOOPBACK:
                found.add(int(fields[9]))
    return found if read_any else None


def open_sockets(pids: list[int], proc: Path = _PROC) -> set[int] | None:
    """The inodes of the sockets the processes ``pids`` hold open; None when one of them
    cannot be read (not the server's to read: a server not running as root, and a process
    that made itself non-dumpable)."""
    found: set[int] = set()
    for pid in pids:
        fd_dir = proc / str(pid) / "fd"
        try:
            names = os.listdir(fd_dir)
        except FileNotFoundError:
            continue  # gone meanwhile
        except OSError:
            return None
        for name in names:
            try:
                target = os.readlink(fd_dir / name)
            except OSError:
                continue
            if target.startswith("socket:["):
                found.add(int(target[len("socket:[") : -1]))
    return found


def held_by_group(port: int, members: list[int], proc: Path = _PROC) -> bool | None:
    """Whether something listens on ``port`` and every socket listening there is held by one
    of the processes ``members`` (a worker's process group); None when it cannot be told."""
    listening = listening_sockets(port, proc)
    held = open_sockets(members, proc)
    if listening is None or held is None:
        return None
    return bool(listening) and listening <= held


def check_port_holder(upstream: str, index: int, leader: int) -> None:
    """Refuse worker ``index`` (its group led by ``leader``) when its address ``upstream``
    answers from a process outside its process group: one that took the port before the
    worker bound it, or a server the app started in a session of its own, which the supervisor
    could neither watch nor stop."""
    port = int(upstream.rsplit(":", 1)[1])
    if held_by_group(port, group_members(leader)) is False:
        raise RuntimeFailure(
            f"port {port}, given to worker {index}, is answered by a process that is not the "
            "app's worker: another process took the port before the worker bound it, or the "
            "app started its server in a session of its own (run it in the foreground, as the "
            "entrypoint's own process or its child). Deploy again for another port."
        )
