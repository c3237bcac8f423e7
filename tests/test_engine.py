"""
Tests for L{lmevoip.engine}: the API's return values for every bad input,
the phone lines' state machine, events in both styles, the noise gate,
keep-alive settings on active calls, and the service tree's start and stop.

Everything runs on a L{FakeUdpReactor} (a task.Clock with fake UDP) but
L{RealReactorTests}, which checks on the real reactor that stopping the
engine leaves no timer and no socket behind.
"""

from __future__ import annotations

import os
import random
from typing import Any

from twisted.application.service import IServiceCollection, MultiService
from twisted.internet import defer, reactor as globalReactor
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorUDP
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from lmevoip.engine import EngineConfig, LineState, VoipMediaEngine
from lmevoip.events import EngineEvent, EngineObserver, EngineStopped, EventName
from lmevoip.interfaces import (
    ICall,
    ICallMediaHandler,
    ICallObserver,
    IEngineObserver,
    IUserAgentObserver,
    IVoipMediaEngine,
)
from lmevoip.keepalive.null import CRLF
from lmevoip.returns import TelephonyError, TelephonyReturnValue
from lmevoip.rtp.audio import ToneSource
from lmevoip.rtp.cn import CN_PAYLOAD_TYPE, SILENCE_LEVEL, ComfortNoise
from lmevoip.rtp.gate import MAX_THRESHOLD
from lmevoip.rtp.packet import RtpPacket
from lmevoip.testing import FakeSipPeer, FakeUdpReactor, RecordingEngineObserver
from tests.peers.ports import processSocketInodes

R = TelephonyReturnValue
PEER = ("127.0.0.2", 5060)


def quiet(engine: VoipMediaEngine) -> None:
    """
    Silence the engine's chattiest loggers (expected failures in tests).
    """
    for component in (engine, engine.scheduler, engine.sipKeepAlive, engine.nullKeepAlive):
        component.log = Logger(observer=lambda event: None)


class EngineTestsMixin:
    """
    Engine A (127.0.0.1) on a fake network with a scripted peer at
    127.0.0.2:5060.
    """

    lines = 2

    def setUp(self) -> None:
        self.reactor = FakeUdpReactor()
        self.peer = FakeSipPeer(self.reactor, *PEER)
        self.addCleanup(self.peer.stop)
        self.engine = self.makeEngine("127.0.0.1", lines=self.lines)
        self.events = RecordingEngineObserver()
        self.engine.addObserver(self.events)

    def makeEngine(self, host: str, start: bool = True, **kwargs: Any) -> VoipMediaEngine:
        config = EngineConfig(sipHost=host, sipPort=5060, **kwargs)
        engine = VoipMediaEngine(config, reactor=self.reactor, rng=random.Random(7))
        quiet(engine)
        if start:
            engine.startService()
            self.addCleanup(engine.stopService)
        return engine

    def runFor(self, seconds: float, step: float = 0.01) -> None:
        end = self.reactor.seconds() + seconds
        while self.reactor.seconds() < end - 1e-9:
            self.reactor.advance(min(step, end - self.reactor.seconds()))

    def connect(self, line: int = 0) -> None:
        self.assertIs(self.engine.makeCall(line, "bob", *PEER), R.SipSuccess)
        self.runFor(0.05)
        self.assertEqual(self.engine.getLineStatus(line).state, LineState.CONNECTED)


class InterfaceTests(EngineTestsMixin, SynchronousTestCase):
    def test_providers(self) -> None:
        """
        The engine provides IVoipMediaEngine; the observers IEngineObserver.
        """
        self.assertTrue(verifyObject(IVoipMediaEngine, self.engine))
        self.assertTrue(verifyObject(IEngineObserver, self.events))
        self.assertTrue(verifyObject(IEngineObserver, EngineObserver()))

    def test_internalProviders(self) -> None:
        """
        What the engine hands the user agent and its calls, and the fake
        reactor's ports, provide their interfaces.
        """
        self.connect()
        call = self.engine.getCall(0)
        self.assertTrue(verifyObject(ICall, call))
        self.assertTrue(verifyObject(ICallObserver, self.engine._lines[0].observer))
        self.assertTrue(verifyObject(ICallMediaHandler, call.mediaHandler))
        self.assertTrue(verifyObject(IUserAgentObserver, self.engine.userAgent.observer))
        self.assertTrue(verifyObject(IReactorUDP, self.reactor))
        self.assertTrue(verifyObject(IListeningPort, self.peer.listening))

    def test_serviceTree(self) -> None:
        """
        The engine is a MultiService whose children are the SIP transport,
        the pacer and the keep-alive services.
        """
        self.assertIsInstance(self.engine, MultiService)
        self.assertTrue(IServiceCollection.providedBy(self.engine))
        names = [child.name for child in self.engine]
        self.assertEqual(names, ["sip-transport", "pacer", "keepalive-scheduler", "null-keepalive",
                                 "sip-keepalive", "rtp-keepalive"])
        self.assertTrue(all(child.running for child in self.engine))

    def test_badConfig(self) -> None:
        """
        A bad configuration is refused at construction.
        """
        for bad in (dict(sipHost="0.0.0.0"), dict(sipHost="example.com"), dict(lines=0), dict(codecs=("G729",)),
                    dict(rtpPortLow=30000, rtpPortHigh=20000), dict(noiseThreshold=-1), dict(t1=0),
                    dict(keepAliveLosses=9), dict(sipKeepAliveMaxFailures=0), dict(sipPort=70000)):
            self.assertRaises(ValueError, VoipMediaEngine, EngineConfig(**bad), self.reactor)


class ReturnValueTests(EngineTestsMixin, SynchronousTestCase):
    lineMethods = (
        ("makeCall", ("bob", "127.0.0.2", 5060)),
        ("makeCallUri", ("sip:bob@127.0.0.2",)),
        ("goOffHook", ()),
        ("abortIncomingCall", (486, "Busy Here")),
        ("terminateCall", ()),
        ("holdCall", ()),
        ("resumeCall", ()),
    )

    def test_notEnabled(self) -> None:
        """
        Before start and after stop, every action returns SipNotEnabled.
        """
        stopped = self.makeEngine("127.0.0.3", start=False)
        for name, args in self.lineMethods:
            self.assertIs(getattr(stopped, name)(0, *args), R.SipNotEnabled, name)
        self.assertIs(stopped.sendSipKeepAlive("127.0.0.2", 5060, True, 5), R.SipNotEnabled)
        self.engine.stopService()
        self.assertIs(self.engine.makeCall(0, "bob", *PEER), R.SipNotEnabled)

    def test_badPhoneLine(self) -> None:
        """
        A line that is not an int within 0 .. lines-1 gives SipBadPhoneLine.
        """
        for line in (-1, 2, 99, "0", 1.0, True, None):
            for name, args in self.lineMethods:
                self.assertIs(getattr(self.engine, name)(line, *args), R.SipBadPhoneLine, (name, line))
            self.assertRaises(TelephonyError, self.engine.getLineStatus, line)
            self.assertRaises(TelephonyError, self.engine.getCall, line)
            failure = self.failureResultOf(self.engine.whenLineState(line, LineState.IDLE), TelephonyError)
            self.assertIs(failure.value.value, R.SipBadPhoneLine)

    def test_makeCallBadParameters(self) -> None:
        """
        A bad user, host or port gives SipBadParameter and leaves the line
        idle; a host name is refused (no DNS), as is an address of the other
        family.
        """
        bad = [("", "127.0.0.2", 5060), (None, "127.0.0.2", 5060), ("a b", "127.0.0.2", 5060),
               ("bob", "example.com", 5060), ("bob", "::1", 5060), ("bob", "0.0.0.0", 5060),
               ("bob", "224.0.0.1", 5060), ("bob", 5, 5060), ("bob", "127.0.0.2", 0),
               ("bob", "127.0.0.2", 65536), ("bob", "127.0.0.2", "5060"), ("bob", "127.0.0.2", True)]
        for args in bad:
            self.assertIs(self.engine.makeCall(0, *args), R.SipBadParameter, args)
        for uri in ("tel:+15551234", "sips:bob@127.0.0.2", "not a uri", 5, "sip:bob@example.com",
                    "sip:bob@[::1]"):
            self.assertIs(self.engine.makeCallUri(0, uri), R.SipBadParameter, uri)
        self.assertEqual(self.engine.getLineStatus(0).state, LineState.IDLE)
        self.assertEqual(self.peer.received, [])

    def test_lineStateErrors(self) -> None:
        """
        Actions that do not fit the line's state name why.
        """
        self.assertIs(self.engine.goOffHook(0), R.SipNoCallOnLine)
        self.assertIs(self.engine.terminateCall(0), R.SipNoCallOnLine)
        self.assertIs(self.engine.holdCall(0), R.SipNoCallOnLine)
        self.assertIs(self.engine.resumeCall(0), R.SipNoCallOnLine)
        self.assertIs(self.engine.abortIncomingCall(0, 486, None), R.SipNoCallOnLine)
        self.peer.answerDelay = 1.0
        self.assertIs(self.engine.makeCall(0, "bob", *PEER), R.SipSuccess)
        self.assertIs(self.engine.makeCall(0, "carol", *PEER), R.SipLineBusy)
        self.assertIs(self.engine.goOffHook(0), R.SipAlreadyOffHook)
        self.assertIs(self.engine.abortIncomingCall(0, 486, None), R.SipNoCallOnLine)
        self.runFor(0.05)
        self.assertIs(self.engine.holdCall(0), R.SipCallNotConnected)
        self.runFor(1)
        self.assertIs(self.engine.resumeCall(0), R.SipNotOnHold)
        self.assertIs(self.engine.holdCall(0), R.SipSuccess)
        self.assertIs(self.engine.holdCall(0), R.SipCallFailure)  # re-INVITE in progress
        self.runFor(0.05)
        self.assertIs(self.engine.holdCall(0), R.SipAlreadyOnHold)
        self.assertIs(self.engine.goOffHook(0), R.SipAlreadyOffHook)

    def test_abortBadParameters(self) -> None:
        """
        C{abortIncomingCall} needs a 300-699 status and a printable reason.
        """
        for code, reason in ((200, None), (700, None), ("486", None), (486.0, None), (486, "Busy\r\nX: y"),
                             (486, 5)):
            self.assertIs(self.engine.abortIncomingCall(0, code, reason), R.SipBadParameter, (code, reason))

    def test_noiseGateParameters(self) -> None:
        """
        Out-of-range or mistyped noise settings give SipBadParameter and
        change nothing.
        """
        self.assertEqual((self.engine.getMinNoiseThreshold(), self.engine.getMaxNoiseThreshold()), (0, 0x7FFF))
        before = self.engine.getNoiseThreshold()
        for bad in (-1, MAX_THRESHOLD + 1, 1.5, True, "5", None):
            self.assertIs(self.engine.setNoiseThreshold(bad), R.SipBadParameter, bad)
        self.assertEqual(self.engine.getNoiseThreshold(), before)
        for bad in (1, "yes", None):
            self.assertIs(self.engine.setNoiseDiscriminationEnableState(bad), R.SipBadParameter)
        for bad in (-1, 10_001, 5.0, True):
            self.assertIs(self.engine.setSilenceDecay(bad), R.SipBadParameter)
        self.assertIs(self.engine.setNoiseThreshold(0), R.SipSuccess)
        self.assertIs(self.engine.setNoiseThreshold(MAX_THRESHOLD), R.SipSuccess)

    def test_keepAliveParameters(self) -> None:
        """
        A NAT session time the engine cannot honour gives SipBadParameter
        and changes nothing; 1,000 ms (for tests) is accepted; disabling
        does not look at it.
        """
        self.assertIs(self.engine.enableKeepAliveTransmissions(True, True, 30_000), R.SipSuccess)
        for bad in (0, -1, 999, 3_600_001, 2000.0, "2000", None, True):
            self.assertIs(self.engine.enableKeepAliveTransmissions(True, False, bad), R.SipBadParameter, bad)
        for bad in (1, None, "yes"):
            self.assertIs(self.engine.enableKeepAliveTransmissions(bad, True, 2000), R.SipBadParameter)
            self.assertIs(self.engine.enableKeepAliveTransmissions(True, bad, 2000), R.SipBadParameter)
        self.assertEqual((self.engine.sipKeepAlive.natSessionTimeMs, self.engine.rtpKeepAlive.natSessionTimeMs),
                         (30_000, 30_000))
        self.assertIs(self.engine.enableKeepAliveTransmissions(True, True, 1000), R.SipSuccess)
        self.assertIs(self.engine.enableKeepAliveTransmissions(False, False, 0), R.SipSuccess)
        self.assertEqual((self.engine.sipKeepAlive.natSessionTimeMs, self.engine.rtpKeepAlive.natSessionTimeMs),
                         (None, None))

    def test_sendSipKeepAliveParameters(self) -> None:
        """
        A bad host, port, state or period gives SipBadParameter.
        """
        for args in (("", 5060, True, 5), ("bad host!", 5060, True, 5), ("127.0.0.2", 0, True, 5),
                     ("127.0.0.2", 5060, "yes", 5), ("127.0.0.2", 5060, True, 0), ("127.0.0.2", 5060, True, 10**6)):
            self.assertIs(self.engine.sendSipKeepAlive(*args), R.SipBadParameter, args)
        self.assertEqual(self.engine.getKeepAliveState(), [])

    def test_observerParameters(self) -> None:
        """
        An observer must be an IEngineObserver or callable; removing an
        unknown one gives SipInvalidHandle; an unknown event name or state
        fails the Deferred.
        """
        self.assertIs(self.engine.addObserver(5), R.SipBadParameter)
        self.assertIs(self.engine.removeObserver(object()), R.SipInvalidHandle)
        self.assertIs(self.engine.removeObserver(self.events), R.SipSuccess)
        self.assertIs(self.engine.removeObserver(self.events), R.SipInvalidHandle)
        failure = self.failureResultOf(self.engine.whenEvent("NoSuchEvent"), TelephonyError)
        self.assertIs(failure.value.value, R.SipBadParameter)
        self.failureResultOf(self.engine.whenEvent(timeout=-1), TelephonyError)
        failure = self.failureResultOf(self.engine.whenLineState(0, "Dancing"), TelephonyError)
        self.assertIs(failure.value.value, R.SipBadParameter)

    def test_neverRaises(self) -> None:
        """
        An unexpected error inside an action is logged and returned as
        SipCallFailure; the engine keeps working.
        """
        def explode(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("boom")

        self.patch(self.engine.userAgent, "call", explode)
        self.assertIs(self.engine.makeCall(0, "bob", *PEER), R.SipCallFailure)
        self.assertEqual(self.engine.getLineStatus(0).state, LineState.IDLE)
        self.assertEqual(self.engine.portAllocator.inUse, 0)


class OutgoingCallTests(EngineTestsMixin, SynchronousTestCase):
    def test_answered(self) -> None:
        """
        An answered call: Calling, RemoteRinging, Connected; hang-up:
        Disconnecting, Idle; events in that order; status fields filled.
        """
        self.peer.answerDelay = 0.5
        self.assertIs(self.engine.makeCall(1, "bob", *PEER), R.SipSuccess)
        status = self.engine.getLineStatus(1)
        self.assertEqual((status.state, status.direction, status.remoteParty),
                         (LineState.CALLING, "outgoing", "sip:bob@127.0.0.2:5060"))
        self.runFor(1)
        status = self.engine.getLineStatus(1)
        self.assertEqual((status.state, status.codec), (LineState.CONNECTED, "PCMU"))
        self.assertIs(self.engine.terminateCall(1), R.SipSuccess)
        self.assertEqual(self.engine.getLineStatus(1).state, LineState.DISCONNECTING)
        self.runFor(0.05)
        self.assertEqual(self.events.lineStates(1), ["Calling", "RemoteRinging", "Connected", "Disconnecting", "Idle"])
        self.assertEqual(self.events.names(line=1), ["SipCallRinging", "SipOutgoingCallConnected", "SipCallComplete"])
        ringing = self.events.last(EventName.SipCallRinging)
        self.assertEqual((ringing.status, ringing.line), (180, 1))
        complete = self.events.last(EventName.SipCallComplete)
        self.assertEqual((complete.reason, complete.result), ("local-hangup", R.SipSuccess))
        self.assertEqual(len(self.peer.requests("BYE")), 1)
        self.assertEqual(self.engine.getLineStatus(1).direction, None)
        self.assertEqual(self.engine.portAllocator.inUse, 0)

    def test_remoteHangup(self) -> None:
        """
        The far end's BYE ends the call: SipCallComplete, remote-hangup.
        """
        self.connect()
        self.peer.hangUp()
        self.runFor(0.05)
        complete = self.events.last(EventName.SipCallComplete)
        self.assertEqual((complete.line, complete.reason), (0, "remote-hangup"))
        self.assertEqual(self.engine.getLineStatus(0).state, LineState.IDLE)

    def test_failures(self) -> None:
        """
        A refused call is SipCallFailed with a result naming why.
        """
        for status, result in ((486, R.SipRemoteBusy), (600, R.SipRemoteBusy), (603, R.SipCallRejected),
                               (404, R.SipCallRejected)):
            self.peer.inviteStatus = status
            self.engine.makeCall(0, "bob", *PEER)
            self.runFor(0.05)
            failed = self.events.last(EventName.SipCallFailed)
            self.assertEqual((failed.status, failed.result, failed.reason), (status, result, "failed"))
            self.assertEqual(self.engine.getLineStatus(0).state, LineState.IDLE)

    def test_timeout(self) -> None:
        """
        No answer at all (nobody there): SipCallFailed with SipCallTimeOut
        after Timer B (64*T1).
        """
        self.assertIs(self.engine.makeCall(0, "bob", "127.0.0.9", 5060), R.SipSuccess)
        self.runFor(31.9, step=0.5)
        self.assertEqual(self.events.named(EventName.SipCallFailed), [])
        self.runFor(0.2)
        failed = self.events.last(EventName.SipCallFailed)
        self.assertIs(failed.result, R.SipCallTimeOut)

    def test_cancel(self) -> None:
        """
        Hanging up a ringing call cancels it: SipCallFailed, SipCallCancelled.
        """
        self.peer.answerDelay = 5
        self.engine.makeCall(0, "bob", *PEER)
        self.runFor(0.05)
        self.engine.terminateCall(0)
        self.runFor(0.1)
        self.assertEqual(len(self.peer.requests("CANCEL")), 1)
        self.assertIs(self.events.last(EventName.SipCallFailed).result, R.SipCallCancelled)

    def test_makeCallUri(self) -> None:
        """
        makeCallUri places the same call from a URI.
        """
        self.assertIs(self.engine.makeCallUri(0, "sip:carol@127.0.0.2:5060;transport=udp"), R.SipSuccess)
        self.runFor(0.05)
        self.assertEqual(self.engine.getLineStatus(0).remoteParty, "sip:carol@127.0.0.2:5060;transport=udp")
        self.assertEqual(self.engine.getLineStatus(0).state, LineState.CONNECTED)


class TwoEngineTestsMixin(EngineTestsMixin):
    """
    Engine A (127.0.0.1) calls engine B (127.0.0.2, which replaces the
    scripted peer).
    """

    def setUp(self) -> None:
        EngineTestsMixin.setUp(self)
        self.peer.stop()
        self.callee = self.makeEngine("127.0.0.2", lines=2)
        self.calleeEvents = RecordingEngineObserver()
        self.callee.addObserver(self.calleeEvents)

    def ring(self) -> None:
        self.assertIs(self.engine.makeCall(0, "bob", *PEER), R.SipSuccess)
        self.runFor(0.05)
        self.assertEqual(self.calleeEvents.names(), ["SipOkToAnswerCall"])


class IncomingCallTests(TwoEngineTestsMixin, SynchronousTestCase):
    def test_answer(self) -> None:
        """
        An incoming call rings on line 0 (SipOkToAnswerCall); goOffHook
        answers it: Answering, then Connected on the ACK, both sides.
        """
        self.ring()
        ringing = self.calleeEvents.last(EventName.SipOkToAnswerCall)
        self.assertEqual((ringing.line, ringing.remoteParty), (0, "sip:lmevoip@127.0.0.1"))
        status = self.callee.getLineStatus(0)
        self.assertEqual((status.state, status.direction), (LineState.INCOMING, "incoming"))
        self.assertIs(self.callee.goOffHook(0), R.SipSuccess)
        self.assertEqual(self.callee.getLineStatus(0).state, LineState.ANSWERING)
        self.runFor(0.05)
        self.assertEqual(self.calleeEvents.lineStates(0), ["Incoming", "Answering", "Connected"])
        self.assertEqual(self.calleeEvents.names(), ["SipOkToAnswerCall", "SipIncomingCallConnected"])
        self.assertIn("SipOutgoingCallConnected", self.events.names())
        self.engine.terminateCall(0)
        self.runFor(0.05)
        self.assertEqual(self.calleeEvents.last(EventName.SipCallComplete).reason, "remote-hangup")

    def test_abort(self) -> None:
        """
        abortIncomingCall refuses with the given status: the caller sees
        it in SipCallFailed.
        """
        self.ring()
        self.assertIs(self.callee.abortIncomingCall(0, 603, "Decline"), R.SipSuccess)
        self.runFor(0.05)
        failed = self.events.last(EventName.SipCallFailed)
        self.assertEqual((failed.status, failed.result), (603, R.SipCallRejected))
        self.assertEqual(self.calleeEvents.last(EventName.SipCallFailed).reason, "rejected")
        self.assertEqual(self.callee.getLineStatus(0).state, LineState.IDLE)

    def test_callerCancels(self) -> None:
        """
        The caller giving up while it rings: the callee's SipCallFailed says
        SipCallCancelled.
        """
        self.ring()
        self.engine.terminateCall(0)
        self.runFor(0.05)
        self.assertIs(self.calleeEvents.last(EventName.SipCallFailed).result, R.SipCallCancelled)
        self.assertIs(self.callee.goOffHook(0), R.SipNoCallOnLine)

    def test_freeLineAndBusy(self) -> None:
        """
        Incoming calls take the first free line; with none free, 486 and
        SipIncomingCallRefused.
        """
        third = self.makeEngine("127.0.0.3", lines=2)
        thirdEvents = RecordingEngineObserver()
        third.addObserver(thirdEvents)
        self.ring()
        self.engine.makeCall(1, "bob", *PEER)
        self.runFor(0.05)
        self.assertEqual([e.line for e in self.calleeEvents.named(EventName.SipOkToAnswerCall)], [0, 1])
        third.makeCall(0, "bob", *PEER)
        self.runFor(0.05)
        refused = self.calleeEvents.last(EventName.SipIncomingCallRefused)
        self.assertEqual((refused.line, refused.status, refused.result), (None, 486, R.SipNoFreeLine))
        failed = thirdEvents.last(EventName.SipCallFailed)
        self.assertEqual((failed.status, failed.result), (486, R.SipRemoteBusy))
        self.assertEqual(self.callee.portAllocator.inUse, 2)

    def test_holdResume(self) -> None:
        """
        holdCall/resumeCall: both sides see SipCallHeld/SipCallResumed (with
        byPeer) and the Held line state; the held side's RTP session stops
        sending audio.
        """
        self.ring()
        self.callee.goOffHook(0)
        self.runFor(0.05)
        self.assertIs(self.engine.holdCall(0), R.SipSuccess)
        self.runFor(0.05)
        held = self.calleeEvents.last(EventName.SipCallHeld)
        self.assertTrue(held.details["byPeer"])
        self.assertFalse(self.events.last(EventName.SipCallHeld).details["byPeer"])
        callerStatus, calleeStatus = self.engine.getLineStatus(0), self.callee.getLineStatus(0)
        self.assertEqual((callerStatus.state, callerStatus.localHold), (LineState.HELD, True))
        self.assertEqual((calleeStatus.state, calleeStatus.remoteHold), (LineState.HELD, True))
        self.assertFalse(self.callee.getCall(0).mediaHandler.session.sending)
        self.assertIs(self.engine.resumeCall(0), R.SipSuccess)
        self.runFor(0.05)
        self.assertTrue(self.calleeEvents.last(EventName.SipCallResumed).details["byPeer"])
        self.assertEqual(self.callee.getLineStatus(0).state, LineState.CONNECTED)
        self.assertTrue(self.callee.getCall(0).mediaHandler.session.sending)


class EventStyleTests(EngineTestsMixin, SynchronousTestCase):
    def test_methodPerEvent(self) -> None:
        """
        An EngineObserver subclass gets one method per event; events it
        has no method for go to unhandledEvent.
        """
        calls: list[str] = []

        class Phone(EngineObserver):
            def sipOutgoingCallConnected(self, event: EngineEvent) -> None:
                calls.append(f"connected {event.line}")

            def unhandledEvent(self, event: EngineEvent) -> None:
                calls.append(str(event.name))

        self.engine.addObserver(Phone())
        self.connect()
        self.assertIn("connected 0", calls)
        self.assertIn("SipCallRinging", calls)

    def test_callableAndFaultyObservers(self) -> None:
        """
        A callable is an observer; one that raises is logged and does not
        stop the others.
        """
        seen: list[EngineEvent] = []

        def broken(event: EngineEvent) -> None:
            raise ValueError("observer bug")

        self.engine.addObserver(broken)
        self.engine.addObserver(seen.append)
        self.connect()
        self.assertTrue(seen)
        self.assertEqual([e.name for e in seen], [e.name for e in self.events.events])
        self.assertEqual(self.engine._events.observerErrors, len(seen))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), len(seen))
        self.engine.removeObserver(broken)

    def test_whenEvent(self) -> None:
        """
        whenEvent fires with the next matching event.
        """
        connected = self.engine.whenEvent(EventName.SipOutgoingCallConnected, line=0)
        anyRinging = self.engine.whenEvent("SipCallRinging", predicate=lambda event: event.status == 180)
        self.assertNoResult(connected)
        self.engine.makeCall(0, "bob", *PEER)
        self.runFor(0.05)
        self.assertEqual(self.successResultOf(connected).line, 0)
        self.assertEqual(self.successResultOf(anyRinging).status, 180)

    def test_whenLineState(self) -> None:
        """
        whenLineState fires at once for the current state, else when the
        line enters the state; it can time out and be cancelled.
        """
        self.assertEqual(self.successResultOf(self.engine.whenLineState(0, LineState.IDLE)).state, LineState.IDLE)
        connected = self.engine.whenLineState(0, "Connected")
        timedOut = self.engine.whenLineState(1, LineState.CONNECTED, timeout=1)
        cancelled = self.engine.whenLineState(1, LineState.HELD)
        cancelled.cancel()
        self.failureResultOf(cancelled, defer.CancelledError)
        self.engine.makeCall(0, "bob", *PEER)
        self.runFor(0.05)
        status = self.successResultOf(connected)
        self.assertEqual((status.line, status.state, status.callId), (0, LineState.CONNECTED,
                                                                     self.engine.getCall(0).callId))
        self.runFor(1)
        self.failureResultOf(timedOut, defer.TimeoutError)
        self.assertEqual(self.engine._events.pendingWaiters, 0)

    def test_stopFailsWaiters(self) -> None:
        """
        Stopping the engine fails pending waiters (and cancels their
        timeouts).
        """
        waiting = self.engine.whenEvent(EventName.SipOkToAnswerCall, timeout=60)
        self.engine.stopService()
        self.failureResultOf(waiting, EngineStopped)
        self.runFor(0.1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_eventRecord(self) -> None:
        """
        Events are immutable records with a plain-dict form.
        """
        self.connect()
        event = self.events.last(EventName.SipOutgoingCallConnected)
        record = event.asDict()
        self.assertEqual((record["name"], record["line"], record["details"]), ("SipOutgoingCallConnected", 0,
                                                                              {"codec": "PCMU"}))
        def mutate() -> None:
            event.details["x"] = 1  # type: ignore[index]

        self.assertRaises(TypeError, mutate)


class NoiseGateTests(EngineTestsMixin, SynchronousTestCase):
    def test_appliedToEveryLine(self) -> None:
        """
        Settings apply to every line's gate, including an active call's.
        """
        self.connect()
        session = self.engine.getCall(0).mediaHandler.session
        self.assertIs(self.engine.setNoiseThreshold(1234), R.SipSuccess)
        self.assertIs(self.engine.setSilenceDecay(60), R.SipSuccess)
        self.assertIs(self.engine.setNoiseDiscriminationEnableState(True), R.SipSuccess)
        for line in (0, 1):
            gate = self.engine._lines[line].gate
            self.assertEqual((gate.threshold, gate.decayMs, gate.enabled), (1234, 60, True))
        self.assertIs(session.gate, self.engine._lines[0].gate)
        self.assertEqual((self.engine.getNoiseThreshold(), self.engine.getSilenceDecay(),
                          self.engine.getNoiseDiscriminationEnableState()), (1234, 60, True))

    def test_gateSuppressesSilence(self) -> None:
        """
        The default source is silence: with the gate off it is sent, with
        the gate on nothing is.
        """
        self.connect()
        rtp = ("127.0.0.2", self.peer.rtpPort)
        self.runFor(1)
        self.assertGreater(len(self.reactor.sentTo(rtp, since=0.1)), 40)
        self.engine.setNoiseDiscriminationEnableState(True)
        mark = self.reactor.seconds()
        self.runFor(2)
        self.assertEqual(self.reactor.sentTo(rtp, since=mark + 0.05), [])


class KeepAliveTests(EngineTestsMixin, SynchronousTestCase):
    def test_rtpOnActiveCall(self) -> None:
        """
        RTP keep-alive enabled on an active call whose gate is closed sends
        silence frames at once-per-interval; disabling removes the flow.
        """
        self.engine.setNoiseDiscriminationEnableState(True)
        self.connect()
        rtp = ("127.0.0.2", self.peer.rtpPort)
        self.runFor(3)
        self.assertEqual(self.reactor.sentTo(rtp, since=0.5), [])
        mark = self.reactor.seconds()
        self.assertIs(self.engine.enableKeepAliveTransmissions(False, True, 2000), R.SipSuccess)
        self.runFor(6)
        sent = [d.time for d in self.reactor.sentTo(rtp, since=mark)]
        self.assertGreaterEqual(len(sent), 4)
        self.assertLess(sent[0] - mark, 0.05)  # idle for 3 s already: at once
        self.assertLess(max(b - a for a, b in zip(sent, sent[1:])), 1.5 + 0.01)
        [state] = [s for s in self.engine.getKeepAliveState() if s["enabled"]]
        self.assertEqual((state["kind"], state["line"], state["framesSent"]), ("rtp", 0, len(sent)))
        self.engine.enableKeepAliveTransmissions(False, False, 0)
        self.assertEqual([s["enabled"] for s in self.engine.getKeepAliveState()], [False, False])
        mark = self.reactor.seconds()
        self.runFor(5)
        self.assertEqual(self.reactor.sentTo(rtp, since=mark + 0.01), [])

    def test_comfortNoiseKeepAlive(self) -> None:
        """
        With comfortNoise on both sides, CN is negotiated and the RTP
        keep-alives are CN packets at the silence level.
        """
        self.peer.stop()
        caller = self.makeEngine("127.0.0.3", comfortNoise=True, noiseGateEnabled=True)
        callee = self.makeEngine("127.0.0.2", comfortNoise=True)
        callee.addObserver(lambda event: event.name is EventName.SipOkToAnswerCall and callee.goOffHook(event.line))
        caller.enableKeepAliveTransmissions(False, True, 1000)
        caller.makeCall(0, "bob", *PEER)
        self.runFor(0.1)
        session = caller.getCall(0).mediaHandler.session
        self.assertEqual(session.media.comfortNoisePayloadType, CN_PAYLOAD_TYPE)
        mark = self.reactor.seconds()
        self.runFor(3)
        frames = [RtpPacket.parse(d.data) for d in self.reactor.datagrams
                  if d.time > mark and d.source == ("127.0.0.3", session.ports.rtpPort)]
        self.assertGreaterEqual(len(frames), 3)
        self.assertEqual({(p.payloadType, p.payload) for p in frames},
                         {(CN_PAYLOAD_TYPE, ComfortNoise(SILENCE_LEVEL).serialize())})

    def test_stateOfEveryFlow(self) -> None:
        """
        getKeepAliveState lists the SIP and RTP flows of each call and the
        NULL destinations.
        """
        self.engine.enableKeepAliveTransmissions(True, True, 5000)
        self.connect(0)
        self.connect(1)
        self.engine.sendSipKeepAlive("127.0.0.5", 5070, True, 10)
        self.runFor(8)
        states = self.engine.getKeepAliveState()
        self.assertEqual(sorted((s["kind"], s.get("line")) for s in states),
                         [("null", None), ("rtp", 0), ("rtp", 1), ("sip", 0), ("sip", 1)])
        sip = [state for state in states if state["kind"] == "sip"]
        for state in sip:
            self.assertEqual(state["remote"], "127.0.0.2:5060")
            self.assertLessEqual(state["interval"], 3.9)
        # Both calls go to the same address: one NAT binding, so each
        # call's OPTIONS also refreshes the other's flow.
        self.assertTrue(any(state["lastRoundTrip"] is not None for state in sip))

    def test_callsToCome(self) -> None:
        """
        Keep-alive enabled before a call applies to it when it connects,
        and stops with it.
        """
        self.engine.enableKeepAliveTransmissions(True, True, 2000)
        self.connect()
        self.assertEqual(sorted(s["kind"] for s in self.engine.getKeepAliveState()), ["rtp", "sip"])
        self.engine.terminateCall(0)
        self.assertEqual(self.engine.getKeepAliveState(), [])
        self.assertEqual(len(self.engine.scheduler), 0)

    def test_sendSipKeepAlive(self) -> None:
        """
        CRLFs go from the SIP socket to the destination every period and
        stop when disabled.
        """
        self.assertIs(self.engine.sendSipKeepAlive("127.0.0.5", 5070, True, 2), R.SipSuccess)
        self.runFor(9)
        crlfs = self.reactor.sentTo(("127.0.0.5", 5070))
        self.assertEqual([d.data for d in crlfs], [CRLF] * 5)
        self.assertEqual({d.source for d in crlfs}, {("127.0.0.1", 5060)})
        self.assertEqual([round(d.time) for d in crlfs], [0, 2, 4, 6, 8])
        self.assertIs(self.engine.sendSipKeepAlive("127.0.0.5", 5070, False, 2), R.SipSuccess)
        self.runFor(5)
        self.assertEqual(len(self.reactor.sentTo(("127.0.0.5", 5070))), 5)

    def test_nullResolutionFailure(self) -> None:
        """
        A host name that does not resolve raises
        SipNullKeepAliveResolutionFailure.
        """
        engine = self.makeEngine("127.0.0.3", resolve=lambda host: defer.fail(OSError(f"no {host}")))
        events = RecordingEngineObserver()
        engine.addObserver(events)
        self.assertIs(engine.sendSipKeepAlive("nowhere.invalid", 5060, True, 5), R.SipSuccess)
        failure = events.last(EventName.SipNullKeepAliveResolutionFailure)
        self.assertEqual((failure.details["host"], failure.result), ("nowhere.invalid", R.SipResolutionFailure))


class ServiceTests(EngineTestsMixin, SynchronousTestCase):
    def test_stopLeavesNothing(self) -> None:
        """
        Stopping with calls up (keep-alive on) ends them with BYE and
        leaves no delayed call and no bound port.
        """
        self.peer.stop()
        callee = self.makeEngine("127.0.0.2")
        self.engine.enableKeepAliveTransmissions(True, True, 2000)
        self.engine.sendSipKeepAlive("127.0.0.5", 5060, True, 5)
        self.engine.makeCall(0, "bob", *PEER)
        self.runFor(0.05)
        callee.goOffHook(0)
        self.runFor(3)
        self.assertEqual(self.engine.getLineStatus(0).state, LineState.CONNECTED)
        stopped = self.engine.stopService()
        self.successResultOf(stopped)
        self.assertEqual(self.events.last(EventName.SipCallComplete).reason, "shutdown")
        self.runFor(0.05)
        self.assertEqual(callee.getLineStatus(0).state, LineState.IDLE)
        self.successResultOf(callee.stopService())
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.reactor.openPorts, 0)
        self.assertFalse(any(child.running for child in self.engine))

    def test_restart(self) -> None:
        """
        A stopped engine can be started again and calls again.
        """
        self.successResultOf(self.engine.stopService())
        self.engine.startService()
        self.connect()

    def test_portTaken(self) -> None:
        """
        When the SIP port is taken, start raises and nothing runs.
        """
        clash = self.makeEngine("127.0.0.1", start=False)
        self.assertRaises(CannotListenError, clash.startService)
        self.assertFalse(clash.running)
        self.assertFalse(any(child.running for child in clash))


class RealReactorTests(TestCase):
    """
    On the real reactor (loopback only): two engines, a call between them
    with keep-alive on, then stop; no timer and no socket is left.
    """

    timeout = 20

    @defer.inlineCallbacks
    def test_noTimerOrSocketLeft(self):
        before = set(globalReactor.getDelayedCalls())
        socketsBefore = processSocketInodes(os.getpid())
        caller = VoipMediaEngine(EngineConfig(sipHost="127.0.0.1", sipPort=0, rtpPortLow=41000,
                                              rtpPortHigh=41999, sourceFactory=lambda line: ToneSource(440, 0.1)))
        callee = VoipMediaEngine(EngineConfig(sipHost="127.0.0.1", sipPort=0, rtpPortLow=42000,
                                              rtpPortHigh=42999))
        for engine in (caller, callee):
            quiet(engine)
            engine.startService()
        try:
            callee.addObserver(lambda event: event.name is EventName.SipOkToAnswerCall
                               and callee.goOffHook(event.line))
            caller.enableKeepAliveTransmissions(True, True, 1000)
            host, port = callee.sipAddress
            self.assertIs(caller.makeCall(0, "bob", host, port), R.SipSuccess)
            yield caller.whenLineState(0, LineState.CONNECTED, timeout=5)
            yield deferLater(globalReactor, 1.5, lambda: None)
            state = {s["kind"]: s for s in caller.getKeepAliveState()}
            self.assertGreaterEqual(state["sip"]["sendCount"], 1)
            self.assertGreater(len(processSocketInodes(os.getpid())), len(socketsBefore))
        finally:
            yield caller.stopService()
            yield callee.stopService()
        yield deferLater(globalReactor, 0, lambda: None)
        left = {call for call in set(globalReactor.getDelayedCalls()) - before
                if "TestCase._run" not in repr(call)}  # trial's own timeout
        self.assertEqual(left, set())
        self.assertEqual(processSocketInodes(os.getpid()), socketsBefore)
