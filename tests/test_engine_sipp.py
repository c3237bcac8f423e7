"""
Real-peer tests of the engine's keep-alive, on the real reactor over
loopback: SIPp receives the in-dialog OPTIONS (and tshark checks the wire),
a UDP listener receives the CRLFs of sendSipKeepAlive, and baresip's
C{rtp_timeout} shows what RTP keep-alive is for.

Each test runs its "keep-alive on" and "keep-alive off" cases at the same
time (two engines, two peers) to keep the file under ~60 s.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor as globalReactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from lmevoip.engine import EngineConfig, LineState, VoipMediaEngine
from lmevoip.events import EventName
from lmevoip.keepalive.interval import maximumInterval
from lmevoip.returns import TelephonyReturnValue
from lmevoip.rtp.audio import ToneSource
from lmevoip.testing import RecordingEngineObserver
from tests.peers.baresip import RTP_TIMEOUT_REASON, Baresip
from tests.peers.ports import LOOPBACK
from tests.peers.sipp import Sipp
from tests.peers.tshark import TsharkCapture, largestGap, packetTimes, sipMessages
from tests.support import requireTool

R = TelephonyReturnValue

#: The NAT session time the keep-alives must beat.
NAT_SESSION_TIME_MS = 2000

#: How long the engine holds each call.
CALL_SECONDS = 10.0


def sleep(seconds: float) -> Any:
    return deferLater(globalReactor, seconds, lambda: None)


class ToneThenSilence:
    """
    An audio source: a second of tone (so the far end sees RTP start),
    then digital silence, which the noise gate suppresses.
    """

    def __init__(self, toneFrames: int = 50) -> None:
        self._tone = ToneSource(440, 0.3)
        self._left = toneFrames

    def readFrame(self, samples: int) -> bytes:
        if self._left > 0:
            self._left -= 1
            return self._tone.readFrame(samples)
        return b"\x00\x00" * samples

    def close(self) -> None:
        self._tone.close()


class EngineCase(TestCase):
    timeout = 80

    def startEngine(self, rtpBase: int, **kwargs: Any) -> tuple[VoipMediaEngine, RecordingEngineObserver]:
        config = EngineConfig(sipHost=LOOPBACK, sipPort=0, rtpPortLow=rtpBase, rtpPortHigh=rtpBase + 199,
                              **kwargs)
        engine = VoipMediaEngine(config)
        events = RecordingEngineObserver()
        engine.addObserver(events)
        engine.startService()
        self.addCleanup(engine.stopService)
        return engine, events


class SipKeepAliveTests(EngineCase):
    @inlineCallbacks
    def test_optionsDuringCallOnly(self):
        """
        Two engines call two SIPp UASes that ring for 3 s (twice the
        keep-alive interval) and then answer; each engine hangs up after
        10 s. With SIP keep-alive on (NAT session time 2,000 ms) SIPp
        receives in-dialog OPTIONS, none before the 200 and none after the
        BYE, and tshark shows no gap of 2 s or more in the engine's
        signalling to SIPp while the call is up; with it off SIPp receives
        none.
        """
        requireTool("sipp")
        on, onEvents = self.startEngine(43000)
        off, offEvents = self.startEngine(43400)
        self.assertIs(on.enableKeepAliveTransmissions(True, False, NAT_SESSION_TIME_MS), R.SipSuccess)
        onPeer = Sipp(self, "engine_keepalive_uas", variables={"ringms": 3000}, timeout=40)
        offPeer = Sipp(self, "engine_keepalive_uas", variables={"ringms": 3000}, timeout=40)
        yield gatherResults([onPeer.start(), offPeer.start()])
        onPort = on.sipAddress[1]
        capture = TsharkCapture(self, ports=[onPort])
        yield capture.start()
        for engine, peer in ((on, onPeer), (off, offPeer)):
            self.assertIs(engine.makeCall(0, "sipp", *peer.target), R.SipSuccess)
        yield gatherResults([on.whenLineState(0, LineState.CONNECTED, timeout=10),
                             off.whenLineState(0, LineState.CONNECTED, timeout=10)])
        yield sleep(CALL_SECONDS)
        on.terminateCall(0)
        off.terminateCall(0)
        yield gatherResults([on.whenLineState(0, LineState.IDLE, timeout=10),
                             off.whenLineState(0, LineState.IDLE, timeout=10)])
        onResult, offResult = yield gatherResults([onPeer.finished(), offPeer.finished()])
        pcap = yield capture.stop()

        self.assertEqual(onResult.exitCode, 0, onResult.describe())
        self.assertEqual(offResult.exitCode, 0, offResult.describe())
        received = onResult.counts.total("OPTIONS", "Recv")
        self.assertGreaterEqual(received, int(CALL_SECONDS / maximumInterval(NAT_SESSION_TIME_MS)) - 1,
                                onResult.describe())
        self.assertEqual(offResult.counts.total("OPTIONS", "Recv"), 0, offResult.describe())
        self.assertEqual(onEvents.named(EventName.SipKeepAliveFailure), [])

        # The wire: the engine's SIP to SIPp, in order.
        engineAddr, sippAddr = f"{LOOPBACK}:{onPort}", f"{LOOPBACK}:{onPeer.localPort}"
        messages = [m for m in (yield sipMessages(pcap)) if {m.src, m.dst} == {engineAddr, sippAddr}]
        answeredAt = next(m.time for m in messages if m.firstLine.startswith("SIP/2.0 200") and "INVITE" in m.cseq)
        ackAt = next(m.time for m in messages if m.firstLine.startswith("ACK"))
        byeAt = next(m.time for m in messages if m.firstLine.startswith("BYE"))
        options = [m.time for m in messages if m.firstLine.startswith("OPTIONS")]
        self.assertEqual(len(options), received)
        self.assertTrue(all(answeredAt < t < byeAt for t in options), (answeredAt, byeAt, options))
        outbound = yield packetTimes(pcap, f"udp.srcport == {onPort} and udp.dstport == {onPeer.localPort}")
        gap = largestGap([t for t in outbound if ackAt <= t <= byeAt], ackAt, byeAt)
        self.assertLess(gap, NAT_SESSION_TIME_MS / 1000.0)
        self.assertLessEqual(gap, maximumInterval(NAT_SESSION_TIME_MS) + 0.1)


class NullKeepAliveTests(EngineCase):
    @inlineCallbacks
    def test_crlfFromSipPort(self):
        """
        sendSipKeepAlive to a local UDP listener: CRLFs arrive every second
        from the engine's SIP port, and stop when disabled.
        """
        engine, events = self.startEngine(43800)
        arrivals: list[tuple[float, bytes, tuple[str, int]]] = []

        class Listener(DatagramProtocol):
            def datagramReceived(self, data: bytes, addr: Any) -> None:
                arrivals.append((globalReactor.seconds(), data, addr))

        port = globalReactor.listenUDP(0, Listener(), interface=LOOPBACK)
        self.addCleanup(port.stopListening)
        target = port.getHost().port
        self.assertIs(engine.sendSipKeepAlive(LOOPBACK, target, True, 1), R.SipSuccess)
        yield sleep(4.5)
        self.assertIs(engine.sendSipKeepAlive(LOOPBACK, target, False, 1), R.SipSuccess)
        count = len(arrivals)
        yield sleep(2.5)
        self.assertEqual(len(arrivals), count)
        self.assertIn(count, (4, 5, 6))
        self.assertEqual({data for _, data, _ in arrivals}, {b"\r\n"})
        self.assertEqual({source for _, _, source in arrivals}, {engine.sipAddress})
        times = [t for t, _, _ in arrivals]
        for earlier, later in zip(times, times[1:]):
            # (trial's assertAlmostEqual ignores delta=)
            self.assertLess(abs(later - earlier - 1.0), 0.1, times)


class RtpKeepAliveTests(EngineCase):
    @inlineCallbacks
    def test_baresipRtpTimeout(self):
        """
        Two engines call two baresips configured with rtp_timeout 3; each
        engine sends a second of tone and then silence its noise gate
        suppresses. With RTP keep-alive on, the call lasts until the engine
        hangs up at 10 s; with it off, baresip closes the call for lack of
        RTP about 3 s after the tone stops.
        """
        requireTool("baresip")
        # baresip 1.0.0 resets its RTP timer on RTCP too: keep the engine's
        # RTCP (first report after ~6 s or more) out of the measurement.
        kwargs = dict(noiseGateEnabled=True, sourceFactory=lambda line: ToneThenSilence(),
                      rtcpMinimumInterval=30.0)
        on, onEvents = self.startEngine(44000, **kwargs)
        off, offEvents = self.startEngine(44400, **kwargs)
        self.assertIs(on.enableKeepAliveTransmissions(False, True, NAT_SESSION_TIME_MS), R.SipSuccess)
        onPeer, offPeer = Baresip(self, rtpTimeout=3), Baresip(self, rtpTimeout=3)
        yield gatherResults([onPeer.start(), offPeer.start()])
        for engine, peer in ((on, onPeer), (off, offPeer)):
            self.assertIs(engine.makeCallUri(0, peer.uri), R.SipSuccess)
        yield gatherResults([on.whenLineState(0, LineState.CONNECTED, timeout=10),
                             off.whenLineState(0, LineState.CONNECTED, timeout=10)])
        connectedAt = globalReactor.seconds()
        offSession = off.getCall(0).mediaHandler.session
        offEnded = yield off.whenEvent(EventName.SipCallComplete, line=0, timeout=CALL_SECONDS + 5)
        closed = yield offPeer.waitForEvent("CALL_CLOSED", timeout=5)
        self.assertEqual(closed.param, RTP_TIMEOUT_REASON)
        self.assertEqual(offEnded.reason, "remote-hangup")
        # baresip 1.0.0 checks once a second whether more than rtp_timeout
        # has passed since the last RTP (or RTCP) packet: it closes the
        # call 3-4 s after the last one the engine sent, at the end of the
        # tone (plus the gate's 200 ms decay).
        lastRtp = offSession.lastSendTime
        self.assertLess(lastRtp - connectedAt, 2.0)
        self.assertEqual(offSession.counters.keepAlivesSent, 0)
        self.assertTrue(3.0 < closed.time - lastRtp <= 4.5, closed.time - lastRtp)

        remaining = CALL_SECONDS - (globalReactor.seconds() - connectedAt)
        yield sleep(max(0.0, remaining))
        self.assertEqual(on.getLineStatus(0).state, LineState.CONNECTED)
        self.assertEqual(onPeer.eventsOfType("CALL_CLOSED"), [])
        [state] = [s for s in on.getKeepAliveState() if s["kind"] == "rtp"]
        self.assertGreaterEqual(state["framesSent"], 4)
        self.assertIs(on.terminateCall(0), R.SipSuccess)
        onEnded = yield on.whenEvent(EventName.SipCallComplete, line=0, timeout=5)
        self.assertEqual(onEnded.reason, "local-hangup")
        closed = yield onPeer.waitForEvent("CALL_CLOSED", timeout=5)
        self.assertNotEqual(closed.param, RTP_TIMEOUT_REASON)
