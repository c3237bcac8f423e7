"""
lmevoip's RTP media against real peers, on the real reactor and loopback.

  - tshark captures an L{RtpSession} sending a PCMU tone to a second
    session and checks the stream the way a network engineer would:
    C{-z rtp,streams} (no loss, no sequence errors, no malformed packets)
    and packet by packet (sequence +1, timestamp +160 per 20 ms, drift
    free). A second capture runs across a noise-gate close and reopen.
  - SIPp with C{-rtp_echo} sends back what a session sends; what comes
    back decodes to the 440 Hz tone that went out.
  - lmevoip's user agent calls baresip; baresip's C{ausine} tone (440 Hz)
    reaches the call's session and decodes to 440 Hz, while lmevoip sends
    a 1 kHz tone the other way.

Every peer runs through C{tests.peers} (stopped by PID in the test's
cleanup, even on failure); every session releases its ports in cleanup.
The analysis helpers are checked on made-up data first
(L{AnalysisHelperTests}), so that the real-peer assertions cannot pass
by accident.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np
from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from lmevoip.rtp.audio import SAMPLE_RATE, CallbackSink, ToneSource, pcmToSamples
from lmevoip.rtp.gate import NoiseGate
from lmevoip.rtp.pacer import Pacer
from lmevoip.rtp.ports import PortAllocator
from lmevoip.rtp.session import RtpSession
from lmevoip.sip.call import StaticMediaHandler
from lmevoip.sip.sdp import NegotiatedMedia
from lmevoip.sip.useragent import UserAgentConfig, listenSip
from tests.peers.baresip import Baresip
from tests.peers.sipp import Sipp
from tests.peers.tshark import (
    RtpPacketRecord,
    TsharkCapture,
    malformedCount,
    rtpPackets,
    rtpStreams,
)
from tests.support import requireTool

LOOPBACK = "127.0.0.1"

#: G.711 at 8 kHz, 20 ms packets.
FRAME_SAMPLES = 160
PTIME = 0.020

#: Seconds between tshark's "Capturing on" and the first packet we send.
CAPTURE_SETTLE = 0.5

#: The tone every sending session plays.
TONE_HZ = 440.0


# -- analysis helpers ------------------------------------------------------------------


def dominantFrequency(pcm: bytes, sampleRate: int = SAMPLE_RATE) -> float:
    """
    The frequency (Hz) of the strongest component of 16-bit PCM, from a
    Hann-windowed FFT (the DC bin ignored).

    @raise ValueError: fewer than 2 samples.
    """
    samples = pcmToSamples(pcm).astype(np.float64)
    if len(samples) < 2:
        raise ValueError("need at least two samples")
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[0] = 0.0
    return float(np.fft.rfftfreq(len(samples), 1.0 / sampleRate)[int(np.argmax(spectrum))])


def sequenceDelta(earlier: RtpPacketRecord, later: RtpPacketRecord) -> int:
    """
    C{later.seq - earlier.seq} modulo 2**16.
    """
    return (later.seq - earlier.seq) % 0x10000


def timestampDelta(earlier: RtpPacketRecord, later: RtpPacketRecord) -> int:
    """
    C{later.timestamp - earlier.timestamp} modulo 2**32.
    """
    return (later.timestamp - earlier.timestamp) % 0x100000000


def talkspurtStarts(packets: Sequence[RtpPacketRecord],
                    samplesPerFrame: int = FRAME_SAMPLES) -> list[int]:
    """
    The indices of the packets that start a talkspurt and so must carry
    the marker bit (RFC 3551 section 4.1): the first, and each one whose
    timestamp is not one frame after the previous packet's (a gap: source
    silent, gate closed, pacer tick skipped).
    """
    return [0] + [i for i in range(1, len(packets))
                  if timestampDelta(packets[i - 1], packets[i]) != samplesPerFrame]


def pacingProblems(packets: Sequence[RtpPacketRecord], samplesPerFrame: int = FRAME_SAMPLES,
                   ptime: float = PTIME, allowedSlips: float = 0.02,
                   spanTolerance: float = 0.04) -> list[str]:
    """
    Check that RTP timestamps follow the wire times of a stream without
    gaps, and say what is wrong.

    The rule, for each pair of consecutive packets: the sequence number
    goes up by one, the timestamp by a positive whole number of frames,
    and that number is C{round(time delta / ptime)}. A late reactor tick
    moves one packet's wire time but not its timestamp (the timestamp
    comes from the schedule), so when two consecutive ticks differ in
    lateness by more than half a packet time the rule misses by exactly
    one frame: such I{slips} are tolerated for a fraction
    C{allowedSlips} of the pairs. Drift is not: the timestamp span of the
    whole stream must match its wire-time span within C{spanTolerance}
    seconds.

    @return: human-readable problems; empty when the stream is fine.
    """
    problems: list[str] = []
    if len(packets) < 2:
        return [f"only {len(packets)} packets"]
    rate = samplesPerFrame / ptime
    slips = []
    for earlier, later in zip(packets, packets[1:]):
        where = f"seq {earlier.seq}->{later.seq}"
        if sequenceDelta(earlier, later) != 1:
            problems.append(f"{where}: sequence number did not go up by one")
        tsDelta = timestampDelta(earlier, later)
        frames, remainder = divmod(tsDelta, samplesPerFrame)
        if remainder or frames < 1:
            problems.append(f"{where}: timestamp delta {tsDelta} is not a positive "
                            f"multiple of {samplesPerFrame}")
            continue
        expected = round((later.time - earlier.time) / ptime)
        if frames != expected:
            if abs(frames - expected) > 1:
                problems.append(f"{where}: timestamp delta {tsDelta} for a time delta of "
                                f"{later.time - earlier.time:.4f}s")
            else:
                slips.append(f"{where}: {frames} frames in {later.time - earlier.time:.4f}s")
    if len(slips) > max(1, int(allowedSlips * (len(packets) - 1))):
        problems.append(f"{len(slips)} of {len(packets) - 1} timestamp deltas miss the wire "
                        f"time by one frame: {slips[:5]}")
    tsSpan = sum(timestampDelta(a, b) for a, b in zip(packets, packets[1:])) / rate
    timeSpan = packets[-1].time - packets[0].time
    if abs(tsSpan - timeSpan) > spanTolerance:
        problems.append(f"timestamps span {tsSpan:.4f}s but the packets {timeSpan:.4f}s (drift)")
    return problems


def assertWithin(testCase: Any, value: float, expected: float, tolerance: float,
                 what: str = "value") -> None:
    """
    Fail unless C{|value - expected| <= tolerance} (trial's
    C{assertAlmostEqual} ignores C{delta=}).
    """
    if abs(value - expected) > tolerance:
        raise testCase.failureException(
            f"{what} {value!r} is not within {tolerance!r} of {expected!r}")


def _record(time: float, seq: int, timestamp: int, marker: bool = False) -> RtpPacketRecord:
    return RtpPacketRecord(time=time, ssrc=1, seq=seq & 0xFFFF, timestamp=timestamp & 0xFFFFFFFF,
                           marker=marker, payloadType=0, src="127.0.0.1:1", dst="127.0.0.1:2")


class AnalysisHelperTests(unittest.SynchronousTestCase):
    """
    The helpers that judge the captures, on made-up streams.
    """

    def test_dominantFrequency(self) -> None:
        """
        The FFT peak of a tone is its frequency (within the FFT's bin
        width), whatever the tone.
        """
        for frequency in (440.0, 1000.0, 2600.0):
            pcm = ToneSource(frequency).readFrame(16000)
            assertWithin(self, dominantFrequency(pcm), frequency, 1.0, "FFT peak (Hz)")
        self.assertRaises(self.failureException, assertWithin, self, 442.5, 440.0, 2.0)

    def test_goodStream(self) -> None:
        """
        A stream with wrap-around sequence numbers and timestamps, jittered
        wire times and a skipped tick (two frames in 40 ms) is fine.
        """
        jitter = [0.0, 0.004, 0.001, 0.006, 0.002]
        packets = []
        index = 0
        for n in range(100):
            index += 2 if n == 50 else 1
            time = 100.0 + index * PTIME + jitter[n % len(jitter)]
            packets.append(_record(time, 0xFFF0 + n, 0xFFFFF000 + index * 160))
        self.assertEqual(pacingProblems(packets), [])

    def test_talkspurtStarts(self) -> None:
        """
        Talkspurts start at the first packet and after each timestamp gap.
        """
        stamps = [0, 160, 320, 800, 960, 1440]
        packets = [_record(n * PTIME, n, ts) for n, ts in enumerate(stamps)]
        self.assertEqual(talkspurtStarts(packets), [0, 3, 5])

    def test_badSequence(self) -> None:
        """
        A sequence number that does not go up by one is reported.
        """
        packets = [_record(n * PTIME, n + (n >= 10), n * 160) for n in range(20)]
        problems = pacingProblems(packets)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("seq 9->11", problems[0])

    def test_timestampNotAFrame(self) -> None:
        """
        A timestamp step that is not a whole frame is reported.
        """
        packets = [_record(n * PTIME, n, n * 160 + (80 if n >= 5 else 0)) for n in range(20)]
        self.assertIn("not a positive multiple", " ".join(pacingProblems(packets)))

    def test_timestampRunsFast(self) -> None:
        """
        A clock that runs 5% fast drifts past the span tolerance (and slips
        on many pairs).
        """
        packets = [_record(n * PTIME * 0.95, n, n * 160) for n in range(100)]
        problems = " ".join(pacingProblems(packets))
        self.assertIn("drift", problems)

    def test_timestampIgnoresGap(self) -> None:
        """
        A pause in sending with timestamps that do not jump is reported.
        """
        packets = [_record(n * PTIME + (0.5 if n >= 10 else 0.0), n, n * 160) for n in range(20)]
        self.assertIn("for a time delta of 0.52", " ".join(pacingProblems(packets)))


# -- the tests on the real reactor ---------------------------------------------------------------


def negotiated(remotePort: int, direction: str = "sendrecv") -> NegotiatedMedia:
    """
    PCMU/8000 with 20 ms packets to C{127.0.0.1:remotePort}, RTCP on the next
    port.
    """
    return NegotiatedMedia("PCMU", 0, 8000, LOOPBACK, remotePort, LOOPBACK, remotePort + 1,
                           direction=direction)


class ScriptedSource:
    """
    An audio source that plays a script of C{(kind, frames)} parts, kind
    C{"tone"} or C{"silence"} (digital zero), then gives C{None} (nothing to
    send).

    @ivar framesRead: frames handed out so far.
    """

    def __init__(self, script: Sequence[tuple[str, int]], frequency: float = TONE_HZ) -> None:
        self._tone = ToneSource(frequency)
        self._kinds = [kind for kind, count in script for _ in range(count)]
        self.framesRead = 0

    def readFrame(self, samples: int) -> bytes | None:
        if self.framesRead >= len(self._kinds):
            return None
        kind = self._kinds[self.framesRead]
        self.framesRead += 1
        if kind == "tone":
            return self._tone.readFrame(samples)
        return bytes(2 * samples)

    def close(self) -> None:
        pass


def wait(seconds: float) -> Any:
    """
    A Deferred firing after C{seconds} of reactor time.
    """
    return task.deferLater(reactor, seconds, lambda: None)


class _RealMediaTestCase(unittest.TestCase):
    """
    A pacer on the global reactor and a port allocator on loopback; every
    session made with L{session} is stopped (ports released) in cleanup.
    """

    timeout = 60

    def setUp(self) -> None:
        self.pacer = Pacer(reactor)
        self.pacer.startService()
        self.addCleanup(self.pacer.stopService)
        self.allocator = PortAllocator(reactor, interface=LOOPBACK)

    def session(self, **kwargs: Any) -> RtpSession:
        session = RtpSession(self.pacer, **kwargs)
        session.listen(self.allocator, LOOPBACK)
        self.addCleanup(session.stop)
        return session

    def receivedTone(self, frames: list[bytes], session: RtpSession) -> None:
        """
        Assert that the decoded audio C{frames} a session played hold the
        tone.
        """
        self.assertGreater(session.counters.framesPlayed, 50, session.counters)
        pcm = b"".join(frames)
        assertWithin(self, dominantFrequency(pcm), TONE_HZ, 2.0, "FFT peak of the received audio (Hz)")
        peak = int(np.max(np.abs(pcmToSamples(pcm).astype(np.int32))))
        # ToneSource's default amplitude is half of full scale; G.711 keeps it.
        self.assertGreater(peak, 15000)
        self.assertLess(peak, 17500)


class TsharkRtpTests(_RealMediaTestCase):
    """
    tshark's view of what an L{RtpSession} puts on the wire.
    """

    def setUp(self) -> None:
        requireTool("tshark")
        super().setUp()

    @inlineCallbacks
    def capture(self, sender: RtpSession, receiver: RtpSession, seconds: float) -> Any:
        """
        Capture the two sessions' RTP ports while the receiver and then the
        sender run for C{seconds}; stop the sender, let the receiver play
        out, stop it.

        @return: a Deferred firing with the pcap's path.
        """
        capture = TsharkCapture(self, ports=[sender.ports.rtpPort, receiver.ports.rtpPort])
        yield capture.start()
        # tshark says "Capturing on" some 15-35 ms before packets really
        # reach the file (measured with tshark 4.0): give it time.
        yield wait(CAPTURE_SETTLE)
        receiver.start()
        sender.start()
        yield wait(seconds)
        yield sender.stop()
        yield wait(0.2)
        yield receiver.stop()
        path = yield capture.stop()
        return path

    def pair(self, source: Any, gate: NoiseGate | None = None) -> tuple[RtpSession, RtpSession, list[bytes]]:
        frames: list[bytes] = []
        sender = self.session(source=source, gate=gate)
        receiver = self.session(sink=CallbackSink(frames.append))
        sender.configure(negotiated(receiver.ports.rtpPort, "sendonly"))
        receiver.configure(negotiated(sender.ports.rtpPort, "recvonly"))
        return sender, receiver, frames

    @inlineCallbacks
    def test_toneStream(self) -> Any:
        """
        Two seconds of PCMU tone: tshark sees one stream, nothing lost, no
        sequence or timestamp problems, nothing malformed; timestamps go up
        160 per 20 ms; only the first packet has the marker bit; the
        receiving session decodes the tone.
        """
        sender, receiver, frames = self.pair(ToneSource(TONE_HZ))
        pcap = yield self.capture(sender, receiver, 2.0)
        decodeAs = [f"udp.port=={sender.ports.rtpPort},rtp"]
        sent = sender.senderStats.packetsSent
        self.assertGreaterEqual(sent, 80)

        streams = yield rtpStreams(pcap, decodeAs)
        ours = [s for s in streams if s.ssrc == sender.ssrc]
        self.assertEqual(len(ours), 1, streams)
        stream = ours[0]
        self.assertEqual(stream.src, f"{LOOPBACK}:{sender.ports.rtpPort}")
        self.assertEqual(stream.dst, f"{LOOPBACK}:{receiver.ports.rtpPort}")
        self.assertIn("711U", stream.payload)
        self.assertEqual(stream.packets, sent)
        self.assertEqual(stream.lost, 0, stream)
        self.assertFalse(stream.problems, stream)
        malformed = yield malformedCount(pcap, decodeAs)
        self.assertEqual(malformed, 0)

        packets = yield rtpPackets(pcap, decodeAs, f"rtp.ssrc == {sender.ssrc:#x}")
        self.assertEqual(len(packets), sent)
        self.assertEqual(packets[0].seq, sender.initialSequenceNumber)
        self.assertEqual({p.payloadType for p in packets}, {0})
        self.assertEqual(pacingProblems(packets), [])
        timeDeltas = [b.time - a.time for a, b in zip(packets, packets[1:])]
        assertWithin(self, statistics.median(timeDeltas), PTIME, 0.003, "median packet interval (s)")
        # The marker bit on the first packet only, unless a tick was
        # skipped (a machine stalled 20 ms): then on the packet after it too.
        starts = talkspurtStarts(packets)
        self.assertLessEqual(len(starts), 3, starts)
        self.assertEqual([i for i, p in enumerate(packets) if p.marker], starts)

        self.assertEqual(receiver.counters.packetsReceived, sent)
        self.receivedTone(frames, receiver)

    @inlineCallbacks
    def test_noiseGateGap(self) -> Any:
        """
        Tone, half a second of silence the noise gate suppresses, tone
        again: across the gap the sequence number goes up by one, the
        timestamp by the samples elapsed (within one frame of the wire
        time), and the first packet after the gap has the marker bit.
        """
        toneFrames, silentFrames = 40, 25
        source = ScriptedSource([("tone", toneFrames), ("silence", silentFrames),
                                 ("tone", toneFrames)])
        gate = NoiseGate(threshold=512, enabled=True, decayMs=0)
        sender, receiver, frames = self.pair(source, gate)
        seconds = (2 * toneFrames + silentFrames) * PTIME + 0.3
        pcap = yield self.capture(sender, receiver, seconds)
        decodeAs = [f"udp.port=={sender.ports.rtpPort},rtp"]
        self.assertEqual(source.framesRead, 2 * toneFrames + silentFrames)
        self.assertEqual(sender.counters.framesSuppressed, silentFrames)
        self.assertEqual((gate.openCount, gate.closeCount), (2, 1))

        streams = yield rtpStreams(pcap, decodeAs)
        ours = [s for s in streams if s.ssrc == sender.ssrc]
        self.assertEqual(len(ours), 1, streams)
        self.assertEqual(sender.senderStats.packetsSent, 2 * toneFrames)
        self.assertEqual(ours[0].packets, 2 * toneFrames, ours)
        self.assertEqual(ours[0].lost, 0, ours[0])

        packets = yield rtpPackets(pcap, decodeAs, f"rtp.ssrc == {sender.ssrc:#x}")
        self.assertEqual(len(packets), 2 * toneFrames)
        before, after = packets[toneFrames - 1], packets[toneFrames]
        self.assertEqual(sequenceDelta(before, after), 1)
        jump = timestampDelta(before, after)
        elapsed = (after.time - before.time) * SAMPLE_RATE
        self.assertEqual(jump % FRAME_SAMPLES, 0)
        self.assertGreaterEqual(jump, (silentFrames + 1) * FRAME_SAMPLES)
        self.assertLessEqual(abs(jump - elapsed), FRAME_SAMPLES,
                             f"timestamp jump {jump} for {elapsed:.0f} samples elapsed")
        starts = talkspurtStarts(packets)
        self.assertIn(toneFrames, starts)
        self.assertLessEqual(len(starts), 4, starts)
        self.assertEqual([i for i, p in enumerate(packets) if p.marker], starts)
        # Each talkspurt on its own is evenly paced.
        self.assertEqual(pacingProblems(packets[:toneFrames]), [])
        self.assertEqual(pacingProblems(packets[toneFrames:]), [])

        self.assertEqual(receiver.counters.packetsReceived, 2 * toneFrames)
        self.receivedTone(frames, receiver)


class SippRtpEchoTests(_RealMediaTestCase):
    """
    SIPp's C{-rtp_echo} as the far end of a session.
    """

    @inlineCallbacks
    def test_echoedTone(self) -> Any:
        """
        A session sends a 440 Hz PCMU tone to SIPp's media port for two
        seconds; SIPp sends every packet back; the session accepts them
        (they come from the negotiated address), and what it decodes is
        the 440 Hz tone; the packet counts both ways match.
        """
        requireTool("sipp")
        sipp = Sipp(self, "rtp_echo_wait", rtpEcho=True, timeout=30)
        yield sipp.start()
        frames: list[bytes] = []
        session = self.session(source=ToneSource(TONE_HZ), sink=CallbackSink(frames.append))
        session.configure(negotiated(sipp.mediaPort))
        session.start()
        yield wait(2.0)
        # Stop sending, keep receiving what is still on its way back.
        session.configure(negotiated(sipp.mediaPort, "recvonly"))
        sent = session.senderStats.packetsSent
        yield wait(0.3)
        self.assertTrue(sipp.process.running, sipp.process.outputTail())

        self.assertGreaterEqual(sent, 80)
        counters = session.counters
        self.assertEqual(counters.packetsFromUnknownSource, 0, counters)
        self.assertEqual(counters.packetsMalformed, 0, counters)
        self.assertLessEqual(counters.packetsReceived, sent)
        self.assertGreaterEqual(counters.packetsReceived, sent - 2, counters)
        stats = session.statistics()["received"]
        self.assertEqual(stats["ssrc"], session.ssrc)
        self.assertEqual(stats["lost"], 0, stats)
        self.receivedTone(frames, session)


class SessionMediaHandler(StaticMediaHandler):
    """
    A call's media handler that offers an L{RtpSession}'s port (PCMU only)
    and applies every negotiated media to the session, starting it.
    """

    def __init__(self, session: RtpSession) -> None:
        super().__init__(LOOPBACK, session.ports.rtpPort, codecs=("PCMU",), telephoneEvent=False)
        self.session = session

    def mediaChanged(self, media: NegotiatedMedia) -> None:
        super().mediaChanged(media)
        self.session.configure(media)
        self.session.start()


class BaresipMediaTests(_RealMediaTestCase):
    """
    A call from lmevoip's user agent to baresip, media both ways.
    """

    #: baresip's source: C{ausine,440} (see L{tests.peers.baresip}).
    BARESIP_TONE_HZ = 440.0

    #: What lmevoip sends, so that an echo of it could not pass for
    #: baresip's tone.
    LMEVOIP_TONE_HZ = 1000.0

    @inlineCallbacks
    def test_baresipToneReachesLmevoip(self) -> Any:
        """
        baresip answers; its 440 Hz tone arrives at the session from the
        address its SDP gave, without loss, and decodes to 440 Hz; baresip
        reports RTP established (it receives lmevoip's stream).
        """
        requireTool("baresip")
        peer = Baresip(self)
        yield peer.start()
        frames: list[bytes] = []
        session = self.session(source=ToneSource(self.LMEVOIP_TONE_HZ),
                               sink=CallbackSink(frames.append))
        stack = listenSip(reactor, UserAgentConfig(host=LOOPBACK, port=0))
        self.addCleanup(stack.stop)
        call = stack.userAgent.call(peer.uri, mediaHandler=SessionMediaHandler(session))
        self.addCleanup(call.hangup)
        media = yield call.whenConnected()
        self.assertEqual((media.codec.upper(), media.payloadType), ("PCMU", 0))
        yield wait(2.5)
        call.hangup()
        yield call.whenTerminated()

        counters = session.counters
        self.assertGreater(counters.packetsReceived, 80, counters)
        self.assertEqual(counters.packetsFromUnknownSource, 0, counters)
        self.assertEqual(counters.packetsMalformed, 0, counters)
        self.assertEqual(session.receiverStats.lost, 0)
        self.assertEqual(session.remoteRtpAddress, (LOOPBACK, media.remotePort))
        self.assertGreater(session.senderStats.packetsSent, 80)
        self.assertTrue(peer.eventsOfType("CALL_RTPESTAB"), peer.events)
        self.assertGreater(counters.framesPlayed, 50, counters)
        # baresip's first frames may ramp up: judge the last second and a half.
        pcm = b"".join(frames)[-2 * 12000:]
        assertWithin(self, dominantFrequency(pcm), self.BARESIP_TONE_HZ, 2.0,
                     "FFT peak of baresip's audio (Hz)")
