"""
Tests for L{lmevoip.rtp.session}: the RTP session of one call.

Unit tests drive a L{task.Clock}, a started L{Pacer} and recording datagram
transports, and check exact send times, sequence numbers and timestamps.
The last test class exchanges a tone between two sessions over real
loopback sockets on the real reactor.
"""

import dataclasses
import errno
import random
import socket

import numpy as np
from twisted.internet import reactor, task, udp
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from lmevoip.interfaces import IRtpSession, IRtpSessionObserver
from lmevoip.rtp import g711
from lmevoip.rtp.audio import CallbackSink, DiscardSink, ToneSource
from lmevoip.rtp.gate import NoiseGate
from lmevoip.rtp.pacer import Pacer
from lmevoip.rtp.packet import RtpPacket
from lmevoip.rtp.ports import PortAllocator
from tests.test_rtp_ports import FakeUdpReactor
from lmevoip.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    middle32,
    ntpFromUnix,
    ntpToInt,
    parseCompound,
    serializeCompound,
)
from lmevoip.rtp.session import (
    AllowLatching,
    RefuseLatching,
    RtpSession,
    SessionCounters,
    UnsupportedMedia,
    _datagramWriter,
)
from lmevoip.sip.sdp import NegotiatedMedia

PEER = ("10.0.0.2", 40000)
PEER_RTCP = ("10.0.0.2", 40001)
NAT = ("192.0.2.7", 5555)
OTHER = ("198.51.100.9", 6666)
SAMPLES = 160
LOUD = ToneSource(440, 0.5).readFrame(SAMPLES)
QUIET = bytes(2 * SAMPLES)


def sendTimes(packets):
    """
    The clock times (rounded to 1 ns) at which C{packets} were written.
    """
    return [round(t, 9) for t, _, _ in packets]


def makeMedia(**changes):
    media = NegotiatedMedia(codec="PCMU", payloadType=0, clockRate=8000,
                            remoteAddress=PEER[0], remotePort=PEER[1],
                            remoteRtcpAddress=PEER_RTCP[0], remoteRtcpPort=PEER_RTCP[1])
    return dataclasses.replace(media, **changes)


class RecordingTransport:
    """
    A datagram transport that records (clock time, data, addr) per write.
    """

    def __init__(self, clock):
        self.clock = clock
        self.written = []

    def write(self, data, addr):
        self.written.append((self.clock.seconds(), data, addr))

    def rtp(self):
        """
        The RTP packets written: (time, RtpPacket, addr).
        """
        return [(t, RtpPacket.parse(data), addr) for t, data, addr in self.written
                if not 192 <= data[1] <= 223]

    def rtcp(self):
        """
        The RTCP compounds written: (time, [packets], addr).
        """
        return [(t, parseCompound(data), addr) for t, data, addr in self.written
                if 192 <= data[1] <= 223]


class ScriptedSource:
    """
    An audio source returning the given frames in turn, then None.
    """

    def __init__(self, frames):
        self.frames = list(frames)

    def readFrame(self, samples):
        return self.frames.pop(0) if self.frames else None

    def close(self):
        self.frames = []


class ListSink:
    def __init__(self):
        self.frames = []

    def writeFrame(self, pcm):
        self.frames.append(bytes(pcm))

    def close(self):
        pass


class RecordingObserver:
    def __init__(self, answer):
        self.answer = answer
        self.asked = []

    def latchRequested(self, session, newAddr):
        self.asked.append(newAddr)
        return self.answer


class SessionTestMixin:
    def setUp(self):
        self.clock = Clock()
        self.pacer = Pacer(self.clock)
        self.pacer.startService()

    def makeSession(self, media=None, seed=7, start=True, **kwargs):
        kwargs.setdefault("wallClock", self.clock.seconds)
        session = RtpSession(self.pacer, random=random.Random(seed), **kwargs)
        rtp = RecordingTransport(self.clock)
        rtcp = RecordingTransport(self.clock)
        session.rtpProtocol.makeConnection(rtp)
        session.rtcpProtocol.makeConnection(rtcp)
        if media is not False:
            session.configure(media or makeMedia())
        if start:
            session.start()
        return session, rtp, rtcp

    def ticks(self, count):
        for _ in range(count):
            self.clock.advance(0.02)

    def peerPacket(self, seq, timestamp, ssrc=0x1234, payloadType=0, payload=None,
                   marker=False):
        if payload is None:
            payload = g711.encodePcmu(LOUD)
        return RtpPacket(payloadType, seq, timestamp, ssrc, payload, marker).serialize()

    def assertSent(self, transport, session, times, expected):
        """
        Check the RTP packets C{transport} got: their send times and
        L{assertSeqAndTs}; return them.
        """
        packets = transport.rtp()
        self.assertEqual(sendTimes(packets), times)
        self.assertSeqAndTs(packets, session, expected)
        return packets

    def assertSeqAndTs(self, packets, session, expected):
        """
        C{expected}: (frame offset in samples, sequence increment, marker).
        """
        got = [(p.timestamp, p.sequenceNumber, p.marker) for _, p, _ in packets]
        want = [((session.initialTimestamp + offset) & 0xFFFFFFFF,
                 (session.initialSequenceNumber + step) & 0xFFFF, marker)
                for offset, step, marker in expected]
        self.assertEqual(got, want)


class IdentityTests(SessionTestMixin, SynchronousTestCase):
    def test_interfaces(self):
        session, _, _ = self.makeSession()
        verifyObject(IRtpSession, session)
        verifyObject(IRtpSessionObserver, AllowLatching())
        verifyObject(IRtpSessionObserver, RefuseLatching())

    def test_randomIdentifiersInjectable(self):
        """
        SSRC, initial sequence number and timestamp come from the injected
        random: 32, 16 and 32 bits in that order; another seed differs.
        """
        session, _, _ = self.makeSession(seed=3)
        rng = random.Random(3)
        self.assertEqual(
            (session.ssrc, session.initialSequenceNumber, session.initialTimestamp),
            (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(32)))
        other, _, _ = self.makeSession(seed=4)
        self.assertNotEqual(other.ssrc, session.ssrc)
        self.assertEqual(len(session.cname), 16)

    def test_defaultRandomIsSecrets(self):
        """
        Without an injected random, identifiers differ between sessions.
        """
        ssrcs = {RtpSession(self.pacer).ssrc for _ in range(8)}
        self.assertGreater(len(ssrcs), 6)

    def test_unsupportedMedia(self):
        session, _, _ = self.makeSession(media=False, start=False)
        self.assertRaises(UnsupportedMedia, session.configure, makeMedia(codec="opus"))
        self.assertRaises(UnsupportedMedia, session.configure, makeMedia(clockRate=16000))
        self.assertRaises(UnsupportedMedia, session.configure, makeMedia(ptime=0))
        self.assertIsNone(session.media)

    def test_counters(self):
        counters = SessionCounters()
        counters.latches += 2
        self.assertEqual(counters.asDict()["latches"], 2)
        self.assertIn("latches=2", repr(counters))


class SendTests(SessionTestMixin, SynchronousTestCase):
    def test_pacedExactly(self):
        """
        Frames go out at 0.02 * n, sequence +1 each, timestamp +160 each,
        marker on the first only, PCMU payload of the source's PCM, to the
        negotiated address.
        """
        source = ToneSource(440)
        session, rtp, _ = self.makeSession(source=ScriptedSource([LOUD] * 5))
        self.ticks(6)
        packets = rtp.rtp()
        self.assertEqual(sendTimes(packets), [0.02, 0.04, 0.06, 0.08, 0.1])
        self.assertEqual({addr for _, _, addr in packets}, {PEER})
        self.assertSeqAndTs(packets, session, [(0, 0, True), (160, 1, False), (320, 2, False),
                                               (480, 3, False), (640, 4, False)])
        for _, packet, _ in packets:
            self.assertEqual(packet.payloadType, 0)
            self.assertEqual(packet.ssrc, session.ssrc)
            self.assertEqual(packet.payload, g711.encodePcmu(LOUD))
        self.assertEqual(session.senderStats.packetsSent, 5)
        self.assertEqual(session.senderStats.octetsSent, 800)
        self.assertAlmostEqual(session.lastSendTime, 0.1)
        self.assertEqual(session.counters.framesNotProduced, 1)
        self.assertTrue(source.readFrame(1))

    def test_payloadTypeFromNegotiation(self):
        """
        PCMA with the peer's payload type number.
        """
        session, rtp, _ = self.makeSession(media=makeMedia(codec="PCMA", payloadType=8),
                                           source=ScriptedSource([LOUD]))
        self.ticks(1)
        [(_, packet, _)] = rtp.rtp()
        self.assertEqual(packet.payloadType, 8)
        self.assertEqual(packet.payload, g711.encodePcma(LOUD))

    def test_sourceGap(self):
        """
        When the source gives None the sequence continues by one, the
        timestamp jumps by the elapsed samples and the marker is set.
        """
        frames = [LOUD, LOUD, None, None, None, LOUD, LOUD]
        session, rtp, _ = self.makeSession(source=ScriptedSource(frames))
        self.ticks(7)
        self.assertSent(rtp, session, [0.02, 0.04, 0.12, 0.14],
                        [(0, 0, True), (160, 1, False),
                         (800, 2, True), (960, 3, False)])

    def test_gateCloseAndReopen(self):
        """
        A noise gate that closes on quiet frames: no packets while closed;
        on reopening the sequence number continues by one, the timestamp
        jumps by the samples elapsed and the marker bit is set.
        """
        frames = [LOUD] * 3 + [QUIET] * 3 + [LOUD] * 3
        gate = NoiseGate(threshold=1000, enabled=True, decayMs=0)
        session, rtp, _ = self.makeSession(source=ScriptedSource(frames), gate=gate)
        self.ticks(9)
        packets = rtp.rtp()
        self.assertEqual(sendTimes(packets),
                         [0.02, 0.04, 0.06, 0.14, 0.16, 0.18])
        self.assertSeqAndTs(packets, session, [
            (0, 0, True), (160, 1, False), (320, 2, False),
            (960, 3, True), (1120, 4, False), (1280, 5, False)])
        self.assertEqual(session.counters.framesSuppressed, 3)
        self.assertEqual(gate.closeCount, 1)

    def test_skippedTicks(self):
        """
        When the reactor fires late by more than a period, the pacer skips
        the missed ticks: no burst of frames, the timestamp jumps to the
        latest tick, the sequence continues by one, the marker is set.
        """
        session, rtp, _ = self.makeSession(source=ToneSource(440))
        self.ticks(2)
        self.clock.advance(0.065)          # 0.105: ticks 0.06, 0.08, 0.10 due
        self.clock.advance(0.015)          # 0.12
        self.assertSent(rtp, session, [0.02, 0.04, 0.105, 0.12],
                        [(0, 0, True), (160, 1, False),
                         (640, 2, True), (800, 3, False)])
        self.assertEqual(self.pacer.stats().missedTicks, 2)

    def test_holdAndResume(self):
        """
        A re-INVITE putting the call on hold (recvonly) stops sending and
        stops reading the source; resuming continues the sequence by one,
        jumps the timestamp by the hold time and sets the marker.
        """
        source = ScriptedSource([LOUD] * 10)
        session, rtp, _ = self.makeSession(source=source)
        self.ticks(2)
        session.configure(makeMedia(direction="recvonly"))
        self.assertFalse(session.sending)
        self.assertTrue(session.receiving)
        self.ticks(5)
        self.assertEqual(len(rtp.rtp()), 2)
        self.assertEqual(len(source.frames), 8)
        session.configure(makeMedia(direction="sendrecv"))
        self.ticks(2)
        self.assertSent(rtp, session, [0.02, 0.04, 0.16, 0.18],
                        [(0, 0, True), (160, 1, False),
                         (1120, 2, True), (1280, 3, False)])

    def test_inactiveStopsTicking(self):
        """
        With direction inactive the session leaves the pacer altogether.
        """
        session, rtp, _ = self.makeSession(source=ScriptedSource([LOUD] * 10))
        session.configure(makeMedia(direction="inactive"))
        self.assertEqual(len(self.pacer), 0)
        self.ticks(3)
        self.assertEqual(rtp.rtp(), [])
        session.configure(makeMedia())
        self.assertEqual(len(self.pacer), 1)

    def test_unspecifiedRemoteSendsNothing(self):
        """
        A peer address of 0.0.0.0 (RFC 2543 hold): no RTP, no RTCP, no
        keep-alive.
        """
        media = makeMedia(remoteAddress="0.0.0.0", remoteRtcpAddress="0.0.0.0",
                          direction="recvonly", remoteUnspecified=True)
        session, rtp, rtcp = self.makeSession(media=media, source=ScriptedSource([LOUD] * 5))
        self.ticks(5)
        self.assertFalse(session.sendKeepAliveFrame())
        self.assertIsNone(session.sendRtcpReport())
        self.clock.advance(10)
        self.assertEqual(rtp.written + rtcp.written, [])

    def test_keepAliveDuringGap(self):
        """
        A keep-alive frame in a gap: codec silence, next sequence number,
        timestamp from the clock, marker set; the audio after it has the
        marker again and continues the sequence.
        """
        frames = [LOUD, LOUD] + [None] * 6 + [LOUD]
        session, rtp, _ = self.makeSession(source=ScriptedSource(frames))
        self.ticks(4)                      # 0.08
        for _ in range(5):                 # 0.13: between ticks
            self.clock.advance(0.01)
        self.assertTrue(session.sendKeepAliveFrame())
        self.clock.advance(0.01)           # back on the grid: 0.14
        self.ticks(2)                      # 0.18
        packets = self.assertSent(rtp, session, [0.02, 0.04, 0.13, 0.18],
                                  [(0, 0, True), (160, 1, False),
                                   (880, 2, True), (1280, 3, True)])
        keepAlive = packets[2][1]
        self.assertEqual(keepAlive.payloadType, 0)
        self.assertEqual(keepAlive.payload, b"\xff" * 160)
        self.assertEqual(session.counters.keepAlivesSent, 1)
        self.assertAlmostEqual(session.lastSendTime, 0.18)

    def test_keepAliveComfortNoise(self):
        """
        With keepAliveComfortNoise and CN negotiated, the keep-alive is a CN
        packet at the silence level with the negotiated CN payload type;
        without CN negotiated it stays codec silence.
        """
        session, rtp, _ = self.makeSession(media=makeMedia(comfortNoisePayloadType=13),
                                           keepAliveComfortNoise=True)
        session.sendKeepAliveFrame()
        session.configure(makeMedia())
        session.sendKeepAliveFrame()
        first, second = [p for _, p, _ in rtp.rtp()]
        self.assertEqual((first.payloadType, first.payload), (13, b"\x7f"))
        self.assertEqual((second.payloadType, second.payload), (0, b"\xff" * 160))
        self.assertEqual(second.sequenceNumber, (first.sequenceNumber + 1) & 0xFFFF)

    def test_keepAliveOnHold(self):
        """
        Keep-alives are sent even when the direction does not send (the
        NAT binding of a held call must live), but not before configure or
        after stop.
        """
        session, rtp, _ = self.makeSession(media=makeMedia(direction="inactive"))
        self.assertTrue(session.sendKeepAliveFrame())
        unconfigured, _, _ = self.makeSession(media=False)
        self.assertFalse(unconfigured.sendKeepAliveFrame())
        session.stop()
        self.assertFalse(session.sendKeepAliveFrame())
        self.assertEqual(len(rtp.rtp()), 1)

    def test_sendObservers(self):
        """
        Send observers see every RTP packet (audio and keep-alive) with
        destination and size; RTCP observers see RTCP only. An observer
        that raises is logged, the packet still counts.
        """
        seen = []
        seenRtcp = []
        session, _, _ = self.makeSession(source=ScriptedSource([LOUD]))
        session.addSendObserver(lambda addr, size: seen.append((addr, size)))
        session.addRtcpSendObserver(lambda addr, size: seenRtcp.append((addr, size)))

        def broken(addr, size):
            raise RuntimeError("observer")

        session.addSendObserver(broken)
        self.ticks(1)
        session.sendKeepAliveFrame()
        data = session.sendRtcpReport()
        self.assertEqual(seen, [(PEER, 172), (PEER, 172)])
        self.assertEqual(seenRtcp, [(PEER_RTCP, len(data))])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(session.counters.sourceErrors, 2)
        session.removeSendObserver(broken)
        session.sendKeepAliveFrame()
        self.assertEqual(len(seen), 3)
        self.assertEqual(session.senderStats.packetsSent, 3)

    def test_ptime40(self):
        """
        A 40 ms packet time: 320 samples every 40 ms, on the shared timer.
        """
        session, rtp, _ = self.makeSession(media=makeMedia(ptime=40),
                                           source=ToneSource(440))
        self.ticks(8)
        packets = self.assertSent(rtp, session, [0.02, 0.06, 0.1, 0.14],
                                  [(0, 0, True), (320, 1, False),
                                   (640, 2, False), (960, 3, False)])
        self.assertEqual(len(packets[0][1].payload), 320)

    def test_ptimeChangeKeepsTimestamps(self):
        """
        Changing ptime in a re-INVITE re-registers with the pacer; the
        timestamp still follows the clock.
        """
        session, rtp, _ = self.makeSession(source=ToneSource(440))
        self.ticks(2)
        session.configure(makeMedia(ptime=40))
        self.ticks(4)
        packets = rtp.rtp()
        offsets = [(p.timestamp - session.initialTimestamp) & 0xFFFFFFFF
                   for _, p, _ in packets]
        times = sendTimes(packets)
        self.assertEqual(offsets, [round((t - 0.02) * 8000) for t in times])
        self.assertEqual([len(p.payload) for _, p, _ in packets][-1], 320)

    def test_sourceErrorIsolated(self):
        """
        A source that raises sends nothing that tick; the session goes on.
        """
        class Broken:
            calls = 0

            def readFrame(self, samples):
                self.calls += 1
                if self.calls == 1:
                    raise OSError("disk")
                return LOUD

        session, rtp, _ = self.makeSession(source=Broken())
        self.ticks(3)
        self.assertEqual(len(rtp.rtp()), 2)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_writeErrorCounted(self):
        """
        A transport write that raises is counted; the sequence number is
        used up (the receiver sees a loss) and sending continues.
        """
        session, rtp, _ = self.makeSession(source=ToneSource(440))
        written = []

        def write(data, addr):
            if not written:
                written.append(None)
                raise OSError("ENOBUFS")
            rtp.written.append((self.clock.seconds(), data, addr))

        session.rtpProtocol.transport.write = write
        self.ticks(2)
        [(_, packet, _)] = rtp.rtp()
        self.assertEqual(packet.sequenceNumber, (session.initialSequenceNumber + 1) & 0xFFFF)
        self.assertEqual(session.counters.sendErrors, 1)
        self.assertEqual(session.senderStats.packetsSent, 1)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


class FakeSocket:
    """
    Stands in for a UDP port's socket: records C{sendto} calls, or raises
    the queued errors first.
    """

    def __init__(self, clock, errors=()):
        self.clock = clock
        self.errors = list(errors)
        self.sent = []

    def sendto(self, data, addr):
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append((self.clock.seconds(), data, addr))
        return len(data)


def unboundPort(clock, sock, interface="127.0.0.1"):
    """
    A Twisted UDP port object that never bound a socket, with C{sock} as
    its socket and a C{write} that fails the test if called.
    """
    port = udp.Port(0, DatagramProtocol(), interface=interface, reactor=clock)
    port.socket = sock

    def write(data, addr=None):
        raise AssertionError("udp.Port.write used on the fast path")

    port.write = write
    return port


class SendFastPathTests(SessionTestMixin, SynchronousTestCase):
    """
    The per-packet send path: one precompiled header, and the socket's
    C{sendto} for Twisted UDP ports, with the address checked once per
    destination.
    """

    def test_headerMatchesRtpPacket(self):
        """
        Every datagram is exactly what L{RtpPacket.serialize} makes of the
        same fields, with and without the marker bit.
        """
        frames = [LOUD, LOUD, None, LOUD]
        session, rtp, _ = self.makeSession(source=ScriptedSource(frames))
        self.ticks(4)
        session.sendKeepAliveFrame()
        self.assertEqual(len(rtp.written), 4)
        markers = []
        for _, data, _ in rtp.written:
            packet = RtpPacket.parse(data)
            markers.append(packet.marker)
            self.assertEqual(data, RtpPacket(packet.payloadType, packet.sequenceNumber,
                                             packet.timestamp, session.ssrc, packet.payload,
                                             packet.marker).serialize())
        self.assertEqual(markers, [True, False, True, True])

    def test_udpPortUsesSocketSendto(self):
        """
        Through a Twisted UDP port, RTP goes out with the port's socket's
        C{sendto} (not C{udp.Port.write}), to the negotiated address, with
        the same packets and statistics as through any transport.
        """
        session, _, _ = self.makeSession(source=ToneSource(440), start=False)
        sock = FakeSocket(self.clock)
        session.rtpProtocol.transport = unboundPort(self.clock, sock)
        session.start()
        self.ticks(3)
        self.assertEqual(sendTimes([(t, None, None) for t, _, _ in sock.sent]),
                         [0.02, 0.04, 0.06])
        self.assertEqual({addr for _, _, addr in sock.sent}, {PEER})
        packets = [(t, RtpPacket.parse(data), addr) for t, data, addr in sock.sent]
        self.assertSeqAndTs(packets, session, [(0, 0, True), (160, 1, False), (320, 2, False)])
        self.assertEqual(session.senderStats.packetsSent, 3)
        self.assertAlmostEqual(session.lastSendTime, 0.06)

    def test_socketErrorsCountedNeverRaised(self):
        """
        C{sendto} errors (EWOULDBLOCK, ENOBUFS, ECONNREFUSED) are counted
        and logged (rate-limited), never raised out of the tick; each uses
        up its sequence number, and sending goes on.
        """
        errors = [BlockingIOError(errno.EWOULDBLOCK, "would block"),
                  OSError(errno.ENOBUFS, "no buffer space"),
                  ConnectionRefusedError(errno.ECONNREFUSED, "refused")]
        session, _, _ = self.makeSession(source=ToneSource(440), start=False)
        sock = FakeSocket(self.clock, errors)
        session.rtpProtocol.transport = unboundPort(self.clock, sock)
        session.start()
        self.ticks(5)
        self.assertEqual(session.counters.sendErrors, 3)
        self.assertEqual(self.pacer.stats().errors, 0)
        self.assertEqual(session.senderStats.packetsSent, 2)
        sequences = [RtpPacket.parse(data).sequenceNumber for _, data, _ in sock.sent]
        first = session.initialSequenceNumber
        self.assertEqual(sequences, [(first + 3) & 0xFFFF, (first + 4) & 0xFFFF])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_writerFollowsTheDestination(self):
        """
        The writer is chosen again when the destination changes: after a
        latch the packets go to the latched address, still by C{sendto}.
        """
        session, _, _ = self.makeSession(source=ToneSource(440), start=False)
        sock = FakeSocket(self.clock)
        session.rtpProtocol.transport = unboundPort(self.clock, sock)
        session.start()
        self.ticks(2)
        session.rtpReceived(self.peerPacket(1, 160), NAT)
        self.ticks(2)
        self.assertEqual([addr for _, _, addr in sock.sent], [PEER, PEER, NAT, NAT])

    def test_writerChoice(self):
        """
        C{sendto} only for a listening (unconnected) Twisted UDP port and an
        IP address of its family; the transport's own C{write} otherwise,
        so Twisted still refuses host names and mismatched families.
        """
        sock = FakeSocket(self.clock)
        port = unboundPort(self.clock, sock)
        self.assertEqual(_datagramWriter(port, ("127.0.0.1", 5004)), sock.sendto)
        self.assertEqual(_datagramWriter(port, ("peer.example", 5004)), port.write)
        self.assertEqual(_datagramWriter(port, ("::1", 5004)), port.write)
        port6 = unboundPort(self.clock, sock, interface="::1")
        self.assertEqual(_datagramWriter(port6, ("::1", 5004)), sock.sendto)
        self.assertEqual(_datagramWriter(port6, ("127.0.0.1", 5004)), port6.write)
        port._connectedAddr = ("127.0.0.1", 5004)
        self.assertEqual(_datagramWriter(port, ("127.0.0.1", 5004)), port.write)
        recording = RecordingTransport(self.clock)
        self.assertEqual(_datagramWriter(recording, PEER), recording.write)

    def test_hostNameStillRefusedByTwisted(self):
        """
        A destination that is a host name goes through C{udp.Port.write},
        which refuses it: counted as a send error, as before the fast path.
        """
        session, _, _ = self.makeSession(media=makeMedia(remoteAddress="peer.example"),
                                         source=ToneSource(440), start=False)
        port = udp.Port(0, DatagramProtocol(), interface="127.0.0.1", reactor=self.clock)
        port.socket = FakeSocket(self.clock)
        session.rtpProtocol.transport = port
        session.start()
        self.ticks(2)
        self.assertEqual(port.socket.sent, [])
        self.assertEqual(session.counters.sendErrors, 2)
        self.flushLoggedErrors()

    def test_rtcpScheduleLearnsOfRtpWhenConsulted(self):
        """
        The RTCP schedule is told when RTP was last sent when it is
        consulted, not per packet, with the same outcome (RFC 3550 6.3.8):
        a sender while sending, not a sender two report intervals after
        the last packet, a sender again once RTP resumes.
        """
        session, _, rtcp = self.makeSession(source=ToneSource(440))
        self.ticks(250)                                  # 5 s of audio
        schedule = session._rtcpSchedule
        self.assertGreater(len(rtcp.rtcp()), 0)
        self.assertEqual((schedule.weSent, schedule.senders), (True, 1))
        session.configure(makeMedia(direction="recvonly"))       # hold
        for _ in range(1500):                            # 30 s
            self.clock.advance(0.02)
        self.assertEqual((schedule.weSent, schedule.senders), (False, 0))
        session.configure(makeMedia(direction="sendrecv"))
        reports = len(rtcp.rtcp())
        while len(rtcp.rtcp()) == reports:
            self.clock.advance(0.02)
        self.assertEqual((schedule.weSent, schedule.senders), (True, 1))
        self.assertIsInstance(rtcp.rtcp()[-1][1][0], SenderReport)


class ReceiveTests(SessionTestMixin, SynchronousTestCase):
    def test_receiveAndPlay(self):
        """
        RTP from the negotiated address goes through statistics and the
        jitter buffer (60 ms) to the sink, decoded.
        """
        sink = ListSink()
        session, _, _ = self.makeSession(sink=sink, jitterDelay=0.06)
        for n in range(10):
            self.clock.advance(0.02)
            session.rtpReceived(self.peerPacket(100 + n, 1000 + 160 * n), PEER)
        self.ticks(6)
        self.assertEqual(session.counters.packetsReceived, 10)
        # The first packet is on probation (RFC 3550 A.1), the rest play.
        self.assertEqual(len(sink.frames), 9)
        self.assertEqual(sink.frames[0], g711.decodePcmu(g711.encodePcmu(LOUD)))
        stats = session.receiverStats
        self.assertEqual((stats.ssrc, stats.lost), (0x1234, 0))
        self.assertEqual(session.statistics()["received"]["packets"], 9)

    def test_unknownSourceDropped(self):
        """
        With latching refused, RTP from another address never reaches the
        sink or the statistics; it is counted.
        """
        sink = ListSink()
        session, _, _ = self.makeSession(sink=sink, observer=RefuseLatching())
        for n in range(5):
            self.clock.advance(0.02)
            session.rtpReceived(self.peerPacket(n, 160 * n), OTHER)
        self.ticks(10)
        self.assertEqual(sink.frames, [])
        self.assertIsNone(session.receiverStats)
        self.assertEqual(session.counters.packetsFromUnknownSource, 5)
        self.assertEqual(session.counters.latchRefusals, 1)

    def test_malformedDropped(self):
        """
        Datagrams that are not RTP are counted and dropped; logging is rate
        limited.
        """
        session, _, _ = self.makeSession(sink=ListSink())
        for data in (b"", b"\x80", b"\x00" * 12, b"\x80\x00" + b"\x00" * 5):
            session.rtpReceived(data, PEER)
        self.assertEqual(session.counters.packetsMalformed, 4)
        self.assertIsNone(session.receiverStats)
        self.assertEqual(session.counters.packetsReceived, 0)

    def test_logRateLimited(self):
        """
        A flood of malformed packets logs once per ten seconds.
        """
        from twisted.logger import formatEvent, globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        session, _, _ = self.makeSession()
        for _ in range(100):
            session.rtpReceived(b"junk", PEER)
        self.clock.advance(10)
        session.rtpReceived(b"junk", PEER)
        mine = [e for e in events if "malformed RTP" in e.get("log_format", "")]
        self.assertEqual(len(mine), 2)
        self.assertEqual(mine[1]["suppressed"], 99)
        self.assertIn(f"RTP session {session.ssrc:08x}: malformed RTP from ('10.0.0.2', 40000)",
                      formatEvent(mine[1]))
        self.assertIn("(99 suppressed)", formatEvent(mine[1]))

    def test_payloadTypes(self):
        """
        CN packets produce comfort noise until audio resumes;
        telephone-event and unknown payload types are counted, not played.
        """
        sink = ListSink()
        media = makeMedia(comfortNoisePayloadType=13, telephoneEventPayloadType=101)
        session, _, _ = self.makeSession(media=media, sink=sink, jitterDelay=0.02)
        seq = 0

        def receive(payloadType, payload, timestamp):
            nonlocal seq
            session.rtpReceived(self.peerPacket(seq, timestamp, payloadType=payloadType,
                                                payload=payload), PEER)
            seq += 1

        for n in range(3):
            receive(0, g711.encodePcmu(LOUD), 160 * n)
            self.ticks(1)
        receive(13, b"\x28", 480)            # CN at -40 dBov
        self.ticks(4)
        receive(101, b"\x01\x00\x00\xa0", 1120)
        receive(96, b"\x00" * 20, 1280)
        receive(13, b"", 1440)               # malformed CN
        self.ticks(2)
        counters = session.counters
        self.assertEqual(counters.comfortNoisePackets, 2)
        self.assertEqual(counters.telephoneEventPackets, 1)
        self.assertEqual(counters.packetsUnknownPayloadType, 1)
        self.assertEqual(counters.packetsMalformed, 1)
        self.assertGreaterEqual(counters.comfortNoiseFrames, 4)
        noise = np.frombuffer(sink.frames[-1], "<i2").astype(float)
        level = 10 * np.log10(np.mean(noise ** 2) / 32767.0 ** 2)
        self.assertLess(abs(level + 40), 2)

    def test_notReceivingWhenSendOnly(self):
        """
        With direction sendonly (we hold the peer), its packets are ignored.
        """
        sink = ListSink()
        session, _, _ = self.makeSession(media=makeMedia(direction="sendonly"), sink=sink)
        for n in range(5):
            session.rtpReceived(self.peerPacket(n, 160 * n), PEER)
        self.ticks(10)
        self.assertEqual(session.counters.packetsIgnored, 5)
        self.assertEqual(sink.frames, [])

    def test_ssrcChange(self):
        """
        A new SSRC from the peer's address starts new statistics.
        """
        session, _, _ = self.makeSession()
        session.rtpReceived(self.peerPacket(1, 0, ssrc=1), PEER)
        session.rtpReceived(self.peerPacket(9, 0, ssrc=2), PEER)
        self.assertEqual(session.receiverStats.ssrc, 2)
        self.assertEqual(session.counters.remoteSsrcChanges, 1)

    def test_codecChangeResetsReceiver(self):
        """
        A re-INVITE that changes the codec drops what the jitter buffer
        holds (payloads of the old codec).
        """
        session, _, _ = self.makeSession()
        for n in range(3):
            session.rtpReceived(self.peerPacket(n, 160 * n), PEER)
        self.assertEqual(len(session.jitterBuffer), 2)
        session.configure(makeMedia())
        self.assertEqual(len(session.jitterBuffer), 2)
        session.configure(makeMedia(codec="PCMA", payloadType=8))
        self.assertEqual(len(session.jitterBuffer), 0)

    def test_lossConcealed(self):
        """
        Lost packets show as silence frames in the sink (bounded per gap).
        """
        sink = ListSink()
        session, _, _ = self.makeSession(sink=sink, maxConcealFrames=2)
        for n in list(range(4)) + list(range(7, 10)):
            self.clock.advance(0.02 if n != 7 else 0.08)
            session.rtpReceived(self.peerPacket(n, 160 * n), PEER)
        self.ticks(8)
        self.assertEqual(session.counters.framesConcealed, 2)
        self.assertEqual(sink.frames[3:5], [QUIET, QUIET])
        self.assertEqual(session.receiverStats.lost, 3)


class LatchTests(SessionTestMixin, SynchronousTestCase):
    def test_latchAllowed(self):
        """
        Valid RTP from a new address asks the observer; when allowed the
        session sends there (RTCP to the same host, port + 1) and plays it.
        """
        observer = RecordingObserver(True)
        sink = ListSink()
        session, rtp, rtcp = self.makeSession(observer=observer, sink=sink,
                                              source=ToneSource(440))
        self.ticks(1)
        for n in range(5):
            session.rtpReceived(self.peerPacket(n, 160 * n), NAT)
            self.ticks(1)
        self.ticks(5)
        self.assertEqual(observer.asked, [NAT])
        self.assertEqual(session.latchedAddress, NAT)
        self.assertEqual(session.remoteRtpAddress, NAT)
        self.assertEqual(session.counters.latches, 1)
        self.assertEqual([addr for _, _, addr in rtp.rtp()], [PEER] + [NAT] * 10)
        self.assertGreater(len(sink.frames), 0)
        session.sendRtcpReport()
        self.assertEqual(rtcp.written[-1][2], (NAT[0], NAT[1] + 1))
        # RTCP arriving from the latched host fixes the RTCP port.
        session.rtcpReceived(serializeCompound([ReceiverReport(0x1234)]), (NAT[0], 7777))
        session.sendRtcpReport()
        self.assertEqual(rtcp.written[-1][2], (NAT[0], 7777))
        self.assertEqual(session.statistics()["latchedAddress"], NAT)

    def test_latchRefused(self):
        """
        When the observer refuses, the packets are dropped as from an
        unknown source, sending stays on the negotiated address, and the
        observer is asked only once for that address.
        """
        observer = RecordingObserver(False)
        sink = ListSink()
        session, rtp, _ = self.makeSession(observer=observer, sink=sink,
                                           source=ToneSource(440))
        for n in range(5):
            session.rtpReceived(self.peerPacket(n, 160 * n), NAT)
            self.ticks(1)
        self.assertEqual(observer.asked, [NAT])
        self.assertIsNone(session.latchedAddress)
        self.assertEqual(session.counters.packetsFromUnknownSource, 5)
        self.assertEqual({addr for _, _, addr in rtp.rtp()}, {PEER})
        self.assertEqual(sink.frames, [])

    def test_latchOncePerCall(self):
        """
        By default only one latch per negotiated address; a third address
        is dropped without asking. A re-INVITE to a new address clears the
        latch and allows another.
        """
        observer = RecordingObserver(True)
        session, _, _ = self.makeSession(observer=observer)
        session.rtpReceived(self.peerPacket(1, 0), NAT)
        session.rtpReceived(self.peerPacket(2, 160), OTHER)
        self.assertEqual(observer.asked, [NAT])
        self.assertEqual(session.latchedAddress, NAT)
        self.assertEqual(session.counters.packetsFromUnknownSource, 1)
        # Packets from the negotiated address are still accepted.
        session.rtpReceived(self.peerPacket(3, 320), PEER)
        self.assertEqual(session.counters.packetsReceived, 2)
        session.configure(makeMedia(remoteAddress="10.0.0.3"))
        self.assertIsNone(session.latchedAddress)
        self.assertEqual(session.remoteRtpAddress, ("10.0.0.3", 40000))
        session.rtpReceived(self.peerPacket(4, 480), OTHER)
        self.assertEqual(session.latchedAddress, OTHER)

    def test_latchNeedsExpectedSsrcAndPayloadType(self):
        """
        Once the peer's SSRC is known, a packet with another SSRC or a
        payload type that was not negotiated does not latch.
        """
        observer = RecordingObserver(True)
        session, _, _ = self.makeSession(observer=observer)
        session.rtpReceived(self.peerPacket(1, 0, ssrc=0x1234), PEER)
        session.rtpReceived(self.peerPacket(2, 160, ssrc=0x9999), NAT)
        session.rtpReceived(self.peerPacket(2, 160, payloadType=96), NAT)
        self.assertEqual(observer.asked, [])
        session.rtpReceived(self.peerPacket(2, 160, ssrc=0x1234), NAT)
        self.assertEqual(observer.asked, [NAT])

    def test_unlimitedAndDisabled(self):
        """
        maxLatches=None latches every time; maxLatches=0 never asks.
        """
        unlimited, _, _ = self.makeSession(maxLatches=None)
        unlimited.rtpReceived(self.peerPacket(1, 0), NAT)
        unlimited.rtpReceived(self.peerPacket(2, 160), OTHER)
        self.assertEqual(unlimited.latchedAddress, OTHER)
        observer = RecordingObserver(True)
        never, _, _ = self.makeSession(maxLatches=0, observer=observer)
        never.rtpReceived(self.peerPacket(1, 0), NAT)
        self.assertEqual((observer.asked, never.latchedAddress), ([], None))

    def test_observerErrorRefuses(self):
        class Broken:
            def latchRequested(self, session, newAddr):
                raise KeyError("observer")

        session, _, _ = self.makeSession(observer=Broken())
        session.rtpReceived(self.peerPacket(1, 0), NAT)
        self.assertIsNone(session.latchedAddress)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_ipv6Normalized(self):
        """
        A negotiated IPv6 address written long-hand matches the socket's
        compressed form.
        """
        media = makeMedia(remoteAddress="2001:db8:0:0:0:0:0:1",
                          remoteRtcpAddress="2001:db8:0:0:0:0:0:1")
        session, _, _ = self.makeSession(media=media, observer=RefuseLatching())
        session.rtpReceived(self.peerPacket(1, 0), ("2001:db8::1", 40000, 0, 0))
        self.assertEqual(session.counters.packetsReceived, 1)


class RtcpTests(SessionTestMixin, SynchronousTestCase):
    def test_senderReport(self):
        """
        After N packets the report is an SR with packet and octet counts
        N and 160 N, the RTP timestamp of the report time, the NTP time of
        the wall clock, and an SDES CNAME.
        """
        session, _, rtcp = self.makeSession(source=ToneSource(440), cname="alice@example")
        self.ticks(25)
        self.clock.advance(0.01)            # report at 0.51
        session.sendRtcpReport()
        [(when, packets, addr)] = rtcp.rtcp()
        self.assertEqual(addr, PEER_RTCP)
        sr, sdes = packets
        self.assertIsInstance(sr, SenderReport)
        self.assertEqual((sr.ssrc, sr.packetCount, sr.octetCount), (session.ssrc, 25, 4000))
        self.assertEqual(sr.rtpTimestamp,
                         (session.initialTimestamp + round((0.51 - 0.02) * 8000)) & 0xFFFFFFFF)
        self.assertEqual(sr.ntpTimestamp, ntpToInt(ntpFromUnix(when)))
        self.assertEqual(sr.reports, [])
        self.assertIsInstance(sdes, SourceDescription)
        self.assertEqual(sdes.chunks[0].cname, "alice@example")
        self.assertEqual(sdes.chunks[0].ssrc, session.ssrc)

    def test_receiverReportWithLoss(self):
        """
        A session that only receives sends an RR whose report block shows
        the loss of the stream it received.
        """
        session, _, rtcp = self.makeSession(media=makeMedia(direction="recvonly"))
        for seq in range(1000, 1100):
            self.clock.advance(0.02)
            if seq % 10 != 5:                                    # 10 lost
                session.rtpReceived(self.peerPacket(seq, 160 * seq, ssrc=0xABCD), PEER)
        session.sendRtcpReport()
        [(_, packets, _)] = rtcp.rtcp()
        rr = packets[0]
        self.assertIsInstance(rr, ReceiverReport)
        [block] = rr.reports
        self.assertEqual(block.ssrc, 0xABCD)
        # Validated at 1001 (probation), 1001..1099 expected: 99, 10 lost.
        self.assertEqual(block.cumulativeLost, 10)
        self.assertEqual(block.highestSequence, 1099)
        self.assertEqual(block.fractionLost, (10 << 8) // 99)
        self.assertEqual(block.jitter, 0)
        self.assertEqual(session.statistics()["received"]["lost"], 10)
        # Nothing heard since: the next report has no block.
        session.sendRtcpReport()
        self.assertEqual(rtcp.rtcp()[-1][1][0].reports, [])

    def test_roundTripAndLsr(self):
        """
        An SR from the peer is echoed in our report block (LSR, DLSR); the
        peer's report block on our SR gives the round-trip time.
        """
        session, _, rtcp = self.makeSession(source=ToneSource(440))
        self.clock.advance(100)
        session.rtpReceived(self.peerPacket(1, 0), PEER)
        peerNtp = ntpToInt(ntpFromUnix(50.0))
        session.rtcpReceived(serializeCompound([SenderReport(0x1234, peerNtp, 0, 1, 160)]),
                             PEER_RTCP)
        self.clock.advance(0.5)
        data = session.sendRtcpReport()
        sr = parseCompound(data)[0]
        [block] = sr.reports
        self.assertEqual(block.lastSr, middle32(peerNtp))
        self.assertEqual(block.delaySinceLastSr, 32768)   # 0.5 s
        # The peer answers 0.25 s later, having held our SR for 0.05 s.
        self.clock.advance(0.25)
        reply = ReceiverReport(0x1234, [ReportBlock(session.ssrc, lastSr=middle32(sr.ntpTimestamp),
                                                    delaySinceLastSr=int(0.05 * 65536))])
        session.rtcpReceived(serializeCompound([reply]), PEER_RTCP)
        self.assertAlmostEqual(session.roundTripTime, 0.2, places=3)
        self.assertEqual(session.remoteReport.ssrc, session.ssrc)
        self.assertEqual(session.counters.rtcpReceived, 2)

    def test_rtcpMalformedAndUnknown(self):
        session, _, _ = self.makeSession()
        session.rtcpReceived(b"\x80\xc9\x00\x05junk", PEER_RTCP)
        session.rtcpReceived(serializeCompound([ReceiverReport(1)]), OTHER)
        self.assertEqual(session.counters.rtcpMalformed, 1)
        self.assertEqual(session.counters.rtcpFromUnknownSource, 1)
        self.assertEqual(session.counters.rtcpReceived, 0)

    def test_byeReceived(self):
        session, _, _ = self.makeSession()
        session.rtpReceived(self.peerPacket(1, 0), PEER)
        session.rtcpReceived(serializeCompound([ReceiverReport(0x1234), Bye([0x1234], "bye")]),
                             PEER_RTCP)
        self.assertEqual(session.counters.byeReceived, 1)

    def test_rtcpMux(self):
        """
        With rtcp-mux, RTCP arriving on the RTP port is demultiplexed (RFC
        5761) and our RTCP leaves the RTP socket for the RTP address.
        """
        media = makeMedia(rtcpMux=True, remoteRtcpPort=PEER[1])
        session, rtp, rtcp = self.makeSession(media=media, source=ToneSource(440))
        self.ticks(2)
        session.rtpReceived(self.peerPacket(1, 0), PEER)
        session.rtpReceived(serializeCompound([ReceiverReport(0x1234)]), PEER)
        self.assertEqual(session.counters.rtcpReceived, 1)
        self.assertEqual(session.counters.packetsReceived, 1)
        self.assertEqual(session.counters.packetsMalformed, 0)
        session.sendRtcpReport()
        self.assertEqual(rtcp.written, [])
        [(_, packets, addr)] = rtp.rtcp()
        self.assertEqual(addr, PEER)
        self.assertIsInstance(packets[0], SenderReport)
        self.assertEqual(len(rtp.rtp()), 2)

    def test_rtcpOnRtpPortWithoutMux(self):
        """
        Without rtcp-mux negotiated, an SR/RR compound on the RTP port (a
        peer that offered mux) is still RTCP, not an RTP packet of another
        SSRC.
        """
        session, _, _ = self.makeSession()
        session.rtpReceived(self.peerPacket(1, 0), PEER)
        session.rtpReceived(serializeCompound([ReceiverReport(0x1234)]), PEER)
        self.assertEqual(session.counters.rtcpReceived, 1)
        self.assertEqual(session.counters.packetsReceived, 1)
        self.assertEqual(session.counters.remoteSsrcChanges, 0)

    def test_cnameTooLong(self):
        self.assertRaises(ValueError, RtpSession, self.pacer, cname="x" * 256)

    def test_rtcpInterval(self):
        """
        The RTCP timer sends the first report after the halved initial
        interval (1.026 to 3.078 s with a 5 s minimum) and then every 2.05 to
        6.16 s; an SR while sending.
        """
        session, _, rtcp = self.makeSession(source=ToneSource(440))
        for _ in range(1000):                 # 20 s
            self.clock.advance(0.02)
        times = [t for t, _, _ in rtcp.rtcp()]
        self.assertGreaterEqual(times[0], 1.026)
        self.assertLess(times[0], 3.078 + 0.02)
        for earlier, later in zip(times, times[1:]):
            self.assertGreaterEqual(later - earlier, 2.05)
            self.assertLess(later - earlier, 6.16)
        self.assertGreaterEqual(len(times), 3)
        self.assertTrue(all(isinstance(p[0], SenderReport) for _, p, _ in rtcp.rtcp()))
        self.assertEqual(session.counters.rtcpSent, len(times))

    def test_byeOnStop(self):
        """
        stop() sends SR + SDES + BYE with the reason, leaves the pacer and
        cancels every timer.
        """
        session, rtp, rtcp = self.makeSession(source=ToneSource(440))
        self.ticks(3)
        session.stop("hangup")
        [(_, packets, addr)] = rtcp.rtcp()
        self.assertEqual(addr, PEER_RTCP)
        self.assertEqual([type(p) for p in packets], [SenderReport, SourceDescription, Bye])
        self.assertEqual(packets[2].ssrcs, [session.ssrc])
        self.assertEqual(packets[2].reason, b"hangup")
        self.assertEqual(len(self.pacer), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.ticks(5)
        self.assertEqual(len(rtp.rtp()), 3)
        self.assertFalse(session.sending)
        self.assertRaises(RuntimeError, session.start)

    def test_noByeIfNothingSent(self):
        """
        RFC 3550 6.3.7: a session that never sent RTP or RTCP sends no BYE.
        """
        session, _, rtcp = self.makeSession(media=makeMedia(direction="recvonly"))
        session.stop()
        self.assertEqual(rtcp.written, [])


class PortTests(SessionTestMixin, SynchronousTestCase):
    def test_listenAndRelease(self):
        """
        listen() binds the RTP and RTCP protocols through the allocator;
        stop() releases them.
        """
        memory = FakeUdpReactor()
        allocator = PortAllocator(memory, 20000, 20009, random=random.Random(0))
        session = RtpSession(self.pacer, random=random.Random(1))
        pair = session.listen(allocator, "127.0.0.1")
        self.assertEqual(pair.rtcpPort, pair.rtpPort + 1)
        self.assertEqual(pair.rtpPort % 2, 0)
        self.assertIs(memory.bound[pair.rtpPort].protocol, session.rtpProtocol)
        self.assertIs(memory.bound[pair.rtcpPort].protocol, session.rtcpProtocol)
        self.assertIs(session.rtpProtocol.session, session)
        self.assertIs(session.rtcpProtocol.session, session)
        self.assertRaises(RuntimeError, session.listen, allocator)
        self.assertEqual(allocator.inUse, 1)
        session.stop()
        self.assertEqual(allocator.inUse, 0)
        muxed = RtpSession(self.pacer)
        self.assertIsNone(muxed.listen(allocator, rtcpMux=True).rtcpPort)


class RealSocketTests(TestCase):
    """
    Two sessions on 127.0.0.1 exchange a 440 Hz tone for about a second
    over real sockets and the real reactor.
    """

    timeout = 20

    @inlineCallbacks
    def test_toneOverLoopback(self):
        pacer = Pacer(reactor)
        pacer.startService()
        self.addCleanup(pacer.stopService)
        allocator = PortAllocator(reactor, 30000, 30999, interface="127.0.0.1")
        received = []
        alice = RtpSession(pacer, source=ToneSource(440, 0.5), sink=DiscardSink())
        bob = RtpSession(pacer, source=ToneSource(880, 0.5), sink=CallbackSink(received.append))
        alicePorts = alice.listen(allocator)
        bobPorts = bob.listen(allocator)
        self.addCleanup(bob.stop)
        self.addCleanup(alice.stop)

        def mediaTo(ports):
            return makeMedia(remoteAddress="127.0.0.1", remotePort=ports.rtpPort,
                             remoteRtcpAddress="127.0.0.1", remoteRtcpPort=ports.rtcpPort)

        alice.configure(mediaTo(bobPorts))
        bob.configure(mediaTo(alicePorts))
        alice.start()
        bob.start()
        yield task.deferLater(reactor, 1.2, lambda: None)
        sentByAlice = alice.senderStats.packetsSent
        yield alice.stop()
        yield task.deferLater(reactor, 0.1, lambda: None)

        pcm = np.frombuffer(b"".join(received), "<i2").astype(float)
        self.assertGreater(len(pcm), 6000)
        spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
        peak = np.fft.rfftfreq(len(pcm), 1 / 8000.0)[np.argmax(spectrum)]
        self.assertLess(abs(peak - 440.0), 2.0)
        stats = bob.receiverStats
        self.assertEqual(stats.ssrc, alice.ssrc)
        self.assertEqual(stats.lost, 0)
        self.assertEqual(bob.counters.packetsReceived, sentByAlice)
        self.assertEqual(bob.counters.packetsFromUnknownSource, 0)
        self.assertEqual(bob.counters.byeReceived, 1)
        self.assertGreater(sentByAlice, 45)
        self.assertEqual(alice.receiverStats.lost, 0)
