"""Who holds a port, told from the kernel's tables: real listening sockets in this process and
in a child process group of its own."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from conveyor.runtime.port_holders import held_by_group, listening_sockets
from conveyor.runtime.process_records import group_members

LISTENER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""


@pytest.fixture
def listening_group() -> Iterator[tuple[int, int]]:
    """A process in a group of its own listening on a port: (port, group id)."""
    child = subprocess.Popen(
        [sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, start_new_session=True
    )
    with child:
        try:
            assert child.stdout is not None
            port = int(child.stdout.readline())
            yield port, child.pid
        finally:
            child.kill()


def test_a_port_held_by_the_group_is_told_apart_from_one_held_elsewhere(listening_group):
    port, group = listening_group
    assert held_by_group(port, group_members(group)) is True
    with socket.socket() as elsewhere:
        elsewhere.bind(("127.0.0.1", 0))
        elsewhere.listen()
        other = elsewhere.getsockname()[1]
        assert held_by_group(other, group_members(group)) is False


def test_a_port_shared_with_a_process_outside_the_group_is_not_the_groups(listening_group):
    """SO_REUSEPORT lets a second socket of the same user listen on the same port, and the
    kernel spreads connections between them: the port is not the group's alone."""
    port, group = listening_group
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        assert len(listening_sockets(port) or ()) == 2
        assert held_by_group(port, group_members(group)) is False


def test_a_port_nobody_listens_on_is_nobodys(listening_group):
    _, group = listening_group
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    assert held_by_group(free, group_members(group)) is False


def test_a_listener_loopback_traffic_cannot_reach_is_not_counted(listening_group):
    """An IPv6-only socket on ::1 may share the port number; a connection to 127.0.0.1 never
    reaches it, so it does not make the worker's port another's."""
    port, group = listening_group
    with socket.socket(socket.AF_INET6) as other:
        other.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            other.bind(("::1", port))
        except OSError as error:
            pytest.skip(f"no IPv6 loopback here: {error}")
        other.listen()
        assert held_by_group(port, group_members(group)) is True
