"""
Tests for L{lmevoip.keepalive.sip}: in-dialog OPTIONS keep-alive, alone
with fakes and inside the engine against a scripted far end, all on a
L{task.Clock}.
"""

from __future__ import annotations

import random
from typing import Any, NamedTuple

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from lmevoip.engine import EngineConfig, VoipMediaEngine
from lmevoip.events import EventName
from lmevoip.interfaces import ISipKeepAlive
from lmevoip.keepalive.interval import KeepAliveParameterError, maximumInterval
from lmevoip.keepalive.scheduler import DEFAULT_TOLERANCE, KeepAliveScheduler
from lmevoip.keepalive.sip import SipKeepAliveService, normaliseAddress
from lmevoip.returns import TelephonyReturnValue
from lmevoip.sip.call import CallError, DialogGone, RequestTimeout
from lmevoip.testing import FakeSipPeer, FakeUdpReactor, RecordingEngineObserver
from tests.test_keepalive_scheduler import advanceTo

PEER = ("192.0.2.7", 5060)
OTHER = ("192.0.2.8", 5060)


class FakeResponse(NamedTuple):
    status: int


class FakeTransport:
    """
    An ISipTransport's sending side: records datagrams, calls observers.
    """

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock
        self.observers: list[Any] = []
        self.sent: list[tuple[float, Any, tuple[str, int]]] = []

    def addSendObserver(self, observer: Any) -> None:
        self.observers.append(observer)

    def removeSendObserver(self, observer: Any) -> None:
        self.observers.remove(observer)

    def send(self, message: Any, addr: tuple[str, int]) -> int:
        self.sent.append((self.clock.seconds(), message, addr))
        for observer in list(self.observers):
            observer(addr, 2)
        return 2


class FakeCall:
    """
    What the service needs of a call: sendOptions (each returns a Deferred
    the test fires, or fires at once with C{autoAnswer}), its address and
    whether it is active.
    """

    def __init__(self, transport: FakeTransport, address: tuple[str, int] = PEER,
                 autoAnswer: int | None = 200) -> None:
        self.transport = transport
        self.address = address
        self.autoAnswer = autoAnswer
        self.active = True
        self.options: list[tuple[float, defer.Deferred]] = []

    def sendOptions(self) -> defer.Deferred:
        # The OPTIONS itself goes out on the flow, as the real call's does.
        self.transport.send(b"OPTIONS", self.address)
        d: defer.Deferred = defer.Deferred()
        self.options.append((self.transport.clock.seconds(), d))
        if self.autoAnswer is not None:
            d.callback(FakeResponse(self.autoAnswer))
        return d

    def times(self) -> list[float]:
        return [when for when, _ in self.options]


def assertClose(testCase: SynchronousTestCase, actual: float, expected: float, tolerance: float) -> None:
    testCase.assertLessEqual(abs(actual - expected), tolerance, f"{actual} is not {expected} +- {tolerance}")


class ServiceTestsMixin:
    natSessionTimeMs = 2000

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.scheduler = KeepAliveScheduler(self.clock)
        self.scheduler.log = Logger(observer=lambda event: None)
        self.transport = FakeTransport(self.clock)
        self.failures: list[tuple[Any, dict]] = []
        self.limits: list[Any] = []
        self.service = self.makeService()
        self.scheduler.startService()
        self.service.startService()

    def makeService(self, **kwargs: Any) -> SipKeepAliveService:
        service = SipKeepAliveService(
            self.scheduler, self.transport, random.Random(1),
            onFailure=lambda key, **fields: self.failures.append((key, fields)),
            onFailureLimit=self.limits.append, **kwargs)
        service.log = Logger(observer=lambda event: None)
        return service

    def watch(self, call: FakeCall, key: Any = 0) -> None:
        self.service.watch(key, call.sendOptions, lambda: call.address, lambda: call.active)


class InterfaceTests(ServiceTestsMixin, SynchronousTestCase):
    def test_provides(self) -> None:
        """
        The service provides L{ISipKeepAlive}.
        """
        self.assertTrue(verifyObject(ISipKeepAlive, self.service))

    def test_badParameters(self) -> None:
        """
        A bad NAT session time raises and changes nothing; so does a bad
        C{maxFailures}.
        """
        self.service.setNatSessionTime(2000)
        for bad in (0, -1, 999, 3_600_001, 1.5e3, "2000", True):
            self.assertRaises(KeepAliveParameterError, self.service.setNatSessionTime, bad)
        self.assertEqual(self.service.natSessionTimeMs, 2000)
        for bad in (0, -1, 1.5, True):
            self.assertRaises(KeepAliveParameterError, self.makeService, maxFailures=bad)

    def test_normaliseAddress(self) -> None:
        """
        Addresses from URIs and from the socket layer compare equal.
        """
        self.assertEqual(normaliseAddress(("[::1]", 5060)), ("::1", 5060))
        self.assertEqual(normaliseAddress(("0:0::1", 5060)), ("::1", 5060))
        self.assertEqual(normaliseAddress(("Proxy.Example.COM", 5060)), ("proxy.example.com", 5060))


class SchedulingTests(ServiceTestsMixin, SynchronousTestCase):
    def test_disabledSendsNothing(self) -> None:
        """
        A watched call gets no keep-alive while no NAT session time is set.
        """
        call = FakeCall(self.transport)
        self.watch(call)
        advanceTo(self.clock, 60)
        self.assertEqual(call.options, [])
        self.assertIsNone(self.service.flowOf(0))
        self.assertEqual(len(self.scheduler), 0)

    def test_interval(self) -> None:
        """
        With keep-alive on, an idle call gets an OPTIONS at least every
        0.8 * natSessionTime - 0.1 s (never more than 10 % sooner), and the
        first one within one interval.
        """
        call = FakeCall(self.transport)
        self.watch(call)
        self.service.setNatSessionTime(self.natSessionTimeMs)
        ceiling = maximumInterval(self.natSessionTimeMs)
        advanceTo(self.clock, 30)
        times = call.times()
        self.assertGreater(len(times), 15)
        self.assertLessEqual(times[0], ceiling)
        gaps = [b - a for a, b in zip(times, times[1:])]
        interval = self.service.flowOf(0).interval
        self.assertTrue(0.9 * ceiling <= interval <= ceiling, interval)
        for gap in gaps:
            assertClose(self, gap, interval, DEFAULT_TOLERANCE)

    def test_signallingTrafficPostpones(self) -> None:
        """
        Any datagram sent to the call's signalling address postpones the
        keep-alive; traffic to another address does not.
        """
        call = FakeCall(self.transport)
        self.watch(call)
        self.service.setNatSessionTime(self.natSessionTimeMs)
        # Busy signalling every second: never idle for an interval.
        for second in range(11):
            advanceTo(self.clock, second)
            self.transport.send(b"INFO", PEER)
        self.assertEqual(call.options, [])
        # Traffic elsewhere does not count.
        for tick in range(1, 11):
            advanceTo(self.clock, 10 + tick)
            self.transport.send(b"NOTIFY", OTHER)
        times = call.times()
        self.assertTrue(times)
        interval = self.service.flowOf(0).interval
        assertClose(self, times[0], 10 + interval, DEFAULT_TOLERANCE)

    def test_bracketedIpv6Address(self) -> None:
        """
        A call whose address is written with brackets is touched by sends
        the socket layer reports without them.
        """
        call = FakeCall(self.transport, ("[2001:db8::7]", 5060))
        self.watch(call)
        self.service.setNatSessionTime(self.natSessionTimeMs)
        for second in range(6):
            advanceTo(self.clock, second)
            self.transport.send(b"INFO", ("2001:db8::7", 5060))
        self.assertEqual(call.options, [])

    def test_inactiveSendsNothing(self) -> None:
        """
        Nothing is sent while the call says it is not active (not yet
        confirmed, or ending).
        """
        call = FakeCall(self.transport)
        call.active = False
        self.watch(call)
        self.service.setNatSessionTime(self.natSessionTimeMs)
        advanceTo(self.clock, 10)
        self.assertEqual(call.options, [])
        self.assertEqual(self.transport.sent, [])
        call.active = True
        advanceTo(self.clock, 12)
        self.assertTrue(call.options)

    def test_unwatchStops(self) -> None:
        """
        After C{unwatch} nothing more is sent and the flow is gone.
        """
        call = FakeCall(self.transport)
        self.watch(call)
        self.service.setNatSessionTime(self.natSessionTimeMs)
        advanceTo(self.clock, 5)
        count = len(call.options)
        self.assertTrue(self.service.unwatch(0))
        self.assertFalse(self.service.unwatch(0))
        advanceTo(self.clock, 30)
        self.assertEqual(len(call.options), count)
        self.assertEqual(len(self.scheduler), 0)
        self.assertEqual(self.service.snapshot(), [])

    def test_changeTakesEffectAtOnce(self) -> None:
        """
        Changing the NAT session time re-intervals the active flow at once:
        the next OPTIONS is due one new interval after the last send.
        """
        call = FakeCall(self.transport)
        self.watch(call)
        self.service.setNatSessionTime(60_000)
        advanceTo(self.clock, 100)
        lastSent = self.service.flowOf(0).lastSent
        count = len(call.options)
        self.service.setNatSessionTime(2000)
        interval = self.service.flowOf(0).interval
        self.assertLessEqual(interval, maximumInterval(2000))
        advanceTo(self.clock, 101)
        self.assertEqual(len(call.options), count + 1)
        expected = max(lastSent + interval, 100)
        assertClose(self, call.times()[count], expected, DEFAULT_TOLERANCE)

    def test_disableRemovesFlows(self) -> None:
        """
        Disabling removes every flow; enabling again re-creates them.
        """
        calls = [FakeCall(self.transport, ("192.0.2.%d" % n, 5060)) for n in range(1, 4)]
        for index, call in enumerate(calls):
            self.watch(call, index)
        self.service.setNatSessionTime(2000)
        self.assertEqual(len(self.scheduler), 3)
        self.service.setNatSessionTime(None)
        self.assertEqual(len(self.scheduler), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        advanceTo(self.clock, 20)
        self.assertEqual(sum(len(call.options) for call in calls), 0)
        self.service.setNatSessionTime(2000)
        self.assertEqual(len(self.scheduler), 3)

    def test_idleFlowSentSoonOnEnable(self) -> None:
        """
        Enabling keep-alive on a call idle for longer than the interval
        sends its first keep-alive at once, not a random time later.
        """
        call = FakeCall(self.transport)
        self.watch(call)
        self.transport.send(b"ACK", PEER)
        advanceTo(self.clock, 50)
        self.service.setNatSessionTime(2000)
        advanceTo(self.clock, 50 + DEFAULT_TOLERANCE)
        self.assertEqual(call.times(), [50])

    def test_spreadFirstKeepAlives(self) -> None:
        """
        Many calls enabled at the same instant send their first keep-alives
        spread over one interval, not together.
        """
        calls = [FakeCall(self.transport, ("10.0.%d.%d" % divmod(n, 250), 5060)) for n in range(200)]
        for index, call in enumerate(calls):
            self.watch(call, index)
        self.service.setNatSessionTime(20_000)
        advanceTo(self.clock, maximumInterval(20_000))
        firsts = sorted(call.times()[0] for call in calls)
        self.assertEqual(len(firsts), 200)
        # 15.9 s interval: no 100 ms window holds more than a few.
        worst = max(sum(1 for t in firsts if start <= t < start + 0.1) for start in firsts)
        self.assertLess(worst, 10)

    def test_addressChange(self) -> None:
        """
        The address is asked at each keep-alive: after a target refresh the
        new address's traffic counts, the old one's does not.
        """
        call = FakeCall(self.transport)
        self.watch(call)
        self.service.setNatSessionTime(2000)
        advanceTo(self.clock, 2)
        call.address = OTHER
        advanceTo(self.clock, 4)
        count = len(call.options)
        for tick in range(10):
            advanceTo(self.clock, 4 + tick)
            self.transport.send(b"INFO", OTHER)
        self.assertEqual(len(call.options), count)
        self.assertEqual(self.service.snapshot()[0]["remote"], "192.0.2.8:5060")

    def test_stopAndStart(self) -> None:
        """
        Stopping the service removes flows and the transport observer;
        starting again restores them.
        """
        call = FakeCall(self.transport)
        self.watch(call)
        self.service.setNatSessionTime(2000)
        self.service.stopService()
        self.assertEqual(self.transport.observers, [])
        self.assertEqual(len(self.scheduler), 0)
        self.service.startService()
        self.assertEqual(len(self.transport.observers), 1)
        self.assertEqual(len(self.scheduler), 1)


class ResponseTests(ServiceTestsMixin, SynchronousTestCase):
    def test_roundTrip(self) -> None:
        """
        Any final response proves the flow alive and records the round
        trip.
        """
        call = FakeCall(self.transport, autoAnswer=None)
        self.watch(call)
        self.service.setNatSessionTime(2000)
        advanceTo(self.clock, self.service.flowOf(0).deadline)
        self.assertEqual(len(call.options), 1)
        sentAt = call.options[0][0]
        advanceTo(self.clock, sentAt + 0.25)
        call.options[0][1].callback(FakeResponse(405))
        state = self.service.snapshot()[0]
        assertClose(self, state["lastRoundTrip"], 0.25, 1e-9)
        self.assertEqual(state["lastStatus"], 405)
        self.assertEqual(state["failureCount"], 0)
        self.assertEqual(self.failures, [])

    def test_failureStatuses(self) -> None:
        """
        481 and 408 responses are failures, reported with the status.
        """
        call = FakeCall(self.transport, autoAnswer=481)
        self.watch(call)
        self.service.setNatSessionTime(2000)
        advanceTo(self.clock, self.service.flowOf(0).deadline)
        call.autoAnswer = 408
        advanceTo(self.clock, self.service.flowOf(0).deadline)
        self.assertEqual(self.failures, [
            (0, {"status": 481, "reason": "dialog-gone", "consecutiveFailures": 1}),
            (0, {"status": 408, "reason": "timeout", "consecutiveFailures": 2}),
        ])
        state = self.service.snapshot()[0]
        self.assertEqual(state["failureCount"], 2)
        self.assertIn("KeepAliveFailed", state["lastError"])

    def test_errors(self) -> None:
        """
        A failed Deferred is a failure: a transaction timeout (no status),
        a DialogGone (481).
        """
        call = FakeCall(self.transport, autoAnswer=None)
        self.watch(call)
        self.service.setNatSessionTime(2000)
        advanceTo(self.clock, self.service.flowOf(0).deadline)
        call.options[0][1].errback(RequestTimeout("no final response"))
        self.assertEqual(self.failures[-1], (0, {"status": None, "reason": "timeout", "consecutiveFailures": 1}))
        advanceTo(self.clock, self.service.flowOf(0).deadline)
        call.options[1][1].errback(DialogGone(_Response481()))
        self.assertEqual(self.failures[-1], (0, {"status": 481, "reason": "dialog-gone", "consecutiveFailures": 2}))

    def test_successResetsConsecutive(self) -> None:
        """
        A response resets the consecutive failure count.
        """
        call = FakeCall(self.transport, autoAnswer=408)
        self.watch(call)
        self.service.setNatSessionTime(2000)
        advanceTo(self.clock, self.service.flowOf(0).deadline)
        self.assertEqual(self.service.snapshot()[0]["consecutiveFailures"], 1)
        call.autoAnswer = 200
        advanceTo(self.clock, self.service.flowOf(0).deadline)
        state = self.service.snapshot()[0]
        self.assertEqual((state["consecutiveFailures"], state["failures"]), (0, 1))

    def test_failureLimit(self) -> None:
        """
        With C{maxFailures}, reaching that many consecutive failures calls
        C{onFailureLimit} once.
        """
        self.service.stopService()
        self.service = self.makeService(maxFailures=2)
        self.service.startService()
        call = FakeCall(self.transport, autoAnswer=408)
        self.watch(call, "line7")
        self.service.setNatSessionTime(2000)
        advanceTo(self.clock, 20)
        self.assertGreater(len(self.failures), 3)
        self.assertEqual(self.limits, ["line7"])

    def test_endedCallIsNoFailure(self) -> None:
        """
        An outstanding OPTIONS that fails after the call was unwatched (the
        call ended) is no keep-alive failure.
        """
        call = FakeCall(self.transport, autoAnswer=None)
        self.watch(call)
        self.service.setNatSessionTime(2000)
        advanceTo(self.clock, self.service.flowOf(0).deadline)
        self.service.unwatch(0)
        call.options[0][1].errback(CallError("call ended"))
        self.assertEqual(self.failures, [])

    def test_refusedAtOnce(self) -> None:
        """
        A call that refuses the OPTIONS synchronously (a failed Deferred)
        counts a failure and leaves nothing outstanding.
        """
        self.service.watch(0, lambda: defer.fail(CallError("no dialog")), lambda: PEER)
        self.service.setNatSessionTime(2000)
        advanceTo(self.clock, 2)
        self.assertEqual(self.failures[0], (0, {"status": None, "reason": "error", "consecutiveFailures": 1}))
        state = self.service.snapshot()[0]
        self.assertFalse(state["outstanding"])
        self.assertEqual(state["nullSent"], 0)
        self.assertIn("no dialog", state["lastError"])

    def test_crlfWhileOutstanding(self) -> None:
        """
        When the interval elapses with the previous OPTIONS unanswered, a
        CRLF refreshes the flow instead of a second OPTIONS.
        """
        call = FakeCall(self.transport, autoAnswer=None)
        self.watch(call)
        self.service.setNatSessionTime(2000)
        advanceTo(self.clock, 10)
        self.assertEqual(len(call.options), 1)
        crlfs = [when for when, data, addr in self.transport.sent if data == b"\r\n" and addr == PEER]
        self.assertGreater(len(crlfs), 4)
        call.options[0][1].callback(FakeResponse(200))
        advanceTo(self.clock, 13)
        self.assertEqual(len(call.options), 2)


class _Response481:
    status = 481
    reason = "Call/Transaction Does Not Exist"


class EngineTestsMixin:
    """
    An engine on a FakeUdpReactor calling a FakeSipPeer.
    """

    def setUp(self) -> None:
        self.reactor = FakeUdpReactor()
        self.peer = FakeSipPeer(self.reactor, "127.0.0.2", 5060, answerDelay=1.0)
        config = EngineConfig(sipHost="127.0.0.1", sipPort=5060, lines=2)
        self.engine = VoipMediaEngine(config, reactor=self.reactor, rng=random.Random(3))
        self.engine.scheduler.log = Logger(observer=lambda event: None)
        self.engine.sipKeepAlive.log = Logger(observer=lambda event: None)
        self.events = RecordingEngineObserver()
        self.engine.addObserver(self.events)
        self.engine.startService()
        self.addCleanup(self.engine.stopService)
        self.addCleanup(self.peer.stop)

    def runUntil(self, until: float, step: float = 0.01) -> None:
        while self.reactor.seconds() < until - 1e-9:
            self.reactor.advance(min(step, until - self.reactor.seconds()))

    def optionsTimes(self) -> list[float]:
        return [t for t, request in self.peer.requests("OPTIONS")]

    def signallingTimes(self) -> list[float]:
        """
        When the engine sent anything to the peer's SIP address.
        """
        return [d.time for d in self.reactor.sentTo(("127.0.0.2", 5060))]


class EngineSipKeepAliveTests(EngineTestsMixin, SynchronousTestCase):
    def test_onlyWhileConfirmed(self) -> None:
        """
        Keep-alive on from the start: no OPTIONS before the answer (the peer
        answers after 1 s, longer than the interval) nor after the BYE; in
        between, OPTIONS in the dialog and the flow never idle for the NAT
        session time.
        """
        self.assertIs(self.engine.enableKeepAliveTransmissions(True, False, 1000), TelephonyReturnValue.SipSuccess)
        self.engine.makeCall(0, "bob", "127.0.0.2", 5060)
        self.runUntil(1.5)
        connectedAt = self.events.last(EventName.SipOutgoingCallConnected).time
        self.runUntil(10)
        self.engine.terminateCall(0)
        byeAt = self.reactor.seconds()
        self.runUntil(20)
        times = self.optionsTimes()
        self.assertGreater(len(times), 10)
        self.assertTrue(all(connectedAt < t < byeAt for t in times), (connectedAt, byeAt, times))
        invite = self.peer.requests("INVITE")[0][1]
        for _, options in self.peer.requests("OPTIONS"):
            self.assertEqual(options.callId, invite.callId)
            self.assertEqual(options.toAddr.tag, "peer-tag")
        sent = [t for t in self.signallingTimes() if connectedAt <= t <= byeAt]
        gaps = [b - a for a, b in zip([connectedAt] + sent, sent + [byeAt])]
        self.assertLess(max(gaps), 1.0)
        self.assertEqual(self.engine.getKeepAliveState(), [])

    def test_offSendsNothing(self) -> None:
        """
        With keep-alive off, a quiet call sends no OPTIONS.
        """
        self.engine.makeCall(0, "bob", "127.0.0.2", 5060)
        self.runUntil(15)
        self.assertEqual(self.optionsTimes(), [])

    def test_enableOnActiveCall(self) -> None:
        """
        Enabling on a call already connected takes effect at once; disabling
        stops it.
        """
        self.engine.makeCall(0, "bob", "127.0.0.2", 5060)
        self.runUntil(5)
        self.assertEqual(self.optionsTimes(), [])
        self.engine.enableKeepAliveTransmissions(True, False, 2000)
        self.runUntil(5.05)
        self.assertEqual(len(self.optionsTimes()), 1)
        self.runUntil(10)
        self.assertGreater(len(self.optionsTimes()), 3)
        self.engine.enableKeepAliveTransmissions(False, False, 0)
        count = len(self.optionsTimes())
        self.runUntil(20)
        self.assertEqual(len(self.optionsTimes()), count)

    def test_failureEvent481(self) -> None:
        """
        A 481 answer raises SipKeepAliveFailure for the line, and the call
        ends (the dialog is gone).
        """
        self.peer.optionsStatus = 481
        self.engine.enableKeepAliveTransmissions(True, False, 2000)
        self.engine.makeCall(1, "bob", "127.0.0.2", 5060)
        self.runUntil(5)
        failure = self.events.last(EventName.SipKeepAliveFailure)
        self.assertEqual((failure.line, failure.status, failure.reason), (1, 481, "dialog-gone"))
        complete = self.events.last(EventName.SipCallComplete)
        self.assertEqual((complete.line, complete.reason, complete.status), (1, "dialog-gone", 481))

    def test_failureEventTimeout(self) -> None:
        """
        An OPTIONS that is never answered raises SipKeepAliveFailure with
        C{SipCallTimeOut} after the transaction timeout (64*T1); the call
        stays up, its flow refreshed by CRLFs meanwhile.
        """
        self.peer.optionsStatus = None
        self.engine.enableKeepAliveTransmissions(True, False, 2000)
        self.engine.makeCall(0, "bob", "127.0.0.2", 5060)
        self.runUntil(40)
        failure = self.events.last(EventName.SipKeepAliveFailure)
        self.assertIsNotNone(failure)
        self.assertIs(failure.result, TelephonyReturnValue.SipCallTimeOut)
        self.assertEqual(failure.line, 0)
        self.assertEqual(self.engine.getLineStatus(0).state, "Connected")
        crlfs = [d for d in self.reactor.sentTo(("127.0.0.2", 5060)) if d.data == b"\r\n"]
        self.assertTrue(crlfs)

    def test_endCallAfterFailures(self) -> None:
        """
        With C{sipKeepAliveMaxFailures}, the engine ends the call after that
        many consecutive failures.
        """
        self.engine.stopService()
        config = EngineConfig(sipHost="127.0.0.1", sipPort=5060, sipKeepAliveMaxFailures=1)
        self.engine = VoipMediaEngine(config, reactor=self.reactor)
        self.engine.scheduler.log = Logger(observer=lambda event: None)
        self.engine.addObserver(self.events)
        self.engine.startService()
        self.addCleanup(self.engine.stopService)
        self.peer.optionsStatus = 408
        self.engine.enableKeepAliveTransmissions(True, False, 2000)
        self.engine.makeCall(0, "bob", "127.0.0.2", 5060)
        self.runUntil(6)
        self.assertEqual(len(self.events.named(EventName.SipKeepAliveFailure)), 1)
        self.assertEqual(self.events.last(EventName.SipCallComplete).reason, "local-hangup")
        self.assertEqual(len(self.peer.requests("BYE")), 1)
