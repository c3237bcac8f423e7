"""
RTP/RTCP UDP port allocation.

RFC 3550 section 11 puts RTP on an even port and its RTCP on the next
(odd) one; RFC 5761 (rtcp-mux) puts both on the RTP port. The
L{PortAllocator} hands out such pairs from a configured range (16384-32767
by default, the range most SIP equipment uses), by actually binding them:
a port that some other program holds (C{EADDRINUSE}) is skipped and the
next pair tried. It never uses threads and never blocks: C{listenUDP} is
synchronous.

The allocator walks the range round-robin from a random starting pair, so
a port just released is the last one to be reused (stray packets of a
finished call do not land in the next call), and it remembers the pairs it
handed out, so it never tries them while they are in use. The number of
pairs in use is bounded by the size of the range (and optionally by
C{maxPairs}).
"""

from __future__ import annotations

import dataclasses
import random as _random
from typing import Callable, Optional, Set

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from lmevoip.interfaces import IPortAllocator

__all__ = [
    "DEFAULT_LOW_PORT",
    "DEFAULT_HIGH_PORT",
    "PortsExhausted",
    "PortPair",
    "PortAllocator",
]

#: The default range: 16384-32767, the RTP range many SIP devices use.
DEFAULT_LOW_PORT = 16384
DEFAULT_HIGH_PORT = 32767

ProtocolFactory = Callable[[], DatagramProtocol]


class PortsExhausted(CannotListenError):
    """
    No pair in the range could be bound: all in use by us or by others, or
    C{maxPairs} reached.
    """

    def __init__(self, interface: str, low: int, high: int, reason: str) -> None:
        CannotListenError.__init__(self, interface, f"{low}-{high}", reason)


@dataclasses.dataclass
class PortPair:
    """
    A bound RTP port and, unless rtcp-mux, the RTCP port after it.

    @ivar rtpProtocol: the protocol bound to the RTP port.
    @ivar rtcpProtocol: the protocol bound to the RTCP port, or C{None}.
    @ivar rtpPort: the even RTP port.
    @ivar rtcpPort: C{rtpPort + 1}, or C{None} when only the RTP port was
        bound (rtcp-mux).
    @ivar rtpListener: the L{IListeningPort} of the RTP socket.
    @ivar rtcpListener: that of the RTCP socket, or C{None}.
    @ivar interface: the local address both are bound to.
    """

    rtpProtocol: DatagramProtocol
    rtcpProtocol: Optional[DatagramProtocol]
    rtpPort: int
    rtcpPort: Optional[int]
    rtpListener: IListeningPort
    rtcpListener: Optional[IListeningPort]
    interface: str
    released: bool = False


@implementer(IPortAllocator)
class PortAllocator:
    """
    Allocates even/odd UDP port pairs for RTP and RTCP from a range.

    @ivar reactor: the L{IReactorUDP} the ports are bound with.
    @ivar low: the lowest port of the range (rounded up to even).
    @ivar high: the highest port of the range.
    @ivar interface: the default local address to bind.
    @ivar maxPairs: the most pairs in use at once.
    @ivar bindFailures: binds that failed with the port in use.
    """

    log = Logger()

    def __init__(self, reactor: IReactorUDP, low: int = DEFAULT_LOW_PORT,
                 high: int = DEFAULT_HIGH_PORT, interface: str = "",
                 maxPairs: Optional[int] = None,
                 random: Optional[_random.Random] = None) -> None:
        """
        @param reactor: provides C{listenUDP}.
        @param low: first port of the range (1024-65534).
        @param high: last port of the range (at least C{low + 1}).
        @param interface: the default address to bind (C{""}: all IPv4).
        @param maxPairs: a lower bound than the range on pairs in use.
        @param random: picks the starting pair (seed it in tests).
        @raise ValueError: for a range holding no even/odd pair.
        """
        if not (isinstance(low, int) and isinstance(high, int) and 1 <= low and high <= 65535):
            raise ValueError(f"bad port range {low!r}-{high!r}")
        low += low & 1
        if high < low + 1:
            raise ValueError(f"port range {low}-{high} holds no even/odd pair")
        self.reactor = reactor
        self.low = low
        self.high = high
        self.interface = interface
        self.capacity = (high - low + 1) // 2
        self.maxPairs = self.capacity if maxPairs is None else min(maxPairs, self.capacity)
        if self.maxPairs < 1:
            raise ValueError(f"maxPairs must be >= 1, not {maxPairs!r}")
        rng = random if random is not None else _random.Random()
        self._next = rng.randrange(self.capacity)
        self._inUse: Set[int] = set()
        self.bindFailures = 0

    @property
    def inUse(self) -> int:
        """
        How many pairs are allocated now.
        """
        return len(self._inUse)

    def allocate(self, rtpProtocolFactory: ProtocolFactory,
                 rtcpProtocolFactory: Optional[ProtocolFactory] = None,
                 interface: Optional[str] = None) -> PortPair:
        """
        Bind a protocol from C{rtpProtocolFactory} to the next free even
        port and one from C{rtcpProtocolFactory} (unless C{None}, for
        rtcp-mux) to the port after it.

        The factories are called once per attempt: when the RTP port binds
        but the RTCP port does not, the RTP port is closed, and Twisted
        detaches its protocol only later (C{stopListening} is
        asynchronous), so the next attempt needs a fresh protocol.

        @param rtpProtocolFactory: returns a new L{DatagramProtocol}.
        @param rtcpProtocolFactory: the same for RTCP, or C{None}.
        @param interface: the local address (default: L{interface}).
        @return: the L{PortPair}.
        @raise PortsExhausted: when no pair could be bound.
        """
        interface = self.interface if interface is None else interface
        if len(self._inUse) >= self.maxPairs:
            raise PortsExhausted(interface, self.low, self.high,
                                 f"all {self.maxPairs} pairs allowed are in use")
        for _ in range(self.capacity):
            index = self._next
            self._next = (index + 1) % self.capacity
            if index in self._inUse:
                continue
            rtpPort = self.low + 2 * index
            pair = self._bind(rtpPort, rtpProtocolFactory, rtcpProtocolFactory, interface)
            if pair is not None:
                self._inUse.add(index)
                return pair
        raise PortsExhausted(interface, self.low, self.high,
                             "every pair is in use or could not be bound")

    def _bind(self, rtpPort: int, rtpProtocolFactory: ProtocolFactory,
              rtcpProtocolFactory: Optional[ProtocolFactory],
              interface: str) -> Optional[PortPair]:
        rtpProtocol = rtpProtocolFactory()
        rtcpProtocol = None if rtcpProtocolFactory is None else rtcpProtocolFactory()
        try:
            rtpListener = self.reactor.listenUDP(rtpPort, rtpProtocol, interface=interface)
        except CannotListenError as error:
            self._bindFailed(rtpPort, interface, error)
            return None
        rtcpListener = None
        if rtcpProtocol is not None:
            try:
                rtcpListener = self.reactor.listenUDP(rtpPort + 1, rtcpProtocol,
                                                      interface=interface)
            except CannotListenError as error:
                self._bindFailed(rtpPort + 1, interface, error)
                rtpListener.stopListening()
                return None
        return PortPair(rtpProtocol, rtcpProtocol, rtpPort,
                        None if rtcpProtocol is None else rtpPort + 1,
                        rtpListener, rtcpListener, interface)

    def _bindFailed(self, port: int, interface: str, error: Exception) -> None:
        self.bindFailures += 1
        self.log.debug("RTP port {port} on {interface!r} unavailable: {error}",
                       port=port, interface=interface, error=error)

    def release(self, pair: PortPair) -> Deferred:
        """
        Close the pair's sockets and make its ports available again
        (idempotent).

        @return: a Deferred that fires when the sockets are closed.
        """
        if pair.released:
            return succeed(None)
        pair.released = True
        self._inUse.discard((pair.rtpPort - self.low) // 2)
        listeners = [pair.rtpListener]
        if pair.rtcpListener is not None:
            listeners.append(pair.rtcpListener)
        results = [maybeDeferred(listener.stopListening) for listener in listeners]
        return gatherResults(results, consumeErrors=True).addCallback(lambda _: None)
