"""
Tests for L{lmevoip.sip.useragent}: the UA core's request checks (RFC 3261
8.2 and the RFC 4475 semantic rows), OPTIONS, 481, limits, NAT learning,
out-of-dialog requests and authentication.

L{Peer} and L{Network} are the harness the call tests share: a user agent on
a L{SipDatagramProtocol} with a fake datagram transport, and an in-memory
network between peers driven by a L{task.Clock}.
"""

import re

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.logger import LogLevel, globalLogPublisher, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from lmevoip.interfaces import ISipMessageHandler, ITransactionUser, IUserAgent, IUserAgentObserver
from lmevoip.sip.call import CallObserver, RequestTimeout, StaticMediaHandler, TransportFailed
from lmevoip.sip.headers import Via
from lmevoip.sip.message import Request, Response, makeResponse, parse
from lmevoip.sip.transaction import TransactionLimitError
from lmevoip.sip.transport import SipDatagramProtocol
from lmevoip.sip.useragent import CallLimitError, UserAgent, UserAgentConfig
from tests.support import SHARED_TESTDATA, sharedTestdata

from zope.interface import implementer

# ---------------------------------------------------------------------------
# The harness


@implementer(IUserAgentObserver)
class Recorder(CallObserver):
    """
    Records every user agent and call event as a tuple; answers or rejects
    incoming calls when told to.
    """

    def __init__(self):
        self.events = []
        self.calls = []
        self.onIncoming = None

    def incomingCall(self, call):
        self.events.append(("incoming", call.callId))
        self.calls.append(call)
        call.addObserver(self)
        if self.onIncoming is not None:
            self.onIncoming(call)

    def publicAddressDiscovered(self, host, port):
        self.events.append(("public", host, port))

    def callRinging(self, call, response):
        self.events.append(("ringing", response.status))

    def callConnected(self, call, media):
        self.events.append(("connected", media.codec))

    def callHeld(self, call, byPeer):
        self.events.append(("held", byPeer))

    def callResumed(self, call, byPeer):
        self.events.append(("resumed", byPeer))

    def callTerminated(self, call, reason, status):
        self.events.append(("terminated", reason, status))

    def named(self, name):
        return [event for event in self.events if event[0] == name]


class Peer:
    """
    A user agent on a protocol with a fake datagram transport.

    @ivar address: C{(host, port)}.
    @ivar media: the media handlers made for its calls.
    """

    def __init__(self, clock, host, port, rtpPort=40000, **config):
        self.clock = clock
        self.address = (host, port)
        self.protocol = SipDatagramProtocol()
        self.transport = FakeDatagramTransport()
        self.protocol.makeConnection(self.transport)
        self.events = Recorder()
        self.media = []

        def factory(call):
            handler = StaticMediaHandler(host, rtpPort)
            self.media.append(handler)
            return handler
        self.config = UserAgentConfig(host=host, port=port, **config)
        self.ua = UserAgent(clock, self.protocol.send, self.config, self.events, factory)
        self.protocol.handler = self.ua

    def take(self):
        """The datagrams sent since the last call, parsed: [(message, addr)]."""
        sent, self.transport.written[:] = list(self.transport.written), []
        return [(parse(data), addr) for data, addr in sent]

    def takeOne(self, test):
        [(message, addr)] = self.take()
        return message, addr

    def receive(self, message, source):
        data = message if isinstance(message, bytes) else message.serialize()
        self.protocol.datagramReceived(data, source)

    def tablesEmpty(self):
        return (len(self.ua.transactions), len(self.ua.dialogs), len(self.ua.calls),
                len(self.ua._pending), len(self.ua._acks))


class Network:
    """
    Carries datagrams between peers. C{drop(message, src, dst)} returning
    true loses a datagram. C{log} lists C{(src, dst, first line)}.
    """

    def __init__(self, clock, *peers):
        self.clock = clock
        self.peers = {peer.address: peer for peer in peers}
        self.drop = lambda message, src, dst: False
        self.log = []

    def run(self):
        moved = True
        while moved:
            moved = False
            for address, peer in list(self.peers.items()):
                while peer.transport.written:
                    data, dest = peer.transport.written.pop(0)
                    moved = True
                    message = parse(data)
                    line = data.split(b"\r\n", 1)[0].decode()
                    if self.drop(message, address, dest):
                        self.log.append((address, dest, "LOST " + line))
                        continue
                    self.log.append((address, dest, line))
                    if dest in self.peers:
                        self.peers[dest].protocol.datagramReceived(data, address)

    def lines(self, start=0):
        return [line for _, _, line in self.log[start:]]

    def advance(self, seconds, step=0.25):
        elapsed = 0.0
        self.run()
        while elapsed < seconds:
            self.clock.advance(step)
            elapsed += step
            self.run()


def request(text, **replace):
    """A request from text with \\n line ends."""
    data = text.strip("\n").replace("\n", "\r\n") + "\r\n\r\n"
    for old, new in replace.items():
        data = data.replace(old, new)
    return data.encode()


CALLER = ("192.0.2.50", 5062)

OPTIONS_TEXT = """OPTIONS sip:ua@192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.50:5062;branch=z9hG4bKopt1;rport
Max-Forwards: 70
From: <sip:peer@192.0.2.50>;tag=p1
To: <sip:ua@192.0.2.10>
Call-ID: opt-1@192.0.2.50
CSeq: 7 OPTIONS
Content-Length: 0"""

SDP = ("v=0\r\no=peer 1 1 IN IP4 192.0.2.50\r\ns=-\r\nc=IN IP4 192.0.2.50\r\n"
       "t=0 0\r\nm=audio 30000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n")

INVITE_TEXT = """INVITE sip:ua@192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.50:5062;branch=z9hG4bKinv1;rport
Max-Forwards: 70
From: "Peer" <sip:peer@192.0.2.50>;tag=p1
To: <sip:ua@192.0.2.10>
Call-ID: inv-1@192.0.2.50
CSeq: 1 INVITE
Contact: <sip:peer@192.0.2.50:5062>
Content-Type: application/sdp
Content-Length: LEN

""" + SDP


def invite(**replace):
    """The INVITE of INVITE_TEXT as bytes, with text replacements."""
    head = INVITE_TEXT.split("\n\n", 1)[0].replace("\n", "\r\n")
    data = head.replace("LEN", str(len(SDP))) + "\r\n\r\n" + SDP
    for old, new in replace.items():
        data = data.replace(old, new)
    return data.encode()


def makePeer(test, **config):
    clock = Clock()
    return Peer(clock, "192.0.2.10", 5060, **config)


# ---------------------------------------------------------------------------
# The RFC 4475 torture messages through transport + UA core


#: What this user agent answers to each RFC 4475 message, and why where the
#: manifest names no status. A tuple of the statuses sent, in order (the
#: INVITE transaction re-sends a 3xx-6xx on Timer G: only the first counts).
RFC4475_EXPECTED = {
    # valid
    "wsinv.dat": (481,),        # an INVITE with a To tag for no dialog of ours (12.2.2)
    "intmeth.dat": (501,),
    "esc01.dat": (100, 180),    # a new call, offered to the application
    "escnull.dat": (405,),      # REGISTER: known, not accepted by a UA
    "esc02.dat": (501,),        # RE%47IST%45R is not REGISTER: an unknown method
    "lwsdisp.dat": (200,),
    "longreq.dat": (100, 180),
    "dblreq.dat": (405,),
    "semiuri.dat": (200,),
    "transports.dat": (200,),
    "mpart01.dat": (405,),      # MESSAGE: known, not accepted
    "unreason.dat": (),         # responses: dropped
    "noreason.dat": (),
    # invalid (answered by the transport)
    "badinv01.dat": (400,), "clerr.dat": (400,), "ncl.dat": (400,), "scalar02.dat": (400,),
    "scalarlg.dat": (), "quotbal.dat": (400,), "ltgtruri.dat": (400,), "lwsruri.dat": (400,),
    "lwsstart.dat": (400,), "trws.dat": (400,), "escruri.dat": (400,),
    "baddate.dat": (100, 180),  # lenient: Date is not looked at
    "regbadct.dat": (405,), "badaspec.dat": (400,), "baddn.dat": (400,), "badvers.dat": (505,),
    "mismatch01.dat": (400,), "mismatch02.dat": (400,), "bigcode.dat": (),
    # semantic
    "badbranch.dat": (200,), "insuf.dat": (400,), "unkscm.dat": (416,), "novelsc.dat": (416,),
    "unksm2.dat": (405,), "bext01.dat": (420,), "invut.dat": (415,), "regaut01.dat": (405,),
    "multi01.dat": (400,), "mcl01.dat": (400,), "bcast.dat": (), "zeromf.dat": (200,),
    "cparam01.dat": (405,), "cparam02.dat": (405,), "regescrt.dat": (405,), "sdp01.dat": (406,),
    "inv2543.dat": (100, 180),
}


def _manifestRows():
    path = SHARED_TESTDATA / "rfc4475" / "MANIFEST.tsv"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    columns = lines[0].split("\t")
    return [dict(zip(columns, line.split("\t"))) for line in lines[1:] if line]


def _statusLine(data):
    return int(data.split(b" ", 2)[1])


class RFC4475Tests(SynchronousTestCase):
    """
    Every RFC 4475 message, fed to a user agent through its transport: the
    statuses sent must be the ones in L{RFC4475_EXPECTED} and, where the
    manifest names statuses, among those.
    """

    def check(self, row):
        path = sharedTestdata("rfc4475", row["file"])
        peer = makePeer(self)
        peer.events.onIncoming = lambda call: None  # let it ring
        peer.protocol.datagramReceived(path.read_bytes(), ("192.0.2.50", 5099))
        statuses = tuple(_statusLine(data) for data, _ in peer.transport.written)
        expected = RFC4475_EXPECTED[row["file"]]
        self.assertEqual(statuses, expected, row["file"])
        named = {int(n) for n in re.findall(r"\b([1-6][0-9][0-9])\b", row["expected handling by a user agent"])}
        if named and statuses and statuses[-1] >= 200:
            self.assertIn(statuses[-1], named, row["file"])
        if "dropped" in row["expected handling by a user agent"]:
            self.assertEqual(statuses, ())
        for data, _ in peer.transport.written:
            response = data.decode("utf-8", "replace")
            if statuses[-1] == 420:
                self.assertIn("Unsupported: nothingSupportsThis, nothingSupportsThisEither", response)
                self.assertNotIn("noProxiesSupportThis", response)
            if statuses[-1] in (415, 406):
                self.assertIn("Accept: application/sdp", response)
            if statuses[-1] == 405:
                self.assertIn("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS", response)

    def test_manifestCovered(self):
        rows = _manifestRows()
        if not rows:
            sharedTestdata("rfc4475", "MANIFEST.tsv")
        self.assertEqual({row["file"] for row in rows}, set(RFC4475_EXPECTED))


def _addRowTests():
    for row in _manifestRows():
        name = "test_" + re.sub(r"\W", "_", row["file"][:-4])

        def method(self, row=row):
            self.check(row)
        method.__name__ = name
        method.__doc__ = f"RFC 4475 {row['section']} {row['title']}: {row['expected handling by a user agent']}"
        setattr(RFC4475Tests, name, method)


_addRowTests()


# ---------------------------------------------------------------------------
# The UA core


class InterfaceTests(SynchronousTestCase):

    def test_interfaces(self):
        peer = makePeer(self)
        self.assertTrue(verifyObject(IUserAgent, peer.ua))
        self.assertTrue(verifyObject(ITransactionUser, peer.ua))
        self.assertTrue(verifyObject(ISipMessageHandler, peer.ua))
        self.assertTrue(verifyObject(IUserAgentObserver, peer.events))


class OptionsTests(SynchronousTestCase):

    def test_outOfDialog(self):
        """OPTIONS is answered 200 with Allow, Accept, Supported and a To tag."""
        peer = makePeer(self, supported=("timer",))
        peer.receive(request(OPTIONS_TEXT), CALLER)
        response, addr = peer.takeOne(self)
        self.assertEqual(response.status, 200)
        self.assertEqual(addr, CALLER)
        self.assertEqual(response.allow, ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"])
        self.assertEqual(response.accept, ["application/sdp"])
        self.assertEqual(response.supported, ["timer"])
        self.assertIsNotNone(response.toAddr.tag)
        self.assertEqual(str(response.cseq), "7 OPTIONS")
        self.assertEqual(response.topVia.received, "192.0.2.50")
        self.assertEqual(response.topVia.rport, 5062)

    def test_zeroMaxForwards(self):
        peer = makePeer(self)
        peer.receive(request(OPTIONS_TEXT, **{"Max-Forwards: 70": "Max-Forwards: 0"}), CALLER)
        self.assertEqual(peer.takeOne(self)[0].status, 200)

    def test_noRportGoesToSentBy(self):
        """Without rport the response goes to the Via sent-by (18.2.2)."""
        peer = makePeer(self)
        peer.receive(request(OPTIONS_TEXT, **{";rport": ""}), ("192.0.2.50", 40000))
        self.assertEqual(peer.takeOne(self)[1], ("192.0.2.50", 5062))

    def test_requireSupported(self):
        """A Require naming what we support is accepted; others get 420."""
        peer = makePeer(self, supported=("timer",))
        text = OPTIONS_TEXT.replace("CSeq: 7", "Require: timer\nCSeq: 7")
        peer.receive(request(text), CALLER)
        self.assertEqual(peer.takeOne(self)[0].status, 200)
        text = OPTIONS_TEXT.replace("CSeq: 7", "Require: timer, 100rel\nCSeq: 7").replace("opt1", "opt2")
        peer.receive(request(text), CALLER)
        response = peer.takeOne(self)[0]
        self.assertEqual(response.status, 420)
        self.assertEqual(response.headers.get("Unsupported"), "100rel")

    def test_contentEncoding415(self):
        peer = makePeer(self)
        data = invite(**{"Content-Type: application/sdp": "Content-Type: application/sdp\r\nContent-Encoding: gzip"})
        peer.receive(data, CALLER)
        response = peer.take()[0][0]
        self.assertEqual(response.status, 415)
        self.assertEqual(response.headers.get("Accept-Encoding"), "identity")

    def test_telUri416(self):
        peer = makePeer(self)
        peer.receive(request(OPTIONS_TEXT.replace("OPTIONS sip:ua@192.0.2.10:5060", "OPTIONS tel:+15551234")), CALLER)
        self.assertEqual(peer.takeOne(self)[0].status, 416)


class DialogMatchingTests(SynchronousTestCase):

    def test_byeOutsideDialog481(self):
        peer = makePeer(self)
        text = OPTIONS_TEXT.replace("OPTIONS", "BYE")
        peer.receive(request(text), CALLER)
        self.assertEqual(peer.takeOne(self)[0].status, 481)

    def test_unknownToTag481(self):
        peer = makePeer(self)
        text = OPTIONS_TEXT.replace("To: <sip:ua@192.0.2.10>", "To: <sip:ua@192.0.2.10>;tag=nosuch")
        peer.receive(request(text), CALLER)
        self.assertEqual(peer.takeOne(self)[0].status, 481)

    def test_ackForNoDialogDropped(self):
        peer = makePeer(self)
        text = OPTIONS_TEXT.replace("OPTIONS", "ACK").replace("To: <sip:ua@192.0.2.10>",
                                                               "To: <sip:ua@192.0.2.10>;tag=x")
        peer.receive(request(text), CALLER)
        self.assertEqual(peer.take(), [])

    def test_cancelForNothing481(self):
        peer = makePeer(self)
        peer.receive(request(OPTIONS_TEXT.replace("OPTIONS", "CANCEL")), CALLER)
        self.assertEqual(peer.takeOne(self)[0].status, 481)

    def test_lowerCSeq500(self):
        """12.2.2: a request in a dialog with a CSeq below the remote one: 500."""
        peer = makePeer(self)
        peer.events.onIncoming = lambda call: call.answer()
        peer.receive(invite(**{"CSeq: 1 INVITE": "CSeq: 10 INVITE"}), CALLER)
        ok = [m for m, _ in peer.take() if m.status == 200][0]
        tag = ok.toAddr.tag
        ack = request(OPTIONS_TEXT.replace("OPTIONS", "ACK"),
                      **{"To: <sip:ua@192.0.2.10>": f"To: <sip:ua@192.0.2.10>;tag={tag}",
                         "opt-1": "inv-1", "CSeq: 7": "CSeq: 10", "opt1": "ack1"})
        peer.receive(ack, CALLER)
        bye = request(OPTIONS_TEXT.replace("OPTIONS", "BYE"),
                      **{"To: <sip:ua@192.0.2.10>": f"To: <sip:ua@192.0.2.10>;tag={tag}",
                         "opt-1": "inv-1", "CSeq: 7": "CSeq: 5"})
        peer.receive(bye, CALLER)
        self.assertEqual([m.status for m, _ in peer.take()], [500])
        self.assertEqual(len(peer.ua.calls), 1)


class LimitTests(SynchronousTestCase):

    def test_maxCalls503(self):
        peer = makePeer(self, maxCalls=1)
        peer.events.onIncoming = lambda call: None
        peer.receive(invite(), CALLER)
        peer.take()
        peer.receive(invite(**{"inv-1": "inv-2", "inv1": "inv2"}), CALLER)
        response = peer.takeOne(self)[0]
        self.assertEqual(response.status, 503)
        self.assertEqual(response.headers.get("Retry-After"), "5")
        self.assertRaises(CallLimitError, peer.ua.call, "sip:x@192.0.2.99")
        self.assertEqual(len(peer.ua.calls), 1)

    def test_maxDialogs503(self):
        peer = makePeer(self, maxDialogs=1)
        peer.events.onIncoming = lambda call: None
        peer.receive(invite(), CALLER)
        peer.take()
        peer.receive(invite(**{"inv-1": "inv-2", "inv1": "inv2"}), CALLER)
        self.assertEqual(peer.takeOne(self)[0].status, 503)

    def test_maxTransactions(self):
        peer = makePeer(self, maxTransactions=1)
        peer.ua.sendOptions("sip:x@192.0.2.99")
        self.assertRaises(TransactionLimitError, peer.ua.call, "sip:x@192.0.2.99")
        self.assertEqual(len(peer.ua.calls), 0)
        peer.take()
        peer.receive(request(OPTIONS_TEXT), CALLER)
        self.assertEqual(peer.takeOne(self)[0].status, 503)

    def test_mergedRequest482(self):
        """A second INVITE (another branch) for a call we already have."""
        peer = makePeer(self)
        peer.events.onIncoming = lambda call: None
        peer.receive(invite(), CALLER)
        peer.take()
        peer.receive(invite(**{"inv1": "inv9"}), CALLER)
        self.assertEqual(peer.takeOne(self)[0].status, 482)


class NatTests(SynchronousTestCase):

    def optionsAnswered(self, peer, received, rport):
        d = peer.ua.sendOptions("sip:peer@192.0.2.50:5062")
        options, addr = peer.takeOne(self)
        self.assertEqual(addr, ("192.0.2.50", 5062))
        self.assertTrue(options.topVia.hasRport)
        self.assertIsNone(options.topVia.rport)
        self.assertTrue(options.topVia.branch.startswith("z9hG4bK"))
        response = makeResponse(options, 200, toTag="p")
        top = options.topVia
        via = Via(top.transport, top.host, top.port,
                  {**top.params, "received": received, "rport": str(rport)})
        response.headers.set("Via", str(via))
        peer.receive(response, ("192.0.2.50", 5062))
        return d

    def test_learnPublicAddress(self):
        peer = makePeer(self)
        self.assertIsNone(peer.ua.publicAddress)
        d = self.optionsAnswered(peer, "203.0.113.5", 61000)
        self.assertEqual(self.successResultOf(d).status, 200)
        self.assertEqual(peer.ua.publicAddress, ("203.0.113.5", 61000))
        self.assertEqual(peer.events.named("public"), [("public", "203.0.113.5", 61000)])
        # The next request's Contact uses it; its Via still names the local address.
        peer.ua.sendOptions("sip:peer@192.0.2.50:5062")
        options, _ = peer.takeOne(self)
        self.assertEqual(options.contacts[0].uri.hostPort, "203.0.113.5:61000")
        self.assertEqual(options.topVia.host, "192.0.2.10")
        # The same address again is not an event.
        self.optionsAnswered(peer, "203.0.113.5", 61000)
        self.assertEqual(len(peer.events.named("public")), 1)

    def test_overrideWins(self):
        peer = makePeer(self, publicHost="198.51.100.1", publicPort=7000)
        self.optionsAnswered(peer, "203.0.113.5", 61000)
        self.assertEqual(peer.ua.publicAddress, ("198.51.100.1", 7000))
        self.assertEqual(peer.ua.contactHeader, "<sip:lmevoip@198.51.100.1:7000>")

    def test_learningOff(self):
        peer = makePeer(self, learnPublicAddress=False)
        self.optionsAnswered(peer, "203.0.113.5", 61000)
        self.assertIsNone(peer.ua.publicAddress)
        self.assertEqual(peer.events.named("public"), [])


class OutOfDialogTests(SynchronousTestCase):

    def test_optionsTimeout(self):
        peer = makePeer(self)
        d = peer.ua.sendOptions("sip:peer@192.0.2.50:5062")
        for _ in range(319):
            peer.clock.advance(0.1)
        self.assertNoResult(d)
        peer.clock.advance(0.2)
        self.failureResultOf(d, RequestTimeout)
        peer.clock.advance(10)
        self.assertEqual(peer.tablesEmpty(), (0, 0, 0, 0, 0))
        self.assertEqual(peer.clock.getDelayedCalls(), [])
        # Timer E: 0.5, 1.5, 3.5, 7.5, 11.5 ... 31.5 s: 11 transmissions.
        self.assertEqual(len(peer.take()), 11)

    def test_optionsAuthRetry(self):
        """
        A 407 is answered with Proxy-Authorization, a new branch and CSeq + 1;
        the password is in no log event.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        peer = makePeer(self, authUsername="alice", authPassword="s3cret-pw")
        self.assertNotIn("s3cret-pw", repr(peer.config))
        d = peer.ua.sendOptions("sip:peer@192.0.2.50:5062")
        first, _ = peer.takeOne(self)
        challenge = makeResponse(first, 407, toTag="px")
        challenge.headers.add("Proxy-Authenticate", 'Digest realm="example.net", nonce="abc", qop="auth"')
        peer.receive(challenge, ("192.0.2.50", 5062))
        second, _ = peer.takeOne(self)
        self.assertEqual(second.method, "OPTIONS")
        self.assertEqual(second.cseq.seq, first.cseq.seq + 1)
        self.assertNotEqual(second.topVia.branch, first.topVia.branch)
        self.assertEqual(second.callId, first.callId)
        self.assertEqual(second.fromAddr.tag, first.fromAddr.tag)
        [credentials] = second.proxyAuthorization
        self.assertEqual((credentials.username, credentials.realm), ("alice", "example.net"))
        peer.receive(makeResponse(second, 200, toTag="px"), ("192.0.2.50", 5062))
        self.assertEqual(self.successResultOf(d).status, 200)
        # An ACK for the 407 went out through the transaction? No: OPTIONS is
        # non-INVITE; nothing else was sent.
        self.assertEqual(peer.take(), [])
        text = " ".join(formatEvent(event) or "" for event in events)
        self.assertNotIn("s3cret-pw", text)
        self.assertTrue(any(event.get("log_level") is LogLevel.info for event in events))

    def test_badCredentialsNoLoop(self):
        peer = makePeer(self, authUsername="alice", authPassword="wrong")
        d = peer.ua.sendOptions("sip:peer@192.0.2.50:5062")
        for _ in range(2):
            sent, _ = peer.takeOne(self)
            challenge = makeResponse(sent, 401, toTag="px")
            challenge.headers.add("WWW-Authenticate", 'Digest realm="example.net", nonce="n1"')
            peer.receive(challenge, ("192.0.2.50", 5062))
        self.assertEqual(peer.take(), [])
        from lmevoip.sip.call import AuthenticationFailed
        failure = self.failureResultOf(d, AuthenticationFailed)
        self.assertEqual(failure.value.status, 401)
        self.assertEqual(failure.value.giveUp.reason.value, "bad-credentials")


class TransportErrorTests(SynchronousTestCase):

    def test_inviteNotSent(self):
        """A transport that refuses the INVITE: call() raises, nothing is kept."""
        clock = Clock()

        def refuse(message, addr):
            raise OSError("network unreachable")
        ua = UserAgent(clock, refuse, UserAgentConfig(host="192.0.2.10"))
        self.assertRaises(TransportFailed, ua.call, "sip:bob@192.0.2.20")
        self.assertEqual((len(ua.calls), len(ua.transactions), len(ua._pending)), (0, 0, 0))
        self.failureResultOf(ua.sendOptions("sip:bob@192.0.2.20"), TransportFailed)
        self.assertEqual(clock.getDelayedCalls(), [])


class RobustnessTests(SynchronousTestCase):

    def test_observerBugStillAnswered(self):
        """An application that raises in incomingCall does not break the call."""
        peer = makePeer(self)

        def explode(call):
            raise RuntimeError("application bug")
        peer.events.onIncoming = explode
        peer.receive(invite(), CALLER)
        self.assertEqual([m.status for m, _ in peer.take()], [100, 180])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        peer.events.calls[0].answer()
        self.assertEqual(peer.takeOne(self)[0].status, 200)

    def test_internalErrorAnswered500(self):
        """A failure inside the core answers 500 rather than leaving the transaction."""
        peer = makePeer(self)

        def broken(call):
            raise KeyError("media handler factory bug")
        peer.ua.mediaHandlerFactory = broken
        peer.receive(invite(), CALLER)
        self.assertEqual([m.status for m, _ in peer.take()], [500])
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.assertEqual(len(peer.ua.calls), 0)


class StopTests(SynchronousTestCase):

    def test_stopEndsEverything(self):
        peer = makePeer(self)
        peer.events.onIncoming = lambda call: None
        peer.receive(invite(), CALLER)
        call = peer.events.calls[0]
        outgoing = peer.ua.call("sip:bob@192.0.2.60")
        peer.take()
        peer.ua.stop()
        self.assertEqual(call.endReason.value, "shutdown")
        self.assertEqual(outgoing.endReason.value, "shutdown")
        self.assertEqual(peer.tablesEmpty(), (0, 0, 0, 0, 0))
        self.assertEqual(peer.clock.getDelayedCalls(), [])
        statuses = [m.status for m, _ in peer.take() if isinstance(m, Response)]
        self.assertEqual(statuses, [480])
        self.assertIsInstance(call.invite, Request)
