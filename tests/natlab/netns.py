"""
Network namespaces from inside this process: enter one for a moment to
create a socket, read or write one of its sysctls, or flush its conntrack
table, without spawning a process.

A socket belongs to the network namespace it was created in, for its whole
life, whatever namespace the process is in later. So
L{inNamespace} switches the calling thread (C{setns(2)} acts on one thread)
into a named namespace, the socket is created, and the thread switches back
before anything else runs. L{NamespacedReactor} wraps a reactor so that
every listening or connecting socket it makes is made that way: code that
takes an injected reactor then runs in this process but talks from the
namespace.

Everything here needs root (C{CAP_SYS_ADMIN} for C{setns}, C{CAP_NET_ADMIN}
for the conntrack flush).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zope.interface import directlyProvides, providedBy

__all__ = [
    "NETNS_DIR",
    "NamespacedReactor",
    "NamespaceError",
    "flushConntrack",
    "inNamespace",
    "readSysctl",
    "writeSysctl",
]

#: Where C{ip netns add NAME} keeps the namespace's bind mount.
NETNS_DIR = Path("/run/netns")

_CLONE_NEWNET = 0x40000000

# ctnetlink (linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h)
_NETLINK_NETFILTER = 12
_NFNL_SUBSYS_CTNETLINK = 1
_IPCTNL_MSG_CT_DELETE = 2
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_NLMSG_ERROR = 2
_NLMSG_HEADER = struct.Struct("=IHHII")

_libc: Any = None


class NamespaceError(OSError):
    """
    A namespace could not be entered or left, or a netlink request failed.
    """


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise NamespaceError(code, f"setns: {os.strerror(code)}")


@contextlib.contextmanager
def inNamespace(name: str) -> Iterator[None]:
    """
    Run the body of a C{with} block with the calling thread in network
    namespace C{name} (one made by C{ip netns add}), and switch back after.

    Keep the body short and synchronous: the reactor runs nothing else
    meanwhile, so nothing else is created in the wrong namespace.

    @raise NamespaceError: the namespace does not exist or cannot be
        entered; or (never seen) the thread cannot switch back, which is
        raised even if the body raised.
    """
    try:
        target = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceError(errno.ENOENT, f"no network namespace {name!r}") from None
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


def _sysctlPath(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def readSysctl(namespace: str | None, key: str) -> str:
    """
    Read sysctl C{key} (e.g. C{net.netfilter.nf_conntrack_udp_timeout}) as
    seen from network namespace C{namespace} (L{None}: this process's own).

    C{/proc/sys/net} shows the namespace of whoever opens the file, so the
    file is opened inside the namespace.

    @raise OSError: the sysctl does not exist there.
    """
    if namespace is None:
        return _sysctlPath(key).read_text().strip()
    with inNamespace(namespace):
        with open(_sysctlPath(key)) as f:
            return f.read().strip()


def writeSysctl(namespace: str, key: str, value: str | int) -> None:
    """
    Set sysctl C{key} to C{value} in network namespace C{namespace}.

    @raise OSError: the sysctl does not exist there or is read-only.
    """
    with inNamespace(namespace):
        with open(_sysctlPath(key), "w") as f:
            f.write(f"{value}\n")


def flushConntrack(namespace: str, family: int = socket.AF_INET) -> None:
    """
    Delete every conntrack entry of C{family} in network namespace
    C{namespace}, as C{conntrack -F} does: one ctnetlink
    C{IPCTNL_MSG_CT_DELETE} request with no attributes. Needs no
    C{conntrack} tool.

    @raise NamespaceError: the kernel refused the request.
    """
    with inNamespace(namespace):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
    with sock:
        sock.bind((0, 0))
        sock.settimeout(5.0)
        nfgenmsg = struct.pack("=BBH", family, 0, 0)
        header = _NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(nfgenmsg),
                                    (_NFNL_SUBSYS_CTNETLINK << 8) | _IPCTNL_MSG_CT_DELETE,
                                    _NLM_F_REQUEST | _NLM_F_ACK, 1, 0)
        sock.send(header + nfgenmsg)
        reply = sock.recv(65536)
    _, kind, _, _, _ = _NLMSG_HEADER.unpack_from(reply)
    if kind != _NLMSG_ERROR:
        raise NamespaceError(errno.EPROTO, f"ctnetlink flush: unexpected reply type {kind}")
    (code,) = struct.unpack_from("=i", reply, _NLMSG_HEADER.size)
    if code != 0:
        raise NamespaceError(-code, f"ctnetlink flush in {namespace}: {os.strerror(-code)}")


class NamespacedReactor:
    """
    A reactor whose sockets live in another network namespace.

    C{listenUDP}, C{listenTCP} and C{connectTCP} create their socket inside
    the namespace (they create it synchronously, before returning);
    everything else goes to the wrapped reactor unchanged, and this object
    provides the same interfaces. Hand it to code that takes an injected
    reactor (the engine, a keep-alive service) to run that code in this
    process as if it were on the namespace's host.

    @ivar namespace: the network namespace's name.
    @ivar reactor: the wrapped reactor.
    """

    def __init__(self, namespace: str, reactor: Any) -> None:
        self.namespace = namespace
        self.reactor = reactor
        directlyProvides(self, *providedBy(reactor))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reactor, name)

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> Any:
        with inNamespace(self.namespace):
            return self.reactor.listenUDP(port, protocol, interface, maxPacketSize)

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        with inNamespace(self.namespace):
            return self.reactor.listenTCP(port, factory, backlog, interface)

    def connectTCP(self, host: str, port: int, factory: Any, timeout: float = 30,
                   bindAddress: Any = None) -> Any:
        with inNamespace(self.namespace):
            return self.reactor.connectTCP(host, port, factory, timeout, bindAddress)
