"""
Tests for L{lmevoip.sip.call}: outgoing and incoming call flows with exact
messages against a scripted peer, two user agents calling each other
through an in-memory network on a L{task.Clock}, table cleanup, and one
call between two real sockets on loopback.
"""

from twisted.internet import reactor
from twisted.internet.error import CannotListenError
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from unittest import SkipTest

from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from lmevoip.interfaces import ICall, ICallMediaHandler, ICallObserver
from lmevoip.sip.call import (
    CallEndReason,
    CallError,
    CallFailed,
    CallObserver,
    CallState,
    DialogGone,
    RequestFailed,
    RequestTimeout,
    StaticMediaHandler,
)
from lmevoip.sip.auth import DigestAuthenticator
from lmevoip.sip.message import makeResponse
from lmevoip.sip.sdp import NegotiationError, SessionDescription, makeOffer
from lmevoip.sip.useragent import UserAgentConfig, listenSip
from tests.test_sip_useragent import CALLER, Network, Peer, invite, request

BOB = ("192.0.2.20", 5070)
PROXY = ("192.0.2.30", 5080)
R = CallEndReason


def answerSdp(address="192.0.2.20", port=30000, direction="sendrecv"):
    return makeOffer(address, port, ("PCMU",), telephoneEvent=False,
                     direction=direction).serialize()


def respond(req, status, tag="b1", contact="<sip:bob@192.0.2.21:5071>", body=b"",
            recordRoute=()):
    response = makeResponse(req, status, toTag=tag if status > 100 else None)
    if contact and 100 < status < 300:
        response.headers.add("Contact", contact)
    for value in recordRoute:
        response.headers.add("Record-Route", value)
    if body:
        response.headers.add("Content-Type", "application/sdp")
        response.body = body
    return response


class OutgoingCallTests(SynchronousTestCase):
    """Our INVITE against a scripted callee."""

    def setUp(self):
        self.clock = Clock()
        self.peer = Peer(self.clock, "192.0.2.10", 5060)
        self.events = self.peer.events
        self.call = self.peer.ua.call("sip:bob@192.0.2.20:5070", observer=self.events)
        self.invite, self.addr = self.peer.takeOne(self)

    def receive(self, message):
        self.peer.receive(message, BOB)

    def connect(self, recordRoute=()):
        self.receive(respond(self.invite, 180))
        self.receive(respond(self.invite, 200, body=answerSdp(), recordRoute=recordRoute))
        return self.peer.takeOne(self)

    def finish(self):
        """Run every timer out: nothing may be left."""
        self.clock.advance(0)
        for _ in range(80):
            self.clock.advance(0.5)
        self.assertEqual(self.peer.tablesEmpty(), (0, 0, 0, 0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_interfaces(self):
        self.assertTrue(verifyObject(ICall, self.call))
        self.assertTrue(verifyObject(ICallObserver, self.events))
        self.assertTrue(verifyObject(ICallMediaHandler, self.call.mediaHandler))

    def test_invite(self):
        """The INVITE: Via with rport and a magic-cookie branch, Contact, offer."""
        inv = self.invite
        self.assertEqual(inv.method, "INVITE")
        self.assertEqual(str(inv.uri), "sip:bob@192.0.2.20:5070")
        self.assertEqual(self.addr, BOB)
        via = inv.topVia
        self.assertEqual((via.transport, via.host, via.port), ("UDP", "192.0.2.10", 5060))
        self.assertTrue(via.hasRport)
        self.assertIsNone(via.rport)
        self.assertTrue(via.branch.startswith("z9hG4bK") and len(via.branch) > 7)
        self.assertEqual(inv.maxForwards, 70)
        self.assertIsNotNone(inv.fromAddr.tag)
        self.assertIsNone(inv.toAddr.tag)
        self.assertEqual(str(inv.cseq), "1 INVITE")
        self.assertEqual(str(inv.contacts[0]), "<sip:lmevoip@192.0.2.10:5060>")
        self.assertEqual(inv.contentType, "application/sdp")
        self.assertEqual(inv.allow, ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"])
        offer = SessionDescription.parse(inv.body)
        self.assertEqual(offer.media[0].port, 40000)
        self.assertEqual(self.call.state, CallState.CALLING)
        self.assertEqual(self.call.callId, inv.callId)

    def test_ringAnswerAckBye(self):
        """
        180 makes an early dialog; the 200's ACK follows 13.2.2.4 with the
        route set from Record-Route reversed; a 200 retransmission gets the
        same ACK; BYE uses the route set and CSeq + 1.
        """
        connected = self.call.whenConnected()
        self.receive(respond(self.invite, 180))
        self.assertEqual(self.events.named("ringing"), [("ringing", 180)])
        self.assertEqual(self.call.state, CallState.RINGING)
        self.assertEqual(self.call.dialog.state.value, "Early")
        self.assertEqual(len(self.peer.ua.dialogs), 1)
        ok = respond(self.invite, 200, body=answerSdp(),
                     recordRoute=["<sip:p2.example.com;lr>", "<sip:192.0.2.30:5080;lr>"])
        self.receive(ok)
        ack, addr = self.peer.takeOne(self)
        self.assertEqual(ack.method, "ACK")
        self.assertEqual(str(ack.uri), "sip:bob@192.0.2.21:5071")
        self.assertEqual([str(r) for r in ack.routes],
                         ["<sip:192.0.2.30:5080;lr>", "<sip:p2.example.com;lr>"])
        self.assertEqual(addr, PROXY)
        self.assertEqual(str(ack.cseq), "1 ACK")
        self.assertNotEqual(ack.topVia.branch, self.invite.topVia.branch)
        self.assertTrue(ack.topVia.branch.startswith("z9hG4bK"))
        self.assertTrue(ack.topVia.hasRport)
        self.assertEqual(ack.toAddr.tag, "b1")
        self.assertEqual(ack.fromAddr.tag, self.invite.fromAddr.tag)
        self.assertEqual(ack.callId, self.invite.callId)
        self.assertEqual(self.call.state, CallState.CONNECTED)
        media = self.successResultOf(connected)
        self.assertEqual((media.codec, media.remoteAddress, media.remotePort), ("PCMU", "192.0.2.20", 30000))
        self.assertEqual(self.events.named("connected"), [("connected", "PCMU")])
        self.assertEqual(self.peer.media[0].media, media)
        # The 200 again: the same ACK again.
        self.receive(ok)
        again, addr = self.peer.takeOne(self)
        self.assertEqual(again.serialize(), ack.serialize())
        terminated = self.call.whenTerminated()
        self.call.hangup()
        bye, addr = self.peer.takeOne(self)
        self.assertEqual(bye.method, "BYE")
        self.assertEqual(str(bye.uri), "sip:bob@192.0.2.21:5071")
        self.assertEqual(addr, PROXY)
        self.assertEqual(len(bye.routes), 2)
        self.assertEqual(str(bye.cseq), "2 BYE")
        self.assertEqual(self.call.state, CallState.TERMINATING)
        self.assertTrue(self.peer.media[0].closed)
        self.receive(respond(bye, 200))
        end = self.successResultOf(terminated)
        self.assertEqual((end.reason, end.status), (R.LOCAL_HANGUP, None))
        self.assertEqual(self.events.named("terminated"), [("terminated", R.LOCAL_HANGUP, None)])
        self.finish()

    def test_strictRouter(self):
        """12.2.1.1: a route without lr becomes the Request-URI."""
        self.receive(respond(self.invite, 200, body=answerSdp(),
                             recordRoute=["<sip:192.0.2.30:5080>"]))
        ack, addr = self.peer.takeOne(self)
        self.assertEqual(str(ack.uri), "sip:192.0.2.30:5080")
        self.assertEqual([str(r) for r in ack.routes], ["<sip:bob@192.0.2.21:5071>"])
        self.assertEqual(addr, PROXY)

    def test_cancelAfterRinging(self):
        """9.1: CANCEL with the INVITE's branch, URI, Call-ID, From, To and CSeq."""
        self.receive(respond(self.invite, 180))
        self.call.hangup()
        cancel, addr = self.peer.takeOne(self)
        self.assertEqual(cancel.method, "CANCEL")
        self.assertEqual(addr, BOB)
        self.assertEqual(str(cancel.uri), str(self.invite.uri))
        self.assertEqual(cancel.topVia.branch, self.invite.topVia.branch)
        self.assertEqual(len(cancel.vias), 1)
        self.assertEqual(str(cancel.cseq), "1 CANCEL")
        self.assertEqual(cancel.callId, self.invite.callId)
        self.assertEqual(cancel.headers.get("From"), self.invite.headers.get("From"))
        self.assertIsNone(cancel.toAddr.tag)
        self.assertEqual(self.call.state, CallState.CANCELLING)
        self.receive(respond(cancel, 200))
        self.receive(respond(self.invite, 487))
        ack, addr = self.peer.takeOne(self)
        self.assertEqual((ack.method, str(ack.cseq), ack.topVia.branch),
                         ("ACK", "1 ACK", self.invite.topVia.branch))
        self.assertEqual(ack.toAddr.tag, "b1")
        self.assertEqual(self.call.end.reason, R.CANCELLED)
        self.assertEqual(self.call.end.status, 487)
        self.failureResultOf(self.call.whenConnected(), CallFailed)
        self.finish()

    def test_cancelWaitsForProvisional(self):
        """No CANCEL before a provisional response (9.1); it goes with the 100."""
        self.call.hangup()
        self.assertEqual(self.peer.take(), [])
        self.assertEqual(self.call.state, CallState.CANCELLING)
        self.receive(respond(self.invite, 100))
        cancel, _ = self.peer.takeOne(self)
        self.assertEqual(cancel.method, "CANCEL")
        self.receive(respond(self.invite, 487))
        self.assertEqual(self.call.end.reason, R.CANCELLED)
        self.finish()

    def test_cancelRacesWith200(self):
        """The 200 crossed our CANCEL: ACK it, then BYE."""
        self.receive(respond(self.invite, 180))
        self.call.hangup()
        self.peer.take()
        self.receive(respond(self.invite, 200, body=answerSdp()))
        sent = self.peer.take()
        self.assertEqual([m.method for m, _ in sent], ["ACK", "BYE"])
        bye = sent[1][0]
        self.receive(respond(bye, 200))
        self.assertEqual((self.call.end.reason, self.call.end.status), (R.CANCELLED, 200))
        self.finish()

    def test_rejected(self):
        """486 from the callee: ACKed by the transaction; the call failed with 486."""
        self.receive(respond(self.invite, 486))
        ack, _ = self.peer.takeOne(self)
        self.assertEqual(ack.method, "ACK")
        self.assertEqual(ack.topVia.branch, self.invite.topVia.branch)
        self.assertEqual(self.events.named("terminated"), [("terminated", R.FAILED, 486)])
        failure = self.failureResultOf(self.call.whenConnected(), CallFailed)
        self.assertEqual(failure.value.end.status, 486)
        self.assertEqual(len(self.peer.ua.calls), 0)
        self.finish()

    def test_inviteTimeout(self):
        for _ in range(65):
            self.clock.advance(0.5)
        self.assertEqual((self.call.end.reason, self.call.end.status), (R.TIMEOUT, 408))
        sent = self.peer.take()
        self.assertEqual(len(sent), 6)  # Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s
        self.finish()

    def test_auth401OnInvite(self):
        """
        401: the INVITE again with Authorization, CSeq 2, a new branch; the
        ACK for the 200 carries the same credentials.
        """
        peer = self.peer
        peer.ua.authenticator = DigestAuthenticator("alice", "pw")
        challenge = respond(self.invite, 401)
        challenge.headers.add("WWW-Authenticate", 'Digest realm="example.org", nonce="n1", qop="auth"')
        self.receive(challenge)
        sent = peer.take()
        self.assertEqual(sorted(m.method for m, _ in sent), ["ACK", "INVITE"])
        retry = [m for m, _ in sent if m.method == "INVITE"][0]
        self.assertEqual(str(retry.cseq), "2 INVITE")
        self.assertNotEqual(retry.topVia.branch, self.invite.topVia.branch)
        self.assertEqual(retry.callId, self.invite.callId)
        self.assertEqual(retry.fromAddr.tag, self.invite.fromAddr.tag)
        self.assertIsNone(retry.toAddr.tag)
        self.assertEqual(retry.body, self.invite.body)
        [credentials] = retry.authorization
        self.assertEqual((credentials.username, credentials.realm), ("alice", "example.org"))
        self.receive(respond(retry, 200, body=answerSdp()))
        ack, _ = peer.takeOne(self)
        self.assertEqual(str(ack.cseq), "2 ACK")
        self.assertEqual(ack.headers.get("Authorization"), retry.headers.get("Authorization"))
        self.assertEqual(self.call.state, CallState.CONNECTED)
        # A CANCEL would now carry the retry's branch: check the call tracks it.
        self.assertEqual(self.call.invite.topVia.branch, retry.topVia.branch)

    def test_authFailsWithoutLoop(self):
        self.peer.ua.authenticator = DigestAuthenticator("alice", "wrong")
        current = self.invite
        for _ in range(2):
            challenge = respond(current, 407)
            challenge.headers.add("Proxy-Authenticate", 'Digest realm="example.org", nonce="n1"')
            self.receive(challenge)
            sent = [m for m, _ in self.peer.take() if m.method == "INVITE"]
            if sent:
                current = sent[0]
        self.assertEqual((self.call.end.reason, self.call.end.status), (R.AUTH_FAILED, 407))
        self.assertEqual(self.call.end.detail, "bad-credentials")

    def test_noCredentials(self):
        """A 401 without an authenticator is an ordinary failure."""
        challenge = respond(self.invite, 401)
        challenge.headers.add("WWW-Authenticate", 'Digest realm="r", nonce="n"')
        self.receive(challenge)
        self.assertEqual((self.call.end.reason, self.call.end.status), (R.FAILED, 401))

    def test_auth407OnBye(self):
        self.peer.ua.authenticator = DigestAuthenticator("alice", "pw")
        self.connect()
        self.call.hangup()
        bye, _ = self.peer.takeOne(self)
        challenge = respond(bye, 407)
        challenge.headers.add("Proxy-Authenticate", 'Digest realm="proxy.example.org", nonce="n2"')
        self.receive(challenge)
        retry, _ = self.peer.takeOne(self)
        self.assertEqual(retry.method, "BYE")
        self.assertEqual(retry.cseq.seq, bye.cseq.seq + 1)
        self.assertNotEqual(retry.topVia.branch, bye.topVia.branch)
        self.assertEqual(retry.proxyAuthorization[0].realm, "proxy.example.org")
        self.assertEqual(self.call.state, CallState.TERMINATING)
        self.receive(respond(retry, 200))
        self.assertEqual(self.call.end.reason, R.LOCAL_HANGUP)
        self.finish()

    def test_answerWithoutSdp(self):
        """A 200 without an answer: ACK, then BYE; the media failed."""
        self.receive(respond(self.invite, 200))
        sent = self.peer.take()
        self.assertEqual([m.method for m, _ in sent], ["ACK", "BYE"])
        self.receive(respond(sent[1][0], 200))
        self.assertEqual(self.call.end.reason, R.MEDIA_FAILED)

    def test_remoteBye(self):
        ack, _ = self.connect()
        bye = request(f"""BYE sip:lmevoip@192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.20:5070;branch=z9hG4bKbye1
Max-Forwards: 70
From: <sip:bob@192.0.2.20>;tag=b1
To: {self.invite.headers.get("From")}
Call-ID: {self.invite.callId}
CSeq: 9 BYE
Content-Length: 0""")
        self.peer.receive(bye, BOB)
        ok, addr = self.peer.takeOne(self)
        self.assertEqual((ok.status, addr), (200, BOB))
        self.assertEqual(self.events.named("terminated"), [("terminated", R.REMOTE_HANGUP, None)])
        self.finish()

    def test_optionsInDialog(self):
        self.connect()
        d = self.call.sendOptions()
        options, addr = self.peer.takeOne(self)
        self.assertEqual((options.method, addr), ("OPTIONS", ("192.0.2.21", 5071)))
        self.assertEqual(str(options.uri), "sip:bob@192.0.2.21:5071")
        self.assertEqual(options.toAddr.tag, "b1")
        self.assertEqual(str(options.cseq), "2 OPTIONS")
        self.receive(respond(options, 200))
        self.assertEqual(self.successResultOf(d).status, 200)
        self.assertEqual(self.call.state, CallState.CONNECTED)

    def test_optionsInDialog481(self):
        self.connect()
        d = self.call.sendOptions()
        options, _ = self.peer.takeOne(self)
        self.receive(respond(options, 481))
        failure = self.failureResultOf(d, DialogGone)
        self.assertEqual(failure.value.status, 481)
        self.assertEqual(self.call.end.reason, R.DIALOG_GONE)
        self.finish()

    def test_optionsInDialogTimeout(self):
        self.connect()
        d = self.call.sendOptions()
        for _ in range(65):
            self.clock.advance(0.5)
        self.failureResultOf(d, RequestTimeout)
        self.assertEqual(self.call.state, CallState.CONNECTED)

    def test_optionsBeforeConnected(self):
        self.failureResultOf(self.call.sendOptions(), CallError)

    def test_timerCCancels(self):
        """Ringing for over 181 s (Timer C): CANCEL; the 487 ends the call TIMEOUT."""
        self.receive(respond(self.invite, 180))
        self.clock.advance(180)
        self.assertEqual(self.peer.take(), [])
        self.clock.advance(1.5)
        cancel, _ = self.peer.takeOne(self)
        self.assertEqual(cancel.method, "CANCEL")
        self.receive(respond(self.invite, 487))
        self.assertEqual((self.call.end.reason, self.call.end.status), (R.TIMEOUT, 487))
        self.finish()

    def test_holdRefused(self):
        """A re-INVITE answered 488 fails the Deferred; the session is unchanged."""
        self.connect()
        d = self.call.hold()
        reinvite, addr = self.peer.takeOne(self)
        self.assertEqual((reinvite.method, str(reinvite.cseq), reinvite.toAddr.tag),
                         ("INVITE", "2 INVITE", "b1"))
        self.assertEqual(addr, ("192.0.2.21", 5071))
        self.assertEqual(SessionDescription.parse(reinvite.body).media[0].direction, "sendonly")
        self.receive(respond(reinvite, 488))
        failure = self.failureResultOf(d, RequestFailed)
        self.assertEqual(failure.value.status, 488)
        self.assertFalse(self.call.localHold)
        self.assertEqual(self.call.state, CallState.CONNECTED)
        self.assertEqual(self.events.named("held"), [])

    def test_hold481EndsCall(self):
        self.connect()
        d = self.call.hold()
        reinvite, _ = self.peer.takeOne(self)
        self.receive(respond(reinvite, 481))
        self.failureResultOf(d, DialogGone)
        self.assertEqual(self.call.end.reason, R.DIALOG_GONE)
        self.finish()

    def test_secondFork(self):
        """A 2xx from another fork: ACK and BYE it; the call keeps the first."""
        self.connect()
        self.receive(respond(self.invite, 200, tag="b2", contact="<sip:bob2@192.0.2.22:5072>",
                             body=answerSdp()))
        sent = self.peer.take()
        self.assertEqual([(m.method, m.toAddr.tag, a) for m, a in sent],
                         [("ACK", "b2", ("192.0.2.22", 5072)), ("BYE", "b2", ("192.0.2.22", 5072))])
        self.assertEqual(self.call.dialog.remoteTag, "b1")
        self.assertEqual(self.call.state, CallState.CONNECTED)

    def test_earlyDialogReplacedBy2xxFork(self):
        """180 from one fork, 200 from another: the call takes the answering one."""
        self.receive(respond(self.invite, 180, tag="early"))
        self.receive(respond(self.invite, 200, tag="answer", body=answerSdp()))
        self.assertEqual(self.call.dialog.remoteTag, "answer")
        self.assertEqual(len(self.peer.ua.dialogs), 1)


def bodyless(**replace):
    """The test INVITE without its SDP (or, with replacements, a CANCEL)."""
    head = invite(**replace).split(b"\r\n\r\n")[0]
    lines = [line for line in head.split(b"\r\n")
             if not line.startswith((b"Content-Length", b"Content-Type"))]
    return b"\r\n".join(lines) + b"\r\nContent-Length: 0\r\n\r\n"


class IncomingCallTests(SynchronousTestCase):
    """An INVITE from a scripted caller."""

    def setUp(self):
        self.clock = Clock()
        self.peer = Peer(self.clock, "192.0.2.10", 5060)
        self.events = self.peer.events
        self.events.onIncoming = lambda call: None

    def receiveInvite(self, **replace):
        self.peer.receive(invite(**replace), CALLER)
        sent = self.peer.take()
        return self.events.calls[-1] if self.events.calls else None, sent

    def ack(self, tag, body=b""):
        text = f"""ACK sip:lmevoip@192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.50:5062;branch=z9hG4bKack1;rport
Max-Forwards: 70
From: "Peer" <sip:peer@192.0.2.50>;tag=p1
To: <sip:ua@192.0.2.10>;tag={tag}
Call-ID: inv-1@192.0.2.50
CSeq: 1 ACK"""
        if body:
            text += f"\nContent-Type: application/sdp\nContent-Length: {len(body)}"
            data = request(text) + body
        else:
            data = request(text + "\nContent-Length: 0")
        self.peer.receive(data, CALLER)

    def finish(self):
        for _ in range(80):
            self.clock.advance(0.5)
        self.assertEqual(self.peer.tablesEmpty(), (0, 0, 0, 0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_recordRouteCopied(self):
        """
        12.1.1: the 180 and the 200 carry every Record-Route of the INVITE,
        in order, so a caller behind a record-routing proxy learns the same
        route set (its ACK and BYE then take the proxy path).
        """
        routes = "Record-Route: <sip:p2.example.com;lr>\r\nRecord-Route: <sip:p1.example.com;lr;ftag=x>\r\n"
        call, sent = self.receiveInvite(**{"Max-Forwards: 70\r\n": "Max-Forwards: 70\r\n" + routes})
        self.assertEqual([m.status for m, _ in sent], [100, 180])
        expected = ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr;ftag=x>"]
        self.assertEqual(sent[0][0].headers.getAll("Record-Route"), [])
        self.assertEqual(sent[1][0].headers.getAll("Record-Route"), expected)
        call.answer()
        ok, _ = self.peer.takeOne(self)
        self.assertEqual(ok.status, 200)
        self.assertEqual(ok.headers.getAll("Record-Route"), expected)
        self.assertEqual([str(r) for r in call.dialog.routeSet], expected)

    def test_ringAnswerAck(self):
        """100, 180, then 200 with the answer, re-sent T1 doubling until the ACK."""
        call, sent = self.receiveInvite()
        self.assertEqual([m.status for m, _ in sent], [100, 180])
        self.assertEqual({a for _, a in sent}, {CALLER})
        trying, ringing = sent[0][0], sent[1][0]
        self.assertIsNone(trying.toAddr.tag)
        tag = ringing.toAddr.tag
        self.assertIsNotNone(tag)
        self.assertEqual(str(ringing.contacts[0]), "<sip:lmevoip@192.0.2.10:5060>")
        self.assertEqual(ringing.topVia.rport, 5062)
        self.assertEqual(self.events.named("incoming"), [("incoming", "inv-1@192.0.2.50")])
        self.assertEqual(call.state, CallState.INCOMING)
        self.assertFalse(call.outgoing)
        self.assertEqual(str(call.remoteUri.uri), "sip:peer@192.0.2.50")
        connected = call.whenConnected()
        call.answer()
        ok, addr = self.peer.takeOne(self)
        self.assertEqual((ok.status, ok.toAddr.tag, addr), (200, tag, CALLER))
        self.assertEqual(ok.contentType, "application/sdp")
        answer = SessionDescription.parse(ok.body)
        self.assertEqual((answer.media[0].port, answer.media[0].formats[0]), (40000, "0"))
        self.assertEqual(str(ok.contacts[0]), "<sip:lmevoip@192.0.2.10:5060>")
        self.assertEqual(call.state, CallState.ANSWERED)
        # Retransmissions at 0.5, 1.5 and 3.5 s.
        times = []
        for step in range(16):
            self.clock.advance(0.25)
            if self.peer.take():
                times.append(self.clock.seconds())
        self.assertEqual(times, [0.5, 1.5, 3.5])
        self.ack(tag)
        self.assertEqual(call.state, CallState.CONNECTED)
        media = self.successResultOf(connected)
        self.assertEqual((media.codec, media.remotePort), ("PCMU", 30000))
        self.clock.advance(10)
        self.assertEqual(self.peer.take(), [])
        call.hangup()
        bye, addr = self.peer.takeOne(self)
        self.assertEqual((bye.method, str(bye.uri), addr), ("BYE", "sip:peer@192.0.2.50:5062", CALLER))
        self.assertEqual((bye.fromAddr.tag, bye.toAddr.tag), (tag, "p1"))
        self.peer.receive(respond(bye, 200, tag="p1"), CALLER)
        self.assertEqual(call.end.reason, R.LOCAL_HANGUP)
        self.finish()

    def test_noAck(self):
        """No ACK in 64*T1: BYE, reason no-ack (13.3.1.4)."""
        call, _ = self.receiveInvite()
        call.answer()
        self.peer.take()
        for _ in range(127):
            self.clock.advance(0.25)
        self.assertEqual(call.state, CallState.ANSWERED)
        self.clock.advance(0.25)
        sent = self.peer.take()
        self.assertEqual([m.method for m, _ in sent if m.isRequest], ["BYE"])
        bye = [m for m, _ in sent if m.isRequest][0]
        self.peer.receive(respond(bye, 200, tag="p1"), CALLER)
        self.assertEqual(call.end.reason, R.NO_ACK)
        self.finish()

    def test_hangupBeforeAckWaits(self):
        """15: no BYE before the ACK; it goes right after."""
        call, _ = self.receiveInvite()
        call.answer()
        ok = self.peer.take()[0][0]
        call.hangup()
        self.assertEqual(self.peer.take(), [])
        self.ack(ok.toAddr.tag)
        bye, _ = self.peer.takeOne(self)
        self.assertEqual(bye.method, "BYE")

    def test_reject(self):
        for status in (486, 603):
            self.events.calls = []
            call, _ = self.receiveInvite(**{"inv-1": f"inv-{status}", "inv1": f"i{status}"})
            call.reject(status)
            response, _ = self.peer.takeOne(self)
            self.assertEqual(response.status, status)
            self.assertIsNotNone(response.toAddr.tag)
            self.assertEqual(call.end.reason, R.REJECTED)
            self.assertEqual(call.end.status, status)
        self.assertRaises(CallError, call.answer)
        self.finish()

    def test_callerCancels(self):
        call, sent = self.receiveInvite()
        tag = sent[1][0].toAddr.tag
        cancel = bodyless(**{"INVITE sip": "CANCEL sip", "1 INVITE": "1 CANCEL"})
        self.peer.receive(cancel, CALLER)
        sent = self.peer.take()
        self.assertEqual(sorted((m.status, m.cseq.method) for m, _ in sent),
                         [(200, "CANCEL"), (487, "INVITE")])
        self.assertEqual({m.toAddr.tag for m, _ in sent}, {tag})
        self.assertEqual(self.events.named("terminated"), [("terminated", R.REMOTE_CANCELLED, 487)])
        self.assertEqual(call.state, CallState.TERMINATED)
        self.finish()

    def test_unacceptableOffer488(self):
        """No codec in common: 488 with a Warning (RFC 3261 20.43)."""
        call, sent = self.receiveInvite(**{"RTP/AVP 0 8": "RTP/AVP 9  ", "a=rtpmap:0 PCMU/8000": "a=rtpmap:9 G722/8000"})
        self.assertEqual([m.status for m, _ in sent], [488])
        warning = sent[0][0].headers.get("Warning")
        self.assertTrue(warning.startswith("305 192.0.2.10:5060 "), warning)
        self.assertIsNone(call)  # never offered to the application
        self.assertEqual(len(self.peer.ua.calls), 0)
        self.finish()

    def test_malformedSdp400(self):
        call, sent = self.receiveInvite(**{"v=0": "x=0"})
        self.assertEqual([m.status for m, _ in sent], [400])

    def test_ringTimeout(self):
        call, _ = self.receiveInvite()
        self.clock.advance(180)
        response, _ = self.peer.takeOne(self)
        self.assertEqual(response.status, 480)
        self.assertEqual(call.end.reason, R.NOT_ANSWERED)
        self.finish()

    def test_noObserverRejects480(self):
        self.peer.ua.observer = None
        self.peer.receive(invite(), CALLER)
        self.assertEqual([m.status for m, _ in self.peer.take()], [100, 180, 480])

    def test_answerSynchronously(self):
        self.events.onIncoming = lambda call: call.answer()
        _, sent = self.receiveInvite()
        self.assertEqual([m.status for m, _ in sent], [100, 180, 200])

    def test_noAutoRinging(self):
        self.peer.config.autoRinging = False
        call, sent = self.receiveInvite()
        self.assertEqual([m.status for m, _ in sent], [100])
        call.ring()
        self.assertEqual(self.peer.takeOne(self)[0].status, 180)

    def test_byeBeforeAnswer(self):
        """BYE in the early dialog: 200 to it, 487 to the INVITE."""
        call, sent = self.receiveInvite()
        tag = sent[1][0].toAddr.tag
        bye = request(f"""BYE sip:lmevoip@192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.50:5062;branch=z9hG4bKbye7;rport
Max-Forwards: 70
From: "Peer" <sip:peer@192.0.2.50>;tag=p1
To: <sip:ua@192.0.2.10>;tag={tag}
Call-ID: inv-1@192.0.2.50
CSeq: 2 BYE
Content-Length: 0""")
        self.peer.receive(bye, CALLER)
        self.assertEqual(sorted(m.status for m, _ in self.peer.take()), [200, 487])
        self.assertEqual(call.end.reason, R.REMOTE_HANGUP)
        self.finish()

    def test_offerlessInvite(self):
        """No offer in the INVITE: we offer in the 200; the ACK answers."""
        self.peer.receive(bodyless(), CALLER)
        self.peer.take()
        call = self.events.calls[0]
        call.answer()
        ok, _ = self.peer.takeOne(self)
        offer = SessionDescription.parse(ok.body)
        self.assertEqual(offer.media[0].formats[:2], ["0", "8"])
        self.ack(ok.toAddr.tag, body=answerSdp("192.0.2.50", 31000))
        self.assertEqual(call.state, CallState.CONNECTED)
        self.assertEqual(call.media.remotePort, 31000)

    def test_badAnswerInAck(self):
        self.peer.receive(bodyless(), CALLER)
        self.peer.take()
        call = self.events.calls[0]
        call.answer()
        ok, _ = self.peer.takeOne(self)
        self.ack(ok.toAddr.tag)
        bye, _ = self.peer.takeOne(self)
        self.assertEqual(bye.method, "BYE")
        self.assertEqual(call.state, CallState.TERMINATING)

    def test_reinviteFromCallerHolds(self):
        """A re-INVITE with a sendonly offer: 200 with a recvonly answer, callHeld(byPeer)."""
        call, sent = self.receiveInvite()
        tag = sent[1][0].toAddr.tag
        call.answer()
        self.peer.take()
        self.ack(tag)
        held = answerSdp("192.0.2.50", 30000, "sendonly").decode()
        reinvite = invite(**{"To: <sip:ua@192.0.2.10>": f"To: <sip:ua@192.0.2.10>;tag={tag}",
                             "CSeq: 1 INVITE": "CSeq: 2 INVITE", "inv1": "reinv1"})
        head = reinvite.split(b"\r\n\r\n")[0].decode()
        head = head.replace(f"Content-Length: {len(SDP_TEXT)}", f"Content-Length: {len(held)}")
        self.peer.receive((head + "\r\n\r\n" + held).encode(), CALLER)
        ok, _ = self.peer.takeOne(self)
        self.assertEqual(ok.status, 200)
        self.assertEqual(SessionDescription.parse(ok.body).media[0].direction, "recvonly")
        self.assertEqual(self.events.named("held"), [("held", True)])
        self.assertTrue(call.remoteHold)
        self.assertEqual(self.peer.media[0].media.direction, "recvonly")
        ackText = f"""ACK sip:lmevoip@192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.50:5062;branch=z9hG4bKack2;rport
Max-Forwards: 70
From: "Peer" <sip:peer@192.0.2.50>;tag=p1
To: <sip:ua@192.0.2.10>;tag={tag}
Call-ID: inv-1@192.0.2.50
CSeq: 2 ACK
Content-Length: 0"""
        self.peer.receive(request(ackText), CALLER)
        self.clock.advance(5)
        self.assertEqual(self.peer.take(), [])


SDP_TEXT = ("v=0\r\no=peer 1 1 IN IP4 192.0.2.50\r\ns=-\r\nc=IN IP4 192.0.2.50\r\n"
            "t=0 0\r\nm=audio 30000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n")


class TwoAgentTests(SynchronousTestCase):
    """Two user agents calling each other through an in-memory network."""

    def setUp(self):
        self.clock = Clock()
        self.alice = Peer(self.clock, "192.0.2.1", 5060, rtpPort=40000, user="alice")
        self.bob = Peer(self.clock, "192.0.2.2", 5060, rtpPort=42000, user="bob")
        self.net = Network(self.clock, self.alice, self.bob)

    def connect(self):
        self.bob.events.onIncoming = lambda call: call.answer()
        call = self.alice.ua.call("sip:bob@192.0.2.2", observer=self.alice.events)
        self.net.run()
        self.assertEqual(call.state, CallState.CONNECTED)
        return call, self.bob.events.calls[-1]

    def settle(self):
        self.net.advance(40, step=0.5)
        for peer in (self.alice, self.bob):
            self.assertEqual(peer.tablesEmpty(), (0, 0, 0, 0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_holdAndResumeBothDirections(self):
        ours, theirs = self.connect()
        start = len(self.net.log)
        d = ours.hold()
        self.net.run()
        self.assertEqual(self.net.lines(start),
                         ["INVITE sip:bob@192.0.2.2:5060 SIP/2.0", "SIP/2.0 200 OK",
                          "ACK sip:bob@192.0.2.2:5060 SIP/2.0"])
        self.assertEqual(self.successResultOf(d).direction, "sendonly")
        self.assertTrue(ours.localHold)
        self.assertTrue(theirs.remoteHold)
        self.assertEqual(self.alice.events.named("held"), [("held", False)])
        self.assertEqual(self.bob.events.named("held"), [("held", True)])
        self.assertEqual(self.bob.media[0].media.direction, "recvonly")
        # Bob holds too: both sides on hold, inactive.
        d = theirs.hold()
        self.net.run()
        self.assertEqual(self.successResultOf(d).direction, "inactive")
        self.assertEqual(self.alice.media[0].media.direction, "inactive")
        d = ours.unhold()
        self.net.run()
        self.assertEqual(self.successResultOf(d).direction, "recvonly")
        self.assertEqual(self.bob.events.named("resumed"), [("resumed", True)])
        d = theirs.unhold()
        self.net.run()
        self.assertEqual(self.successResultOf(d).direction, "sendrecv")
        self.assertEqual(self.alice.media[0].media.direction, "sendrecv")
        self.assertFalse(ours.localHold or ours.remoteHold or theirs.localHold or theirs.remoteHold)
        ours.hangup()
        self.settle()

    def test_glare(self):
        """Both re-INVITE at once: 491 each way, then both succeed (14.1)."""
        ours, theirs = self.connect()
        d1 = ours.hold()
        d2 = theirs.hold()
        self.net.run()
        self.assertEqual(sorted(line for line in self.net.lines() if "491" in line),
                         ["SIP/2.0 491 Request Pending"] * 2)
        self.assertNoResult(d1)
        self.assertNoResult(d2)
        self.net.advance(5, step=0.1)
        self.assertEqual(self.successResultOf(d1).direction, "inactive")
        # Bob (not the Call-ID owner) retried first, after 0-2 s.
        self.assertEqual(self.successResultOf(d2).direction, "sendonly")
        ours.hangup()
        self.settle()

    def test_secondReinviteWhilePendingFails(self):
        ours, _ = self.connect()
        ours.hold()
        self.failureResultOf(ours.hold(), CallError)

    def test_lostMessagesRecovered(self):
        """The first 200 and the first ACK are lost: retransmissions recover."""
        lost = set()

        def drop(message, src, dst):
            key = message.method if message.isRequest else message.status
            if key in (200, "ACK") and key not in lost:
                lost.add(key)
                return True
            return False
        self.net.drop = drop
        self.bob.events.onIncoming = lambda call: call.answer()
        call = self.alice.ua.call("sip:bob@192.0.2.2", observer=self.alice.events)
        self.net.advance(2, step=0.25)
        self.assertEqual(call.state, CallState.CONNECTED)
        self.assertEqual(self.bob.events.calls[0].state, CallState.CONNECTED)
        lines = self.net.lines()
        self.assertIn("LOST SIP/2.0 200 OK", lines)
        self.assertIn("LOST ACK sip:bob@192.0.2.2:5060 SIP/2.0", lines)
        call.hangup()
        self.settle()

    def test_everythingCleanedUp(self):
        """
        Several complete calls, outgoing and incoming, with CANCEL, reject
        and BYE from both sides: afterwards every table is empty and no timer
        is left once they run out.
        """
        alice, bob = self.alice, self.bob
        # 1. answered, the caller hangs up.
        call, theirs = self.connect()
        call.hangup()
        self.net.run()
        # 2. answered, the callee hangs up.
        call, theirs = self.connect()
        theirs.hangup()
        self.net.run()
        self.assertEqual(call.end.reason, R.REMOTE_HANGUP)
        # 3. cancelled while ringing.
        bob.events.onIncoming = lambda call: None
        call = alice.ua.call("sip:bob@192.0.2.2")
        self.net.run()
        call.hangup()
        self.net.run()
        self.assertEqual(call.end.reason, R.CANCELLED)
        self.assertEqual(bob.events.calls[-1].end.reason, R.REMOTE_CANCELLED)
        # 4. rejected.
        bob.events.onIncoming = lambda call: call.reject(603)
        call = alice.ua.call("sip:bob@192.0.2.2")
        self.net.run()
        self.assertEqual((call.end.reason, call.end.status), (R.FAILED, 603))
        # 5. the other direction, with hold, Bob hangs up.
        alice.events.onIncoming = lambda call: call.answer()
        call = bob.ua.call("sip:alice@192.0.2.1")
        self.net.run()
        call.hold()
        self.net.run()
        call.hangup()
        self.net.run()
        # 6. an OPTIONS each way outside calls.
        bob.ua.sendOptions("sip:alice@192.0.2.1")
        alice.ua.sendOptions("sip:bob@192.0.2.2")
        self.net.run()
        self.assertEqual(len(alice.ua.calls) + len(bob.ua.calls), 0)
        self.settle()


class StaticMediaHandlerTests(SynchronousTestCase):

    def test_versions(self):
        handler = StaticMediaHandler("192.0.2.1", 40000)
        first = handler.makeOffer(False)
        second = handler.makeOffer(True)
        self.assertEqual(second.origin.sessionId, first.origin.sessionId)
        self.assertEqual(second.origin.sessionVersion, first.origin.sessionVersion + 1)
        self.assertEqual(second.media[0].direction, "sendonly")

    def test_answerRejects(self):
        handler = StaticMediaHandler("192.0.2.1", 40000, codecs=("PCMA",))
        offer = makeOffer("192.0.2.2", 30000, ("PCMU",))
        self.assertRaises(NegotiationError, handler.answerOffer, offer, False)

    def test_observerBase(self):
        observer = CallObserver()
        self.assertTrue(verifyObject(ICallObserver, observer))
        self.assertIsNone(observer.callRinging(None, None))


class RealSocketCallTests(TestCase):
    """Two user agents on 127.0.0.1 call each other through real sockets."""

    timeout = 20

    @inlineCallbacks
    def test_callAnswerBye(self):
        alice = listenSip(reactor, UserAgentConfig(host="127.0.0.1", port=0, user="alice"))
        self.addCleanup(alice.stop)
        bobEvents = _Answerer()
        bob = listenSip(reactor, UserAgentConfig(host="127.0.0.1", port=0, user="bob"),
                        observer=bobEvents,
                        mediaHandlerFactory=lambda call: StaticMediaHandler("127.0.0.1", 42000))
        self.addCleanup(bob.stop)
        call = alice.userAgent.call(f"sip:bob@127.0.0.1:{bob.userAgent.config.port}")
        media = yield call.whenConnected()
        self.assertEqual((media.remoteAddress, media.remotePort), ("127.0.0.1", 42000))
        theirs = bobEvents.calls[0]
        theirMedia = yield theirs.whenConnected()
        self.assertEqual(theirMedia.codec, "PCMU")
        theirEnd = theirs.whenTerminated()
        call.hangup()
        end = yield call.whenTerminated()
        self.assertEqual(end.reason, R.LOCAL_HANGUP)
        end = yield theirEnd
        self.assertEqual(end.reason, R.REMOTE_HANGUP)
        self.assertEqual(alice.userAgent.publicAddress, ("127.0.0.1", alice.userAgent.config.port))


    @inlineCallbacks
    def test_docsExample(self):
        """The example of docs/sip-user-agent.rst runs: connected, then failed."""
        namespace = _docsExample()
        printed = []
        namespace["print"] = printed.append
        events = _Answerer()
        bob = listenSip(reactor, UserAgentConfig(host="127.0.0.1", port=0, user="bob"),
                        observer=events)
        self.addCleanup(bob.stop)
        target = f"sip:bob@127.0.0.1:{bob.userAgent.config.port}"
        yield namespace["main"](reactor, target, "127.0.0.1", "0.1")
        self.assertEqual(printed, ["ringing: 180 Ringing", "connected: PCMU to 127.0.0.1:9",
                                   "terminated: local-hangup ", "ended: local-hangup"])
        del printed[:]
        events.reject = True
        with self.assertRaises(SystemExit):
            yield namespace["main"](reactor, target, "127.0.0.1", "0.1")
        self.assertEqual(printed[-1], "call failed: failed 486")


def _docsExample():
    """Execute the example code block of docs/sip-user-agent.rst."""
    import textwrap
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / "docs" / "sip-user-agent.rst").read_text()
    section = text.split("Example: calling a SIP peer", 1)[1]
    block = section.split(".. code-block:: python\n", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        lines.append(line)
    namespace = {"__name__": "docexample"}
    exec(compile(textwrap.dedent("\n".join(lines)), "sip-user-agent.rst", "exec"), namespace)
    return namespace


class RealSocketIPv6Tests(TestCase):
    """The same call over ::1, when the host has IPv6 loopback."""

    timeout = 20

    @inlineCallbacks
    def test_callOverIPv6(self):
        try:
            alice = listenSip(reactor, UserAgentConfig(host="::1", port=0, user="alice"))
        except CannotListenError as e:
            raise SkipTest(f"no IPv6 loopback: {e}")
        self.addCleanup(alice.stop)
        events = _Answerer()
        bob = listenSip(reactor, UserAgentConfig(host="::1", port=0, user="bob"), observer=events,
                        mediaHandlerFactory=lambda call: StaticMediaHandler("::1", 42000))
        self.addCleanup(bob.stop)
        call = alice.userAgent.call(f"sip:bob@[::1]:{bob.userAgent.config.port}")
        media = yield call.whenConnected()
        self.assertEqual((media.remoteAddress, media.remotePort), ("::1", 42000))
        self.assertEqual(alice.userAgent.contactHeader,
                         f"<sip:alice@[::1]:{alice.userAgent.config.port}>")
        call.hangup()
        end = yield call.whenTerminated()
        self.assertEqual(end.reason, R.LOCAL_HANGUP)


class _Answerer(CallObserver):
    def __init__(self):
        self.calls = []
        self.reject = False

    def incomingCall(self, call):
        self.calls.append(call)
        if self.reject:
            call.reject(486)
        else:
            call.answer()

    def publicAddressDiscovered(self, host, port):
        pass
