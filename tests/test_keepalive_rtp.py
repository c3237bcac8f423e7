"""
Tests for L{lmevoip.keepalive.rtp}: silence frames on idle RTP flows, with a
real L{RtpSession} on a L{FakeUdpReactor} (no sockets) and a fake session
for the observer bookkeeping.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from lmevoip.interfaces import IRtpKeepAlive
from lmevoip.keepalive.interval import KeepAliveParameterError, maximumInterval
from lmevoip.keepalive.rtp import RtpKeepAliveService
from lmevoip.keepalive.scheduler import DEFAULT_TOLERANCE, KeepAliveScheduler
from lmevoip.rtp.audio import PushSource, SilenceSource, ToneSource
from lmevoip.rtp.cn import CN_PAYLOAD_TYPE, SILENCE_LEVEL, ComfortNoise
from lmevoip.rtp.gate import NoiseGate
from lmevoip.rtp.packet import RtpPacket
from lmevoip.rtp.pacer import Pacer
from lmevoip.rtp.ports import PortAllocator
from lmevoip.rtp.session import RtpSession
from lmevoip.sip.sdp import NegotiatedMedia
from lmevoip.testing import FakeUdpReactor
from tests.test_keepalive_scheduler import advanceTo

PEER_RTP = ("127.0.0.2", 30000)


class PacketRecorder(DatagramProtocol):
    """
    The far end's RTP (or RTCP) socket: keeps C{(time, data)}.
    """

    def __init__(self, reactor: FakeUdpReactor) -> None:
        self.reactor = reactor
        self.packets: list[tuple[float, bytes]] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.packets.append((self.reactor.seconds(), data))

    def rtp(self) -> list[tuple[float, RtpPacket]]:
        return [(t, RtpPacket.parse(d)) for t, d in self.packets]


def media(direction: str = "sendrecv", rtcpMux: bool = False, address: str = "127.0.0.2",
          comfortNoise: bool = False) -> NegotiatedMedia:
    return NegotiatedMedia(
        codec="PCMU", payloadType=0, clockRate=8000, remoteAddress=address, remotePort=30000,
        remoteRtcpAddress=address, remoteRtcpPort=30000 if rtcpMux else 30001, direction=direction,
        rtcpMux=rtcpMux, comfortNoisePayloadType=CN_PAYLOAD_TYPE if comfortNoise else None,
        remoteUnspecified=address == "0.0.0.0")


class SessionTestsMixin:
    """
    One RTP session from 127.0.0.1 to the recorder at 127.0.0.2:30000.
    """

    def setUp(self) -> None:
        self.reactor = FakeUdpReactor(latency=0.0005)
        self.pacer = Pacer(self.reactor)
        self.pacer.startService()
        self.scheduler = KeepAliveScheduler(self.reactor)
        self.scheduler.startService()
        self.service = RtpKeepAliveService(self.scheduler, random.Random(2))
        self.service.startService()
        self.peer = PacketRecorder(self.reactor)
        self.reactor.listenUDP(30000, self.peer, interface="127.0.0.2")
        self.peerRtcp = PacketRecorder(self.reactor)
        self.reactor.listenUDP(30001, self.peerRtcp, interface="127.0.0.2")
        self.allocator = PortAllocator(self.reactor, 20000, 20100, interface="127.0.0.1", random=random.Random(1))

    def makeSession(self, source: Any, gateEnabled: bool = True, negotiated: NegotiatedMedia | None = None,
                    **kwargs: Any) -> RtpSession:
        gate = NoiseGate(threshold=512, enabled=gateEnabled, decayMs=0)
        session = RtpSession(self.pacer, source=source, gate=gate, clock=self.reactor, random=random.Random(4),
                             **kwargs)
        session.log = Logger(observer=lambda event: None)
        session.listen(self.allocator, "127.0.0.1")
        session.configure(negotiated or media())
        session.start()
        self.addCleanup(session.stop)
        return session

    def rtpTimes(self) -> list[float]:
        return [t for t, _ in self.peer.packets]


def largestGap(times: list[float], start: float, end: float) -> float:
    points = [start] + [t for t in times if start <= t <= end] + [end]
    return max(b - a for a, b in zip(points, points[1:]))


class InterfaceTests(SessionTestsMixin, SynchronousTestCase):
    def test_provides(self) -> None:
        """
        The service provides L{IRtpKeepAlive}.
        """
        self.assertTrue(verifyObject(IRtpKeepAlive, self.service))

    def test_badNatSessionTime(self) -> None:
        """
        A bad NAT session time raises and changes nothing.
        """
        self.service.setNatSessionTime(5000)
        for bad in (0, 999, -5, 10**9, 2.5, None.__class__):
            self.assertRaises(KeepAliveParameterError, self.service.setNatSessionTime, bad)
        self.assertEqual(self.service.natSessionTimeMs, 5000)


class SilenceFrameTests(SessionTestsMixin, SynchronousTestCase):
    def test_talkingSendsNoKeepAlive(self) -> None:
        """
        While audio flows, no keep-alive frame is sent.
        """
        session = self.makeSession(ToneSource(440, 0.5), gateEnabled=True)
        self.service.watch(0, session)
        self.service.setNatSessionTime(2000)
        advanceTo(self.reactor, 10)
        self.assertEqual(session.counters.keepAlivesSent, 0)
        self.assertEqual(self.service.snapshot()[0]["framesSent"], 0)
        self.assertGreater(len(self.peer.packets), 400)

    def test_gateClosedSendsSilenceFrames(self) -> None:
        """
        With the gate closed on silent audio, a PCMU silence frame goes out
        whenever the flow has been idle for the interval: the sequence
        numbers continue by one, the timestamps follow the clock (8 per
        ms), each carries the marker bit.
        """
        session = self.makeSession(SilenceSource())
        self.service.watch(0, session)
        self.service.setNatSessionTime(2000)
        advanceTo(self.reactor, 20)
        packets = self.peer.rtp()
        self.assertGreater(len(packets), 12)
        interval = self.service.flowOf(0).interval
        self.assertLessEqual(interval, maximumInterval(2000))
        self.assertLess(largestGap(self.rtpTimes(), packets[0][0], 20), interval + DEFAULT_TOLERANCE + 0.001)
        first = packets[0][1]
        for (t0, a), (t1, b) in zip(packets, packets[1:]):
            self.assertEqual((b.sequenceNumber - a.sequenceNumber) % 65536, 1)
            # The timestamp follows the clock (to a sample: the packets'
            # send times are slot starts, not whole samples).
            self.assertLessEqual(abs((b.timestamp - a.timestamp) % 2**32 - (t1 - t0) * 8000), 1)
        for _, packet in packets:
            self.assertEqual(packet.payloadType, 0)
            self.assertEqual(packet.payload, b"\xff" * 160)
            self.assertTrue(packet.marker)
            self.assertEqual(packet.ssrc, first.ssrc)
        self.assertEqual(session.counters.keepAlivesSent, len(packets))

    def test_resumesAfterTalkspurt(self) -> None:
        """
        Audio in the middle postpones the keep-alive: the next one comes an
        interval after the last audio packet, and the sequence numbers run
        on across keep-alives and audio.
        """
        source = PushSource(maxFrames=200)
        session = self.makeSession(source)
        self.service.watch(0, session)
        self.service.setNatSessionTime(2000)
        advanceTo(self.reactor, 5)
        loud = ToneSource(440, 0.5)
        for _ in range(50):  # one second of tone
            source.push(loud.readFrame(160))
        advanceTo(self.reactor, 7)
        keepAlivesBefore = session.counters.keepAlivesSent
        audio = [(t, p) for t, p in self.peer.rtp() if p.payload != b"\xff" * 160]
        self.assertEqual(len(audio), 50)
        lastAudio = audio[-1][0]
        advanceTo(self.reactor, 12)
        after = [t for t, p in self.peer.rtp() if t > lastAudio]
        interval = self.service.flowOf(0).interval
        self.assertTrue(after)
        self.assertGreaterEqual(after[0] - lastAudio, interval - DEFAULT_TOLERANCE - 0.001)
        self.assertLess(after[0] - lastAudio, interval + DEFAULT_TOLERANCE + 0.001)
        self.assertGreater(session.counters.keepAlivesSent, keepAlivesBefore)
        sequence = [p.sequenceNumber for _, p in self.peer.rtp()]
        self.assertEqual([(b - a) % 65536 for a, b in zip(sequence, sequence[1:])], [1] * (len(sequence) - 1))

    def test_comfortNoise(self) -> None:
        """
        Where CN was negotiated and the session is asked to, the keep-alive
        is a CN packet at the silence level.
        """
        session = self.makeSession(SilenceSource(), negotiated=media(comfortNoise=True),
                                   keepAliveComfortNoise=True)
        self.service.watch(0, session)
        self.service.setNatSessionTime(2000)
        advanceTo(self.reactor, 5)
        packets = self.peer.rtp()
        self.assertTrue(packets)
        for _, packet in packets:
            self.assertEqual(packet.payloadType, CN_PAYLOAD_TYPE)
            self.assertEqual(ComfortNoise.parse(packet.payload).level, SILENCE_LEVEL)

    def test_onHoldByPeer(self) -> None:
        """
        Held by the peer (recvonly for us), the session sends no audio but
        keep-alive frames still go out; with C{sendOnHold=False} none do.
        """
        session = self.makeSession(ToneSource(440, 0.5), negotiated=media("recvonly"))
        self.service.watch(0, session)
        self.service.setNatSessionTime(2000)
        advanceTo(self.reactor, 10)
        self.assertGreater(len(self.peer.packets), 5)
        self.assertEqual(len(self.peer.packets), session.counters.keepAlivesSent)
        self.service.sendOnHold = False
        count = len(self.peer.packets)
        advanceTo(self.reactor, 20)
        self.assertEqual(len(self.peer.packets), count)
        self.assertGreater(self.service.snapshot()[0]["skipped"], 5)

    def test_unspecifiedAddressSkipped(self) -> None:
        """
        Nothing can be sent to a peer at 0.0.0.0 (old-style hold): the
        keep-alives are counted as skipped.
        """
        session = self.makeSession(SilenceSource(), negotiated=media("inactive", address="0.0.0.0"))
        self.service.watch(0, session)
        self.service.setNatSessionTime(2000)
        advanceTo(self.reactor, 10)
        self.assertEqual(self.peer.packets, [])
        state = self.service.snapshot()[0]
        self.assertGreater(state["skipped"], 5)
        self.assertEqual(state["framesSent"], 0)
        self.assertIsNone(state["remote"])


class RtcpTests(SessionTestsMixin, SynchronousTestCase):
    def test_rtcpOnItsOwnPortDoesNotCount(self) -> None:
        """
        RTCP on the RTCP port refreshes another binding: it does not
        postpone the RTP keep-alive.
        """
        session = self.makeSession(SilenceSource())
        self.service.watch(0, session)
        self.service.setNatSessionTime(1000)
        for step in range(1, 41):
            advanceTo(self.reactor, step * 0.25)
            session.sendRtcpReport()
        self.assertGreater(len(self.peerRtcp.packets), 30)
        self.assertGreater(session.counters.keepAlivesSent, 10)

    def test_rtcpMuxCounts(self) -> None:
        """
        With rtcp-mux, RTCP leaves the RTP socket for the RTP address and
        postpones the keep-alive.
        """
        session = self.makeSession(SilenceSource(), negotiated=media(rtcpMux=True))
        self.service.watch(0, session)
        self.service.setNatSessionTime(1000)
        session.sendRtcpReport()
        for step in range(1, 41):
            advanceTo(self.reactor, step * 0.25)
            session.sendRtcpReport()
        self.assertEqual(session.counters.keepAlivesSent, 0)
        self.assertGreater(len(self.peer.packets), 30)


class FakeSession:
    """
    The parts of an IRtpSession the service uses.
    """

    rtcpMux = False
    sending = True
    lastSendTime = None
    remoteRtpAddress = PEER_RTP

    def __init__(self) -> None:
        self.rtpObservers: list[Any] = []
        self.rtcpObservers: list[Any] = []
        self.frames = 0

    def addSendObserver(self, observer: Any) -> None:
        self.rtpObservers.append(observer)

    def removeSendObserver(self, observer: Any) -> None:
        self.rtpObservers.remove(observer)

    def addRtcpSendObserver(self, observer: Any) -> None:
        self.rtcpObservers.append(observer)

    def removeRtcpSendObserver(self, observer: Any) -> None:
        self.rtcpObservers.remove(observer)

    def sendKeepAliveFrame(self) -> bool:
        self.frames += 1
        return True


class BookkeepingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeUdpReactor()
        self.scheduler = KeepAliveScheduler(self.reactor)
        self.scheduler.startService()
        self.service = RtpKeepAliveService(self.scheduler, random.Random(9))
        self.service.startService()

    def test_unwatchRemovesObservers(self) -> None:
        """
        Unwatching (and re-watching the key) leaves no observer behind.
        """
        session = FakeSession()
        self.service.watch(3, session)
        self.service.watch(3, session)
        self.assertEqual((len(session.rtpObservers), len(session.rtcpObservers)), (1, 1))
        self.assertTrue(self.service.unwatch(3))
        self.assertEqual((session.rtpObservers, session.rtcpObservers), ([], []))

    def test_changeAndDisable(self) -> None:
        """
        A new NAT session time re-intervals every flow at once; disabling
        removes them, re-enabling restores them.
        """
        sessions = [FakeSession() for _ in range(5)]
        for index, session in enumerate(sessions):
            self.service.watch(index, session)
        self.assertEqual(len(self.scheduler), 0)
        self.service.setNatSessionTime(30_000)
        self.assertEqual(len(self.scheduler), 5)
        self.service.setNatSessionTime(1000)
        for index in range(5):
            self.assertLessEqual(self.service.flowOf(index).interval, maximumInterval(1000))
        advanceTo(self.reactor, 5)
        self.assertTrue(all(session.frames >= 6 for session in sessions))
        self.service.setNatSessionTime(None)
        self.assertEqual(len(self.scheduler), 0)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        frames = [session.frames for session in sessions]
        advanceTo(self.reactor, 10)
        self.assertEqual([session.frames for session in sessions], frames)

    def test_idleSessionFirstKeepAlive(self) -> None:
        """
        A session idle since long before it is watched gets its first
        keep-alive at once.
        """
        session = FakeSession()
        advanceTo(self.reactor, 100)
        session.lastSendTime = 10.0
        self.service.setNatSessionTime(2000)
        self.service.watch(0, session)
        advanceTo(self.reactor, 100 + DEFAULT_TOLERANCE)
        self.assertEqual(session.frames, 1)

    def test_snapshot(self) -> None:
        """
        The snapshot names the flow's kind, key, remote and counters.
        """
        session = FakeSession()
        self.service.watch("a", session)
        self.service.setNatSessionTime(2000)
        advanceTo(self.reactor, 5)
        [state] = self.service.snapshot()
        self.assertEqual((state["kind"], state["key"], state["remote"], state["enabled"]),
                         ("rtp", "a", "127.0.0.2:30000", True))
        self.assertEqual(state["framesSent"], session.frames)
        self.assertEqual(state["sendCount"], session.frames)
