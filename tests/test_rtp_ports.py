"""
Tests for L{lmevoip.rtp.ports}: RTP/RTCP port pair allocation.
"""

import random
import socket

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from lmevoip.interfaces import IPortAllocator
from lmevoip.rtp.ports import PortAllocator, PortPair, PortsExhausted


class FakeListeningPort:
    def __init__(self, reactor, port, protocol, interface):
        self.reactor = reactor
        self.port = port
        self.protocol = protocol
        self.interface = interface
        self.stopped = False

    def stopListening(self):
        self.stopped = True
        del self.reactor.bound[self.port]

    def getHost(self):  # pragma: no cover - not used by the allocator
        return ("UDP", self.interface, self.port)


class FakeUdpReactor:
    """
    listenUDP that records bindings and refuses the ports in C{busy}
    (as if another program held them).
    """

    def __init__(self, busy=()):
        self.busy = set(busy)
        self.bound = {}
        self.attempts = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        self.attempts.append(port)
        if port in self.busy or port in self.bound:
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        listener = self.bound[port] = FakeListeningPort(self, port, protocol, interface)
        return listener


class PortAllocatorTests(SynchronousTestCase):
    def allocator(self, low=20000, high=20009, busy=(), **kwargs):
        self.reactor = FakeUdpReactor(busy)
        kwargs.setdefault("random", random.Random(0))
        return PortAllocator(self.reactor, low, high, **kwargs)

    def test_interface(self):
        verifyObject(IPortAllocator, self.allocator())

    def test_evenOddPairs(self):
        """
        Every pair is an even RTP port and the next odd port, in the range,
        all different, bound to the given protocols and interface.
        """
        allocator = self.allocator(interface="127.0.0.1")
        pairs = [allocator.allocate(DatagramProtocol, DatagramProtocol) for _ in range(5)]
        self.assertEqual(sorted(p.rtpPort for p in pairs), [20000, 20002, 20004, 20006, 20008])
        for pair in pairs:
            self.assertIsInstance(pair, PortPair)
            self.assertEqual(pair.rtcpPort, pair.rtpPort + 1)
            self.assertEqual(pair.rtpListener.interface, "127.0.0.1")
            self.assertIs(self.reactor.bound[pair.rtcpPort], pair.rtcpListener)
            self.assertIs(pair.rtpListener.protocol, pair.rtpProtocol)
            self.assertIs(pair.rtcpListener.protocol, pair.rtcpProtocol)
            self.assertIsInstance(pair.rtpProtocol, DatagramProtocol)
        self.assertEqual(allocator.inUse, 5)

    def test_oddLowRoundedUp(self):
        allocator = self.allocator(low=20001, high=20004)
        self.assertEqual(allocator.allocate(DatagramProtocol).rtpPort, 20002)
        self.assertEqual(allocator.capacity, 1)

    def test_exhausted(self):
        """
        When every pair is in use, allocate raises PortsExhausted (a
        CannotListenError) without binding anything.
        """
        allocator = self.allocator(low=20000, high=20003)
        allocator.allocate(DatagramProtocol, DatagramProtocol)
        allocator.allocate(DatagramProtocol, DatagramProtocol)
        attempts = len(self.reactor.attempts)
        error = self.assertRaises(PortsExhausted, allocator.allocate, DatagramProtocol)
        self.assertIsInstance(error, CannotListenError)
        self.assertEqual(len(self.reactor.attempts), attempts)

    def test_skipsPortsInUse(self):
        """
        A pair whose RTP or RTCP port is held by someone else is skipped;
        a bound RTP port is closed again when its RTCP port fails.
        """
        allocator = self.allocator(low=20000, high=20005, busy={20000, 20003},
                                   random=random.Random(0))
        allocator._next = 0
        self.created = []

        def factory():
            protocol = DatagramProtocol()
            self.created.append(protocol)
            return protocol

        pair = allocator.allocate(factory, factory)
        self.assertEqual(pair.rtpPort, 20004)
        self.assertEqual(self.reactor.attempts, [20000, 20002, 20003, 20004, 20005])
        self.assertNotIn(20002, self.reactor.bound)
        # Each attempt got fresh protocols: the one bound to 20002 and
        # closed is not the one bound to 20004.
        self.assertEqual(len(self.created), 6)
        self.assertEqual((pair.rtpProtocol, pair.rtcpProtocol), tuple(self.created[4:]))
        self.assertEqual(allocator.bindFailures, 2)
        self.assertRaises(PortsExhausted, allocator.allocate, DatagramProtocol,
                          DatagramProtocol)

    def test_roundRobin(self):
        """
        A released pair is reused only after the rest of the range.
        """
        allocator = self.allocator(low=20000, high=20007)
        allocator._next = 0
        first = allocator.allocate(DatagramProtocol)
        allocator.release(first)
        second = allocator.allocate(DatagramProtocol)
        self.assertEqual((first.rtpPort, second.rtpPort), (20000, 20002))
        ports = [allocator.allocate(DatagramProtocol).rtpPort for _ in range(3)]
        self.assertEqual(ports, [20004, 20006, 20000])

    def test_randomStart(self):
        """
        The starting pair comes from the injected random.
        """
        starts = {self.allocator(low=20000, high=29999, random=random.Random(seed))
                  .allocate(DatagramProtocol).rtpPort for seed in range(5)}
        self.assertGreater(len(starts), 3)

    def test_release(self):
        """
        release() stops both listeners, frees the pair, and is idempotent.
        """
        allocator = self.allocator()
        pair = allocator.allocate(DatagramProtocol, DatagramProtocol)
        results = []
        allocator.release(pair).addCallback(results.append)
        self.assertEqual(results, [None])
        self.assertTrue(pair.rtpListener.stopped)
        self.assertTrue(pair.rtcpListener.stopped)
        self.assertEqual(allocator.inUse, 0)
        self.assertEqual(self.reactor.bound, {})
        allocator.release(pair).addCallback(results.append)
        self.assertEqual(results, [None, None])

    def test_rtcpMuxBindsOnePort(self):
        allocator = self.allocator()
        pair = allocator.allocate(DatagramProtocol)
        self.assertIsNone(pair.rtcpPort)
        self.assertIsNone(pair.rtcpListener)
        self.assertEqual(list(self.reactor.bound), [pair.rtpPort])

    def test_maxPairs(self):
        allocator = self.allocator(maxPairs=2)
        allocator.allocate(DatagramProtocol)
        allocator.allocate(DatagramProtocol)
        self.assertRaises(PortsExhausted, allocator.allocate, DatagramProtocol)

    def test_badRanges(self):
        reactor = FakeUdpReactor()
        self.assertRaises(ValueError, PortAllocator, reactor, 20000, 20000)
        self.assertRaises(ValueError, PortAllocator, reactor, 0, 100)
        self.assertRaises(ValueError, PortAllocator, reactor, 20000, 70000)
        self.assertRaises(ValueError, PortAllocator, reactor, 20000, 20010, maxPairs=0)


class RealSocketTests(TestCase):
    @inlineCallbacks
    def test_skipsRealPortInUse(self):
        """
        On the real reactor, a port bound by another socket is skipped
        (EADDRINUSE) and the next pair is used.
        """
        blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(blocker.close)
        blocker.bind(("127.0.0.1", 0))
        busy = blocker.getsockname()[1]
        low = busy - (busy & 1)
        allocator = PortAllocator(reactor, low, low + 5, interface="127.0.0.1",
                                  random=random.Random(0))
        allocator._next = 0
        try:
            pair = allocator.allocate(DatagramProtocol, DatagramProtocol)
        except PortsExhausted:
            raise self.skipTest("the neighbouring ports are busy too")
        self.assertNotIn(busy, (pair.rtpPort, pair.rtcpPort))
        self.assertGreaterEqual(allocator.bindFailures, 1)
        self.assertEqual(pair.rtpListener.getHost().port, pair.rtpPort)
        yield allocator.release(pair)
        self.assertEqual(allocator.inUse, 0)
