"""
Tests for L{lmevoip.sip.transport}: the SIP datagram protocol and its
service.
"""

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import CannotListenError
from twisted.internet.testing import FakeDatagramTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from lmevoip.interfaces import ISipTransport
from lmevoip.sip.message import Request, parse
from lmevoip.sip.transport import (
    SipDatagramProtocol,
    SipTransportService,
    TransportNotConnected,
    isKeepAlive,
    looksLikeStun,
)

OPTIONS = (b"OPTIONS sip:bob@192.0.2.2 SIP/2.0\r\n"
           b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\n"
           b"Max-Forwards: 70\r\n"
           b"From: <sip:alice@192.0.2.1>;tag=a1\r\n"
           b"To: <sip:bob@192.0.2.2>\r\n"
           b"Call-ID: t1@192.0.2.1\r\n"
           b"CSeq: 1 OPTIONS\r\n"
           b"Content-Length: 0\r\n\r\n")


class RecordingHandler:
    def __init__(self):
        self.messages = []

    def messageReceived(self, message, source):
        self.messages.append((message, source))


def connected(handler=None):
    protocol = SipDatagramProtocol(handler)
    transport = FakeDatagramTransport()
    protocol.makeConnection(transport)
    return protocol, transport


class KeepAliveDetectionTests(SynchronousTestCase):

    def test_crlf(self):
        self.assertTrue(isKeepAlive(b"\r\n"))
        self.assertTrue(isKeepAlive(b"\r\n\r\n"))
        self.assertTrue(isKeepAlive(b"\n"))
        self.assertFalse(isKeepAlive(b""))
        self.assertFalse(isKeepAlive(b"\r\nX"))
        self.assertFalse(isKeepAlive(OPTIONS))

    def test_stun(self):
        binding = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"\x00" * 12
        self.assertTrue(looksLikeStun(binding))
        self.assertFalse(looksLikeStun(OPTIONS))
        self.assertFalse(looksLikeStun(b"\x00\x01"))


class ReceiveTests(SynchronousTestCase):

    def test_interface(self):
        protocol, _ = connected()
        self.assertTrue(verifyObject(ISipTransport, protocol))

    def test_messageToHandler(self):
        handler = RecordingHandler()
        protocol, _ = connected(handler)
        protocol.datagramReceived(OPTIONS, ("192.0.2.1", 5060))
        [(message, source)] = handler.messages
        self.assertEqual(message.method, "OPTIONS")
        self.assertEqual(source, ("192.0.2.1", 5060))
        self.assertEqual(protocol.datagramsReceived, 1)

    def test_ipv6SourceNormalised(self):
        """
        An IPv6 socket reports (host, port, flowinfo, scope); the handler
        gets (host, port).
        """
        handler = RecordingHandler()
        protocol, _ = connected(handler)
        protocol.datagramReceived(OPTIONS, ("::1", 5062, 0, 0))
        self.assertEqual(handler.messages[0][1], ("::1", 5062))

    def test_keepAliveCounted(self):
        handler = RecordingHandler()
        protocol, transport = connected(handler)
        protocol.datagramReceived(b"\r\n\r\n", ("192.0.2.1", 5060))
        protocol.datagramReceived(b"\r\n", ("192.0.2.1", 5060))
        self.assertEqual(protocol.keepAlivesReceived, 2)
        self.assertEqual(protocol.parseErrors, 0)
        self.assertEqual(handler.messages, [])
        self.assertEqual(transport.written, [])

    def test_stunHandler(self):
        seen = []
        protocol, _ = connected(RecordingHandler())
        protocol.stunHandler = lambda data, addr: seen.append((data, addr))
        binding = b"\x01\x01\x00\x00\x21\x12\xa4\x42" + b"\x07" * 12
        protocol.datagramReceived(binding, ("192.0.2.9", 3478))
        self.assertEqual(seen, [(binding, ("192.0.2.9", 3478))])

    def test_garbageDroppedUnanswered(self):
        handler = RecordingHandler()
        protocol, transport = connected(handler)
        protocol.datagramReceived(b"hello world", ("192.0.2.1", 5060))
        self.assertEqual(protocol.parseErrors, 1)
        self.assertEqual(transport.written, [])
        self.assertEqual(handler.messages, [])

    def test_badRequestAnswered400(self):
        """
        A request with a malformed header but a usable Via and CSeq is
        answered 400 with the identity headers, to the rport address.
        """
        protocol, transport = connected(RecordingHandler())
        bad = OPTIONS.replace(b"Max-Forwards: 70", b"Max-Forwards: lots")
        protocol.datagramReceived(bad, ("203.0.113.7", 40000))
        [(data, addr)] = transport.written
        response = parse(data)
        self.assertEqual(response.status, 400)
        self.assertEqual(addr, ("203.0.113.7", 40000))
        self.assertEqual(response.topVia.rport, 40000)
        self.assertEqual(response.topVia.received, "203.0.113.7")
        self.assertEqual(response.callId, "t1@192.0.2.1")
        self.assertEqual(str(response.cseq), "1 OPTIONS")
        self.assertIsNotNone(response.toAddr.tag)
        self.assertEqual(protocol.errorsAnswered, 1)

    def test_versionAnswered505(self):
        protocol, transport = connected(RecordingHandler())
        protocol.datagramReceived(OPTIONS.replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1),
                                  ("192.0.2.1", 5060))
        [(data, _)] = transport.written
        self.assertEqual(parse(data).status, 505)

    def test_badResponseNeverAnswered(self):
        protocol, transport = connected(RecordingHandler())
        response = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n"
                    b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\n"
                    b"CSeq: 99999999999999999999 INVITE\r\nContent-Length: 0\r\n\r\n")
        protocol.datagramReceived(response, ("192.0.2.1", 5060))
        self.assertEqual(protocol.parseErrors, 1)
        self.assertEqual(transport.written, [])

    def test_handlerErrorContained(self):
        class Exploding:
            def messageReceived(self, message, source):
                raise RuntimeError("boom")

        protocol, _ = connected(Exploding())
        protocol.datagramReceived(OPTIONS, ("192.0.2.1", 5060))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_noHandler(self):
        protocol, transport = connected(None)
        protocol.datagramReceived(OPTIONS, ("192.0.2.1", 5060))
        self.assertEqual(transport.written, [])


class SendTests(SynchronousTestCase):

    def test_sendMessageAndObserver(self):
        protocol, transport = connected()
        seen = []
        protocol.addSendObserver(lambda addr, n: seen.append((addr, n)))
        message = parse(OPTIONS)
        n = protocol.send(message, ("192.0.2.2", 5060))
        self.assertEqual(transport.written, [(message.serialize(), ("192.0.2.2", 5060))])
        self.assertEqual(seen, [(("192.0.2.2", 5060), n)])
        self.assertEqual(protocol.datagramsSent, 1)
        self.assertEqual(protocol.bytesSent, n)

    def test_sendBytesObserved(self):
        """Raw keep-alives go through the observers too."""
        protocol, transport = connected()
        seen = []
        observer = lambda addr, n: seen.append((addr, n))  # noqa: E731
        protocol.addSendObserver(observer)
        protocol.send(b"\r\n\r\n", ("[2001:db8::1]", 5060))
        self.assertEqual(transport.written, [(b"\r\n\r\n", ("2001:db8::1", 5060))])
        self.assertEqual(seen, [(("2001:db8::1", 5060), 4)])
        protocol.removeSendObserver(observer)
        protocol.send(b"\r\n", ("192.0.2.2", 5060))
        self.assertEqual(len(seen), 1)

    def test_stateless400Observed(self):
        protocol, _ = connected(RecordingHandler())
        seen = []
        protocol.addSendObserver(lambda addr, n: seen.append(addr))
        protocol.datagramReceived(OPTIONS.replace(b"Max-Forwards: 70", b"Max-Forwards: x"),
                                  ("192.0.2.1", 5060))
        self.assertEqual(seen, [("192.0.2.1", 5060)])

    def test_observerErrorContained(self):
        protocol, transport = connected()

        def bad(addr, n):
            raise ValueError("observer bug")
        protocol.addSendObserver(bad)
        protocol.send(b"\r\n", ("192.0.2.2", 5060))
        self.assertEqual(len(transport.written), 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_notListening(self):
        protocol = SipDatagramProtocol()
        self.assertRaises(TransportNotConnected, protocol.send, b"\r\n", ("192.0.2.2", 5060))
        self.assertIsNone(protocol.localAddress)


class RealSocketTests(TestCase):
    """The protocol and service on the real reactor, loopback only."""

    @inlineCallbacks
    def test_serviceListensAndStops(self):
        handler = RecordingHandler()
        protocol = SipDatagramProtocol(handler)
        service = SipTransportService(reactor, protocol, 0, "127.0.0.1")
        service.startService()
        self.assertTrue(service.running)
        host, port = protocol.localAddress
        self.assertEqual(host, "127.0.0.1")
        sender = SipDatagramProtocol()
        senderPort = reactor.listenUDP(0, sender, interface="127.0.0.1")
        self.addCleanup(senderPort.stopListening)
        sender.send(parse(OPTIONS), (host, port))
        sender.send(b"\r\n\r\n", (host, port))
        for _ in range(100):
            if handler.messages and protocol.keepAlivesReceived:
                break
            yield deferLater(0.01)
        self.assertEqual(handler.messages[0][0].method, "OPTIONS")
        self.assertEqual(handler.messages[0][1], ("127.0.0.1", senderPort.getHost().port))
        self.assertEqual(protocol.keepAlivesReceived, 1)
        yield service.stopService()
        self.assertIsNone(service.port)
        self.assertIsNone(protocol.transport)

    @inlineCallbacks
    def test_ipv6Loopback(self):
        handler = RecordingHandler()
        protocol = SipDatagramProtocol(handler)
        try:
            port = reactor.listenUDP(0, protocol, interface="::1")
        except CannotListenError as e:  # no IPv6 on this host
            self.skipTest(f"no IPv6 loopback: {e}")
        self.addCleanup(port.stopListening)
        sender = SipDatagramProtocol()
        senderPort = reactor.listenUDP(0, sender, interface="::1")
        self.addCleanup(senderPort.stopListening)
        request = parse(OPTIONS)
        self.assertIsInstance(request, Request)
        sender.send(request, ("::1", port.getHost().port))
        for _ in range(100):
            if handler.messages:
                break
            yield deferLater(0.01)
        self.assertEqual(handler.messages[0][1], ("::1", senderPort.getHost().port))


def deferLater(seconds):
    from twisted.internet import task
    return task.deferLater(reactor, seconds, lambda: None)


class HostileInputTests(SynchronousTestCase):
    """
    Nothing a peer sends makes L{SipDatagramProtocol.datagramReceived} raise
    or log a failure; error answers go back to the source only.
    """

    def assertQuiet(self, protocol, data, source=("192.0.2.9", 5099)):
        from twisted.logger import globalLogPublisher

        failures = []

        def observe(event):
            if event.get("log_failure") is not None:
                failures.append(event)

        globalLogPublisher.addObserver(observe)
        try:
            protocol.datagramReceived(data, source)
        finally:
            globalLogPublisher.removeObserver(observe)
        self.assertEqual(failures, [])

    def test_controlCharactersInRecoveredHeaders(self):
        """
        A request whose Via or From carries a NUL is unparseable; its answer
        leaves out what cannot be copied (or is not sent when the Via
        cannot be), and the protocol neither raises nor logs a failure.
        """
        handler = RecordingHandler()
        protocol, transport = connected(handler)
        badFrom = OPTIONS.replace(b"From: <sip:alice@192.0.2.1>", b"From: <sip:al\x00ice@192.0.2.1>")
        self.assertQuiet(protocol, badFrom)
        self.assertEqual(len(transport.written), 1)
        answer, destination = transport.written[0]
        # Our own strict parser would refuse a response without From (as
        # the peer's may): check the wire text.
        lines = answer.decode("ascii").split("\r\n")
        self.assertEqual((lines[0], destination), ("SIP/2.0 400 Bad Request", ("192.0.2.9", 5099)))
        self.assertFalse([line for line in lines if line.startswith("From:")])
        self.assertIn("Call-ID: t1@192.0.2.1", lines)
        self.assertIn("CSeq: 1 OPTIONS", lines)
        badVia = OPTIONS.replace(b"branch=z9hG4bKabc", b"branch=z9hG4\x00bKabc")
        self.assertQuiet(protocol, badVia)
        self.assertEqual(len(transport.written), 1)
        self.assertEqual(handler.messages, [])
        self.assertEqual(protocol.parseErrors, 2)

    def test_answerGoesToSourceNotVia(self):
        """
        The stateless 400 to a malformed request goes to the datagram's
        source, never to an address its Via names (no reflection).
        """
        protocol, transport = connected()
        bad = OPTIONS.replace(b"192.0.2.1:5060;branch=z9hG4bKabc;rport",
                              b"198.51.100.77:5060;branch=z9hG4bKabc;maddr=198.51.100.78")
        bad = bad.replace(b"Max-Forwards: 70", b"Max-Forwards: seventy")
        self.assertQuiet(protocol, bad)
        self.assertEqual([destination for _, destination in transport.written], [("192.0.2.9", 5099)])
        self.assertEqual(parse(transport.written[0][0]).status, 400)


from hypothesis import given, settings  # noqa: E402

from tests.test_sip_properties import mutated  # noqa: E402


class HostileInputPropertyTests(SynchronousTestCase):
    @settings(max_examples=300)
    @given(mutated())
    def test_mutatedCorpusNeverRaises(self, data):
        """
        Mutated RFC 4475 messages go through the protocol without an
        exception or a logged failure.
        """
        protocol, transport = connected(RecordingHandler())
        HostileInputTests.assertQuiet(self, protocol, bytes(data))


class LogFloodTests(SynchronousTestCase):
    def test_unparseableLoggedOncePerInterval(self):
        """
        A hundred garbage datagrams make one log line per 10 s (saying how
        many were held back), while the counter counts them all.
        """
        from twisted.internet.task import Clock
        from twisted.logger import globalLogPublisher

        clock = Clock()
        protocol = SipDatagramProtocol(RecordingHandler(), clock=clock)
        protocol.makeConnection(FakeDatagramTransport())
        events = []
        observer = events.append
        globalLogPublisher.addObserver(observer)
        try:
            for _ in range(100):
                protocol.datagramReceived(b"garbage\r\n\r\n", ("192.0.2.9", 5099))
            clock.advance(10)
            protocol.datagramReceived(b"garbage\r\n\r\n", ("192.0.2.9", 5099))
        finally:
            globalLogPublisher.removeObserver(observer)
        lines = [e for e in events if "unparseable" in e.get("log_format", "")]
        self.assertEqual([e["suppressed"] for e in lines], [0, 99])
        self.assertEqual(protocol.parseErrors, 101)
