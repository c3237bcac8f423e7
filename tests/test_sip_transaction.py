"""
Tests for L{lmevoip.sip.transaction} and L{lmevoip.sip.timers}: the four RFC
3261 section 17 state machines (with RFC 6026's Accepted state), matching,
the layer's bounds and cleanup. Everything runs on C{task.Clock} with a
recording transport; nothing sleeps and no socket is opened.
"""

from __future__ import annotations

from itertools import accumulate, islice

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from lmevoip.interfaces import (
    IClientTransaction,
    IServerTransaction,
    ITransactionLayer,
    ITransactionUser,
)
from lmevoip.sip.headers import Via
from lmevoip.sip.message import Request, Response, makeResponse, parse
from lmevoip.sip.timers import Timer, TimerSettings, retransmitIntervals
from lmevoip.sip.transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    Invite2xxRetransmitter,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    TransactionLayer,
    TransactionLimitError,
    TransactionState,
    TransactionStateError,
    generateBranch,
    hasMagicCookie,
    makeCancel,
    responseAddress,
    serverKey,
    stampVia,
)

from tests.support import sharedTestdata

S = TransactionState
PEER = ("192.0.2.10", 5060)
US = ("198.51.100.7", 5060)


def request(method: str = "INVITE", branch: str | None = "z9hG4bKclient1",
            seq: int = 1, via: str | None = None, extra: str = "",
            toTag: str | None = None, uri: str = "sip:bob@192.0.2.10",
            sentBy: str = "198.51.100.7:5060", transport: str = "UDP") -> Request:
    """
    A request as bytes through the real parser, the way the transport hands
    them to the layer.
    """
    if via is None:
        via = f"SIP/2.0/{transport} {sentBy}" + (f";branch={branch}" if branch else "")
    to = "<sip:bob@example.com>" + (f";tag={toTag}" if toTag else "")
    text = (f"{method} {uri} SIP/2.0\r\n"
            f"Via: {via}\r\n"
            "Max-Forwards: 70\r\n"
            "From: Alice <sip:alice@example.org>;tag=fromtag1\r\n"
            f"To: {to}\r\n"
            "Call-ID: callid-1@198.51.100.7\r\n"
            f"CSeq: {seq} {method}\r\n"
            f"{extra}"
            "Content-Length: 0\r\n\r\n")
    message = parse(text.encode())
    assert isinstance(message, Request)
    return message


def respond(req: Request, status: int, toTag: str | None = "totag9") -> Response:
    """
    A response to C{req} as the peer would send it (round-tripped through
    the parser).
    """
    return parse(makeResponse(req, status, toTag=toTag if status > 100 else None).serialize())


def advanceTo(clock: Clock, when: float) -> None:
    """
    Move C{clock} to C{when} stopping at every pending call on the way
    (C{Clock.advance} would run them all at the final time).
    """
    while True:
        due = [call.getTime() for call in clock.getDelayedCalls()]
        nextCall = min(due) if due else None
        if nextCall is None or nextCall > when:
            break
        clock.advance(max(0.0, nextCall - clock.seconds()))
    clock.advance(max(0.0, when - clock.seconds()))


@implementer(ITransactionUser)
class RecordingUser:
    """
    A transaction user that records every callback, and can answer
    requests through a hook.
    """

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.onRequest = None

    def requestReceived(self, request, transaction):
        self.events.append(("request", request, transaction))
        if self.onRequest is not None:
            self.onRequest(request, transaction)

    def responseReceived(self, response, transaction):
        self.events.append(("response", response, transaction))

    def transactionTimedOut(self, transaction):
        self.events.append(("timeout", transaction))

    def transportError(self, transaction, failure):
        self.events.append(("transportError", transaction, failure))

    def transactionTerminated(self, transaction):
        self.events.append(("terminated", transaction))

    def kinds(self, *exclude: str) -> list[str]:
        return [e[0] for e in self.events if e[0] not in exclude]

    def of(self, kind: str) -> list[tuple]:
        return [e for e in self.events if e[0] == kind]


class LayerTestCase(SynchronousTestCase):
    """
    A layer on a L{Clock} with a recording transport.
    """

    layerArgs: dict = {}

    def setUp(self) -> None:
        self.clock = Clock()
        self.sent: list[tuple[float, object, tuple]] = []
        self.failSend = False
        self.tu = RecordingUser()
        self.layer = TransactionLayer(self.clock, self.send, self.tu, **self.layerArgs)

    def send(self, message, addr) -> None:
        if self.failSend:
            raise OSError("network unreachable")
        self.sent.append((self.clock.seconds(), message, addr))

    def advanceTo(self, when: float) -> None:
        """
        Move the clock to C{when} one pending call at a time, so each call
        runs (and reschedules) at its own time, as with a real reactor.
        """
        advanceTo(self.clock, when)

    def sentTimes(self, method: str | None = None, status: int | None = None) -> list[float]:
        times = []
        for when, message, _ in self.sent:
            if message.isRequest and method is not None and message.method == method:
                times.append(when)
            elif not message.isRequest and status is not None and message.status == status:
                times.append(when)
        return times

    def assertTerminatesAt(self, tx, when: float, stateBefore: TransactionState) -> None:
        """
        C{tx} is still in C{stateBefore} just before C{when} and Terminated
        at C{when} (a timer firing on schedule).
        """
        self.advanceTo(when - 0.01)
        self.assertEqual(tx.state, stateBefore)
        self.advanceTo(when)
        self.assertEqual(tx.state, S.TERMINATED)

    def assertEmpty(self) -> None:
        self.assertEqual(dict(self.layer.clientTransactions), {})
        self.assertEqual(dict(self.layer.serverTransactions), {})
        self.assertEqual(len(self.layer), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class TimerSettingsTests(SynchronousTestCase):
    """
    The timer values and schedules (RFC 3261 table 4, RFC 6026).
    """

    def test_timerAScheduleDoublesWithoutCap(self) -> None:
        """
        Timer A: the INVITE goes out again at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s.
        """
        self.assertEqual(list(accumulate(islice(retransmitIntervals(0.5), 6))),
                         [0.5, 1.5, 3.5, 7.5, 15.5, 31.5])

    def test_timerEScheduleCapsAtT2(self) -> None:
        """
        Timers E and G double up to T2 and stay there.
        """
        self.assertEqual(list(islice(retransmitIntervals(0.5, 4.0), 7)),
                         [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0])

    def test_defaults(self) -> None:
        """
        T1=0.5, T2=4, T4=5 and the derived values for UDP.
        """
        t = TimerSettings()
        values = {name: value for name, value, _ in t.table()}
        self.assertEqual(values, {"A": 0.5, "B": 32.0, "D": 32.0, "E": 0.5, "F": 32.0,
                                  "G": 0.5, "H": 32.0, "I": 5.0, "J": 32.0, "K": 5.0,
                                  "L": 32.0, "M": 32.0})
        self.assertEqual((t.t1, t.t2, t.t4), (0.5, 4.0, 5.0))

    def test_reliableTransportValues(self) -> None:
        """
        D, I, J, K are zero on reliable transports; A, E, G are not used.
        """
        t = TimerSettings()
        for name in "DIJK":
            self.assertEqual(t.forTransport(name, reliable=True), 0.0)
            self.assertGreater(t.forTransport(name, reliable=False), 0)
        for name in "BFHLM":
            self.assertEqual(t.forTransport(name, True), 32.0)
        for name in "AEG":
            self.assertRaises(ValueError, t.forTransport, name, True)
        self.assertRaises(ValueError, t.forTransport, "Z", False)

    def test_configured(self) -> None:
        """
        Everything derives from the configured T1, T2 and T4.
        """
        t = TimerSettings(t1=0.1, t2=1.0, t4=2.0)
        self.assertEqual((t.timerB, t.timerF, t.timerH, t.timerJ, t.timerL, t.timerM),
                         (6.4, 6.4, 6.4, 6.4, 6.4, 6.4))
        self.assertEqual((t.timerI, t.timerK), (2.0, 2.0))

    def test_invalid(self) -> None:
        """
        Impossible settings are refused.
        """
        self.assertRaises(ValueError, TimerSettings, timerD=-1)
        self.assertEqual(TimerSettings().forTransport("C", True), 181.0)
        self.assertRaises(ValueError, TimerSettings(timerC=None).forTransport, "C", False)
        self.assertRaises(ValueError, TimerSettings, t1=0)
        self.assertRaises(ValueError, TimerSettings, t1=5.0, t2=4.0)
        self.assertRaises(ValueError, TimerSettings, t4=-1)
        self.assertRaises(ValueError, TimerSettings, timerC=0)

    def test_timerRestartAndCancel(self) -> None:
        """
        A L{Timer} has at most one pending call; restarting replaces it.
        """
        clock = Clock()
        fired = []
        timer = Timer(clock, "X", lambda: fired.append(clock.seconds()))
        timer.start(1.0)
        timer.start(2.0)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(2.0)
        self.assertEqual(fired, [2.0])
        self.assertFalse(timer.active)
        timer.start(1.0)
        timer.cancel()
        timer.cancel()
        self.assertEqual(clock.getDelayedCalls(), [])


class StateTableTests(LayerTestCase):
    """
    The transition tables are the RFC figures (5-8, with RFC 6026's
    Accepted), and nothing else is allowed.
    """

    def test_tables(self) -> None:
        T = S.TERMINATED
        expected = {
            ClientInviteTransaction: {
                S.CALLING: {S.PROCEEDING, S.COMPLETED, S.ACCEPTED, T},
                S.PROCEEDING: {S.COMPLETED, S.ACCEPTED, T},
                S.COMPLETED: {T}, S.ACCEPTED: {T}, T: set()},
            ClientNonInviteTransaction: {
                S.TRYING: {S.PROCEEDING, S.COMPLETED, T},
                S.PROCEEDING: {S.COMPLETED, T}, S.COMPLETED: {T}, T: set()},
            ServerInviteTransaction: {
                S.PROCEEDING: {S.COMPLETED, S.ACCEPTED, T},
                S.COMPLETED: {S.CONFIRMED, T}, S.CONFIRMED: {T}, S.ACCEPTED: {T}, T: set()},
            ServerNonInviteTransaction: {
                S.TRYING: {S.PROCEEDING, S.COMPLETED, T},
                S.PROCEEDING: {S.COMPLETED, T}, S.COMPLETED: {T}, T: set()},
        }
        for cls, table in expected.items():
            self.assertEqual({k: set(v) for k, v in cls.transitions.items()}, table, cls)
            self.assertIn(cls.initialState, table)

    def test_illegalTransitionRefused(self) -> None:
        tx = self.layer.receiveRequest(request("OPTIONS"), US)
        self.assertRaises(TransactionStateError, tx._setState, S.CONFIRMED)
        tx.sendResponse(makeResponse(tx.request, 200, toTag="a"))
        self.assertRaises(TransactionStateError, tx._setState, S.PROCEEDING)
        self.assertEqual(tx.state, S.COMPLETED)


class ClientInviteTests(LayerTestCase):
    """
    The client INVITE transaction (17.1.1, RFC 6026).
    """

    def test_provides(self) -> None:
        tx = self.layer.sendRequest(request(), PEER)
        verifyObject(IClientTransaction, tx)
        verifyObject(ITransactionLayer, self.layer)
        verifyObject(ITransactionUser, self.tu)
        self.assertIsInstance(tx, ClientInviteTransaction)

    def test_retransmissionsAndTimerB(self) -> None:
        """
        Calling: the INVITE is re-sent at 0.5, 1.5, 3.5, 7.5, 15.5 and
        31.5 s; Timer B at 32 s reports a timeout and terminates.
        """
        tx = self.layer.sendRequest(request(), PEER)
        self.assertEqual(tx.state, S.CALLING)
        self.assertEqual(tx.activeTimers(), ["A", "B"])
        self.advanceTo(31.9)
        self.assertEqual(self.sentTimes("INVITE"), [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
        self.assertEqual(self.tu.events, [])
        self.advanceTo(32.0)
        self.assertEqual(tx.state, S.TERMINATED)
        self.assertEqual(self.tu.kinds(), ["timeout", "terminated"])
        self.assertIs(self.tu.events[0][1], tx)
        self.assertTrue(all(addr == PEER for _, _, addr in self.sent))
        self.assertTrue(all(m is tx.request for _, m, _ in self.sent))
        self.assertEmpty()

    def test_provisionalStopsRetransmissions(self) -> None:
        """
        A 1xx moves to Proceeding: no more retransmissions, no Timer B, the
        1xx goes to the TU.
        """
        tx = self.layer.sendRequest(request(), PEER)
        self.advanceTo(1.0)
        ringing = respond(tx.request, 180)
        self.assertIs(self.layer.receiveResponse(ringing, PEER), tx)
        self.assertEqual(tx.state, S.PROCEEDING)
        self.assertEqual(tx.activeTimers(), ["C"])
        self.advanceTo(100.0)
        self.assertEqual(self.sentTimes("INVITE"), [0, 0.5])
        self.assertEqual(self.tu.events, [("response", ringing, tx)])

    def test_errorResponseAck(self) -> None:
        """
        A 486 is acknowledged by the transaction (17.1.1.3): same
        Request-URI, Call-ID, From, To of the response, CSeq number with
        ACK, the single top Via, the Route headers of the INVITE.
        """
        invite = request(extra="Route: <sip:p1.example.com;lr>\r\n"
                               "Route: <sip:p2.example.com;lr>\r\n")
        tx = self.layer.sendRequest(invite, PEER)
        self.advanceTo(0.2)
        busy = respond(invite, 486, toTag="busy77")
        # The peer's response carries more than our Via? No: a UAS copies
        # exactly our one Via, which is what the layer matches.
        self.layer.receiveResponse(busy, PEER)
        self.assertEqual(tx.state, S.COMPLETED)
        self.assertEqual(self.tu.events, [("response", busy, tx)])
        when, ack, addr = self.sent[-1]
        self.assertEqual((when, addr), (0.2, PEER))
        self.assertEqual(ack.method, "ACK")
        self.assertEqual(str(ack.uri), "sip:bob@192.0.2.10")
        self.assertEqual(ack.headers.getAll("Via"), [str(invite.topVia)])
        self.assertEqual(len(ack.vias), 1)
        self.assertEqual(ack.topVia.branch, "z9hG4bKclient1")
        self.assertEqual(ack.callId, "callid-1@198.51.100.7")
        self.assertEqual(ack.fromAddr.tag, "fromtag1")
        self.assertEqual(ack.toAddr.tag, "busy77")
        self.assertEqual((ack.cseq.seq, ack.cseq.method), (1, "ACK"))
        self.assertEqual([str(r.uri) for r in ack.routes],
                         ["sip:p1.example.com;lr", "sip:p2.example.com;lr"])
        self.assertEqual(ack.maxForwards, 70)
        self.assertEqual(ack.body, b"")
        # The whole ACK, byte for byte.
        self.assertEqual(ack.serialize(), (
            "ACK sip:bob@192.0.2.10 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKclient1\r\n"
            "Max-Forwards: 70\r\n"
            "From: Alice <sip:alice@example.org>;tag=fromtag1\r\n"
            "To: <sip:bob@example.com>;tag=busy77\r\n"
            "Call-ID: callid-1@198.51.100.7\r\n"
            "CSeq: 1 ACK\r\n"
            "Route: <sip:p1.example.com;lr>\r\n"
            "Route: <sip:p2.example.com;lr>\r\n"
            "Content-Length: 0\r\n\r\n").encode())

    def test_completedAbsorbsAndReAcks(self) -> None:
        """
        Completed: a retransmitted 486 gets the ACK again and is not passed
        up; Timer D (32 s) terminates.
        """
        tx = self.layer.sendRequest(request(), PEER)
        busy = respond(tx.request, 486)
        self.layer.receiveResponse(busy, PEER)
        self.advanceTo(2.0)
        self.layer.receiveResponse(respond(tx.request, 486), PEER)
        self.assertEqual(self.sentTimes("ACK"), [0, 2.0])
        self.assertEqual(self.sentTimes("INVITE"), [0])
        self.assertEqual(self.tu.kinds(), ["response"])
        self.assertEqual(tx.activeTimers(), ["D"])
        self.assertTerminatesAt(tx, 32.0, S.COMPLETED)
        self.assertEqual(self.tu.kinds(), ["response", "terminated"])
        self.assertEmpty()

    def test_2xxAccepted(self) -> None:
        """
        RFC 6026: a 2xx moves to Accepted; no ACK from the transaction;
        2xx retransmissions are passed to the TU; Timer M (64*T1) ends it.
        """
        tx = self.layer.sendRequest(request(), PEER)
        self.advanceTo(0.3)
        ok = respond(tx.request, 200)
        self.layer.receiveResponse(ok, PEER)
        self.assertEqual(tx.state, S.ACCEPTED)
        self.assertEqual(tx.activeTimers(), ["M"])
        self.advanceTo(4.0)
        ok2 = respond(tx.request, 200)
        self.assertIs(self.layer.receiveResponse(ok2, PEER), tx)
        # A late 486 in Accepted is nobody's business.
        self.layer.receiveResponse(respond(tx.request, 486), PEER)
        self.assertEqual(self.tu.events, [("response", ok, tx), ("response", ok2, tx)])
        self.assertEqual(self.sentTimes("ACK"), [])
        self.assertEqual(self.sentTimes("INVITE"), [0])
        self.assertTerminatesAt(tx, 0.3 + 32, S.ACCEPTED)
        self.assertEmpty()

    def test_stray2xxAfterTimerM(self) -> None:
        """
        A 2xx to INVITE matching no transaction goes to the TU as stray
        (transaction None); a stray non-2xx is dropped.
        """
        tx = self.layer.sendRequest(request(), PEER)
        self.layer.receiveResponse(respond(tx.request, 200), PEER)
        self.advanceTo(40.0)
        self.assertEmpty()
        late = respond(tx.request, 200)
        self.assertIsNone(self.layer.receiveResponse(late, PEER))
        self.assertEqual(self.tu.events[-1], ("response", late, None))
        count = len(self.tu.events)
        self.assertIsNone(self.layer.receiveResponse(respond(tx.request, 486), PEER))
        self.assertIsNone(self.layer.receiveResponse(
            respond(request("OPTIONS", branch="z9hG4bKnobody"), 200), PEER))
        self.assertEqual(len(self.tu.events), count)
        self.assertEqual(self.sent[-1][1].method, "INVITE")  # nothing ACKed

    def test_stray2xxDroppedWhenConfigured(self) -> None:
        """
        deliverStray2xx=False is RFC 6026's discard.
        """
        layer = TransactionLayer(self.clock, self.send, self.tu, deliverStray2xx=False)
        self.assertIsNone(layer.receiveResponse(respond(request(), 200), PEER))
        self.assertEqual(self.tu.events, [])

    def test_timerCBackstop(self) -> None:
        """
        A 180 and then nothing: Timer C reports a timeout; the transaction
        still ACKs the 487 that the TU's CANCEL brings; without it, it is
        destroyed 64*T1 later.
        """
        tx = self.layer.sendRequest(request(), PEER)
        self.layer.receiveResponse(respond(tx.request, 180), PEER)
        self.advanceTo(181.0)
        self.assertEqual(self.tu.kinds("response"), ["timeout"])
        self.assertEqual(tx.state, S.PROCEEDING)
        self.layer.receiveResponse(respond(tx.request, 487), PEER)
        self.assertEqual(tx.state, S.COMPLETED)
        self.assertEqual(self.sentTimes("ACK"), [181.0])

        other = self.layer.sendRequest(request(branch="z9hG4bKsecond", seq=2), PEER)
        self.layer.receiveResponse(respond(other.request, 180), PEER)
        self.advanceTo(181.0 + 181.0)
        self.assertEqual(other.state, S.PROCEEDING)
        self.advanceTo(181.0 + 181.0 + 32.0)
        self.assertEqual(other.state, S.TERMINATED)
        self.assertEmpty()

    def test_timerCRestartedByProvisionals(self) -> None:
        """
        Each 1xx restarts Timer C: a peer that keeps ringing keeps the
        transaction.
        """
        tx = self.layer.sendRequest(request(), PEER)
        self.layer.receiveResponse(respond(tx.request, 180), PEER)
        self.advanceTo(150.0)
        self.layer.receiveResponse(respond(tx.request, 180), PEER)
        self.advanceTo(330.0)
        self.assertEqual(self.tu.kinds("response"), [])
        self.advanceTo(331.0)
        self.assertEqual(self.tu.kinds("response"), ["timeout"])

    def test_timerCDisabled(self) -> None:
        layer = TransactionLayer(self.clock, self.send, self.tu, timerC=None)
        tx = layer.sendRequest(request(), PEER)
        layer.receiveResponse(respond(tx.request, 183), PEER)
        self.assertEqual(tx.activeTimers(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        tx.terminate()
        self.assertEqual(len(layer), 0)

    def test_reliableTransport(self) -> None:
        """
        Over TCP: no retransmissions, Timer B only; a 486 is ACKed and the
        transaction terminates at once (Timer D = 0).
        """
        tx = self.layer.sendRequest(request(transport="TCP"), PEER)
        self.assertTrue(tx.reliable)
        self.assertEqual(tx.activeTimers(), ["B"])
        self.advanceTo(10.0)
        self.assertEqual(self.sentTimes("INVITE"), [0])
        self.layer.receiveResponse(respond(tx.request, 486), PEER)
        self.assertEqual(tx.state, S.TERMINATED)
        self.assertEqual(self.sentTimes("ACK"), [10.0])
        self.assertEqual(self.tu.kinds(), ["response", "terminated"])
        self.assertEmpty()

    def test_branchGenerated(self) -> None:
        """
        A request without branch gets z9hG4bK + random; others keep theirs.
        """
        tx = self.layer.sendRequest(request(branch=None), PEER)
        branch = tx.request.topVia.branch
        self.assertTrue(hasMagicCookie(branch), branch)
        self.assertGreaterEqual(len(branch), 7 + 16)
        self.assertEqual(tx.key, (branch, "INVITE"))
        self.assertEqual(parse(self.sent[0][1].serialize()).topVia.branch, branch)
        self.assertNotEqual(generateBranch(), generateBranch())
        self.assertEqual(self.layer.sendRequest(request("OPTIONS"), PEER).branch,
                         "z9hG4bKclient1")

    def test_transportErrorOnFirstSend(self) -> None:
        """
        17.1.4: send raising terminates the transaction and is reported.
        """
        self.failSend = True
        tx = self.layer.sendRequest(request(), PEER)
        self.assertEqual(tx.state, S.TERMINATED)
        self.assertEqual(self.tu.kinds(), ["transportError", "terminated"])
        self.assertIs(self.tu.events[0][1], tx)
        self.assertIsInstance(self.tu.events[0][2].value, OSError)
        self.assertEmpty()

    def test_transportErrorOnRetransmission(self) -> None:
        tx = self.layer.sendRequest(request(), PEER)
        self.failSend = True
        self.advanceTo(0.5)
        self.assertEqual(tx.state, S.TERMINATED)
        self.assertEqual(self.tu.kinds(), ["transportError", "terminated"])
        self.assertEmpty()

    def test_transportErrorOnAck(self) -> None:
        tx = self.layer.sendRequest(request(), PEER)
        self.failSend = True
        self.layer.receiveResponse(respond(tx.request, 603), PEER)
        self.assertEqual(tx.state, S.TERMINATED)
        self.assertEqual(self.tu.kinds(), ["response", "transportError", "terminated"])
        self.assertEmpty()

    def test_misuse(self) -> None:
        """
        ACKs do not get transactions; duplicate branches are refused.
        """
        self.assertRaises(ValueError, self.layer.sendRequest, request("ACK"), PEER)
        self.layer.sendRequest(request(), PEER)
        self.assertRaises(ValueError, self.layer.sendRequest, request(), PEER)
        bad = request("OPTIONS")
        bad.headers.set("CSeq", "1 INFO")
        self.assertRaises(ValueError, self.layer.sendRequest, bad, PEER)

    def test_tuExceptionContained(self) -> None:
        """
        A TU callback raising is logged, not propagated.
        """
        def boom(*args):
            raise RuntimeError("TU bug")
        self.tu.responseReceived = boom
        tx = self.layer.sendRequest(request(), PEER)
        self.layer.receiveResponse(respond(tx.request, 180), PEER)
        self.assertEqual(tx.state, S.PROCEEDING)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ClientNonInviteTests(LayerTestCase):
    """
    The client non-INVITE transaction (17.1.2).
    """

    def test_timerECappedAndTimerF(self) -> None:
        """
        Timer E: re-sent at 0.5, 1.5, 3.5, 7.5 and then every T2 = 4 s;
        Timer F at 64*T1 = 32 s reports a timeout.
        """
        tx = self.layer.sendRequest(request("OPTIONS"), PEER)
        self.assertIsInstance(tx, ClientNonInviteTransaction)
        self.assertEqual(tx.state, S.TRYING)
        self.advanceTo(31.99)
        self.assertEqual(self.sentTimes("OPTIONS"),
                         [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
        self.assertEqual(self.tu.events, [])
        self.advanceTo(32.0)
        self.assertEqual(self.tu.kinds(), ["timeout", "terminated"])
        self.assertEmpty()

    def test_proceedingRetransmitsEveryT2(self) -> None:
        """
        After a 1xx, Timer E re-sends every T2.
        """
        tx = self.layer.sendRequest(request("REGISTER"), PEER)
        self.advanceTo(0.6)
        trying = respond(tx.request, 100)
        self.layer.receiveResponse(trying, PEER)
        self.assertEqual(tx.state, S.PROCEEDING)
        self.advanceTo(20.0)
        # 1.5 was armed in Trying (0.5 + 1.0); then every 4 s.
        self.assertEqual(self.sentTimes("REGISTER"), [0, 0.5, 1.5, 5.5, 9.5, 13.5, 17.5])
        self.assertEqual(self.tu.events, [("response", trying, tx)])
        self.advanceTo(32.0)
        self.assertEqual(self.tu.kinds(), ["response", "timeout", "terminated"])
        self.assertEmpty()

    def test_proceedingToCompleted(self) -> None:
        """
        Proceeding -> Completed on a final response: retransmissions stop,
        both responses reach the TU, Timer K runs.
        """
        tx = self.layer.sendRequest(request("SUBSCRIBE"), PEER)
        trying, ok = respond(tx.request, 100), respond(tx.request, 202)
        self.layer.receiveResponse(trying, PEER)
        self.advanceTo(2.0)
        self.layer.receiveResponse(ok, PEER)
        self.assertEqual(tx.state, S.COMPLETED)
        self.assertEqual(tx.activeTimers(), ["K"])
        self.advanceTo(40.0)
        # In Proceeding Timer E re-sends every T2: 0.5, then 4.5 (too late).
        self.assertEqual(self.sentTimes("SUBSCRIBE"), [0, 0.5])
        self.assertEqual(self.tu.kinds(), ["response", "response", "terminated"])
        self.assertEqual([e[1] for e in self.tu.of("response")], [trying, ok])
        self.assertEmpty()

    def test_finalCompletedTimerK(self) -> None:
        """
        A final response moves to Completed; its retransmissions are
        absorbed; Timer K (T4 = 5 s) terminates.
        """
        tx = self.layer.sendRequest(request("OPTIONS"), PEER)
        self.advanceTo(1.0)
        ok = respond(tx.request, 200)
        self.layer.receiveResponse(ok, PEER)
        self.assertEqual(tx.state, S.COMPLETED)
        self.assertEqual(tx.activeTimers(), ["K"])
        self.layer.receiveResponse(respond(tx.request, 200), PEER)
        self.assertEqual(self.tu.events, [("response", ok, tx)])
        self.assertTerminatesAt(tx, 6.0, S.COMPLETED)
        self.assertEqual(self.sentTimes("OPTIONS"), [0, 0.5])
        self.assertEmpty()

    def test_configuredTimers(self) -> None:
        """
        T1=0.1, T2=1, T4=2: E at 0.1, 0.3, 0.7, 1.5, 2.5 ...; F at 6.4.
        """
        layer = TransactionLayer(self.clock, self.send, self.tu, t1=0.1, t2=1.0, t4=2.0)
        tx = layer.sendRequest(request("OPTIONS"), PEER)
        self.advanceTo(3.0)
        self.assertEqual([round(t, 6) for t in self.sentTimes("OPTIONS")],
                         [0, 0.1, 0.3, 0.7, 1.5, 2.5])
        self.advanceTo(6.39)
        self.assertEqual(tx.state, S.TRYING)
        self.advanceTo(6.4)
        self.assertEqual(self.tu.kinds(), ["timeout", "terminated"])
        tx2 = layer.sendRequest(request("OPTIONS", branch="z9hG4bKk"), PEER)
        layer.receiveResponse(respond(tx2.request, 404), PEER)
        self.advanceTo(6.4 + 2.0)
        self.assertEqual(tx2.state, S.TERMINATED)
        self.assertEqual(len(layer), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_reliableKIsZero(self) -> None:
        tx = self.layer.sendRequest(request("OPTIONS", transport="TCP"), PEER)
        self.assertEqual(tx.activeTimers(), ["F"])
        self.layer.receiveResponse(respond(tx.request, 200), PEER)
        self.assertEqual(tx.state, S.TERMINATED)
        self.assertEmpty()


class ServerInviteTests(LayerTestCase):
    """
    The server INVITE transaction (17.2.1, RFC 6026).
    """

    def receive(self, req: Request | None = None, source: tuple = US):
        req = req if req is not None else request()
        return self.layer.receiveRequest(req, source)

    def test_newInvitePassedUpAnd100After200ms(self) -> None:
        """
        The INVITE goes to the TU once; 100 (Trying) goes out at 0.2 s when
        the TU is silent, and again for a retransmitted INVITE.
        """
        tx = self.receive(request(extra="Timestamp: 54\r\n"))
        self.assertIsInstance(tx, ServerInviteTransaction)
        verifyObject(IServerTransaction, tx)
        self.assertEqual(tx.state, S.PROCEEDING)
        self.assertEqual(self.tu.events, [("request", tx.request, tx)])
        self.advanceTo(0.19)
        self.assertEqual(self.sent, [])
        self.advanceTo(0.2)
        when, trying, addr = self.sent[0]
        self.assertEqual((when, trying.status, addr), (0.2, 100, US))
        self.assertIsNone(trying.toAddr.tag)
        self.assertEqual(trying.headers.get("Timestamp"), "54")
        self.assertEqual(trying.cseq.method, "INVITE")
        self.advanceTo(0.5)
        self.assertIs(self.receive(), tx)
        self.assertEqual(self.sentTimes(status=100), [0.2, 0.5])
        self.assertEqual(len(self.tu.of("request")), 1)

    def test_errorResponseTimerGAndH(self) -> None:
        """
        A 486 from the TU: no 100; Timer G re-sends at 0.5, 1.5, 3.5, 7.5,
        11.5, ... 31.5 s; Timer H at 32 s reports the missing ACK.
        """
        self.tu.onRequest = lambda req, tx: tx.sendResponse(makeResponse(req, 486, toTag="t1"))
        tx = self.receive()
        self.assertEqual(tx.state, S.COMPLETED)
        self.assertEqual(tx.activeTimers(), ["G", "H"])
        self.advanceTo(31.99)
        self.assertEqual(self.sentTimes(status=486),
                         [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
        self.assertEqual(self.sentTimes(status=100), [])
        self.advanceTo(32.0)
        self.assertEqual(tx.state, S.TERMINATED)
        self.assertEqual(self.tu.kinds(), ["request", "timeout", "terminated"])
        self.assertEmpty()

    def test_ackConfirmedTimerI(self) -> None:
        """
        The ACK moves Completed to Confirmed: retransmissions stop; ACK and
        INVITE retransmissions are absorbed; Timer I (T4) terminates.
        """
        tx = self.receive()
        self.advanceTo(1.0)
        tx.sendResponse(makeResponse(tx.request, 404, toTag="nf"))
        self.advanceTo(1.5)
        self.assertEqual(self.sentTimes(status=404), [1.0, 1.5])
        self.assertIs(self.receive(), tx)  # INVITE retransmission
        self.assertEqual(self.sentTimes(status=404), [1.0, 1.5, 1.5])
        self.advanceTo(2.0)
        ack = request("ACK", toTag="nf")
        self.assertIs(self.receive(ack), tx)
        self.assertEqual(tx.state, S.CONFIRMED)
        self.assertEqual(tx.activeTimers(), ["I"])
        self.assertIs(self.receive(request("ACK", toTag="nf")), tx)
        self.assertIs(self.receive(), tx)
        self.assertTerminatesAt(tx, 7.0, S.CONFIRMED)
        self.assertEqual(self.sentTimes(status=404), [1.0, 1.5, 1.5])
        self.assertEqual(self.tu.kinds(), ["request", "terminated"])
        self.assertEmpty()

    def test_2xxAcceptedTimerL(self) -> None:
        """
        RFC 6026: a 2xx moves to Accepted (Timer L); the transaction never
        re-sends it by itself; INVITE retransmissions are absorbed; the
        TU's own retransmissions go out; an ACK goes to the TU.
        """
        tx = self.receive()
        self.advanceTo(0.1)
        self.assertEqual(self.sentTimes(status=100), [])
        ok = makeResponse(tx.request, 200, toTag="ok1")
        tx.sendResponse(ok)
        self.assertEqual(tx.state, S.ACCEPTED)
        self.assertEqual(tx.activeTimers(), ["L"])
        self.advanceTo(0.6)
        self.assertIs(self.receive(), tx)  # retransmitted INVITE: absorbed
        self.assertEqual(self.sentTimes(status=200), [0.1])
        tx.sendResponse(ok)  # the TU's 2xx retransmission
        self.assertEqual(self.sentTimes(status=200), [0.1, 0.6])
        self.assertRaises(TransactionStateError, tx.sendResponse, makeResponse(tx.request, 486))
        ack = request("ACK", branch="z9hG4bKclient1", toTag="ok1")
        self.assertIs(self.receive(ack), tx)
        self.assertEqual(self.tu.events[-1], ("request", ack, tx))
        self.assertEqual(len(self.tu.of("request")), 2)
        self.assertTerminatesAt(tx, 0.1 + 32, S.ACCEPTED)
        self.assertEmpty()

    def test_ackFor2xxWithNewBranch(self) -> None:
        """
        The ACK for a 2xx (new branch, 13.2.2.4) matches no transaction and
        goes to the TU with None; it is never answered.
        """
        tx = self.receive()
        tx.sendResponse(makeResponse(tx.request, 200, toTag="ok1"))
        ack = request("ACK", branch="z9hG4bKackbranch", toTag="ok1")
        self.assertIsNone(self.receive(ack))
        self.assertEqual(self.tu.events[-1], ("request", ack, None))
        self.assertEqual(len(self.sent), 1)

    def test_provisionalThenRetransmission(self) -> None:
        """
        Proceeding: a retransmitted INVITE gets the latest provisional.
        """
        tx = self.receive()
        ringing = makeResponse(tx.request, 180, toTag="r1")
        tx.sendResponse(ringing)
        self.advanceTo(0.5)
        self.receive()
        self.assertEqual([m for _, m, _ in self.sent], [ringing, ringing])
        self.assertEqual(self.sentTimes(status=100), [])

    def test_tuMisuse(self) -> None:
        tx = self.receive()
        tx.sendResponse(makeResponse(tx.request, 486, toTag="x"))
        self.assertRaises(TransactionStateError, tx.sendResponse,
                          makeResponse(tx.request, 200, toTag="x"))
        tx.terminate()
        self.assertRaises(TransactionStateError, tx.sendResponse,
                          makeResponse(tx.request, 486, toTag="x"))
        self.assertEmpty()

    def test_uasCore2xxRetransmission(self) -> None:
        """
        The UA core's 2xx retransmission (13.3.1.4) through the layer's
        stateless sendResponse: to the rport address, at 0.5, 1.5, 3.5 s,
        until the ACK (new branch) reaches the TU.
        """
        source = ("203.0.113.5", 33000)
        retransmitters = []

        def answer(req, tx):
            if tx is None:  # the ACK
                retransmitters[0].ackReceived()
                return
            ok = makeResponse(req, 200, toTag="u1")
            tx.sendResponse(ok)
            r = Invite2xxRetransmitter(self.clock, lambda: self.layer.sendResponse(ok))
            r.start()
            retransmitters.append(r)
        self.tu.onRequest = answer
        self.receive(request(via="SIP/2.0/UDP 10.1.1.1:5060;rport;branch=z9hG4bKu"), source)
        self.advanceTo(5.0)
        self.receive(request("ACK", branch="z9hG4bKuack", toTag="u1",
                             sentBy="10.1.1.1:5060"), source)
        self.advanceTo(60.0)
        self.assertEqual(self.sentTimes(status=200), [0, 0.5, 1.5, 3.5])
        self.assertEqual({addr for _, _, addr in self.sent}, {source})
        self.assertEqual(retransmitters[0].retransmissions, 3)
        self.assertEmpty()

    def test_statelessSendErrors(self) -> None:
        """
        Stateless sends report failure by return value, never raise.
        """
        ok = makeResponse(request(), 200, toTag="s")
        self.failSend = True
        self.assertFalse(self.layer.sendResponse(ok))
        self.assertFalse(self.layer.sendAck(request("ACK", branch=None), PEER))
        self.failSend = False
        ok.headers.remove("Via")
        self.assertFalse(self.layer.sendResponse(ok))
        self.assertEqual(self.sent, [])

    def test_transportErrorOnResponse(self) -> None:
        """
        17.2.4: a failing send terminates the transaction and tells the TU.
        """
        tx = self.receive()
        self.failSend = True
        tx.sendResponse(makeResponse(tx.request, 486, toTag="x"))
        self.assertEqual(tx.state, S.TERMINATED)
        self.assertEqual(self.tu.kinds(), ["request", "transportError", "terminated"])
        self.assertEmpty()

    def test_reliableTransport(self) -> None:
        """
        TCP: no Timer G; the ACK terminates at once (Timer I = 0).
        """
        tx = self.receive(request(transport="TCP"))
        tx.sendResponse(makeResponse(tx.request, 486, toTag="x"))
        self.assertEqual(tx.activeTimers(), ["H"])
        self.receive(request("ACK", transport="TCP", toTag="x"))
        self.assertEqual(tx.state, S.TERMINATED)
        self.assertEmpty()


class ServerNonInviteTests(LayerTestCase):
    """
    The server non-INVITE transaction (17.2.2).
    """

    def test_fullPath(self) -> None:
        """
        Trying absorbs retransmissions; Proceeding answers them with the
        last 1xx; Completed with the final response until Timer J (32 s).
        """
        tx = self.layer.receiveRequest(request("BYE", toTag="t"), US)
        self.assertIsInstance(tx, ServerNonInviteTransaction)
        self.assertEqual(tx.state, S.TRYING)
        self.advanceTo(0.5)
        self.assertIs(self.layer.receiveRequest(request("BYE", toTag="t"), US), tx)
        self.assertEqual(self.sent, [])
        trying = makeResponse(tx.request, 100)
        tx.sendResponse(trying)
        self.assertEqual(tx.state, S.PROCEEDING)
        self.advanceTo(1.5)
        self.layer.receiveRequest(request("BYE", toTag="t"), US)
        ok = makeResponse(tx.request, 200)
        tx.sendResponse(ok)
        self.assertEqual(tx.state, S.COMPLETED)
        self.assertEqual(tx.activeTimers(), ["J"])
        self.advanceTo(3.5)
        self.layer.receiveRequest(request("BYE", toTag="t"), US)
        self.assertEqual([(w, m) for w, m, _ in self.sent],
                         [(0.5, trying), (1.5, trying), (1.5, ok), (3.5, ok)])
        self.assertRaises(TransactionStateError, tx.sendResponse, makeResponse(tx.request, 500))
        self.assertEqual(len(self.tu.of("request")), 1)
        self.assertTerminatesAt(tx, 1.5 + 32, S.COMPLETED)
        self.assertEmpty()

    def test_reliableJIsZero(self) -> None:
        tx = self.layer.receiveRequest(request("OPTIONS", transport="TCP"), US)
        tx.sendResponse(makeResponse(tx.request, 200, toTag="a"))
        self.assertEqual(tx.state, S.TERMINATED)
        self.assertEmpty()


class ViaTests(LayerTestCase):
    """
    stampVia and where responses go (18.2.1, 18.2.2, RFC 3581).
    """

    def test_rportResponseGoesToSource(self) -> None:
        """
        A request with rport from behind a NAT: the Via gets received and
        rport=<source port>, and responses go to the source address and
        port, not to the sent-by.
        """
        req = request("OPTIONS", via="SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bKnat1")
        tx = self.layer.receiveRequest(req, ("203.0.113.9", 40312))
        top = tx.request.topVia
        self.assertEqual((top.received, top.rport), ("203.0.113.9", 40312))
        self.assertEqual(tx.responseDestination, ("203.0.113.9", 40312))
        tx.sendResponse(makeResponse(tx.request, 200, toTag="z"))
        response = self.sent[0][1]
        self.assertEqual(self.sent[0][2], ("203.0.113.9", 40312))
        reparsed = parse(response.serialize())
        self.assertEqual(reparsed.topVia.rport, 40312)
        self.assertEqual(reparsed.topVia.received, "203.0.113.9")

    def test_stampViaRules(self) -> None:
        """
        received only when the sent-by differs (always with rport); rport
        filled in only when present; stamping is idempotent; the other Via
        values are untouched and keep their order.
        """
        req = request("OPTIONS", via="SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKa",
                      extra="Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp\r\n")
        stampVia(req, "203.0.113.9", 5099)
        self.assertEqual(str(req.topVia), "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKa;received=203.0.113.9")
        self.assertEqual(responseAddress(req.topVia), ("203.0.113.9", 5060))
        self.assertEqual([v.host for v in req.vias], ["10.0.0.5", "proxy.example.com"])
        before = req.headers.getAll("Via")
        stampVia(req, "203.0.113.9", 5099)
        self.assertEqual(req.headers.getAll("Via"), before)

        same = request("OPTIONS", via="SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKb")
        stampVia(same, "192.0.2.1", 5070)
        self.assertIsNone(same.topVia.received)
        self.assertEqual(responseAddress(same.topVia), ("192.0.2.1", 5070))

        rport = request("OPTIONS", via="SIP/2.0/UDP 192.0.2.1:5070;rport;branch=z9hG4bKc")
        stampVia(rport, "192.0.2.1", 5070)
        self.assertEqual((rport.topVia.received, rport.topVia.rport), ("192.0.2.1", 5070))

        v6 = request("OPTIONS", via="SIP/2.0/UDP [2001:db8::5]:5060;rport;branch=z9hG4bKd")
        stampVia(v6, "[2001:db8::9]", 6000)
        reparsed = parse(v6.serialize())
        self.assertEqual((reparsed.topVia.received, reparsed.topVia.rport), ("2001:db8::9", 6000))
        self.assertEqual(responseAddress(reparsed.topVia), ("2001:db8::9", 6000))

    def test_responseAddressOrder(self) -> None:
        """
        maddr, then received+rport, then received, then sent-by (5060/5061).
        """
        cases = [
            ("SIP/2.0/UDP h.example.com;maddr=224.0.1.75;received=192.0.2.3;rport=9",
             ("224.0.1.75", 5060)),
            ("SIP/2.0/UDP h.example.com:5070;received=192.0.2.3;rport=9", ("192.0.2.3", 9)),
            ("SIP/2.0/UDP h.example.com:5070;received=192.0.2.3", ("192.0.2.3", 5070)),
            ("SIP/2.0/UDP h.example.com:5070", ("h.example.com", 5070)),
            ("SIP/2.0/TLS h.example.com", ("h.example.com", 5061)),
            ("SIP/2.0/UDP [2001:db8::1];received=2001:db8::2;rport=7", ("2001:db8::2", 7)),
        ]
        for value, expected in cases:
            self.assertEqual(responseAddress(Via.parse(value)), expected, value)


class MatchingTests(LayerTestCase):
    """
    17.1.3, 17.2.3, 9.2 and the RFC 2543 rules.
    """

    def test_sameBranchOtherSentByIsAnotherTransaction(self) -> None:
        a = self.layer.receiveRequest(
            request("OPTIONS", via="SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsame"), US)
        b = self.layer.receiveRequest(
            request("OPTIONS", via="SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bKsame"), US)
        c = self.layer.receiveRequest(
            request("OPTIONS", via="SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKsame"), US)
        self.assertEqual(len({id(a), id(b), id(c)}), 3)
        self.assertEqual(len(self.tu.of("request")), 3)

    def test_cancelFlow(self) -> None:
        """
        A CANCEL (same branch) gets its own transaction; matchCancel finds
        the INVITE; the TU answers 200 to the CANCEL and 487 to the INVITE,
        which the ACK then confirms.
        """
        invite = request()
        inviteTx = self.layer.receiveRequest(invite, US)
        inviteTx.sendResponse(makeResponse(invite, 180, toTag="r"))
        cancel = makeCancel(invite)
        cancelTx = self.layer.receiveRequest(parse(cancel.serialize()), US)
        self.assertIsInstance(cancelTx, ServerNonInviteTransaction)
        self.assertIsNot(cancelTx, inviteTx)
        self.assertIs(self.layer.matchCancel(cancelTx.request), inviteTx)
        cancelTx.sendResponse(makeResponse(cancelTx.request, 200, toTag="r"))
        inviteTx.sendResponse(makeResponse(invite, 487, toTag="r"))
        self.assertEqual([m.status for _, m, _ in self.sent], [180, 200, 487])
        self.assertEqual([m.cseq.method for _, m, _ in self.sent], ["INVITE", "CANCEL", "INVITE"])
        self.layer.receiveRequest(request("ACK", toTag="r"), US)
        self.assertEqual(inviteTx.state, S.CONFIRMED)
        self.advanceTo(40.0)
        self.assertEmpty()

    def test_cancelWithoutInvite(self) -> None:
        cancel = makeCancel(request(branch="z9hG4bKgone"))
        self.assertIsNone(self.layer.matchCancel(cancel))
        # a CANCEL from another sent-by does not match either
        self.layer.receiveRequest(request(), US)
        other = makeCancel(request(sentBy="192.0.2.99:5060"))
        self.assertIsNone(self.layer.matchCancel(other))

    def test_makeCancel(self) -> None:
        """
        9.1: same Request-URI, Call-ID, To, From, CSeq number with CANCEL,
        a single Via equal to the INVITE's top Via, Route copied.
        """
        invite = request(extra="Route: <sip:p1.example.com;lr>\r\n"
                               "Via: SIP/2.0/UDP below.example.com;branch=z9hG4bKbelow\r\n")
        cancel = makeCancel(invite)
        self.assertEqual(cancel.method, "CANCEL")
        self.assertEqual(cancel.uri, invite.uri)
        self.assertEqual(cancel.headers.getAll("Via"), [invite.headers.getAll("Via")[0]])
        self.assertEqual((cancel.callId, cancel.cseq.seq, cancel.cseq.method),
                         (invite.callId, 1, "CANCEL"))
        self.assertEqual(cancel.headers.get("To"), invite.headers.get("To"))
        self.assertEqual(cancel.headers.get("From"), invite.headers.get("From"))
        self.assertEqual([str(r.uri) for r in cancel.routes], ["sip:p1.example.com;lr"])
        self.assertEqual(cancel.serialize(), (
            "CANCEL sip:bob@192.0.2.10 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKclient1\r\n"
            "Max-Forwards: 70\r\n"
            "From: Alice <sip:alice@example.org>;tag=fromtag1\r\n"
            "To: <sip:bob@example.com>\r\n"
            "Call-ID: callid-1@198.51.100.7\r\n"
            "CSeq: 1 CANCEL\r\n"
            "Route: <sip:p1.example.com;lr>\r\n"
            "Content-Length: 0\r\n\r\n").encode())
        self.assertRaises(ValueError, makeCancel, request("OPTIONS"))

    def test_clientMatchesOnCSeqMethod(self) -> None:
        """
        The 200 to our CANCEL and the 487 to our INVITE share a branch and
        reach their own transactions; the 487 is ACKed.
        """
        inviteTx = self.layer.sendRequest(request(), PEER)
        self.layer.receiveResponse(respond(inviteTx.request, 180), PEER)
        cancelTx = self.layer.sendRequest(makeCancel(inviteTx.request), PEER)
        self.assertEqual(cancelTx.branch, inviteTx.branch)
        self.assertIs(self.layer.receiveResponse(respond(cancelTx.request, 200), PEER), cancelTx)
        self.assertIs(self.layer.receiveResponse(respond(inviteTx.request, 487), PEER), inviteTx)
        self.assertEqual((cancelTx.state, inviteTx.state), (S.COMPLETED, S.COMPLETED))
        self.assertEqual(self.sentTimes("ACK"), [0])

    def test_malformedResponseDropped(self) -> None:
        tx = self.layer.sendRequest(request("OPTIONS"), PEER)
        ok = respond(tx.request, 200)
        ok.headers.set("CSeq", "not a cseq")
        self.assertIsNone(self.layer.receiveResponse(ok, PEER))
        self.assertEqual((tx.state, self.tu.events), (S.TRYING, []))

    def test_requestWithoutVia(self) -> None:
        bare = request("OPTIONS")
        bare.headers.remove("Via")
        self.assertRaises(ValueError, self.layer.sendRequest, bare, PEER)
        self.assertIsNone(self.layer.receiveRequest(bare, US))
        self.assertEqual(len(self.layer), 0)
        # Nowhere to send a response without a Via (18.2.2): dropped.
        self.assertEqual(self.sent, [])
        self.assertEqual(self.tu.events, [])

    def test_responseWithTwoViasDropped(self) -> None:
        tx = self.layer.sendRequest(request("OPTIONS"), PEER)
        ok = respond(tx.request, 200)
        ok.headers.add("Via", "SIP/2.0/UDP extra.example.com;branch=z9hG4bKx")
        self.assertIsNone(self.layer.receiveResponse(ok, PEER))
        self.assertEqual(tx.state, S.TRYING)
        self.assertEqual(self.tu.events, [])

    def test_rfc4475BadBranchMatchedTheRfc2543Way(self) -> None:
        """
        RFC 4475 3.3.8: a branch of just the magic cookie is matched with
        the RFC 2543 fields; its retransmission is absorbed by the same
        transaction and gets the same response.
        """
        data = sharedTestdata("rfc4475", "badbranch.dat").read_bytes()
        first = parse(data)
        self.assertEqual(first.topVia.branch, "z9hG4bK")
        self.assertFalse(hasMagicCookie(first.topVia.branch))
        tx = self.layer.receiveRequest(first, ("192.0.2.1", 5060))
        self.assertEqual(serverKey(first)[0], "rfc2543")
        self.assertIs(self.layer.receiveRequest(parse(data), ("192.0.2.1", 5060)), tx)
        tx.sendResponse(makeResponse(tx.request, 200, toTag="b1"))
        self.assertIs(self.layer.receiveRequest(parse(data), ("192.0.2.1", 5060)), tx)
        self.assertEqual(len(self.tu.of("request")), 1)
        self.assertEqual([(m.status, addr) for _, m, addr in self.sent],
                         [(200, ("192.0.2.1", 5060))] * 2)
        # Another CSeq is another transaction.
        other = parse(data.replace(b"CSeq: 8 OPTIONS", b"CSeq: 9 OPTIONS"))
        self.assertIsNot(self.layer.receiveRequest(other, ("192.0.2.1", 5060)), tx)

    def test_rfc2543InviteAckMatching(self) -> None:
        """
        RFC 4475 inv2543 (no branch at all): a retransmission matches; the
        ACK matches when its To tag is the one of the response sent, and
        not otherwise.
        """
        data = sharedTestdata("rfc4475", "inv2543.dat").read_bytes()
        source = ("192.0.2.77", 5060)
        tx = self.layer.receiveRequest(parse(data), source)
        self.assertIsInstance(tx, ServerInviteTransaction)
        self.assertEqual(tx.request.topVia.received, "192.0.2.77")
        self.assertEqual(tx.responseDestination, ("192.0.2.77", 5060))
        self.assertIs(self.layer.receiveRequest(parse(data), source), tx)
        tx.sendResponse(makeResponse(tx.request, 486, toTag="t2543"))

        def ackWithTag(tag: str) -> Request:
            invite = parse(data)
            headers = invite.headers.copy()
            headers.set("CSeq", "56 ACK")
            headers.set("To", f"{invite.headers.get('To')};tag={tag}")
            headers.remove("Content-Type")
            return Request("ACK", invite.uri, headers)

        self.assertIsNone(self.layer.receiveRequest(ackWithTag("other"), source))
        self.assertEqual(tx.state, S.COMPLETED)
        self.assertEqual(self.tu.events[-1][0:1], ("request",))
        self.assertIsNone(self.tu.events[-1][2])
        self.assertIs(self.layer.receiveRequest(ackWithTag("t2543"), source), tx)
        self.assertEqual(tx.state, S.CONFIRMED)
        # An INVITE with the same fields but a To tag is not a retransmission,
        # and cannot take the live transaction's place either.
        tagged = parse(data)
        tagged.headers.set("To", f"{tagged.headers.get('To')};tag=zz")
        self.assertIsNone(self.layer.receiveRequest(tagged, source))
        self.assertIs(self.layer.findServerTransaction(parse(data)), tx)
        # A CANCEL for it matches the RFC 2543 way too.
        cancel = makeCancel(parse(data))
        self.assertIs(self.layer.matchCancel(stampVia(cancel, *source)), tx)

    def test_badRequestAnswered400(self) -> None:
        """
        A CSeq method that is not the request method gets a stateless 400;
        no transaction, nothing to the TU.
        """
        bad = request("OPTIONS")
        bad.headers.set("CSeq", "1 INFO")
        self.assertIsNone(self.layer.receiveRequest(bad, US))
        self.assertEqual([m.status for _, m, _ in self.sent], [400])
        self.assertEqual(self.tu.events, [])
        self.assertEqual(len(self.layer), 0)
        badAck = request("ACK")
        badAck.headers.set("CSeq", "1 INVITE")
        self.assertIsNone(self.layer.receiveRequest(badAck, US))
        self.assertEqual(len(self.sent), 1)


class LimitTests(LayerTestCase):
    """
    maxTransactions and the 503 past it.
    """

    layerArgs = {"maxTransactions": 2, "retryAfter": 7}

    def test_503AtLimit(self) -> None:
        """
        Past the bound a new request gets 503 with Retry-After and no
        transaction; an ACK is never answered; a retransmission of a live
        transaction still matches; sendRequest refuses.
        """
        a = self.layer.receiveRequest(request("OPTIONS", branch="z9hG4bK1"), US)
        b = self.layer.receiveRequest(request("INVITE", branch="z9hG4bK2"), US)
        self.assertIsNone(self.layer.receiveRequest(request("OPTIONS", branch="z9hG4bK3"), US))
        when, busy, addr = self.sent[-1]
        self.assertEqual((busy.status, busy.headers.get("Retry-After"), addr), (503, "7", US))
        self.assertIsNotNone(busy.toAddr.tag)
        self.assertEqual(busy.topVia.branch, "z9hG4bK3")
        self.assertEqual(len(self.tu.of("request")), 2)
        count = len(self.sent)
        self.assertIsNone(self.layer.receiveRequest(request("ACK", branch="z9hG4bK4"), US))
        self.assertEqual(len(self.sent), count)
        self.assertIs(self.layer.receiveRequest(request("OPTIONS", branch="z9hG4bK1"), US), a)
        self.assertRaises(TransactionLimitError, self.layer.sendRequest, request("OPTIONS"), PEER)
        a.sendResponse(makeResponse(a.request, 200, toTag="x"))
        b.sendResponse(makeResponse(b.request, 200, toTag="y"))
        self.advanceTo(32.0)
        self.assertEmpty()
        self.assertIsNotNone(self.layer.receiveRequest(request("OPTIONS", branch="z9hG4bK5"), US))


class CleanupTests(LayerTestCase):
    """
    Every transaction leaves the tables and every timer is cancelled.
    """

    def test_completeExchangesLeaveNothing(self) -> None:
        """
        A mix of complete exchanges, client and server, INVITE and not,
        2xx and failures, CANCEL, a timeout and a transport error: after the
        timers run out the tables and the clock are empty, and the TU was
        told of every termination.
        """
        created = []
        self.tu.onRequest = lambda req, tx: created.append(tx) if tx is not None else None

        # client INVITE 200 + the TU's ACK
        c1 = self.layer.sendRequest(request(branch="z9hG4bKc1"), PEER)
        self.layer.receiveResponse(respond(c1.request, 100), PEER)
        self.layer.receiveResponse(respond(c1.request, 200), PEER)
        self.assertTrue(self.layer.sendAck(request("ACK", branch=None, toTag="totag9"), PEER))
        # client INVITE 486
        c2 = self.layer.sendRequest(request(branch="z9hG4bKc2", seq=2), PEER)
        self.layer.receiveResponse(respond(c2.request, 486), PEER)
        # client INVITE cancelled
        c3 = self.layer.sendRequest(request(branch="z9hG4bKc3", seq=3), PEER)
        self.layer.receiveResponse(respond(c3.request, 180), PEER)
        c3c = self.layer.sendRequest(makeCancel(c3.request), PEER)
        self.layer.receiveResponse(respond(c3c.request, 200), PEER)
        self.layer.receiveResponse(respond(c3.request, 487), PEER)
        # client OPTIONS 200, and one that times out
        c4 = self.layer.sendRequest(request("OPTIONS", branch="z9hG4bKc4"), PEER)
        self.layer.receiveResponse(respond(c4.request, 200), PEER)
        c5 = self.layer.sendRequest(request("OPTIONS", branch="z9hG4bKc5"), PEER)
        # server INVITE 200 + ACK, server INVITE 486 + ACK, server BYE
        s1 = self.layer.receiveRequest(request(branch="z9hG4bKs1"), US)
        s1.sendResponse(makeResponse(s1.request, 200, toTag="a"))
        self.layer.receiveRequest(request("ACK", branch="z9hG4bKs1ack", toTag="a"), US)
        s2 = self.layer.receiveRequest(request(branch="z9hG4bKs2", seq=2), US)
        s2.sendResponse(makeResponse(s2.request, 486, toTag="b"))
        self.layer.receiveRequest(request("ACK", branch="z9hG4bKs2", seq=2, toTag="b"), US)
        s3 = self.layer.receiveRequest(request("BYE", branch="z9hG4bKs3", seq=3, toTag="a"), US)
        s3.sendResponse(makeResponse(s3.request, 200))
        # server INVITE whose 486 is never ACKed (Timer H)
        s4 = self.layer.receiveRequest(request(branch="z9hG4bKs4", seq=4), US)
        s4.sendResponse(makeResponse(s4.request, 486, toTag="d"))
        # a transport error
        self.failSend = True
        c6 = self.layer.sendRequest(request("INFO", branch="z9hG4bKc6"), PEER)
        self.failSend = False

        everything = [c1, c2, c3, c3c, c4, c5, c6, s1, s2, s3, s4]
        self.assertEqual(created, [s1, s2, s3, s4])
        self.assertGreater(len(self.clock.getDelayedCalls()), 0)
        self.advanceTo(200.0)
        self.assertEmpty()
        self.assertTrue(all(tx.state is S.TERMINATED for tx in everything))
        terminated = [e[1] for e in self.tu.of("terminated")]
        self.assertEqual(sorted(map(id, terminated)), sorted(map(id, everything)))
        self.assertEqual({id(e[1]) for e in self.tu.of("timeout")}, {id(c5), id(s4)})

    def test_stop(self) -> None:
        self.layer.sendRequest(request(), PEER)
        self.layer.receiveRequest(request("OPTIONS", branch="z9hG4bKs"), US)
        self.layer.stop()
        self.assertEmpty()
        self.assertEqual(self.tu.kinds(), ["request", "terminated", "terminated"])

    @given(st.lists(st.tuples(st.sampled_from([100, 180, 183, 200, 202, 302, 486, 503]),
                              st.floats(0, 40)), max_size=8),
           st.sampled_from(["INVITE", "OPTIONS"]),
           st.sampled_from(["UDP", "TCP"]))
    def test_anyResponseSequenceTerminates(self, responses, method, transport) -> None:
        """
        Whatever responses arrive, whenever: each client transaction passes
        up at most one final response class (plus 2xx retransmissions for
        INVITE), ACKs exactly the non-2xx finals it saw after completing,
        and ends with empty tables and no pending calls.
        """
        self.setUp()
        tx = self.layer.sendRequest(request(method, transport=transport), PEER)
        for status, when in sorted(responses, key=lambda r: r[1]):
            self.advanceTo(max(when, self.clock.seconds()))
            self.layer.receiveResponse(respond(tx.request, status), PEER)
        self.advanceTo(self.clock.seconds() + 500)
        self.assertEmpty()
        finals = [e[1].status for e in self.tu.of("response")
                  if e[1].status >= 200 and e[2] is tx]
        if method == "INVITE" and finals and finals[0] < 300:
            self.assertTrue(all(200 <= s < 300 for s in finals), finals)
        else:
            self.assertLessEqual(len(finals), 1)
        acks = self.sentTimes("ACK")
        if method == "OPTIONS" or not finals or finals[0] < 300:
            self.assertEqual(acks, [])
        else:
            self.assertGreaterEqual(len(acks), 1)


class Invite2xxRetransmitterTests(SynchronousTestCase):
    """
    13.3.1.4: the UAS core re-sends its 2xx at T1 doubling to T2 until ACK.
    """

    def test_scheduleAndTimeout(self) -> None:
        clock = Clock()
        sent, timeouts = [], []
        r = Invite2xxRetransmitter(clock, lambda: sent.append(clock.seconds()),
                                   lambda: timeouts.append(clock.seconds()))
        r.start()
        self.assertTrue(r.active)
        advanceTo(clock, 40)
        self.assertEqual(sent, [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
        self.assertEqual(timeouts, [32.0])
        self.assertEqual(r.retransmissions, 10)
        self.assertFalse(r.active)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_ackStops(self) -> None:
        clock = Clock()
        sent, timeouts = [], []
        r = Invite2xxRetransmitter(clock, lambda: sent.append(clock.seconds()),
                                   lambda: timeouts.append(1), t1=0.1, t2=1.0)
        r.start()
        advanceTo(clock, 0.35)
        r.ackReceived()
        advanceTo(clock, 100)
        self.assertEqual([round(t, 6) for t in sent], [0.1, 0.3])
        self.assertEqual(timeouts, [])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_resendErrorLogged(self) -> None:
        clock = Clock()

        def fail():
            raise OSError("down")
        r = Invite2xxRetransmitter(clock, fail)
        r.start()
        advanceTo(clock, 2)
        self.assertEqual(r.retransmissions, 2)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)
        r.stop()
        self.assertEqual(clock.getDelayedCalls(), [])


class BackToBackTests(SynchronousTestCase):
    """
    Two layers talking through an in-memory lossy link: the state machines
    recover from loss by their own retransmissions.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.lost: set[int] = set()
        self.count = 0
        self.alice = RecordingUser()
        self.bob = RecordingUser()
        self.aliceLayer = TransactionLayer(self.clock, self.link(US, "bob"), self.alice)
        self.bobLayer = TransactionLayer(self.clock, self.link(PEER, "alice"), self.bob)

    def link(self, source, peer):
        def send(message, addr) -> None:
            self.count += 1
            if self.count in self.lost:
                return
            layer = self.bobLayer if peer == "bob" else self.aliceLayer
            received = parse(message.serialize())
            if received.isRequest:
                layer.receiveRequest(received, source)
            else:
                layer.receiveResponse(received, source)
        return send

    def test_lossyNonInviteRecovers(self) -> None:
        """
        The OPTIONS (datagram 1) and the first 200 (datagram 3) are lost:
        Timer E re-sends, the server transaction re-sends its 200 for the
        retransmission, and each side's TU sees the exchange exactly once.
        """
        self.lost = {1, 3}
        self.bob.onRequest = lambda req, tx: tx.sendResponse(makeResponse(req, 200, toTag="b"))
        tx = self.aliceLayer.sendRequest(request("OPTIONS", branch=None), PEER)
        advanceTo(self.clock, 0.5)   # datagram 2: OPTIONS again; 3: its 200, lost
        self.assertEqual(tx.state, S.TRYING)
        advanceTo(self.clock, 1.5)   # 4: OPTIONS again; 5: the 200 re-sent
        self.assertEqual(tx.state, S.COMPLETED)
        self.assertEqual(self.count, 5)
        self.assertEqual(len(self.bob.of("request")), 1)
        self.assertEqual([e[1].status for e in self.alice.of("response")], [200])
        advanceTo(self.clock, 40.0)
        self.assertEqual((len(self.aliceLayer), len(self.bobLayer)), (0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_lostAckRecovers(self) -> None:
        """
        The ACK for a 603 is lost: Timer G re-sends the 603, the client
        transaction (Completed) ACKs it again without bothering its TU.
        """
        self.bob.onRequest = lambda req, tx: (
            tx.sendResponse(makeResponse(req, 603, toTag="d")) if tx is not None else None)
        self.lost = {3}  # 1 INVITE, 2 603, 3 ACK (lost)
        tx = self.aliceLayer.sendRequest(request(branch=None), PEER)
        server = next(iter(self.bobLayer.serverTransactions.values()))
        self.assertEqual(server.state, S.COMPLETED)
        advanceTo(self.clock, 0.5)  # 4: 603 again (Timer G), 5: ACK again
        self.assertEqual(server.state, S.CONFIRMED)
        self.assertEqual(tx.state, S.COMPLETED)
        self.assertEqual([e[1].status for e in self.alice.of("response")], [603])
        advanceTo(self.clock, 40.0)
        self.assertEqual((len(self.aliceLayer), len(self.bobLayer)), (0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class DocsExampleTests(SynchronousTestCase):
    """
    The runnable example in docs/sip-transactions.rst runs and prints what
    the page says it prints.
    """

    def test_example(self) -> None:
        import contextlib
        import io
        import textwrap
        from pathlib import Path

        rst = Path(__file__).resolve().parent.parent / "docs" / "sip-transactions.rst"
        lines = rst.read_text().splitlines()

        def block(after: str) -> str:
            start = lines.index(after) + 1
            body = []
            for line in lines[start:]:
                if line and not line.startswith(" "):
                    break
                body.append(line)
            return textwrap.dedent("\n".join(body)).strip("\n")

        code = block(".. code:: python")
        expected = block("It prints::")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(rst), "exec"), {"__name__": "docs_example"})
        self.assertEqual(textwrap.dedent(out.getvalue()).strip("\n"), expected)


class AckBeforeRetryTests(SynchronousTestCase):
    """
    The ACK for a 300-699 response leaves before the TU hears of the
    response, so a TU that answers a 401/407 at once with a new INVITE puts
    it on the wire after the ACK (RFC 3261 17.1.1.3).
    """

    def test_ackPrecedesTuRetry(self) -> None:
        clock = Clock()
        sent: list[str] = []
        layer: TransactionLayer

        class RetryingTu:
            def requestReceived(self, request, tx):
                pass

            def responseReceived(self, response, tx):
                if response.status == 407:
                    retry = request(branch="z9hG4bKretry2")
                    layer.sendRequest(retry, PEER)

            def transactionTimedOut(self, tx):
                pass

            def transportError(self, tx, failure):
                pass

            def transactionTerminated(self, tx):
                pass

        layer = TransactionLayer(clock, lambda message, addr: sent.append(
            message.method if message.isRequest else str(message.status)), RetryingTu())
        tx = layer.sendRequest(request(), PEER)
        layer.receiveResponse(respond(tx.request, 407), PEER)
        self.assertEqual(sent, ["INVITE", "ACK", "INVITE"])
