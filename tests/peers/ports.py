"""
Free ports on the loopback interface for real peers, and waiting until a
peer has bound its port.

Choosing a port: the kernel picks one (bind to port 0), we read it and
close the socket straight away; the peer then binds it. Between the close
and the peer's bind another process could take the port, which is why
L{waitForUdpPort} can insist that the port is bound by I{our} subprocess
(its C{pid}) and not merely by someone.

Waiting: the kernel's socket tables C{/proc/net/udp} and C{/proc/net/udp6}
list every bound UDP socket with its inode; C{/proc/PID/fd} maps a process
to the inodes of its sockets. The wait polls them through the reactor
(C{deferLater}), never with C{time.sleep}.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = [
    "LOOPBACK",
    "PortTimeout",
    "freePortBlock",
    "freeRtpPair",
    "freeTcpPort",
    "freeUdpPort",
    "udpPortBound",
    "udpSocketInodes",
    "processSocketInodes",
    "waitForUdpPort",
]

LOOPBACK = "127.0.0.1"

_log = Logger(namespace="tests.peers.ports")

#: How many times the port pickers retry before giving up.
_ATTEMPTS = 200


class PortTimeout(Exception):
    """
    A UDP port was not bound (by the expected process) in time.
    """


def _bind(kind: int, host: str, port: int) -> socket.socket | None:
    """
    Bind a socket of C{kind} (C{SOCK_DGRAM} or C{SOCK_STREAM}) to
    C{(host, port)}; return it, or L{None} when the port is taken.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            return None
        raise
    return sock


def freeUdpPort(host: str = LOOPBACK) -> int:
    """
    Return a UDP port on C{host} that was free a moment ago.

    @param host: the address the peer will bind (C{0.0.0.0} for a peer that
        binds the wildcard address, such as SIPp's control socket).
    @return: the port number.
    """
    return freePortBlock(1, host=host, align=1)


def freeTcpPort(host: str = LOOPBACK) -> int:
    """
    Return a TCP port on C{host} that was free a moment ago.
    """
    return freePortBlock(1, host=host, align=1, kinds=(socket.SOCK_STREAM,))


def freeRtpPair(host: str = LOOPBACK) -> tuple[int, int]:
    """
    Return an even RTP port and the odd RTCP port after it, both free.
    """
    base = freePortBlock(2, host=host, align=2)
    return base, base + 1


def freePortBlock(
    size: int,
    host: str = LOOPBACK,
    align: int = 2,
    kinds: Iterable[int] = (socket.SOCK_DGRAM,),
) -> int:
    """
    Return the first port of C{size} consecutive free ports.

    The kernel picks a candidate (bind to port 0); the block starts at the
    candidate rounded down to a multiple of C{align}, and every port of the
    block must bind for every socket kind in C{kinds}. All the test sockets
    are held until the block is known to be free, then closed.

    @param size: how many consecutive ports.
    @param host: the address to check.
    @param align: the block starts on a multiple of this (2 for RTP).
    @param kinds: socket kinds that must be free on each port, e.g.
        C{(SOCK_DGRAM, SOCK_STREAM)} for a SIP listener on UDP and TCP.
    @raise OSError: no such block was found after many attempts.
    """
    if size < 1 or align < 1:
        raise ValueError(f"size and align must be positive, not {size}, {align}")
    kinds = tuple(kinds)
    for _ in range(_ATTEMPTS):
        probe = _bind(kinds[0], host, 0)
        if probe is None:  # pragma: no cover - port 0 always binds
            continue
        candidate = probe.getsockname()[1]
        probe.close()
        base = candidate - (candidate % align)
        if base < 1024 or base + size - 1 > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                for kind in kinds:
                    sock = _bind(kind, host, port)
                    if sock is None:
                        raise _Taken()
                    held.append(sock)
        except _Taken:
            continue
        finally:
            for sock in held:
                sock.close()
        return base
    raise OSError(errno.EADDRINUSE, f"no {size} free consecutive ports on {host}")


class _Taken(Exception):
    """
    A port of the candidate block is taken.
    """


def _hexAddress(host: str) -> str:
    """
    The address as C{/proc/net/udp} writes it (host byte order, hex).
    """
    if ":" in host:
        packed = socket.inet_pton(socket.AF_INET6, host)
        return "".join(packed[i:i + 4][::-1].hex().upper() for i in range(0, 16, 4))
    return socket.inet_aton(host)[::-1].hex().upper()


def udpSocketInodes(port: int, host: str | None = None, procRoot: Path = Path("/proc")) -> set[int]:
    """
    Return the inodes of the UDP sockets bound to C{port}.

    @param port: the local port.
    @param host: when given, only sockets bound to this address or to the
        wildcard address count.
    @param procRoot: where C{/proc} is (tests point it at a fake tree).
    """
    wanted: set[str] | None = None
    if host is not None:
        wanted = {_hexAddress(host), _hexAddress("0.0.0.0"), _hexAddress("::")}
    inodes: set[int] = set()
    for table in ("udp", "udp6"):
        try:
            lines = (procRoot / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            address, _, hexPort = fields[1].partition(":")
            if int(hexPort, 16) != port:
                continue
            if wanted is not None and address not in wanted:
                continue
            inodes.add(int(fields[9]))
    return inodes


def processSocketInodes(pid: int, procRoot: Path = Path("/proc")) -> set[int]:
    """
    Return the inodes of the sockets process C{pid} has open (empty when the
    process is gone or not ours to inspect).
    """
    inodes: set[int] = set()
    fdDir = procRoot / str(pid) / "fd"
    try:
        entries = list(fdDir.iterdir())
    except OSError:
        return inodes
    for entry in entries:
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            inodes.add(int(target[8:-1]))
    return inodes


def udpPortBound(port: int, host: str | None = None, pid: int | None = None) -> bool:
    """
    Is UDP C{port} bound (on C{host} or the wildcard), and by process C{pid}
    when C{pid} is given?
    """
    inodes = udpSocketInodes(port, host)
    if pid is None:
        return bool(inodes)
    return bool(inodes & processSocketInodes(pid))


def waitForUdpPort(
    port: int,
    reactor: IReactorTime | None = None,
    timeout: float = 10.0,
    host: str | None = None,
    pid: int | None = None,
    interval: float = 0.02,
    alive: Callable[[], bool] | None = None,
) -> Deferred[None]:
    """
    Wait until UDP C{port} is bound, polling the socket tables on the
    reactor.

    @param port: the port.
    @param reactor: the reactor whose clock paces the polls (the global
        reactor by default).
    @param timeout: seconds before the Deferred fails with L{PortTimeout}.
    @param host: only a socket on this address (or the wildcard) counts.
    @param pid: only a socket of this process counts.
    @param interval: seconds between polls.
    @param alive: called before each poll; when it returns C{False} (the
        subprocess died) the wait fails at once with L{PortTimeout}.
    @return: a Deferred firing with L{None} once the port is bound.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor
        reactor = globalReactor  # type: ignore[assignment]
    deadline = reactor.seconds() + timeout
    started = time.monotonic()

    def poll() -> Deferred[None] | None:
        if alive is not None and not alive():
            raise PortTimeout(f"process {pid} ended before binding UDP port {port}")
        if udpPortBound(port, host, pid):
            _log.debug("UDP port {port} bound after {elapsed:.3f}s", port=port,
                       elapsed=time.monotonic() - started)
            return None
        if reactor.seconds() >= deadline:
            owner = f" by process {pid}" if pid is not None else ""
            taken = " (another process holds it)" if pid is not None and udpPortBound(port, host) else ""
            raise PortTimeout(f"UDP port {port} not bound{owner} within {timeout}s{taken}")
        return task.deferLater(reactor, interval, poll)

    return task.deferLater(reactor, 0, poll)
